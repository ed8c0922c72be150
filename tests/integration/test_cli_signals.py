"""``tickvault signals tail|query`` as real processes against a real publisher and store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_live import free_ports, port_env
from tests.integration.test_tail import read_until, stop
from tickvault import Vault
from tickvault.config import load_settings
from tickvault.engine.signals import SignalStore
from tickvault.records.signals import Mode, Side, Signal
from tickvault.transport.publisher import Publisher

S = 1_000_000_000


def _sig(ts: int, side: Side) -> Signal:
    return Signal("WINZ25", ts, ts - 7, side, 0.3 * int(side), 0.62, 60 * S, "cafe01", Mode.FAST)


def test_signals_tail_prints_signals_published_after_it_started() -> None:
    from tickvault.live.models import signal_endpoints

    ports = free_ports()
    env = {**os.environ, **port_env(ports), "PYTHONUNBUFFERED": "1", "COLUMNS": "250",
           "TICKVAULT_ZMQ_SIGNALS_REPLAY_PORT": str(free_ports()["replay"])}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "signals", "tail",
                             "winz25"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        read_until(proc.stderr, "waiting for WINZ25 signals", [])
        settings = load_settings(
            environ={k: v for k, v in env.items() if k.startswith("TICKVAULT_")}
        )
        lines: list[str] = []
        # the model worker's publisher: signals and their own replay port
        with Publisher(settings, endpoints=signal_endpoints(settings)) as pub:
            now = time.time_ns()
            pub.publish_signals("WINZ25", [_sig(now, Side.LONG), _sig(now + 1, Side.FLAT)])
            pub.flush()
            read_until(proc.stdout, "FLAT", lines)
    finally:
        assert stop(proc) == 0
    text = "\n".join(lines)
    assert "LONG" in text and "model cafe01" in text and "confidence 0.620" in text


def test_signals_query_prints_the_stored_signals_and_csv(vault: Vault, own_data_dir: Path) -> None:
    with Vault.open(data_dir=own_data_dir) as own:
        t0 = 1_764_000_000 * S
        SignalStore(own).append([_sig(t0, Side.SHORT), _sig(t0 + S, Side.FLAT)])
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(own_data_dir), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "tickvault.cli.main", "signals", "query", "WINZ25",
           "--start", "2025-11-24", "--end", "2025-11-26"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "WINZ25 signals: 2" in out.stdout and "SHORT" in out.stdout
    csv = subprocess.run([*cmd, "--csv"], env=env, capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert csv.stdout.splitlines()[0].startswith("ts_event,t_features,side")
    assert len(csv.stdout.splitlines()) == 3
    bad = subprocess.run([*cmd[:6], "--start", "2025-11-26", "--end", "2025-11-24"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert bad.returncode != 0 and "before end" in bad.stderr and "Traceback" not in bad.stderr
