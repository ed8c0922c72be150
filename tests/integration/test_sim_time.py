"""Simulated data on the live path: never dated after it was received, never in the
future, and one demo run never mixed with another's (or with data it did not write)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from tests.integration.test_live import free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.live.bridge import Bridge
from tickvault.storage.keys import DEMO_KEY
from tickvault.timeutil import now_ns
from tickvault.transport.endpoints import Endpoints

SIM_SYMBOLS = ("WINSIM", "WDOSIM")


@pytest.fixture
def demo_env(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    for key, value in port_env(free_ports()).items():
        monkeypatch.setenv(key, value)
    return own_data_dir


@pytest.fixture
def demo_store(demo_env: Path) -> Iterator[Vault]:
    """The demo's store, opened first so its server outlives each demo run."""
    with Vault.open(data_dir=demo_env) as vault:
        yield vault


def records(vault: Vault, symbol: str) -> int:
    return sum(s.trades for s in vault.stats(symbol))


def run_demo(vault: Vault, *args: str) -> str:
    """Run ``tickvault demo`` until each of its symbols has stored something new, then
    stop it with Ctrl-C (SIGINT) as a user would; returns what it printed."""
    before = {s: records(vault, s) for s in SIM_SYMBOLS}
    keep = "--keep" in args
    started = now_ns()

    def stored() -> bool:
        for symbol in SIM_SYMBOLS:
            run = vault.client.hget(DEMO_KEY, symbol)
            if run is None or orjson.loads(run)["started_ns"] < started:
                return False  # this run has not claimed (and emptied) it yet
            if records(vault, symbol) <= (before[symbol] if keep else 0):
                return False
        return True

    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "demo", *args],
        env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: stored() or proc.poll() is not None, "the demo to store trades")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def assert_in_the_past(vault: Vault, symbol: str, until_ns: int) -> np.ndarray:
    """Every stored trade of ``symbol``: received at or after its event time, and neither
    dated nor received after ``until_ns``. Returns the trades."""
    cols = vault.range_columns(symbol)
    assert len(cols["ts_event"]) > 0
    assert (cols["ts_event"] <= cols["ts_recv"]).all()
    assert int(cols["ts_recv"].max()) <= until_ns
    return cols["ts_recv"]


@pytest.mark.parametrize("speed", ["max", "10"])
def test_a_fast_demo_stores_nothing_dated_after_its_receipt_or_in_the_future(
    demo_store: Vault, speed: str
) -> None:
    out = run_demo(demo_store, "--speed", speed)
    assert "latest completed session" in " ".join(out.split())
    assert set(demo_store.symbols()) == set(SIM_SYMBOLS)
    for symbol in SIM_SYMBOLS:
        assert_in_the_past(demo_store, symbol, now_ns())


def test_two_demo_runs_do_not_mix(demo_store: Vault) -> None:
    vault = demo_store
    run_demo(vault, "--speed", "max")
    between = now_ns()
    out = run_demo(vault, "--speed", "max", "--seed", "7")
    assert "replaced the previous demo's data of WINSIM" in " ".join(out.split())
    for symbol in SIM_SYMBOLS:
        received = assert_in_the_past(vault, symbol, now_ns())
        assert int(received.min()) > between  # only the second run's trades
        book = vault.book_updates(symbol, 0, between)  # ... and only its book
        assert len(book) > 0 and int(book["ts_recv"].min()) > between
        assert (book["ts_recv"] >= book["ts_event"]).all()
    second = records(vault, "WINSIM")
    # Asked to, a demo adds to the previous one.
    run_demo(vault, "--speed", "max", "--seed", "7", "--keep")
    assert int(vault.range_columns("WINSIM")["ts_recv"].min()) > between
    assert records(vault, "WINSIM") > second


def test_the_demo_refuses_symbols_holding_data_it_did_not_write(demo_env: Path) -> None:
    with Vault.open(data_dir=demo_env) as vault:
        vault.write_trades("WINZ25", [{"ts_event": now_ns() - 10**12, "trade_id": 1,
                                       "price": 128_000.0, "qty": 1}])  # fmt: skip
        result = CliRunner().invoke(
            cli, ["demo", "--speed", "max", "--duration", "1", "--symbols", "WINZ25"],
            terminal_width=200,
        )  # fmt: skip
        assert result.exit_code == 1
        message = " ".join(result.output.split())
        assert "WINZ25 holds data the demo did not write" in message and "--keep" in message
        assert "Traceback" not in result.output
        assert len(vault.range("WINZ25")) == 1 and vault.books.stats("WINZ25").entries == 0


@pytest.mark.parametrize("speed", ["max", "10"])
def test_publish_fast_stores_nothing_dated_after_its_receipt_or_in_the_future(
    vault: Vault, speed: str
) -> None:
    ports = free_ports()
    env = {**os.environ, **port_env(ports)}
    endpoints = Endpoints(*(f"tcp://127.0.0.1:{ports[n]}" for n in ports))
    bridge = Bridge(vault, endpoints=[endpoints]).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "publish", "--symbols", "WINZ25",
         "--speed", speed],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: bridge.stats.trades_stored >= 200, "published trades to be stored")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        bridge.close()
    assert proc.returncode == 0, err.decode()
    assert_in_the_past(vault, "WINZ25", now_ns())
