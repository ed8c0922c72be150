"""Order routing through the real ctypes binding against the ProfitDLL stand-in
(``tests/stubs/profitdll_stub.c``): market orders sent with SendOrder, fills read
back with GetOrderDetails from the order-change callback, a broker rejection, and
routing that is not connected or not logged in (a clear error, nothing sent); with
the broker worker on the real store: the write-ahead, a kill between SendOrder and
the commit (a hook) then a restart never send an order twice, and `paper status`
shows unconfirmed orders, routing errors and rejections."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.integration import test_profitdll as _profitdll_tests
from tests.integration.test_broker_worker import SYM, T0, decide
from tests.integration.test_live import wait_for
from tickvault.cli.main import cli
from tickvault.engine.orders import ExecutionStore
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.execution.router import PaperRouter, RoutingError
from tickvault.feeds.profitdll import ProfitDLL
from tickvault.feeds.profitdll import types as pt
from tickvault.live.broker import BrokerWorker
from tickvault.live.routing import ProfitDLLRouter, ProfitDLLSession, RoutingAccount
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import Trade
from tickvault.vault import Vault

stub_build = _profitdll_tests.stub_build  # the stand-in, built once (a fixture)
stub = _profitdll_tests.stub

S = 1_000_000_000
PARAMS = BrokerParams(tick_size=5.0, point_value=0.2, order_qty=3, max_position=300,
                      fee_per_contract=0.5)  # fmt: skip
ACCOUNT = RoutingAccount(308, "12345", "routing-pass")
END = 1 << 62


def _sig(t: int, side: Side) -> Signal:
    return Signal("WINZ25", t, t, side, 0.5 * int(side), 0.6, 60 * S, "m1", Mode.FAST)


def _session(stub: Path, password: str = "s3cret", timeout_s: float = 20) -> ProfitDLLSession:
    s = ProfitDLLSession(ProfitDLL(stub))
    s.login("KEY-1", "trader@example.com", password, timeout_s)
    return s


def _router(session: ProfitDLLSession, params: BrokerParams = PARAMS) -> ProfitDLLRouter:
    return ProfitDLLRouter(EventOrder(PaperBroker("WINZ25", params), 0), session, ACCOUNT)


def _fills(router: ProfitDLLRouter, want: int, *, done: bool = True) -> list[Fill]:
    out: list[Fill] = []
    deadline = time.monotonic() + 20  # only against hanging
    while time.monotonic() < deadline:
        out += router.drain()
        if sum(abs(f.qty) for f in out) >= want and (not done or not router.broker.pending):
            return out
        time.sleep(0.01)
    return out


def test_profitdll_router_a_signal_becomes_a_market_order_and_its_fills_update_the_account(
    stub: Path,
) -> None:
    session = _session(stub)
    try:
        r = _router(session)
        r.signal(_sig(10 * S, Side.LONG))
        assert r.trade(10 * S, 1, 127_000.0, 1) == []  # at P: the order waits
        [order] = r.trade(10 * S + 1, 2, 127_000.0, 1)  # the first trade after P
        assert isinstance(order, Order) and order.qty == 3
        [local] = r.routed
        assert local > 2**32 and r.routed[local] == order.order_id
        fills = _fills(r, 3)
        # the stand-in fills 1 at 128,000, then 2 at 128,005 (its average 128,003.33)
        assert [(f.qty, f.price) for f in fills] == [(1, 128_000.0), (2, pytest.approx(128_005.0))]
        assert all(f.order_id == order.order_id and f.trade_id == -1 for f in fills)
        assert r.position == 3 and r.broker.pending == []
        assert r.broker.avg_price == pytest.approx((128_000 + 2 * 128_005) / 3)
        assert r.broker.fees == pytest.approx(1.5)
        details = session.dll.order_details(local)
        assert (details.status_name, details.traded, details.ticker, details.exchange) == (
            "filled", 3, "WINZ25", "F")  # fmt: skip
        # back to flat: a sell of 3 through the same path
        r.signal(_sig(20 * S, Side.FLAT))
        [sell] = r.trade(20 * S + 1, 3, 128_010.0, 1)
        assert isinstance(sell, Order) and sell.qty == -3
        _fills(r, 3)
        assert r.position == 0 and r.errors == [] and r.rejections == []
    finally:
        session.close()


def test_profitdll_router_a_rejected_order_leaves_the_account_untouched(
    stub: Path,
) -> None:
    session = _session(stub)
    try:
        r = _router(session, BrokerParams(tick_size=5.0, point_value=0.2, order_qty=200,
                                          max_position=300))  # fmt: skip
        r.signal(_sig(10 * S, Side.LONG))
        [order] = r.trade(10 * S + 1, 1, 127_000.0, 1)
        assert isinstance(order, Order) and order.qty == 200  # above the stand-in's 100
        deadline = time.monotonic() + 20
        while not r.rejections and time.monotonic() < deadline:
            assert r.drain() == []
            time.sleep(0.01)
        [(oid, text)] = r.rejections
        assert oid == order.order_id and text.startswith("rejected:") and "200" in text
        assert r.position == 0 and r.broker.pending == [] and r.broker.fees == 0
    finally:
        session.close()


@pytest.mark.parametrize(("state", "password"), [("3", "s3cret"), ("5", "wrong")])
def test_profitdll_routing_not_connected_or_not_logged_in_is_a_clear_error_and_sends_nothing(
    stub: Path,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    password: str,
) -> None:
    """Routing state 3 (broker disconnected), or a refused login: the login fails
    with an error that names routing; an order asked for anyway is not sent."""
    monkeypatch.setenv("TVSTUB_ROUTING_STATE", state)
    s = ProfitDLLSession(ProfitDLL(stub))
    try:
        with pytest.raises(RoutingError, match="routing is not connected"):
            s.login("KEY-1", "trader@example.com", password, 1.0)
        r = _router(s)
        r.signal(_sig(10 * S, Side.LONG))
        assert r.trade(10 * S + 1, 1, 127_000.0, 1) == []  # the order was never placed
        assert r.broker.pending == [] and r.routed == {}
        [err] = r.errors
        assert "not connected" in err and "was not sent" in err
        with pytest.raises(RoutingError, match="not connected"):
            r.place_market(1, 11 * S)
        if password != "wrong":  # the stand-in counts what it was sent
            pos = s.dll.position(broker_id=308, account="12345", ticker="WINZ25", exchange="F",
                                 position_type=pt.POSITION_DAY_TRADE)  # fmt: skip
            assert pos.daily_buy_quantity == 0 and pos.daily_sell_quantity == 0
    finally:
        s.close()


def test_paper_router_fills_at_the_next_trade_and_cancels_what_is_pending() -> None:
    r = PaperRouter(EventOrder(PaperBroker("WINZ25", PARAMS), 5))
    r.signal(_sig(10 * S, Side.LONG))
    out = r.trade(10 * S + 6, 1, 127_000.0, 1)
    assert [type(x) for x in out] == [Order, Fill] and r.position == 3
    order = r.place_market(-1, 11 * S)
    r.cancel(order.order_id)
    assert r.broker.pending == []
    with pytest.raises(RoutingError, match="no pending order"):
        r.cancel(order.order_id)


# ---------------------------------------------------------------------- never twice
class _Killed(BaseException):
    """A kill -9 at a hook: nothing after it runs (not even the step's commit)."""


def _kill_at(stage: str, session: ProfitDLLSession) -> Any:
    def hook(at: str, order: Order, local: int | None) -> None:
        if at == "sent" and stage != "sent":  # let the order-change callback name it
            wait_for(lambda: local in session.clords, "the ClOrdID of the order sent")
        if at == stage:
            raise _Killed(stage)

    return hook


def _broker_with(vault: Vault, session: ProfitDLLSession) -> tuple[BrokerWorker, ProfitDLLRouter]:
    s = vault.settings
    orders = EventOrder(PaperBroker(SYM, PARAMS), round(s.paper_latency_ms * 1e6))
    router = ProfitDLLRouter(orders, session, ACCOUNT)
    return BrokerWorker(vault, [SYM], routers={SYM: router}, publish=False), router


def _sent_to_the_broker(session: ProfitDLLSession) -> int:
    """Contracts the stand-in was sent to buy (its day-trade position)."""
    pos = session.dll.position(broker_id=308, account="12345", ticker=SYM, exchange="F",
                               position_type=pt.POSITION_DAY_TRADE)  # fmt: skip
    return int(pos.daily_buy_quantity) + int(pos.daily_sell_quantity)


def _killed_mid_send(vault: Vault, stub: Path, stage: str) -> ProfitDLLSession:
    """A LONG signal; the broker is killed at ``stage`` of sending its order; a new
    DLL session is logged in (the stand-in keeps the broker's orders)."""
    trades = [Trade(T0 + i * S, 100 + i, 127_000.0, 1) for i in range(6)]
    vault.write_trades(SYM, trades)
    decide(vault, [Signal(SYM, trades[1].ts_event + 1, trades[1].ts_event + 1, Side.LONG,
                          0.5, 0.6, 60 * S, "m1", Mode.FAST)], trades[-1].ts_event + 1)  # fmt: skip
    first = _session(stub)
    w, router = _broker_with(vault, first)
    router.hook = _kill_at(stage, first)
    with pytest.raises(_Killed):
        w.step()
    store = ExecutionStore(vault)
    assert store.orders(SYM, 0, END) == [] and store.state(SYM) is None  # nothing committed
    [entry] = store.routing_entries(SYM).values()
    assert entry["state"] == ("routing" if stage == "sent" else "sent") and entry["qty"] == 3
    wait_for(lambda: _sent_to_the_broker(first) == 3, "the stand-in to take the order")
    first.close()
    return _session(stub)


def _run(w: BrokerWorker, until: Any) -> None:
    def done() -> bool:
        w.step()
        return bool(until())

    wait_for(done, "the restarted broker")


def test_live_routing_killed_after_send_reconciles_the_order_by_clordid_and_never_resends_it(
    vault: Vault, stub: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    second = _killed_mid_send(vault, stub, "recorded")
    store = ExecutionStore(vault)
    try:
        w, router = _broker_with(vault, second)
        _run(w, lambda: store.position(SYM).get("position") == "3")
        for _ in range(3):
            assert w.step() == 0  # nothing more: the redone step placed no new order
        assert _sent_to_the_broker(second) == 3  # sent once, never again
    finally:
        second.close()
    [order] = store.orders(SYM, 0, END)
    fills = store.fills(SYM, 0, END)
    assert order.qty == 3 and sum(f.qty for f in fills) == 3
    assert all(f.order_id == order.order_id for f in fills)
    assert store.routing_entries(SYM) == {}  # cleared by the commit
    assert router.unconfirmed == [] and router.clords[order.order_id] == "CLORD-1"
    assert "reconciled by ClOrdID CLORD-1" in caplog.text
    assert store.position(SYM)["unconfirmed"] == "0"


def test_live_routing_killed_during_send_reports_the_order_unconfirmed_and_never_resends_it(
    vault: Vault, stub: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING)
    second = _killed_mid_send(vault, stub, "sent")
    store = ExecutionStore(vault)
    try:
        w, router = _broker_with(vault, second)
        _run(w, lambda: store.position(SYM).get("unconfirmed") == "1")
        for _ in range(3):
            assert w.step() == 0
        assert _sent_to_the_broker(second) == 3  # the one send the kill cut, no other
    finally:
        second.close()
    [order] = store.orders(SYM, 0, END)  # the account's order, stored once
    assert order.qty == 3 and store.fills(SYM, 0, END) == []
    pos = store.position(SYM)
    assert (pos["position"], pos["pending"], pos["unconfirmed"]) == ("0", "1", "1")
    assert store.routing_entries(SYM) == {}
    [u] = router.unconfirmed
    assert u["order_id"] == order.order_id and "unconfirmed: check with the broker" in u["text"]
    assert "unconfirmed: check with the broker" in caplog.text
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(vault.settings.data_dir))
    result = CliRunner().invoke(cli, ["paper", "status"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "UNCONFIRMED" in x)
    assert f"order {order.order_id} UNCONFIRMED" in line and "check with the broker" in line
    assert "profitdll" in result.output


def test_paper_status_shows_routing_errors_and_broker_rejections(
    vault: Vault, stub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected order (above the stand-in's 100) and one refused while routing is
    disconnected: both in `paper status`, with their text."""
    big = BrokerParams(tick_size=5.0, point_value=0.2, order_qty=200, max_position=300)
    trades = [Trade(T0 + i * S, 100 + i, 127_000.0, 1) for i in range(8)]
    vault.write_trades(SYM, trades)
    sigs = [Signal(SYM, trades[k].ts_event + 1, trades[k].ts_event + 1, side, 0.5, 0.6, 60 * S,
                   "m1", Mode.FAST) for k, side in ((1, Side.LONG), (4, Side.SHORT))]  # fmt: skip
    session = _session(stub)
    store = ExecutionStore(vault)
    try:
        router = ProfitDLLRouter(EventOrder(PaperBroker(SYM, big), 5_000_000), session, ACCOUNT)
        w = BrokerWorker(vault, [SYM], routers={SYM: router}, publish=False)
        decide(vault, sigs[:1], trades[3].ts_event)
        _run(w, lambda: store.position(SYM).get("rejected") == "1")
        session.states[2] = 3  # routing: the broker disconnected
        decide(vault, sigs[1:], trades[-1].ts_event + 1)
        _run(w, lambda: store.position(SYM).get("routing_errors") == "1")
    finally:
        session.close()
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(vault.settings.data_dir))
    result = CliRunner().invoke(cli, ["paper", "status"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "rejected by the broker: rejected: Rejeitada: quantidade 200" in out, out
    assert "routing error: WINZ25: ProfitDLL routing is not connected" in out, out
    assert "was not sent" in out
