"""The paper broker: fills after the signal, never at the triggering trade; costs;
limits; the kill switch; PnL accounting."""

from __future__ import annotations

import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import ConfigError
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.records.orders import Fill, Order, OrderReason
from tickvault.records.signals import Mode, Side, Signal

S = 1_000_000_000
WIN = BrokerParams(tick_size=5.0, point_value=0.2, slippage_ticks=1, fee_per_contract=0.5,
                   max_position=3, max_orders_per_minute=4, max_daily_loss=200.0)  # fmt: skip


def _sig(ts: int, side: Side, t_features: int | None = None) -> Signal:
    return Signal("WINZ25", ts, ts - 1 if t_features is None else t_features, side,
                  0.5 * int(side), 0.6, 60 * S, "m1", Mode.FAST)  # fmt: skip


def test_an_order_fills_at_the_first_trade_after_it_was_placed_with_slippage() -> None:
    b = PaperBroker("WINZ25", WIN)
    trigger_ts = 10 * S  # the trade that made the features move; T = trigger_ts + 1
    order = b.on_signal(_sig(10 * S + 50, Side.LONG, t_features=trigger_ts + 1), 10 * S + 80, 1)
    assert order is not None and order.qty == 1
    assert b.on_trade(trigger_ts, 7, 125_000.0, 1) == []  # the trigger (or any earlier) trade
    assert b.on_trade(10 * S + 80, 8, 125_005.0, 1) == []  # same ns as the order: not after
    [fill] = b.on_trade(10 * S + 81, 9, 125_010.0, 1)
    assert isinstance(fill, Fill)
    assert (fill.trade_id, fill.price, fill.qty, fill.fee) == (9, 125_015.0, 1, 0.5)
    assert b.position == 1 and b.avg_price == 125_015.0


def test_a_round_trip_pays_the_spread_of_slippage_and_both_fees() -> None:
    b = PaperBroker("WINZ25", WIN)
    b.on_signal(_sig(1 * S, Side.LONG), 1 * S, 1)
    b.on_trade(2 * S, 1, 125_000.0, 1)  # buy at 125,005
    b.on_signal(_sig(3 * S, Side.FLAT), 3 * S, 1)
    b.on_trade(4 * S, 2, 125_100.0, 1)  # sell at 125,095
    assert b.position == 0
    assert b.realized == pytest.approx((125_095 - 125_005) * 0.2 - 2 * 0.5)


def test_the_position_never_exceeds_the_limit_and_the_order_rate_is_capped() -> None:
    b = PaperBroker("WINZ25", BrokerParams(tick_size=5, point_value=0.2, order_qty=5,
                                           max_position=3, max_orders_per_minute=2))  # fmt: skip
    o1 = b.on_signal(_sig(1 * S, Side.LONG), 1 * S, 1)
    assert o1 is not None and o1.qty == 3  # clipped at max_position
    o2 = b.on_signal(_sig(2 * S, Side.SHORT), 2 * S, 1)
    assert o2 is not None and o2.qty == -6  # from +3 pending to -3
    assert b.on_signal(_sig(3 * S, Side.LONG), 3 * S, 1) is None  # a third order in a minute
    assert b.refused == 1
    assert b.on_signal(_sig(61 * S + 1, Side.LONG), 61 * S + 1, 1) is not None  # a minute later


def test_the_kill_switch_flattens_and_refuses_entries_until_the_next_day() -> None:
    b = PaperBroker("WINZ25", WIN)
    b.on_signal(_sig(1 * S, Side.LONG), 1 * S, 1)
    b.on_trade(2 * S, 1, 125_000.0, 1)
    out = b.on_trade(3 * S, 2, 124_000.0, 1)  # -1,005 points x 0.2 = -201 BRL
    [kill] = [o for o in out if isinstance(o, Order)]
    assert kill.reason == OrderReason.KILL_SWITCH and kill.qty == -1
    b.on_trade(4 * S, 3, 124_000.0, 1)
    assert b.position == 0
    assert b.on_signal(_sig(5 * S, Side.LONG), 5 * S, 1) is None and b.refused == 1
    assert b.on_signal(_sig(90_000 * S, Side.LONG), 90_000 * S, 2) is not None  # next day


def test_bad_broker_settings_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tick_size"):
        BrokerParams(tick_size=0, point_value=0.2)
    with pytest.raises(ConfigError, match="fee_per_contract"):
        BrokerParams(tick_size=5, point_value=0.2, fee_per_contract=-1)


events = st.lists(
    st.tuples(
        st.integers(1, 3 * S),
        st.sampled_from([None, Side.LONG, Side.SHORT, Side.FLAT]),
        st.integers(-40, 40),
    ),
    max_size=120,
)


@given(events)
def test_fills_come_only_after_their_order_and_the_books_balance(
    stream: list[tuple[int, Side | None, int]],
) -> None:
    p = BrokerParams(tick_size=5, point_value=0.2, slippage_ticks=1, fee_per_contract=0.5,
                     max_position=3, max_orders_per_minute=1000, max_daily_loss=1e12)  # fmt: skip
    b = PaperBroker("WINZ25", p)
    ts, price, placed = 0, 125_000.0, {}
    cash = 0.0  # BRL from fills: -qty * price * point_value - fee
    for i, (dt_, side, move) in enumerate(stream):
        ts += dt_
        if side is not None:
            order = b.on_signal(_sig(ts, side), ts, 1)
            if order is not None:
                placed[order.order_id] = order
        else:
            price = max(5.0, price + 5 * move)
            for f in b.on_trade(ts, i, price, 1):
                assert isinstance(f, Fill)
                assert placed[f.order_id].ts_placed < f.ts_event  # strictly after the order
                cash += -f.qty * f.price * p.point_value - f.fee
        assert abs(b.position) <= p.max_position
    # what the account says equals what the fills paid, marked at the last price
    mark = b.position * (b.last_price or 0.0) * p.point_value
    assert b.equity() == pytest.approx(cash + mark, abs=1e-6)
