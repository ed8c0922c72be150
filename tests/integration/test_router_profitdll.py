"""Order routing through the real ctypes binding against the ProfitDLL stand-in
(``tests/stubs/profitdll_stub.c``): market orders sent with SendOrder, fills read
back with GetOrderDetails from the order-change callback, a broker rejection, and
routing that is not connected or not logged in (a clear error, nothing sent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration import test_profitdll as _profitdll_tests
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.execution.router import PaperRouter, RoutingError
from tickvault.feeds.profitdll import ProfitDLL
from tickvault.feeds.profitdll import types as pt
from tickvault.live.routing import ProfitDLLRouter, ProfitDLLSession, RoutingAccount
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal

stub_build = _profitdll_tests.stub_build  # the stand-in, built once (a fixture)
stub = _profitdll_tests.stub

S = 1_000_000_000
PARAMS = BrokerParams(tick_size=5.0, point_value=0.2, order_qty=3, max_position=300,
                      fee_per_contract=0.5)  # fmt: skip
ACCOUNT = RoutingAccount(308, "12345", "routing-pass")


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
