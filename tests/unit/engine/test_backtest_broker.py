"""The backtest's broker pass (``engine.backtest._broker_day``) jumps over trades that can
only mark the account to market: it must give exactly what applying every trade gives."""

from __future__ import annotations

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.engine.backtest import _broker_day
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import TradeBatch

T0 = 1_764_590_400_000_000_000  # 2025-12-01 12:00 UTC


def _batch(steps: list[int], moves: list[int]) -> TradeBatch:
    ts = T0 + np.cumsum(np.array(steps, dtype=np.int64) * 1_000_000)
    price = 125_000.0 + 5.0 * np.cumsum(np.array(moves, dtype=np.int64))
    n = ts.size
    return TradeBatch(ts_event=ts, ts_recv=ts, trade_id=np.arange(1, n + 1, dtype=np.int64),
                      price=price, qty=np.ones(n, np.int64), volume=price,
                      buy_agent=np.zeros(n, np.int32), sell_agent=np.zeros(n, np.int32),
                      trade_type=np.ones(n, np.uint8), flags=np.zeros(n, np.uint8))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(0, 40), min_size=5, max_size=300),
    data=st.data(),
    max_loss=st.sampled_from([5.0, 30.0, 1_000.0]),
    latency_ms=st.sampled_from([0, 5, 50]),
)
def test_broker_pass_equals_applying_every_trade(
    steps: list[int], data: st.DataObject, max_loss: float, latency_ms: int
) -> None:
    n = len(steps)
    moves = data.draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    batch = _batch(steps, moves)
    picks = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=12))))
    queue: list[tuple[int, Signal]] = []
    for j in picks:  # a signal of the row completed by trade j (T just after trade j-1)
        t = int(batch.ts_event[j - 1]) + 1
        side = Side(data.draw(st.sampled_from([-1, 0, 1])))
        queue.append((j, Signal("WINZ25", t, t, side, 0.5 * int(side), 0.6, 60_000_000_000,
                                "m1", Mode.FAST)))  # fmt: skip
    params = BrokerParams(tick_size=5.0, point_value=0.2, max_daily_loss=max_loss,
                          max_orders_per_minute=1_000)  # fmt: skip
    lat = latency_ms * 1_000_000
    day = 20_423
    # every trade, every signal before its trade
    ref = EventOrder(PaperBroker("WINZ25", params), lat)
    want: list[Order | Fill] = []
    qi = 0
    for j in range(n):
        while qi < len(queue) and queue[qi][0] <= j:
            ref.signal(queue[qi][1])
            qi += 1
        want += ref.trade(int(batch.ts_event[j]), int(batch.trade_id[j]),
                          float(batch.price[j]), day)  # fmt: skip
    eo = EventOrder(PaperBroker("WINZ25", params), lat)
    got: list[Order | Fill] = []
    fill_at: list[tuple[int, int]] = []
    _broker_day(eo, batch, np.arange(n, dtype=np.int64), queue, day, got, fill_at)
    assert got == want
    b, r = eo.broker, ref.broker
    assert (b.position, b.realized, b.fees, b.killed_day) == (r.position, r.realized, r.fees,
                                                              r.killed_day)  # fmt: skip
    if b.position:
        assert b.last_price == r.last_price
    for j, i in fill_at:  # each fill is recorded at the trade that made it
        f = got[i]
        assert isinstance(f, Fill) and f.trade_id == int(batch.trade_id[j])
