"""The canonical order of signals and trades at the broker (pure; design rule 4).

An order for a signal is placed at ``P = signal.ts_event + latency_ns`` (the
decision plus the route to the exchange: setting ``paper_latency_ms``). The broker
applies events in one order, whatever order they reached it in:

- a signal placed at P is applied before every trade with ``ts_event > P`` and
  after every trade with ``ts_event <= P``;
- signals among themselves by P (equal P: in the order they were given), trades
  among themselves in the order given (the store's order: ts_event, then arrival).

So an order is filled at the first trade strictly after P: never at the trade that
triggered its signal (that trade's ts_event < T <= P).

``EventOrder(broker, latency_ns)``: ``.signal(sig)`` queues a signal; ``.trade(ts,
trade_id, price, day)`` first applies the queued signals with ``P < ts`` (each as an
order placed at P, on the trading day of this trade) then the trade, and returns
what happened (orders placed, fills, a kill-switch order). A backtest calls
``.trade`` for each trade, then ``.signal`` for the signals that trade's feature row
produced. A live broker calls them as data arrives but holds a trade ``t`` until the
model worker's watermark W (every row with T <= W decided) satisfies
``W >= t - latency_ns``: a later signal has T > W, so its P > t, and it can never
belong before a trade already applied. A signal given after a trade it should
have preceded breaks that rule and is refused with a ValidationError.

Equivalent to sorting all events by (time, kind) with time = ts_event for a trade
and P for a signal, kind 0 for a trade and 1 for a signal (the tests check it
against that brute-force reference).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from tickvault.errors import ValidationError
from tickvault.execution.paper import PaperBroker
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal


class EventOrder:
    """Apply signals and trades to one symbol's broker in the canonical order (see
    the module docstring)."""

    def __init__(self, broker: PaperBroker, latency_ns: int) -> None:
        if latency_ns < 0:
            raise ValidationError(f"broker latency must be >= 0 ns, got {latency_ns}",
                                  field="latency_ns")  # fmt: skip
        self.broker = broker
        self.latency_ns = int(latency_ns)
        self._queue: list[Signal] = []
        self._keys: list[int] = []  # P of each queued signal (sorted)
        self.last_trade_ts: int | None = None
        """ts_event of the last trade applied (None before the first)."""

    # ------------------------------------------------------------------ input
    def placement(self, sig: Signal) -> int:
        """P: when the order for ``sig`` is placed (ns UTC)."""
        return sig.ts_event + self.latency_ns

    @property
    def queued(self) -> tuple[Signal, ...]:
        """The signals given but not yet applied (no trade after their P yet), by P."""
        return tuple(self._queue)

    def signal(self, sig: Signal) -> None:
        """Queue ``sig``; it is applied just before the first trade after its P."""
        p = self.placement(sig)
        if self.last_trade_ts is not None and p < self.last_trade_ts:
            raise ValidationError(
                f"{sig.symbol}: a signal placed at {p} arrived after the trade at "
                f"{self.last_trade_ts} was applied (it belonged before it): hold trades "
                "until the model worker's watermark W >= t - latency",
                field="ts_event",
            )
        i = bisect.bisect_right(self._keys, p)
        self._keys.insert(i, p)
        self._queue.insert(i, sig)

    def trade(self, ts_event: int, trade_id: int, price: float, day: int) -> list[Order | Fill]:
        """Apply the queued signals placed before ``ts_event``, then the trade."""
        out: list[Order | Fill] = []
        b = self.broker
        n = 0
        while n < len(self._keys) and self._keys[n] < ts_event:
            order = b.on_signal(self._queue[n], self._keys[n], day)
            if order is not None:
                out.append(order)
            n += 1
        if n:
            del self._queue[:n], self._keys[:n]
        out += b.on_trade(ts_event, trade_id, price, day)
        self.last_trade_ts = ts_event
        return out

    def trades(
        self,
        ts_event: Sequence[int],
        trade_id: Sequence[int],
        price: Sequence[float],
        day: Sequence[int],
    ) -> list[Order | Fill]:
        """``trade`` for each of a batch of trades (columns of equal length)."""
        out: list[Order | Fill] = []
        for t, i, px, d in zip(ts_event, trade_id, price, day, strict=True):
            out += self.trade(int(t), int(i), float(px), int(d))
        return out

    # ------------------------------------------------------------------ state
    def queue_state(self) -> list[dict[str, Any]]:
        """The queued signals as plain data (JSON-able), for a restart."""
        return [signal_to_state(s) for s in self._queue]

    def restore_queue(self, items: Sequence[dict[str, Any]], last_trade_ts: int | None) -> None:
        """Set the queue and the last trade applied from ``queue_state`` data."""
        self._queue, self._keys = [], []
        self.last_trade_ts = None
        for it in items:
            self.signal(signal_from_state(self.broker.symbol, it))
        self.last_trade_ts = last_trade_ts


def signal_to_state(s: Signal) -> dict[str, Any]:
    return {"ts_event": s.ts_event, "t_features": s.t_features, "side": int(s.side),
            "strength": s.strength, "confidence": s.confidence, "horizon_ns": s.horizon_ns,
            "model_version": s.model_version, "mode": int(s.mode)}  # fmt: skip


def signal_from_state(symbol: str, d: dict[str, Any]) -> Signal:
    return Signal(symbol, int(d["ts_event"]), int(d["t_features"]), Side(int(d["side"])),
                  float(d["strength"]), float(d["confidence"]), int(d["horizon_ns"]),
                  str(d["model_version"]), Mode(int(d["mode"])))  # fmt: skip
