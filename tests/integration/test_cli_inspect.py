"""`status` (unique trades beside stored records, the data directory), `gaps`,
`quarantine`, and output that is not a terminal, on the real embedded server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import sim_trades
from tickvault import TradeBatch, Vault
from tickvault.cli.main import cli
from tickvault.cli.output import PIPE_WIDTH, WholeConsole
from tickvault.records.events import Gap
from tickvault.timeutil import format_ns


@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    return CliRunner()


def _cells(output: str, *keys: str) -> list[str]:
    """The cells of the one table row that holds every one of ``keys``."""
    [line] = [ln for ln in output.splitlines() if all(f" {k} " in ln for k in keys)]
    return [c.strip() for c in line.replace("┃", "│").strip().strip("│").split("│")]


def test_status_counts_unique_trades_apart_from_stored_records(
    runner: CliRunner, own_data_dir: Path
) -> None:
    five = sim_trades(5, days=1)
    with Vault.open(data_dir=own_data_dir) as vault:
        for _ in range(3):  # the same five trades three times: 15 records
            vault.write_trades("WINZ25", five)
        vault.write_trades("WINZ25", five, stream="historical")  # and once more as history
    result = runner.invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    header = _cells(result.stdout, "symbol", "stream")
    rows = {
        stream: dict(zip(header, _cells(result.stdout, "WINZ25", stream), strict=True))
        for stream in ("realtime", "historical", "all")
    }
    assert (rows["realtime"]["trades"], rows["realtime"]["records"]) == ("5", "15")
    assert (rows["historical"]["trades"], rows["historical"]["records"]) == ("5", "5")
    assert (rows["all"]["trades"], rows["all"]["records"]) == ("5", "20")  # one trade, both


def test_status_prints_the_data_directory_of_the_embedded_server(
    runner: CliRunner, own_data_dir: Path
) -> None:
    result = runner.invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert f"data directory: {own_data_dir.resolve()}" in result.stdout


def test_status_of_one_stream_has_no_all_row(runner: CliRunner, own_data_dir: Path) -> None:
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WDOZ25", sim_trades(7, symbol="WDOZ25", days=1))
    result = runner.invoke(cli, ["status"])
    assert _cells(result.stdout, "WDOZ25", "realtime")[2:4] == ["7", "7"]
    assert not [ln for ln in result.stdout.splitlines() if " all " in ln]


# ---------------------------------------------------------------------- piped output
def _tickvault(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TICKVAULT_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", *args],
        env=env,
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=120,
        check=False,
    )


def test_piped_query_table_keeps_every_value_whole(own_data_dir: Path) -> None:
    batch = sim_trades(20, days=1)
    cols = batch.columns()
    cols["price"] = np.full(len(batch), 142_875.0)
    cols["volume"] = np.full(len(batch), 12_345_678_901.25)
    cols["buy_agent"] = np.full(len(batch), 1_234_567, dtype=cols["buy_agent"].dtype)
    wide = TradeBatch(**cols)
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", wide)
        tz = vault.settings.tz
    done = _tickvault(["query", "WINZ25"], own_data_dir)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    lines = [ln for ln in done.stdout.splitlines() if "142,875.00" in ln]
    assert len(lines) == len(wide)
    for ts, line in zip(np.sort(wide.ts_event), lines, strict=True):
        assert format_ns(int(ts), tz) in line
        assert "12,345,678,901.25" in line and "1234567" in line


def test_piped_status_keeps_every_value_whole(own_data_dir: Path) -> None:
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", sim_trades(30, days=1))
        [stats] = vault.stats("WINZ25")
        tz = vault.settings.tz
    done = _tickvault(["status"], own_data_dir)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    assert stats.first_ns is not None and stats.last_ns is not None
    row = _cells(done.stdout, "WINZ25", "realtime")
    assert format_ns(stats.first_ns, tz) in row and format_ns(stats.last_ns, tz) in row


def test_console_is_wide_off_a_terminal_and_unchanged_on_one() -> None:
    assert WholeConsole(file=io.StringIO()).width == PIPE_WIDTH
    assert WholeConsole(file=io.StringIO(), width=50).width == 50  # an explicit width wins
    assert WholeConsole(file=io.StringIO(), force_terminal=True).width != PIPE_WIDTH


# ---------------------------------------------------------------------- gaps
def _gap(start_ns: int, end_ns: int, first: int, last: int) -> Gap:
    return Gap(symbol="WINZ25", stream="realtime", start_ns=start_ns, end_ns=end_ns,
                     publisher="00000000000000ab", topic="T:WINZ25", seq_first=first,
                     seq_last=last, reason="evicted")  # fmt: skip


def test_gaps_lists_the_recorded_gaps_of_a_symbol(runner: CliRunner, own_data_dir: Path) -> None:
    t0 = 1_762_171_200_000_000_000  # 2025-11-03 12:00 UTC
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.record_gap(_gap(t0, t0 + 5_000_000_000, 10, 14))
        vault.record_gap(_gap(t0 + 3_600_000_000_000, t0 + 3_601_000_000_000, 90, 90))
        tz = vault.settings.tz
    result = runner.invoke(cli, ["gaps", "winz25"])
    assert result.exit_code == 0, result.output
    first = " ".join(_cells(result.stdout, format_ns(t0, tz)))
    assert format_ns(t0 + 5_000_000_000, tz) in first
    assert "5 (seq 10..14)" in first and "evicted" in first and "T:WINZ25" in first
    assert "1 (seq 90..90)" in result.stdout
    # --start/--end select the gaps that overlap the span
    later = runner.invoke(cli, ["gaps", "WINZ25", "--start", "2025-11-03T09:30"])  # B3 time
    assert later.exit_code == 0, later.output
    assert "seq 90..90" in later.stdout and "seq 10..14" not in later.stdout


def test_gaps_of_a_symbol_without_gaps_says_so(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["gaps", "PETR4"])
    assert result.exit_code == 0, result.output
    assert "no gaps recorded for PETR4" in result.stderr and result.stdout == ""


def test_gaps_with_start_after_end_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["gaps", "WINZ25", "--start", "2025-11-04", "--end", "2025-11-03"])
    assert result.exit_code == 2 and "is after end" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------- quarantine
def test_quarantine_shows_reason_detail_time_and_frame_sizes(
    runner: CliRunner, own_data_dir: Path
) -> None:
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.quarantine("wire", "bad magic b'XX'", [b"XX", b"\x00" * 1500])
        vault.quarantine("price", "price -1.0 at row 3", [b"\x01\x02", b"abc", b""])
        [newest, oldest] = vault.quarantined(2)
        tz = vault.settings.tz
    result = runner.invoke(cli, ["quarantine"])
    assert result.exit_code == 0, result.output
    price = _cells(result.stdout, "price")
    assert price == [format_ns(newest["ts"], tz), "price", "price -1.0 at row 3", "3: 2 + 3 + 0"]
    wire = _cells(result.stdout, "wire")
    assert wire == [format_ns(oldest["ts"], tz), "wire", "bad magic b'XX'", "2: 2 + 1,500"]
    assert result.stdout.index("price -1.0") < result.stdout.index("bad magic")  # newest first
    only = runner.invoke(cli, ["quarantine", "--count", "1"])
    assert "price -1.0" in only.stdout and "bad magic" not in only.stdout


def test_quarantine_raw_dumps_every_frame_in_hex(runner: CliRunner, own_data_dir: Path) -> None:
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.quarantine("price", "price -1.0", [b"\x01\x02", b"abc"])
    result = runner.invoke(cli, ["quarantine", "--raw"])
    assert result.exit_code == 0, result.output
    assert "price: price -1.0" in result.stdout
    assert "frame 0 (2 bytes): 0102" in result.stdout
    assert "frame 1 (3 bytes): 616263" in result.stdout


def test_quarantine_when_empty_says_so(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["quarantine"])
    assert result.exit_code == 0 and "nothing quarantined" in result.stderr
