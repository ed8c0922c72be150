"""``tickvault trim``: a plan first, a confirmation, and an import registry that stays true
to what is stored (a trimmed file can be imported again)."""

from __future__ import annotations

import datetime as dt
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_book import sim_book
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.timeutil import NS_PER_DAY

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

SP = ZoneInfo("America/Sao_Paulo")


def weekday_before(days: int) -> dt.date:
    """The weekday at least ``days`` days before today."""
    day = dt.datetime.now(SP).date() - dt.timedelta(days=days)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def b3_file(path: Path, day: dt.date, n: int = 2000, seed: int = 3) -> Path:
    """A B3 trade file of WINZ25 and WDOZ25 trades on ``day``."""
    trades = {
        "WINZ25": generate_day("WINZ25", day, n, seed=seed),
        "WDOZ25": generate_day("WDOZ25", day, n // 2, seed=seed + 1),
    }
    reader.write_b3(path, b3.to_b3_table(trades, SP))
    return path


@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    return CliRunner()


@pytest.fixture
def store(own_data_dir: Path) -> Iterator[Vault]:
    """The CLI's store, kept open (and its server running) for the test."""
    with Vault.open(data_dir=own_data_dir) as vault:
        yield vault


def records(vault: Vault, symbol: str) -> int:
    return sum(s.trades for s in vault.stats(symbol))


def test_trim_without_a_terminal_or_yes_refuses_and_removes_nothing(
    runner: CliRunner, store: Vault, tmp_path: Path
) -> None:
    path = b3_file(tmp_path / "old.txt", weekday_before(60))
    assert runner.invoke(cli, ["import", str(path)]).exit_code == 0
    stored = records(store, "WINZ25")
    result = runner.invoke(cli, ["trim", "WINZ25"], terminal_width=200)
    assert result.exit_code == 1
    assert "no terminal to confirm on" in result.stderr and "--yes" in result.stderr
    assert "Traceback" not in result.output
    assert "WINZ25 historical: 2,000 trades" in result.stdout  # the plan was shown
    assert records(store, "WINZ25") == stored > 0


def test_trim_dry_run_shows_the_plan_and_removes_nothing(
    runner: CliRunner, store: Vault, tmp_path: Path
) -> None:
    path = b3_file(tmp_path / "old.txt", weekday_before(60))
    assert runner.invoke(cli, ["import", str(path)]).exit_code == 0
    before = store.range("WINZ25")
    result = runner.invoke(cli, ["trim", "--dry-run"], terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "retention_days 30 removes event times before" in out
    assert "WINZ25 historical: 2,000 trades in 1 block" in out
    assert "WDOZ25 historical: 1,000 trades in 1 block" in out
    assert "old.txt" in out and "dry run: nothing was removed" in out
    assert store.range("WINZ25").equals(before)


def test_trim_yes_removes_the_old_history_and_keeps_the_recent(
    runner: CliRunner, store: Vault, tmp_path: Path
) -> None:
    old = b3_file(tmp_path / "old.txt", weekday_before(60))
    recent = b3_file(tmp_path / "recent.txt", weekday_before(3), seed=9)
    assert runner.invoke(cli, ["import", str(old), str(recent)]).exit_code == 0
    kept = store.range("WINZ25", start=int(store.range("WINZ25").index.asi8[-1]) - NS_PER_DAY)
    result = runner.invoke(cli, ["trim", "WINZ25", "--yes"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "removed 2,000 trades in 1 block" in result.stdout
    assert f"can be imported again: {old}" in result.stdout
    assert store.range("WINZ25").equals(kept) and len(kept) == 2000
    assert records(store, "WDOZ25") == 2000  # the other symbol is untouched


def test_a_trimmed_import_can_be_imported_again_and_read(
    runner: CliRunner, store: Vault, tmp_path: Path
) -> None:
    old = b3_file(tmp_path / "TradeIntraday_old.txt", weekday_before(60))
    recent = b3_file(tmp_path / "TradeIntraday_recent.txt", weekday_before(3), seed=9)
    assert runner.invoke(cli, ["import", str(old), str(recent)]).exit_code == 0
    first = store.range("WINZ25")
    assert runner.invoke(cli, ["trim", "--yes"]).exit_code == 0
    assert len(store.range("WINZ25")) == 2000  # only the recent file's day is left
    again = runner.invoke(cli, ["import", str(old), str(recent)], terminal_width=200)
    assert again.exit_code == 0, again.output
    # The trimmed file is stored again; the other one is still registered, and says so.
    assert "3,000" in again.stdout and again.stdout.count("already imported") == 1
    assert f"{recent}: already imported on" in " ".join(again.stderr.split())
    assert str(old) not in again.stderr
    assert "--force" in again.stderr
    # The same trades as the first import, received anew.
    assert store.range("WINZ25").drop(columns="ts_recv").equals(first.drop(columns="ts_recv"))
    assert len(store.range("WDOZ25")) == 2000


def test_the_already_imported_message_says_when_and_how_to_force(
    runner: CliRunner, store: Vault, tmp_path: Path
) -> None:
    path = b3_file(tmp_path / "t.txt", weekday_before(3))
    assert runner.invoke(cli, ["import", str(path)]).exit_code == 0
    today = dt.datetime.now(SP).strftime("%Y-%m-%d")
    again = runner.invoke(cli, ["import", str(path)], terminal_width=200)
    assert again.exit_code == 0
    line = " ".join(again.stderr.split())
    assert f"t.txt: already imported on {today}" in line
    assert "(America/Sao_Paulo time)" in line and "add --force" in line
    forced = runner.invoke(cli, ["import", str(path), "--force"], terminal_width=200)
    assert "already imported" not in forced.output and "3,000" in forced.stdout


def test_trim_of_a_symbol_with_nothing_stored_warns(runner: CliRunner, store: Vault) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    store.write_trades("PETR4", [{"ts_event": int(now * 1e9), "trade_id": 1, "price": 30.0,
                                  "qty": 100}])  # fmt: skip
    result = runner.invoke(cli, ["trim", "NOPE99", "--yes"], terminal_width=200)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "nothing is stored for NOPE99" in message and "stored symbols: PETR4" in message
    assert records(store, "PETR4") == 1


def test_trim_with_nothing_old_says_so(runner: CliRunner, store: Vault) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    store.write_trades("PETR4", [{"ts_event": int(now * 1e9), "trade_id": 1, "price": 30.0,
                                  "qty": 100}])  # fmt: skip
    result = runner.invoke(cli, ["trim", "PETR4"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "nothing to trim" in result.stdout and records(store, "PETR4") == 1


def test_book_trim_dry_run_counts_what_the_trim_removes(vault: Vault) -> None:
    tap = sim_book(5_000)
    small = vault.with_settings(book_snapshot_every=100)
    for batch in tap.updates["WINZ25"]:
        small.write_book("WINZ25", batch)
    every = np.concatenate(tap.updates["WINZ25"])
    first, last = int(every["ts_event"][0]), int(every["ts_event"][-1])
    now = first + (last - first) // 2 + int(vault.settings.retention_days * NS_PER_DAY)
    entries = vault.client.xlen("book:{WINZ25}") + vault.client.xlen("book:{WINZ25}:snapshots")
    plan = vault.books.trim("WINZ25", now - int(vault.settings.retention_days * NS_PER_DAY),
                            dry_run=True)  # fmt: skip
    assert plan.entries > 0 and plan.first_ns == first
    assert plan.last_ns is not None and first < plan.last_ns < last
    left = vault.client.xlen("book:{WINZ25}") + vault.client.xlen("book:{WINZ25}:snapshots")
    assert left == entries
    done = vault.books.trim("WINZ25", now - int(vault.settings.retention_days * NS_PER_DAY))
    assert done == plan
    left = vault.client.xlen("book:{WINZ25}") + vault.client.xlen("book:{WINZ25}:snapshots")
    assert left == entries - plan.entries


def _trim_on_a_terminal(data_dir: Path, answer: bytes) -> tuple[int, str]:
    """Run ``tickvault trim`` with a pseudo-terminal as its stdin/stdout, answer its
    question, and return its exit status and everything it printed."""
    master, slave = pty.openpty()
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "trim", "WINZ25"],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    out = b""
    answered = False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break  # never hang the suite: the assertions below will fail
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"remove them?" in out:
                os.write(master, answer)
                answered = True
    finally:
        os.close(master)
        status = proc.wait(timeout=60)
    return status, out.decode(errors="replace")


@pytest.mark.parametrize(("answer", "removed"), [(b"n\n", False), (b"y\n", True)])
def test_trim_on_a_terminal_asks_and_does_what_it_is_told(
    own_data_dir: Path, store: Vault, tmp_path: Path, answer: bytes, removed: bool
) -> None:
    from tickvault.ingest.files import import_files

    import_files(store, [b3_file(tmp_path / "old.txt", weekday_before(60))])
    status, out = _trim_on_a_terminal(own_data_dir, answer)
    assert "remove them? [y/N]" in out
    if removed:
        assert status == 0 and "removed 2,000 trades" in out
        assert records(store, "WINZ25") == 0
    else:
        assert status == 1 and "nothing was removed" in out
        assert records(store, "WINZ25") == 2000
