"""``run_fuzz`` at CI size (issue 17 item 3): hostile wire messages to a real Bridge and
Subscriber over real ZeroMQ sockets, malformed rows per file format, on the real store.
The full size (10,000 messages, 1,000 rows per format) is the default of ``run_fuzz``,
which ``tickvault chaos`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import sim_trades
from tests.integration.test_faults import sent_set, stored_set
from tickvault import Vault
from tickvault.bench.fuzz import BAD_SYMBOL, SYMBOL, run_fuzz
from tickvault.cli.main import cli


def test_fuzz_at_ci_size_finds_no_crash_no_hang_and_accounts_for_every_message_and_row(
    vault: Vault,
) -> None:
    mine = sim_trades(300, symbol="WINZ25", days=1)
    vault.write_trades("WINZ25", mine)  # a user's data, untouched by the run
    said: list[str] = []
    report = run_fuzz(vault, messages=2_000, rows=200, progress=said.append)
    table = report.table()
    assert report.ok, table
    rows = {r.target: r for r in report.rows}
    assert set(rows) == {"wire -> bridge", "wire -> subscriber", "file B3", "file CSV",
                         "file Parquet"}  # fmt: skip
    bridge = rows["wire -> bridge"]
    assert bridge.hostile == bridge.rejected == bridge.kept == 2_000
    assert bridge.stored == bridge.valid_trades > 0
    assert len(bridge.reasons) >= 8  # many kinds of damage, each counted by reason
    sub = rows["wire -> subscriber"]
    assert 0 < sub.rejected == sub.hostile < 2_000  # values are the bridge's to check
    for name in ("file B3", "file CSV", "file Parquet"):
        assert rows[name].rejected == rows[name].kept == 200
        assert rows[name].stored == rows[name].valid_trades == 600
    # what was rejected stays in the quarantine, raw, for inspection
    kept = vault.quarantined(3_000)
    assert len(kept) >= 2_000 and {"reason", "detail", "f0"} <= set(kept[-1])
    # the run's own symbols are cleared; the user's data is as it was
    assert SYMBOL not in vault.symbols() and BAD_SYMBOL not in vault.symbols()
    assert stored_set(vault, "WINZ25") == sent_set(mine.to_structured())
    assert "wire -> bridge" in table and said


def test_import_skip_bad_rows_names_the_line_of_every_bad_row(
    own_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickvault.files import b3

    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    good = "2025-11-03;WINZ25;0;127990,0;1;100000123;{};1;2025-11-03;1;2"
    lines = [";".join(b3.B3_COLUMNS)] + [good.format(i) for i in range(1, 60)]
    bad_at = [5, 17, 33, 60]
    for line in bad_at:  # line 1 is the header
        lines[line - 1] = good.format(1000 + line).replace("127990,0", "abc")
    path = tmp_path / "trades.txt"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["import", str(path), "--skip-bad-rows"])
    assert result.exit_code == 0, result.output
    assert f"bad lines {', '.join(map(str, bad_at))}" in result.stderr
