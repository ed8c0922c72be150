"""The paper broker (pure): signals become market orders, trades fill them.

Fill rule: an order is filled at the first trade whose ``ts_event`` is strictly
after the order was placed (the signal's publish time), never at the trade that
triggered the signal (that trade's ts_event is before the features' T, which is at
or before the publish time, so it cannot qualify). The fill price is that trade's
price moved ``slippage_ticks`` against the order (a buy pays more, a sell gets
less); each contract pays ``fee_per_contract`` (BRL) on every fill. The whole order
fills on that trade (a market order on a liquid contract; the quantity of the
trade is not a limit here: documented simplification).

Risk:
- a signal asks for a target position (``side * order_qty``); the order is the
  difference from the position plus what is pending, clipped so that the position
  never exceeds ``max_position`` contracts either way;
- at most ``max_orders_per_minute`` orders in any 60 s (by the orders' times); a
  signal over the limit is refused (counted in ``refused``), except an order that
  only reduces the position;
- kill switch: when the day's PnL (realized + open, after fees, marked at the last
  trade) falls to ``-max_daily_loss`` BRL or below, the broker sends one order that
  flattens the position and refuses every new entry until the next trading day.

PnL in BRL: price points × contracts × ``point_value``. Everything is integer
nanoseconds and plain floats; the same object runs live and in a backtest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from tickvault.errors import ConfigError, ValidationError
from tickvault.records.orders import Fill, Order, OrderReason
from tickvault.records.signals import Side, Signal

MINUTE_NS = 60_000_000_000


@dataclass(frozen=True, slots=True)
class BrokerParams:
    tick_size: float
    """Price increment of the contract (WIN 5 points, WDO 0.5)."""
    point_value: float
    """BRL per price point per contract (WIN 0.20, WDO 10)."""
    order_qty: int = 1
    """Contracts per signal (the target position is side * order_qty)."""
    slippage_ticks: float = 1.0
    fee_per_contract: float = 0.25
    """BRL per contract per fill (exchange and broker costs together)."""
    max_position: int = 5
    max_orders_per_minute: int = 30
    max_daily_loss: float = 1_000.0
    """BRL; the kill switch trips at a day's PnL <= -max_daily_loss."""

    def __post_init__(self) -> None:
        positive = ("tick_size", "point_value", "order_qty", "max_position",
                    "max_orders_per_minute", "max_daily_loss")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"paper broker: {name} must be > 0, got {getattr(self, name)}")
        for name in ("slippage_ticks", "fee_per_contract"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"paper broker: {name} must be >= 0, got {getattr(self, name)}")


@dataclass(slots=True)
class PaperBroker:
    """One symbol's paper account (see the module docstring)."""

    symbol: str
    params: BrokerParams
    position: int = 0
    avg_price: float = 0.0
    realized: float = 0.0
    """BRL, after fees, since the start."""
    fees: float = 0.0
    last_price: float | None = None
    killed_day: int | None = None
    refused: int = 0
    pending: list[Order] = field(default_factory=list)
    simulate_fills: bool = True
    """Fill pending orders at trades (paper). False: fills come from outside
    (``apply_fill``, a live router); trades only mark to market."""
    _next_id: int = 1
    _recent: deque[int] = field(default_factory=deque)
    _day: int | None = None
    _day_start_equity: float = 0.0
    _last_ts: int | None = None

    # ------------------------------------------------------------------ accounting
    @property
    def pending_qty(self) -> int:
        return sum(o.qty for o in self.pending)

    def open_pnl(self) -> float:
        if self.position == 0 or self.last_price is None:
            return 0.0
        return (self.last_price - self.avg_price) * self.position * self.params.point_value

    def equity(self) -> float:
        """Realized (after fees) plus open PnL, BRL."""
        return self.realized + self.open_pnl()

    def day_pnl(self) -> float:
        return self.equity() - self._day_start_equity

    def _new_day(self, day: int) -> None:
        if self._day != day:
            self._day = day
            self._day_start_equity = self.equity()

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        """Everything the account holds, as plain (JSON-able) data: ``restore`` gives
        back a broker that behaves exactly as this one from here on."""
        return {
            "position": self.position, "avg_price": self.avg_price, "realized": self.realized,
            "fees": self.fees, "last_price": self.last_price, "killed_day": self.killed_day,
            "refused": self.refused, "next_id": self._next_id, "recent": list(self._recent),
            "day": self._day, "day_start_equity": self._day_start_equity,
            "last_ts": self._last_ts, "simulate_fills": self.simulate_fills,
            "pending": [[o.order_id, o.ts_placed, o.qty, int(o.reason), o.signal_ts]
                        for o in self.pending],
        }  # fmt: skip

    @classmethod
    def restore(cls, symbol: str, params: BrokerParams, state: dict[str, Any]) -> PaperBroker:
        """The broker ``snapshot`` described."""
        b = cls(symbol, params)
        b.position = int(state["position"])
        b.avg_price = float(state["avg_price"])
        b.realized = float(state["realized"])
        b.fees = float(state["fees"])
        b.last_price = None if state["last_price"] is None else float(state["last_price"])
        b.killed_day = None if state["killed_day"] is None else int(state["killed_day"])
        b.refused = int(state["refused"])
        b._next_id = int(state["next_id"])
        b._recent = deque(int(t) for t in state["recent"])
        b._day = None if state["day"] is None else int(state["day"])
        b._day_start_equity = float(state["day_start_equity"])
        b._last_ts = None if state["last_ts"] is None else int(state["last_ts"])
        b.simulate_fills = bool(state.get("simulate_fills", True))
        b.pending = [
            Order(int(i), symbol, int(ts), int(q), OrderReason(int(r)),
                  None if sig is None else int(sig))
            for i, ts, q, r, sig in state["pending"]
        ]  # fmt: skip
        return b

    # ------------------------------------------------------------------ orders
    def _place(self, ts: int, qty: int, reason: OrderReason, signal_ts: int | None) -> Order:
        order = Order(self._next_id, self.symbol, ts, qty, reason, signal_ts)
        self._next_id += 1
        self.pending.append(order)
        self._recent.append(ts)
        return order

    def on_signal(self, sig: Signal, ts_published: int, day: int) -> Order | None:
        """The order for ``sig`` published at ``ts_published`` on trading day ``day``
        (days as integers, e.g. ``timeutil.trading_days``), or None (nothing to do,
        refused by a limit, or the kill switch is on for the day)."""
        if sig.symbol != self.symbol:
            raise ValidationError(f"a {sig.symbol} signal sent to the {self.symbol} broker",
                                  field="symbol")  # fmt: skip
        self._new_day(day)
        p = self.params
        target = int(sig.side) * p.order_qty
        if self.killed_day == day and sig.side != Side.FLAT:
            self.refused += 1
            return None
        target = max(-p.max_position, min(p.max_position, target))
        qty = target - (self.position + self.pending_qty)
        if qty == 0:
            return None
        while self._recent and self._recent[0] <= ts_published - MINUTE_NS:
            self._recent.popleft()
        now = self.position + self.pending_qty
        reduces = abs(now + qty) < abs(now)
        if len(self._recent) >= p.max_orders_per_minute and not reduces:
            self.refused += 1
            return None
        return self._place(ts_published, qty, OrderReason.SIGNAL, sig.ts_event)

    # ------------------------------------------------------------------ trades
    def on_trade(self, ts_event: int, trade_id: int, price: float, day: int) -> list[Fill | Order]:
        """Fill what is pending at this trade (orders placed strictly before it), mark
        to market, and trip the kill switch if the day's loss reached the limit (the
        flattening order is returned too; it fills at the next trade)."""
        if self._last_ts is not None and ts_event < self._last_ts:
            raise ValidationError(
                f"{self.symbol}: trades must come in ts_event order ({ts_event} after "
                f"{self._last_ts})",
                field="ts_event",
            )
        self._last_ts = ts_event
        self._new_day(day)
        out: list[Fill | Order] = []
        keep: list[Order] = []
        for order in self.pending:
            if self.simulate_fills and order.ts_placed < ts_event:
                out.append(self._fill(order, ts_event, trade_id, price))
            else:
                keep.append(order)
        self.pending = keep
        self.last_price = price
        if self.killed_day != day and self.day_pnl() <= -self.params.max_daily_loss:
            self.killed_day = day
            flat = -(self.position + self.pending_qty)
            if flat:
                out.append(self._place(ts_event, flat, OrderReason.KILL_SWITCH, None))
        return out

    def apply_fill(
        self, order_id: int, qty: int, price: float, ts_event: int, trade_id: int
    ) -> Fill:
        """A fill reported from outside (a live router): ``qty`` signed, at ``price``
        (slippage is real here, none added); the order stays pending for what is left."""
        i = next((i for i, o in enumerate(self.pending) if o.order_id == order_id), None)
        if i is None:
            raise ValidationError(f"{self.symbol}: a fill for order {order_id}, which is not "
                                  "pending", field="order_id")  # fmt: skip
        order = self.pending[i]
        if qty == 0 or (qty > 0) != (order.qty > 0) or abs(qty) > abs(order.qty):
            raise ValidationError(f"{self.symbol}: a fill of {qty} for order {order_id} of "
                                  f"{order.qty}", field="qty")  # fmt: skip
        fee = abs(qty) * self.params.fee_per_contract
        self._apply(qty, price)
        self.realized -= fee
        self.fees += fee
        if qty == order.qty:
            del self.pending[i]
        else:
            self.pending[i] = replace(order, qty=order.qty - qty)
        return Fill(order_id, self.symbol, ts_event, trade_id, price, qty, fee)

    def drop(self, order_id: int) -> Order | None:
        """Forget a pending order (cancelled, rejected or never routed); it, or None."""
        for i, o in enumerate(self.pending):
            if o.order_id == order_id:
                return self.pending.pop(i)
        return None

    def _fill(self, order: Order, ts_event: int, trade_id: int, price: float) -> Fill:
        p = self.params
        slip = p.slippage_ticks * p.tick_size
        px = price + slip if order.qty > 0 else price - slip
        fee = abs(order.qty) * p.fee_per_contract
        self._apply(order.qty, px)
        self.realized -= fee
        self.fees += fee
        return Fill(order.order_id, self.symbol, ts_event, trade_id, px, order.qty, fee)

    def _apply(self, qty: int, px: float) -> None:
        pos = self.position
        if pos == 0 or (pos > 0) == (qty > 0):  # opening or adding
            new = pos + qty
            self.avg_price = (self.avg_price * abs(pos) + px * abs(qty)) / abs(new)
            self.position = new
            return
        closed = min(abs(qty), abs(pos))
        sign = 1 if pos > 0 else -1
        self.realized += (px - self.avg_price) * closed * sign * self.params.point_value
        self.position = pos + qty
        if self.position == 0:
            self.avg_price = 0.0
        elif (self.position > 0) != (pos > 0):  # reversed: the rest opens at px
            self.avg_price = px
