"""Where the broker's orders go: the paper simulation, or ProfitDLL (live).

Both routers sit on the same ``EventOrder`` (the canonical order of signals and
trades, ``execution.ordering``) and the same ``PaperBroker`` account (limits, kill
switch, PnL): the account decides every order; the router decides how it is
executed.

- ``PaperRouter``: the order fills at the first trade strictly after it was placed,
  with slippage and fees (``execution.paper``). Nothing leaves the process.
- ``ProfitDLLRouter`` (``live.routing``: this package is pure and may not load the
  DLL binding): each order the account places is sent as a market order with
  ``SendOrder`` (``TConnectorSendOrder`` version 1, type 1, price -1); fills come
  back through the order-change callback (``GetOrderDetails``: the traded quantity
  and average price; each increase is one ``Fill``, priced so the fills average to
  the broker's average, ``trade_id`` -1 since ProfitDLL names no trade), and the
  account applies them. A rejected or cancelled order leaves the account's pending
  list (its text is kept in ``rejections``). Routing must be connected (state
  (1, 2) or (1, 5)): otherwise ``place`` raises ``RoutingError`` and nothing is
  sent. Off unless ``order_routing = "profitdll"`` and the explicit confirmation
  (``tickvault paper run --live-orders``) are both given.

Never twice: live routing writes each order ahead ("routing") before ``SendOrder``
and never re-sends an order after a restart; what happens to an order caught by a
kill is in ``live.routing``.

Interface (``Router``): ``signal(sig)``, ``trade(ts, trade_id, price, day) ->
[Order | Fill]`` (orders placed and paper fills), ``drain() -> [Order | Fill]`` (fills
that came back from outside, and orders recovered after a restart),
``place_market(qty, ts)``, ``cancel(order_id)``, ``position``, ``errors`` (why orders
were not routed), ``unconfirmed`` (orders whose routing is unknown after a restart),
``state()`` / ``restore(...)``, ``close()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from tickvault.errors import TickvaultError
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import PaperBroker
from tickvault.records.orders import Fill, Order, OrderReason
from tickvault.records.signals import Signal

ROUTINGS = ("paper", "profitdll")
KEEP = 20
"""Routing errors and rejections kept in the state (the latest)."""


class RoutingError(TickvaultError):
    """An order could not be routed (routing off, not connected, refused by the DLL)."""


class Router(ABC):
    """See the module docstring."""

    name: str

    def __init__(self, orders: EventOrder) -> None:
        self.orders = orders
        self.errors: list[str] = []
        """Why orders were not routed (they were never placed); the last ``KEEP``."""
        self.dirty = False
        """Changed outside the orders and fills (an error, a rejection): the broker
        worker commits the state then too, and clears this."""
        self.unconfirmed: list[dict[str, Any]] = []
        """Orders whose SendOrder was cut by a kill: never re-sent, to check with the
        broker (``live.routing``); each {"order_id", "qty", "ts_placed", "text"}."""

    @property
    def broker(self) -> PaperBroker:
        return self.orders.broker

    @property
    def position(self) -> int:
        return self.broker.position

    def signal(self, sig: Signal) -> None:
        self.orders.signal(sig)

    def trade(self, ts_event: int, trade_id: int, price: float, day: int) -> list[Order | Fill]:
        """Apply a trade (and the queued signals before it); route new orders. An
        order the route refused is not in the result (it was never placed)."""
        out = self.orders.trade(ts_event, trade_id, price, day)
        return [x for x in out if not isinstance(x, Order) or self._route_or_drop(x) is None]

    def place_market(self, qty: int, ts: int) -> Order:
        """A manual market order of ``qty`` contracts placed at ``ts`` (outside the
        signals; still counted by the account)."""
        b = self.broker
        order = b._place(ts, qty, OrderReason.SIGNAL, None)
        err = self._route_or_drop(order)
        if err is not None:
            raise err
        return order

    def _route_or_drop(self, order: Order) -> RoutingError | None:
        """Route ``order``; if refused, forget it (never placed) and keep the error."""
        try:
            self._route(order)
        except RoutingError as exc:
            self.broker.drop(order.order_id)
            self.errors = [*self.errors, str(exc)][-KEEP:]
            self.dirty = True
            return exc
        return None

    @abstractmethod
    def _route(self, order: Order) -> None: ...

    @abstractmethod
    def cancel(self, order_id: int) -> None: ...

    def drain(self) -> list[Order | Fill]:
        """Fills reported from outside since the last call, and orders recovered after
        a restart (none for paper)."""
        return []

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart (JSON-able)."""
        o = self.orders
        return {"broker": self.broker.snapshot(), "queue": o.queue_state(),
                "last_trade_ts": o.last_trade_ts, "errors": self.errors,
                "unconfirmed": self.unconfirmed}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        b = PaperBroker.restore(self.broker.symbol, self.broker.params, state["broker"])
        b.simulate_fills = self.broker.simulate_fills
        self.orders = EventOrder(b, self.orders.latency_ns)
        self.orders.restore_queue(state["queue"], state["last_trade_ts"])
        self.errors = [str(e) for e in state.get("errors", [])]
        self.unconfirmed = [dict(u) for u in state.get("unconfirmed", [])]

    def close(self) -> None:
        return None


class PaperRouter(Router):
    """Paper execution (see the module docstring)."""

    name = "paper"

    def _route(self, order: Order) -> None:
        return None  # the account fills it at the next trade

    def cancel(self, order_id: int) -> None:
        if self.broker.drop(order_id) is None:
            raise RoutingError(f"{self.broker.symbol}: no pending order {order_id} to cancel")
