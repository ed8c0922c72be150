"""The canonical broker order (design rule 4): fills strictly after P and after the
signal's T, never at the triggering trade; independent of batching and of when
signals arrive (under the watermark rule); equal to a brute-force sort by
(time, kind)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import ValidationError
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal

S = 1_000_000_000
DAY = 86_400 * S
SYM = "WINZ25"
PARAMS = BrokerParams(tick_size=5.0, point_value=0.2, slippage_ticks=1, fee_per_contract=0.5,
                      max_position=2, max_orders_per_minute=3, max_daily_loss=60.0)  # fmt: skip


@dataclass(frozen=True)
class Trade:
    ts: int
    trade_id: int
    price: float

    @property
    def day(self) -> int:
        return self.ts // DAY


def _sig(t: int, side: Side) -> Signal:
    return Signal(SYM, t, t, side, 0.5 * int(side), 0.6, 60 * S, "m1", Mode.FAST)


# a session: trades (ts non-decreasing, ties allowed, sometimes across a day), and
# for some trades a signal made on the row after it (T = e + 1 + model delay)
session = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 7, 1_000, 3_000_000, 20 * S, DAY // 2]),  # gap to previous
        st.integers(-60, 60),  # price move in ticks
        st.one_of(st.none(), st.sampled_from(list(Side))),  # signal after this trade?
        st.sampled_from([0, 0, 1, 2_000_000]),  # model delay: T = e + 1 + delay
    ),
    max_size=80,
)
latencies = st.sampled_from([0, 1, 5_000_000])


def _build(raw: list[tuple[int, int, Side | None, int]]) -> tuple[list[Trade], list[Signal]]:
    trades: list[Trade] = []
    signals: list[Signal] = []
    ts, price = 10 * DAY + 40_000 * S, 125_000.0
    for i, (gap, move, side, delay) in enumerate(raw):
        ts += gap
        price = max(5.0, price + 5 * move)
        trades.append(Trade(ts, i + 1, price))
        if side is not None:
            t = ts + 1 + delay
            if signals and t < signals[-1].ts_event:
                t = signals[-1].ts_event  # the model decides rows in T order
            signals.append(_sig(t, side))
    return trades, signals


def _reference(
    trades: list[Trade], signals: list[Signal], latency: int
) -> tuple[list[Order | Fill], PaperBroker]:
    """Sort every event by (time, kind, given order), apply one by one; a signal is
    applied on the day of the trade that follows it (none follows: not applied)."""
    events: list[tuple[int, int, int, Trade | Signal]] = []
    events += [(t.ts, 0, i, t) for i, t in enumerate(trades)]
    events += [(s.ts_event + latency, 1, i, s) for i, s in enumerate(signals)]
    events.sort(key=lambda e: e[:3])
    b = PaperBroker(SYM, PARAMS)
    out: list[Order | Fill] = []
    for n, (time, _kind, _i, ev) in enumerate(events):
        if isinstance(ev, Trade):
            out += b.on_trade(ev.ts, ev.trade_id, ev.price, ev.day)
            continue
        nxt = next((e[3] for e in events[n + 1 :] if isinstance(e[3], Trade)), None)
        if nxt is None:
            break
        order = b.on_signal(ev, time, nxt.day)
        if order is not None:
            out.append(order)
    return out, b


def _backtest(
    trades: list[Trade], signals: list[Signal], latency: int
) -> tuple[list[Order | Fill], EventOrder]:
    """The backtest's calls: the signals of the rows made so far (T <= this trade's
    ts_event), then each trade; what is left at the end."""
    ev = EventOrder(PaperBroker(SYM, PARAMS), latency)
    out: list[Order | Fill] = []
    pending = list(signals)
    for t in trades:
        while pending and pending[0].ts_event <= t.ts:
            ev.signal(pending.pop(0))
        out += ev.trade(t.ts, t.trade_id, t.price, t.day)
    for s in pending:
        ev.signal(s)
    return out, ev


@settings(max_examples=300, deadline=None)
@given(session, latencies)
def test_event_order_fills_are_after_placement_and_after_the_signal_never_the_trigger(
    raw: list[tuple[int, int, Side | None, int]], latency: int
) -> None:
    trades, signals = _build(raw)
    out, _ = _backtest(trades, signals, latency)
    triggers: dict[int, set[int]] = {}  # T -> the trades of the rows at T
    for t in trades:
        triggers.setdefault(t.ts + 1, set()).add(t.trade_id)
    for s in signals:  # a model delay: the trigger is any trade before T
        triggers.setdefault(s.ts_event, set()).update(
            t.trade_id for t in trades if t.ts < s.ts_event
        )
    orders = {o.order_id: o for o in out if isinstance(o, Order)}
    by_id = {t.trade_id: t for t in trades}
    for f in (x for x in out if isinstance(x, Fill)):
        order = orders[f.order_id]
        assert f.ts_event > order.ts_placed
        if order.signal_ts is not None:  # a signal's order, placed at P = T + latency
            assert order.ts_placed == order.signal_ts + latency
            assert f.ts_event > order.signal_ts
            # never the trade that triggered it (T = e + 1 + delay: e < T)
            assert f.trade_id not in triggers[order.signal_ts]
            assert by_id[f.trade_id].ts > order.signal_ts


@settings(max_examples=300, deadline=None)
@given(session, latencies)
def test_event_order_backtest_calls_equal_the_brute_force_sort(
    raw: list[tuple[int, int, Side | None, int]], latency: int
) -> None:
    trades, signals = _build(raw)
    want, ref = _reference(trades, signals, latency)
    got, ev = _backtest(trades, signals, latency)
    assert got == want
    assert ev.broker.snapshot() == ref.snapshot()


@settings(max_examples=300, deadline=None)
@given(session, latencies, st.data())
def test_event_order_live_arrival_under_the_watermark_rule_equals_the_brute_force_sort(
    raw: list[tuple[int, int, Side | None, int]], latency: int, data: st.DataObject
) -> None:
    """Simulate the live processes: trades reach the broker in batches of any size;
    the model worker decides rows in T order and stores signals with its watermark
    W; the broker reads W, then the stored signals, and releases held trades with
    t <= W + latency, in batches; a restart from the state at any point."""
    trades, signals = _build(raw)
    want, _ = _reference(trades, signals, latency)
    # the model worker's rows: one per signal (T = its ts_event) plus rows that
    # decided nothing; W = T of the last decided row
    rows = sorted({s.ts_event for s in signals} | {t.ts + 1 for t in trades})
    ev = EventOrder(PaperBroker(SYM, PARAMS), latency)
    got: list[Order | Fill] = []
    arrived = decided = read_sigs = applied = 0  # trades arrived, rows decided, ...
    steps = 0
    while applied < len(trades) or read_sigs < len(signals):
        steps += 1
        if steps > 80:  # enough random steps: let everything through
            arrived, decided = len(trades), len(rows)
            action = "broker"
        else:
            action = data.draw(st.sampled_from(["trade", "model", "broker", "restart"]))
        if action == "trade" and arrived < len(trades):
            arrived += data.draw(st.integers(1, len(trades) - arrived))
        elif action == "model":
            # the model can only decide a row whose trade has arrived
            last_ts = trades[arrived - 1].ts if arrived else -1
            avail = [r for r in rows[decided:] if r - 1 <= last_ts]
            if avail:
                decided += data.draw(st.integers(1, len(avail)))
            elif arrived == len(trades):
                decided = len(rows)
        elif action == "broker":
            w = rows[decided - 1] if decided else -1  # read W first ...
            if decided == len(rows) and arrived == len(trades):
                w = 1 << 62  # end of the session: everything decided
            stored = [s for s in signals if s.ts_event <= w] if w < 1 << 62 else signals
            # ... then the signals stored by now (at least those with T <= W)
            extra = len(signals) - len(stored)
            upto = len(stored) + data.draw(st.integers(0, extra)) if extra else len(stored)
            for s in signals[read_sigs:upto]:
                ev.signal(s)
            read_sigs = max(read_sigs, upto)
            release = applied
            while release < arrived and trades[release].ts - latency <= w:
                release += 1
            if release > applied:
                cut = data.draw(st.integers(applied + 1, release))
                batch = trades[applied:cut]
                got += ev.trades([t.ts for t in batch], [t.trade_id for t in batch],
                                 [t.price for t in batch], [t.day for t in batch])  # fmt: skip
                applied = cut
        elif action == "restart":
            state = (ev.broker.snapshot(), ev.queue_state(), ev.last_trade_ts)
            ev = EventOrder(PaperBroker.restore(SYM, PARAMS, state[0]), latency)
            ev.restore_queue(state[1], state[2])
    assert got == want


def test_event_order_a_signal_at_p_waits_for_a_trade_strictly_after_p() -> None:
    ev = EventOrder(PaperBroker(SYM, PARAMS), 5)
    assert ev.trade(100, 1, 125_000.0, 1) == []  # the trigger: T = 101
    ev.signal(_sig(101, Side.LONG))  # P = 106
    assert ev.trade(106, 2, 125_005.0, 1) == []  # at P: before the signal
    assert len(ev.queued) == 1
    out = ev.trade(107, 3, 125_010.0, 1)
    [order] = [o for o in out if isinstance(o, Order)]
    [fill] = [f for f in out if isinstance(f, Fill)]
    assert order.ts_placed == 106 and fill.trade_id == 3 and fill.price == 125_015.0
    assert ev.queued == ()


def test_event_order_a_signal_that_belonged_before_an_applied_trade_is_refused() -> None:
    ev = EventOrder(PaperBroker(SYM, PARAMS), 5)
    ev.trade(200, 1, 125_000.0, 1)
    with pytest.raises(ValidationError, match="watermark"):
        ev.signal(_sig(100, Side.LONG))  # P = 105 < 200
    ev.signal(_sig(195, Side.LONG))  # P = 200: a trade at 200 comes first, fine
    assert len(ev.queued) == 1


def test_event_order_negative_latency_is_refused() -> None:
    with pytest.raises(ValidationError, match="latency"):
        EventOrder(PaperBroker(SYM, PARAMS), -1)
