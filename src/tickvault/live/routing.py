"""Live order routing through ProfitDLL: ``ProfitDLLSession`` (a login with routing,
the connection states, the order-change callback) and ``ProfitDLLRouter`` (the
``execution.router.Router`` that sends the account's orders with ``SendOrder`` and
applies the fills ``GetOrderDetails`` reports). See ``execution.router`` for the
rules; this module holds the part that needs the DLL binding.

Restart rule: an order recorded as placed but whose ``SendOrder`` did not return
before a kill is never re-sent automatically (that could double a live order); it
stays pending in the account and is reported by ``tickvault paper status`` as
routed-unknown, to be checked at the broker.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from tickvault.execution.ordering import EventOrder
from tickvault.execution.router import Router, RoutingError
from tickvault.feeds.profitdll import types as pt
from tickvault.feeds.profitdll.binding import OrderDetails, ProfitDLL, ProfitDLLError
from tickvault.feeds.profitdll.states import session_ready
from tickvault.records.orders import Fill, Order
from tickvault.timeutil import now_ns


@dataclass(frozen=True, slots=True)
class RoutingAccount:
    """The account orders go to (the password is never logged)."""

    broker_id: int
    account: str
    password: str
    exchange: str = "F"

    def __repr__(self) -> str:
        return f"RoutingAccount(broker_id={self.broker_id}, account={self.account!r})"


class ProfitDLLSession:
    """A ProfitDLL login with routing for order routing only (no subscriptions):
    tracks the connection states and hands order changes to the routers."""

    def __init__(self, dll: ProfitDLL) -> None:
        self.dll = dll
        self.states: dict[int, int] = {}
        self.ready = threading.Event()
        self._listeners: list[ProfitDLLRouter] = []
        self.logged_in = False

    def login(self, key: str, user: str, password: str, timeout_s: float) -> None:
        """Log in with routing and wait until routing is connected; RoutingError if
        it is not within ``timeout_s`` (nothing can be placed then)."""
        d = self.dll
        state_cb = d.callback(pt.StateCallback, self._on_state)
        progress_cb = d.callback(pt.ProgressCallback, lambda *_: None)
        d.initialize(key, user, password, state_cb, progress_cb, routing=True)
        self.logged_in = True
        d.call("SetOrderCallback", d.callback(pt.OrderCallback, self._on_order))
        if not self.ready.wait(timeout_s):
            raise RoutingError(
                f"ProfitDLL routing is not connected after {timeout_s:g} s (states "
                f"{dict(sorted(self.states.items()))}): check the broker login and the "
                "routing permission of the account; no order was sent"
            )

    def connected(self) -> bool:
        return session_ready(self.states, True)

    def _on_state(self, conn_type: int, result: int) -> None:
        self.states[int(conn_type)] = int(result)
        if self.connected():
            self.ready.set()
        else:
            self.ready.clear()

    def _on_order(self, oid: pt.TConnectorOrderIdentifier) -> None:
        try:  # GetOrderDetails is an accessor meant for this callback
            details = self.dll.order_details(int(oid.local_order_id))
        except ProfitDLLError:
            return
        for r in self._listeners:
            r.updates.put(details)

    def add(self, router: ProfitDLLRouter) -> None:
        self._listeners.append(router)

    def close(self) -> None:
        if self.logged_in:
            self.logged_in = False
            self.dll.finalize()


class ProfitDLLRouter(Router):
    """Live routing through ProfitDLL (see the module docstring)."""

    name = "profitdll"

    def __init__(
        self,
        orders: EventOrder,
        session: ProfitDLLSession,
        account: RoutingAccount,
        ticker: str | None = None,
    ) -> None:
        super().__init__(orders)
        self.broker.simulate_fills = False
        self.session = session
        self.account = account
        self.ticker = ticker or self.broker.symbol
        self.updates: queue.SimpleQueue[OrderDetails] = queue.SimpleQueue()
        self.routed: dict[int, int] = {}
        """DLL local order id -> our order id."""
        self.traded: dict[int, tuple[int, float]] = {}
        """our order id -> (contracts traded, their average price) so far."""
        self.rejections: list[tuple[int, str]] = []
        session.add(self)

    def _route(self, order: Order) -> None:
        if not self.session.connected():
            raise RoutingError(
                f"{self.ticker}: ProfitDLL routing is not connected (states "
                f"{dict(sorted(self.session.states.items()))}); order {order.order_id} "
                "was not sent"
            )
        a = self.account
        try:
            local = self.session.dll.send_order(
                broker_id=a.broker_id, account=a.account, password=a.password,
                ticker=self.ticker, exchange=a.exchange, side=1 if order.qty > 0 else 2,
                quantity=abs(order.qty), order_type=1,
            )  # fmt: skip
        except ProfitDLLError as exc:
            raise RoutingError(f"{self.ticker}: order {order.order_id} refused: {exc}") from exc
        self.routed[local] = order.order_id

    def cancel(self, order_id: int) -> None:
        local = next((k for k, v in self.routed.items() if v == order_id), None)
        if local is None:
            raise RoutingError(f"{self.ticker}: order {order_id} was not routed")
        a = self.account
        try:
            self.session.dll.cancel_order(broker_id=a.broker_id, account=a.account,
                                          password=a.password, order_id=local)  # fmt: skip
        except ProfitDLLError as exc:
            raise RoutingError(f"{self.ticker}: cancel of order {order_id}: {exc}") from exc

    def drain(self, at_ns: int | None = None) -> list[Fill]:
        out: list[Fill] = []
        while True:
            try:
                d = self.updates.get_nowait()
            except queue.Empty:
                return out
            oid = self.routed.get(d.local_order_id)
            if oid is None:
                continue  # another process's order
            done, avg = self.traded.get(oid, (0, 0.0))
            if d.traded > done:
                n = d.traded - done
                px = (d.average_price * d.traded - avg * done) / n
                sign = 1 if d.side == 1 else -1
                ts = now_ns() if at_ns is None else at_ns
                out.append(self.broker.apply_fill(oid, sign * n, px, ts, -1))
                self.traded[oid] = (d.traded, d.average_price)
            ended = d.status in pt.ORDER_DONE and self.broker.drop(oid) is not None
            if ended and (d.status in pt.ORDER_FAILED or d.traded < d.quantity):
                self.rejections.append((oid, f"{d.status_name}: {d.text}".rstrip(": ")))

    def state(self) -> dict[str, Any]:
        s = super().state()
        s["routed"] = [[k, v] for k, v in self.routed.items()]
        s["traded"] = [[k, n, px] for k, (n, px) in self.traded.items()]
        return s

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.broker.simulate_fills = False
        self.routed = {int(k): int(v) for k, v in state.get("routed", [])}
        self.traded = {int(k): (int(n), float(px)) for k, n, px in state.get("traded", [])}
