"""Benchmarks never touch a user's data: each runs on its own temporary server, or with
``--url`` writes and deletes only its own keys. Every ``tickvault bench`` command runs here
through the CLI, with tiny sizes, beside a user's store full of every kind of key."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import sim_trades
from tests.integration.test_book import sim_book
from tickvault import Vault
from tickvault.bench.isolation import (
    KEY_PREFIX,
    SYMBOL_PREFIX,
    TEMP_PREFIX,
    bench_vault,
    clear_keys,
    symbol_keys,
)
from tickvault.cli.main import bench, cli
from tickvault.config import load_settings
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.ingest.files import import_files
from tickvault.records.events import Gap
from tickvault.records.trades import TradeBatch
from tickvault.records.validate import SYMBOL_RE
from tickvault.storage.server import read_state
from tickvault.venue.b3 import B3_TZ

RUNS: dict[str, list[str]] = {
    "store": ["--trades", "3000", "--seed-trades", "500", "--repeats", "1"],
    "import": ["--trades", "3000", "--seed-trades", "300", "--repeats", "1"],
    "book": ["--trades-per-day", "1500", "--queries", "5"],
    "live": ["--trades", "2000", "--rate", "5000", "--stages"],
    "compact": ["--trades", "3000", "--rate", "5000", "--repeats", "1", "--seed-trades", "500"],
    "dashboard": ["--trades", "2000", "--rate", "5000", "--clients", "2", "--pairs", "1"],
    "formats": ["--trades", "2000"],
    "features": ["--sessions", "7", "--trades-per-session", "800", "--queries", "5",
                 "--original-queries", "1", "--worker-trades", "3000"],
    "backtest": ["--trades", "20000", "--sessions", "3"],
    "signals": ["--sessions", "3", "--session-trades", "3000", "--realistic-seconds", "2",
                "--fast-seconds", "1", "--fast-rate", "3000", "--original-requests", "2",
                "--predict-rows", "20", "--backtest-trades", "20000",
                "--estimator", "sklearn.linear_model.LogisticRegression"],
    "compare": ["--trades", "3000", "--repeats", "1", "--rounds", "2", "--history-days", "3",
                "--history-trades-per-day", "400"],
    "scale": ["--trades", "2000", "--symbols", "4", "--bridges", "1,2", "--original-trades",
              "500", "--live-rate", "2000", "--live-trades", "400"],
}  # fmt: skip
"""Every benchmark command, with the smallest sizes that still run it all."""

Snapshot = dict[bytes, tuple[bytes, int]]


def snapshot(vault: Vault) -> Snapshot:
    """Every key of the store: its DUMP (type, encoding and value) and its expiry time."""
    r = vault.client
    return {
        key: (r.dump(key), r.execute_command("PEXPIRETIME", key)) for key in r.scan_iter(count=1000)
    }


def connections_received(vault: Vault) -> int:
    """Connections the server has accepted so far (this client's stays open)."""
    return int(vault.client.info("stats")["total_connections_received"])


def fill_user_store(vault: Vault, tmp_path: Path) -> None:
    """What a user's store holds: live and imported trades, books, gaps, cursors, the
    imports registry and quarantine, on the symbols the benchmarks used to overwrite."""
    vault.write_trades("WINZ25", sim_trades(3000))
    history = sim_trades(500, seed=2)  # another run of the simulator: ids of its own
    history = TradeBatch(**{**history.columns(), "trade_id": history.trade_id + 1_000_000})
    vault.store_batch("WINZ25", history, stream="historical", cursors={"pub1:trade.WINZ25": 41})
    day = dt.date(2025, 11, 3)
    file_trades: dict[str, TradeBatch] = {
        s: generate_day(s, day, 800, seed=i) for i, s in enumerate(("WDOZ25", "PETR4"))
    }
    path = tmp_path / "TradeIntraday_20251103_1.txt"
    reader.write_b3(path, b3.to_b3_table(file_trades, B3_TZ))
    import_files(vault, [path])
    for batch in sim_book(2000).updates["WINZ25"]:
        vault.write_book("WINZ25", batch)
    start = int(sim_trades(1).ts_event[0])
    vault.record_gap(
        Gap("WINZ25", "realtime", start, start + 10**9, "pub1", "trade.WINZ25", 7, 9, "lost")
    )
    vault.quarantine("bad message", "a test", [b"trade.WINZ25", b"\x00junk"])
    r = vault.client
    r.set("user:note", "a key of the user's own")
    r.set("user:expiring", "with a TTL", ex=86_400)


@pytest.fixture
def user_store(
    own_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Vault]:
    """A user's filled store, configured as the user's (TICKVAULT_DATA_DIR), server running."""
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    # Kept running like `tickvault server start`: no idle watchdog, whose own single
    # connection would otherwise show up in the connection count at a random moment.
    with Vault.open(data_dir=own_data_dir, embedded_idle_stop_s=0) as vault:
        fill_user_store(vault, tmp_path)
        yield vault


@pytest.fixture
def bench_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where benchmarks make their temporary data directories during the test."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def valkey_servers_using(path: Path) -> list[int]:
    """Pids of running processes whose command line names ``path`` (a server's --dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(str(path).encode() in arg for arg in cmdline):
            found.append(int(proc.name))
    return found


def run_bench(runner: CliRunner, name: str, *url: str) -> Any:
    result = runner.invoke(cli, ["bench", *url, name, *RUNS[name], "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_bench_command_is_exercised_here() -> None:
    assert set(bench.commands) == set(RUNS)


def test_bench_commands_leave_the_users_store_byte_identical(
    user_store: Vault, bench_tmp: Path
) -> None:
    before = snapshot(user_store)
    assert b"imports" in before and b"quarantine" in before and b"book:{WINZ25}" in before
    assert b"ticks:{WINZ25}:cursor" in before and b"ticks:{WINZ25}:gaps" in before
    connections = connections_received(user_store)
    runner = CliRunner()
    for name in RUNS:
        figures = run_bench(runner, name)
        assert figures, name
        assert snapshot(user_store) == before, f"bench {name} changed the user's store"
        assert connections_received(user_store) == connections, f"bench {name} used it"
        assert list(bench_tmp.iterdir()) == [], f"bench {name} left its data directory"
        assert valkey_servers_using(bench_tmp) == [], f"bench {name} left its server running"
        if name not in ("formats", "backtest", "dashboard", "compare"):  # no original design
            assert "original_design" in json.dumps(figures)
            assert "seed" not in json.dumps(figures)


def test_bench_with_url_touches_only_its_own_keys(user_store: Vault, bench_tmp: Path) -> None:
    before = snapshot(user_store)
    runner = CliRunner()
    for name in RUNS:
        run_bench(runner, name, "--url", user_store.url)
        assert snapshot(user_store) == before, f"bench --url {name} changed other keys"
    assert list(bench_tmp.iterdir()) == []


def test_bench_with_url_keeps_its_keys_apart_while_it_runs(user_store: Vault) -> None:
    before = snapshot(user_store)
    settings = user_store.settings
    with bench_vault(settings, user_store.url) as vault:
        from tickvault.bench.store import BENCH_SYMBOL

        vault.write_trades(BENCH_SYMBOL, sim_trades(100))
        vault.client.set(f"{KEY_PREFIX}left", "x")
        added = set(snapshot(user_store)) - set(before)
        assert added and all(
            k.startswith((b"ticks:{" + SYMBOL_PREFIX.encode(), KEY_PREFIX.encode())) for k in added
        )
    assert snapshot(user_store) == before


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_bench_server_is_removed_when_a_benchmark_fails(
    bench_tmp: Path, failure: BaseException
) -> None:
    seen: list[Path] = []
    with pytest.raises(type(failure)), bench_vault(load_settings()) as v:
        seen.append(v.settings.data_dir)
        assert read_state(v.settings.data_dir) is not None
        raise failure
    assert seen and seen[0].parent == bench_tmp and seen[0].name.startswith(TEMP_PREFIX)
    assert not seen[0].exists()
    assert valkey_servers_using(bench_tmp) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_bench_interrupted_stops_its_server_and_deletes_its_directory(
    user_store: Vault, bench_tmp: Path, signum: int
) -> None:
    before = snapshot(user_store)
    env = {**os.environ, "TMPDIR": str(bench_tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "bench", "book"],  # a full day: long
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(bench_tmp.glob(f"{TEMP_PREFIX}*/tickvault-server.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "no benchmark server"
            time.sleep(0.05)
        [data_dir] = list(bench_tmp.iterdir())
        state = read_state(data_dir)
        assert state is not None
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    assert not data_dir.exists(), err
    assert valkey_servers_using(bench_tmp) == []
    assert snapshot(user_store) == before


@given(st.from_regex(SYMBOL_RE, fullmatch=True))
def test_benchmarks_refuse_to_delete_keys_of_other_symbols(symbol: str) -> None:
    if symbol.startswith(SYMBOL_PREFIX):
        assert all(SYMBOL_PREFIX in p for p in symbol_keys(symbol))
        return
    with pytest.raises(BenchmarkError, match=SYMBOL_PREFIX):
        symbol_keys(symbol)
    for pattern in (f"ticks:{{{symbol}}}:*", f"book:{{{symbol}}}*", "*", "imports"):
        with pytest.raises(BenchmarkError, match="only its own keys"):
            clear_keys(None, pattern)  # type: ignore[arg-type]  # refused before any use


def test_readme_median_counts_are_the_default_repeats() -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    said = {int(n) for n in re.findall(r"median of (\d+)", section)}
    defaults = {
        next(p.default for p in bench.commands[name].params if p.name == "repeats")
        for name in ("store", "import")
    }
    assert said and said == defaults


@pytest.mark.parametrize("name", ["live", "formats"])
def test_bench_shows_progress_on_stderr_and_only_the_table_on_stdout(
    name: str, own_data_dir: Path, bench_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    result = CliRunner().invoke(cli, ["bench", name, *RUNS[name]], terminal_width=200)
    assert result.exit_code == 0, result.output
    phases = [line for line in result.stderr.splitlines() if line.strip()]
    assert "a temporary server in" in phases[0]
    if name == "live":
        assert sum("trades as fast as" in p for p in phases) == 2
        assert sum("lag of" in p for p in phases) == 2
        assert "original design" in result.stdout
        assert "lag by stage" in result.stdout and "wait for writer" in result.stdout
    else:
        assert phases[-1].startswith("12/12: zstd, blocks of 65,536")
    assert not any(p in result.stdout for p in phases)
    assert list(bench_tmp.iterdir()) == []


def test_bench_url_that_is_not_a_valkey_url_is_one_clear_line(bench_tmp: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "--url", "http://localhost:1", "store"])
    assert result.exit_code == 2
    assert "Invalid value for '--url'" in result.output and "valkey://" in result.output
    assert "Traceback" not in result.output
    assert list(bench_tmp.iterdir()) == []


def _compare(runner: CliRunner, *extra: str) -> Any:
    result = runner.invoke(cli, ["bench", "compare", *RUNS["compare"], *extra, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _check_compare_tickvault_side(figures: Any) -> None:
    tv = figures["tickvault"]
    assert tv["write_trades_per_s"] > 0 and tv["read_trades_per_s"] > 0 and tv["slice_ms"] > 0
    assert 0 < tv["asof_rows"] < figures["trades"]  # as known at an earlier time: fewer
    assert 1 < tv["bytes_per_trade"] < 100 and "MEMORY USAGE" in tv["bytes_measured_as"]
    h = figures["history"]
    assert h["days"] == 3 and h["long"]["trades"] == 3 * h["one_day"]["trades"] == 1200
    assert h["slice_rows"] > 0 and h["ratio"] > 0


def test_bench_compare_without_arcticdb_runs_tickvault_alone_and_says_how_to_add_it(
    bench_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .venv-compare here
    figures = _compare(CliRunner())
    _check_compare_tickvault_side(figures)
    assert figures["arcticdb"]["available"] is False and "ratio" not in figures
    assert [set(r) for r in figures["rounds"]] == [{"tickvault"}] * 2
    assert "make compare-env" in figures["arcticdb"]["note"]
    table = CliRunner().invoke(cli, ["bench", "compare", *RUNS["compare"]], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "not installed" in table.stdout and "make compare-env" in table.stdout
    assert list(bench_tmp.iterdir()) == []


def test_bench_compare_with_a_missing_arcticdb_python_is_one_clear_line(
    bench_tmp: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-python"
    result = CliRunner().invoke(
        cli, ["bench", "compare", *RUNS["compare"], "--arcticdb-python", str(missing)]
    )
    assert result.exit_code == 2
    assert f"--arcticdb-python {missing}: no such file" in result.output
    assert "make compare-env" in result.output and "Traceback" not in result.output
    assert list(bench_tmp.iterdir()) == []


def test_bench_compare_measures_arcticdb_on_the_same_queries(bench_tmp: Path) -> None:
    from tickvault.bench.compare import find_arcticdb_python

    python = find_arcticdb_python(None)
    if python is None:
        pytest.skip("no ArcticDB environment (make compare-env): only its side is skipped, "
                    "the tickvault side runs in the test above")  # fmt: skip
    figures = _compare(CliRunner(), "--arcticdb-python", python)
    _check_compare_tickvault_side(figures)
    ac = figures["arcticdb"]
    assert ac["available"] is True and ac["version"] == "6.28.2"
    # the same minutes gave the same trades in both (the benchmark checks it too)
    assert ac["slice_rows"] == figures["tickvault"]["slice_rows"] > 0
    assert ac["asof_rows"] == figures["trades"] // 2
    assert set(figures["ratio"]) == {"write", "read", "slice", "asof", "bytes"}
    assert len(figures["rounds"]) == 2 and all("arcticdb" in r for r in figures["rounds"])
    assert all(r > 0 for r in figures["ratio"].values())
    assert list(bench_tmp.iterdir()) == []


def test_bench_scale_stores_every_trade_sent_in_every_cell_of_both_stores(bench_tmp: Path) -> None:
    figures = run_bench(CliRunner(), "scale")
    assert figures["trades"] == 2000 and figures["symbols"] == 4
    assert figures["bridges"] == [1, 2] and figures["primaries"] == 3
    assert set(figures["stores"]) == {"single", "cluster"}
    for store in figures["stores"].values():
        cells = [*store["cells"], store["paced"]]
        assert [c["bridges"] for c in cells] == [1, 2, 1]
        assert [c["trades"] for c in cells] == [2000, 2000, 400]
        for c in cells:
            assert c["lost"] == 0 and c["duplicated"] == 0  # stored == sent, none twice
            assert c["bridge_exit_codes"] == [0] * c["bridges"]
            assert c["ingest_trades_per_s"] > 0 and c["read_trades_per_s"] > 0
            assert c["bytes_per_trade"] > 0 and c["used_memory"] > 0
            assert set(c["cpu_s"]) == {"bridges", "publisher", "valkey"}
            assert set(c["ingest_trades_per_cpu_s"]) == {"bridges", "valkey"}
            assert set(c["read_trades_per_cpu_s"]) == {"reader", "valkey"}
        assert store["paced"]["rate"] == 2000
        original = store["original_design"]
        assert original["trades"] == 500 and original["ingest_trades_per_s"] > 0
    assert list(bench_tmp.iterdir()) == []  # the cluster's and the bridges' directories too
    assert valkey_servers_using(bench_tmp) == []


def test_bench_compact_captures_live_compacts_and_reports_before_and_after(
    bench_tmp: Path,
) -> None:
    figures = run_bench(CliRunner(), "compact")
    before, after, bulk = figures["before"], figures["after"], figures["bulk"]
    assert before["records"] == after["records"] == bulk["records"] == 3000
    assert before["blocks"] > after["blocks"] == bulk["blocks"] == 1
    assert after["bytes_per_trade"] < before["bytes_per_trade"]
    c = figures["compaction"]
    assert c["entries"] == before["blocks"] and c["blocks_written"] == 1 and c["swaps_lost"] == 0
    assert figures["original_design"]["trades"] == 500
    assert list(bench_tmp.iterdir()) == []
