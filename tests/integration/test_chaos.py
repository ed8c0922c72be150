"""``tickvault chaos`` at CI size: real processes (publisher, bridge, feature and model
workers), a real embedded Valkey (AOF everysec) killed and restarted, real signals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tickvault.bench.chaos import EXPECTED_LOSS, SCENARIOS

CI_SCENARIOS = (
    "no fault",
    "kill -9 publisher",
    "kill -9 bridge",
    "kill -9 valkey",
    "SIGSTOP bridge",
    "kill -9 feature worker",
    "kill -9 model worker",
    "kill -9 bridge + valkey",
)


def test_chaos_at_ci_size_loses_nothing_and_stores_nothing_twice() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "chaos", "--trades", "20000",
         "--stop-seconds", "2", "--scenarios", ",".join(CI_SCENARIOS), "--json",
         "--fuzz", "--fuzz-messages", "300", "--fuzz-rows", "30"],
        check=False, capture_output=True, text=True, timeout=900, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-4000:]
    result = json.loads(proc.stdout)
    assert [r["scenario"] for r in result["rows"]] == list(CI_SCENARIOS)
    assert result["ok"] is True
    for row in result["rows"]:
        t = row["trades"]
        assert row["ok"], row
        assert t["sent"] > 0 and t["stored"] == t["sent"], row
        assert t["lost"] == 0 and t["duplicated"] == 0 and t["extra"] == 0, row
        assert t["checksum_ok"] and t["gap_markers"] == 0, row
        r, s = row["rows"], row["signals"]
        assert r["expected"] > 0 and r["lost"] == r["doubled"] == r["wrong"] == 0, row
        assert s["versions"] > 0 and s["decided"] == s["versions"], row
        assert s["doubled"] == s["orphan"] == 0 and s["cursor_at_end"], row
        assert row["recover_s"] is not None, row
    fz = result["fuzz"]  # the fuzzing ran too, on a server of its own, and found nothing
    assert fz["available"] is True and fz["ok"] is True, fz
    targets = {r["target"]: r for r in fz["rows"]}
    assert {"wire -> bridge", "wire -> subscriber"} <= set(targets), fz
    bridge = targets["wire -> bridge"]
    assert (
        bridge["rejected"] == bridge["hostile"] == 300
        and bridge["stored"] == bridge["valid_trades"]
    )


def test_the_documented_loss_is_one_of_the_scenarios() -> None:
    assert EXPECTED_LOSS in SCENARIOS
    assert len(set(SCENARIOS)) == len(SCENARIOS)
