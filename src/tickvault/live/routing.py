"""Live order routing through ProfitDLL: ``ProfitDLLSession`` (a login with routing,
the connection states, the order-change callback) and ``ProfitDLLRouter`` (the
``execution.router.Router`` that sends the account's orders with ``SendOrder`` and
applies the fills ``GetOrderDetails`` reports). See ``execution.router`` for the
rules; this module holds the part that needs the DLL binding.

Never twice (write-ahead). For each order the account places, ``_route``:

1. writes it ahead as ``"routing"`` (``journal``: the broker worker's hash
   ``broker:{SYMBOL}:routing``, field = our order id) before ``SendOrder``;
2. calls ``SendOrder``; then writes the entry again as ``"sent"`` with the local
   order id and, when the order-change callback has already named it, the ClOrdID;
3. the step's commit stores the order, the router's state (local id -> order id,
   order id -> ClOrdID) and clears the entries, in one transaction.

After a restart, ``reconcile(entries)`` runs before anything else and never calls
``SendOrder``:

- an entry left by a kill before the commit is put back in the account as pending
  (the redone step then sees the order and places no new one) and stored at the
  next commit; with a ClOrdID it is looked up by it (``GetOrderDetails`` with the
  ClOrdID, valid across DLL sessions), else by the local id (valid only while the
  DLL session lives: the stand-in keeps it; after a real restart of the DLL it is
  usually unknown); found, its fills are applied from what the broker reports
  (logged "reconciled");
- not found, or left as ``"routing"`` (the kill came between the write-ahead and the
  local id: SendOrder may or may not have reached the broker), it is never re-sent:
  it stays pending in the account (so no equivalent order is placed either) and is
  listed in ``unconfirmed`` with "unconfirmed: check with the broker", in the log
  (error) and in ``tickvault paper status``, until the operator checks it at the
  broker; the account's position does not include it;
- orders committed as routed and still pending are looked up the same way, so
  fills reported while the process was down are applied.

``hook(stage, order, local_id)`` is called after ``SendOrder`` returned (stage
``"sent"``) and after the entry was written again (``"recorded"``): tests use it to
simulate a kill between the send and the commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tickvault.execution.ordering import EventOrder
from tickvault.execution.router import KEEP, Router, RoutingError
from tickvault.feeds.profitdll import types as pt
from tickvault.feeds.profitdll.binding import OrderDetails, ProfitDLL, ProfitDLLError
from tickvault.feeds.profitdll.states import session_ready
from tickvault.records.orders import Fill, Order, OrderReason
from tickvault.timeutil import now_ns

log = logging.getLogger(__name__)
UNCONFIRMED = "unconfirmed: check with the broker"


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
        self.clords: dict[int, str] = {}
        """local order id -> ClOrdID, as the order-change callback named them."""

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
        local, clord = int(oid.local_order_id), oid.cl_order_id  # a copy of the string
        try:  # GetOrderDetails is an accessor meant for this callback
            details = self.dll.order_details(local)
        except ProfitDLLError:
            return
        if clord:
            self.clords[local] = clord
            details = replace(details, cl_order_id=clord)
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
        self.clords: dict[int, str] = {}
        """our order id -> its ClOrdID."""
        self.journal: Callable[[int, dict[str, Any]], None] | None = None
        """Writes an order's entry ahead (see the module docstring); None: not kept."""
        self.journaled: set[int] = set()
        """Order ids written ahead since the last commit (the commit clears them)."""
        self.recovered: list[Order] = []
        self.hook: Callable[[str, Order, int | None], None] | None = None
        session.add(self)

    def _write(self, order: Order, state: str, local: int | None = None) -> None:
        if self.journal is None:
            return
        entry = {"order_id": order.order_id, "ts_placed": order.ts_placed, "qty": order.qty,
                 "reason": int(order.reason), "signal_ts": order.signal_ts, "state": state,
                 "local": local, "clord": None if local is None
                 else self.session.clords.get(local)}  # fmt: skip
        self.journal(order.order_id, entry)
        self.journaled.add(order.order_id)

    def _route(self, order: Order) -> None:
        if not self.session.connected():
            raise RoutingError(
                f"{self.ticker}: ProfitDLL routing is not connected (states "
                f"{dict(sorted(self.session.states.items()))}); order {order.order_id} "
                "was not sent"
            )
        a = self.account
        self._write(order, "routing")  # ahead: before anything can reach the broker
        try:
            local = self.session.dll.send_order(
                broker_id=a.broker_id, account=a.account, password=a.password,
                ticker=self.ticker, exchange=a.exchange, side=1 if order.qty > 0 else 2,
                quantity=abs(order.qty), order_type=1,
            )  # fmt: skip
        except ProfitDLLError as exc:
            raise RoutingError(f"{self.ticker}: order {order.order_id} refused: {exc}") from exc
        if self.hook is not None:
            self.hook("sent", order, local)
        self._write(order, "sent", local)
        if self.hook is not None:
            self.hook("recorded", order, local)
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

    def drain(self, at_ns: int | None = None) -> list[Order | Fill]:
        out: list[Order | Fill] = list(self.recovered)
        self.recovered = []
        while True:
            try:
                d = self.updates.get_nowait()
            except queue.Empty:
                return out
            oid = self.routed.get(d.local_order_id)
            if oid is None:
                continue  # another process's order
            self.dirty = True
            if d.cl_order_id:
                self.clords[oid] = d.cl_order_id
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
                text = f"{d.status_name}: {d.text}".rstrip(": ")
                self.rejections = [*self.rejections, (oid, text)][-KEEP:]

    # ------------------------------------------------------------------ restart
    def _lookup(self, local: int | None, clord: str | None) -> Any:
        """GetOrderDetails by ClOrdID, else by local id; None: unknown to the DLL."""
        dll = self.session.dll
        for how in ({"cl_order_id": clord} if clord else None,
                    {"local_order_id": local} if local else None):  # fmt: skip
            if how is None:
                continue
            try:
                d = dll.order_details(**how)
            except ProfitDLLError:
                continue
            return replace(d, cl_order_id=d.cl_order_id or clord)
        return None

    def reconcile(self, entries: dict[int, dict[str, Any]]) -> None:
        """After a restart: the orders written ahead but not committed (``entries``,
        by order id) and the committed ones still pending, reconciled with what the
        broker says, never re-sent (see the module docstring)."""
        b = self.broker
        committed = set(self.routed.values())
        for oid, e in sorted(entries.items()):
            if oid in committed or any(u["order_id"] == oid for u in self.unconfirmed):
                self.journaled.add(oid)  # committed already: only the entry is left
                continue
            order = Order(oid, b.symbol, int(e["ts_placed"]), int(e["qty"]),
                          OrderReason(int(e["reason"])), e["signal_ts"])  # fmt: skip
            b.pending.append(order)
            b._next_id = max(b._next_id, oid + 1)
            b._recent.append(order.ts_placed)
            self.recovered.append(order)
            self.journaled.add(oid)
            local = e.get("local")
            d = None if e["state"] == "routing" else self._lookup(local, e.get("clord"))
            if d is None:
                why = ("killed between the write-ahead and SendOrder's answer: it may or may "
                       "not have been sent" if e["state"] == "routing"
                       else f"local id {local} unknown to the DLL")  # fmt: skip
                text = (f"{self.ticker}: order {oid} ({order.qty:+d}) {UNCONFIRMED}: {why}; "
                        "it is never re-sent and stays pending in the account")  # fmt: skip
                self.unconfirmed.append({"order_id": oid, "qty": order.qty,
                                         "ts_placed": order.ts_placed, "text": text})  # fmt: skip
                log.error("%s", text)
                continue
            self.routed[d.local_order_id] = oid
            if d.cl_order_id:
                self.clords[oid] = d.cl_order_id
            log.warning("%s: order %d reconciled by %s after a restart: %s, %d of %d traded",
                        self.ticker, oid, f"ClOrdID {d.cl_order_id}" if d.cl_order_id
                        else f"local id {d.local_order_id}", d.status_name, d.traded,
                        d.quantity)  # fmt: skip
            self.updates.put(d)
        pending = {o.order_id for o in b.pending}
        for local, oid in list(self.routed.items()):
            if oid in pending and oid in committed:  # fills may have come while down
                d = self._lookup(local, self.clords.get(oid))
                if d is not None:
                    self.updates.put(d)

    def state(self) -> dict[str, Any]:
        s = super().state()
        s["routed"] = [[k, v] for k, v in self.routed.items()]
        s["traded"] = [[k, n, px] for k, (n, px) in self.traded.items()]
        s["clords"] = [[k, v] for k, v in self.clords.items()]
        s["rejections"] = [[k, v] for k, v in self.rejections]
        return s

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.broker.simulate_fills = False
        self.routed = {int(k): int(v) for k, v in state.get("routed", [])}
        self.traded = {int(k): (int(n), float(px)) for k, n, px in state.get("traded", [])}
        self.clords = {int(k): str(v) for k, v in state.get("clords", [])}
        self.rejections = [(int(k), str(v)) for k, v in state.get("rejections", [])]
