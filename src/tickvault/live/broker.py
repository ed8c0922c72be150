"""The broker process: signals and trades in, orders and fills stored and published.

``BrokerWorker(vault, symbols)`` runs one ``Router`` per symbol (paper, or ProfitDLL
when configured and confirmed) on an ``EventOrder`` (design rule 4).

Inputs, both read from the store after the worker's own cursor:

- signals: ``SignalStore`` reads of ``signals:{SYMBOL}`` after the last signal
  applied. Chosen over subscribing to ``signal.SYMBOL``: the store is what the
  watermark describes (the model worker stores its signals and its cursor in one
  atomic call, design rule 5), so "read W, then read the signals" sees every signal
  with T <= W with no replay or gap logic, and a restart resumes from a cursor in
  the broker's own state. The cost is a poll (``poll_s``, 20 ms by default) on top
  of the model's latency, which paper fills do not see (P is event time).
- trades: the live (realtime) trades stored by the bridge, with ts_event after the
  last trade applied and ``ts_event <= W + paper_latency`` (the watermark rule:
  no later signal can be placed before them). Trades are held until then; with no
  model worker running nothing is applied. A trade stored after the broker passed
  its time (a late trade) is not applied (logged).

Live routing (``live.routing.ProfitDLLRouter``) writes each order ahead in
``broker:{SYMBOL}:routing`` before ``SendOrder``; the step's commit clears it. At
start, entries left by a kill are reconciled (by ClOrdID or local id through
``GetOrderDetails``) or reported as "unconfirmed: check with the broker"; no order is
ever sent twice (``live.routing``'s docstring says exactly what happens).

Each step's orders and fills are stored with the broker's whole state (account,
queued signals, cursors, routing maps) and its position summary in one transaction
(``ExecutionStore.commit``), then published: a kill -9 either loses the step
entirely (it is redone identically from the stored cursors: event time only) or
keeps all of it, so no order or fill is doubled or lost.

Published on ``zmq_orders_port``: topics ``order.SYMBOL`` and ``fill.SYMBOL``, frames
[topic, 8-byte little-endian sequence per topic, the record bytes of
``ORDER_DTYPE`` / ``FILL_DTYPE``] (docs/wire-format.md). Positions: the hash
``positions:{SYMBOL}`` (docs/execution.md).
"""

from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from tickvault.config import Settings
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.parity import live_trades
from tickvault.engine.signals import SignalStore
from tickvault.errors import ConfigError
from tickvault.execution.ordering import EventOrder, signal_to_state
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.execution.router import PaperRouter, Router
from tickvault.live.routing import ProfitDLLRouter
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Signal
from tickvault.timeutil import trading_days
from tickvault.transport.security import ZapLease, secure_server
from tickvault.vault import Vault
from tickvault.venue.contracts import contract

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000
_END = 1 << 62


def broker_params(settings: Settings, symbol: str) -> BrokerParams:
    c = contract(symbol)
    return BrokerParams(
        tick_size=c.tick_size, point_value=c.point_value, order_qty=settings.paper_order_qty,
        slippage_ticks=settings.paper_slippage_ticks,
        fee_per_contract=settings.paper_fee_per_contract,
        max_position=settings.paper_max_position,
        max_orders_per_minute=settings.paper_max_orders_per_minute,
        max_daily_loss=settings.paper_max_daily_loss,
    )  # fmt: skip


def check_routing(settings: Settings, live_orders: bool) -> str:
    """The routing to use: live ProfitDLL orders need both the setting and the flag."""
    if settings.order_routing == "profitdll" and not live_orders:
        raise ConfigError(
            'order_routing = "profitdll" sends real orders: confirm with '
            '`tickvault paper run --live-orders` (or set order_routing = "paper")'
        )
    if live_orders and settings.order_routing != "profitdll":
        raise ConfigError(
            '--live-orders needs order_routing = "profitdll" in the settings (it is '
            f"{settings.order_routing!r})"
        )
    return settings.order_routing


@dataclass
class _Symbol:
    symbol: str
    router: Router
    sig_ts: int = -1
    """ts_event of the last signal applied, and how many at that ts."""
    sig_n: int = 0
    trade_ts: int = -1
    trade_id: int = -1
    seq: dict[str, int] | None = None


class BrokerWorker:
    """See the module docstring. ``step()`` does one pass over every symbol (tests
    call it directly); ``run()`` loops until ``stop()``."""

    def __init__(
        self,
        vault: Vault,
        symbols: list[str],
        *,
        routers: dict[str, Router] | None = None,
        publish: bool = True,
        poll_s: float = 0.02,
    ) -> None:
        self.vault = vault
        s = vault.settings
        self.latency_ns = round(s.paper_latency_ms * NS_PER_MS)
        self.store = ExecutionStore(vault)
        self.signals = SignalStore(vault)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.syms: dict[str, _Symbol] = {}
        for sym in symbols:
            if routers and sym in routers:
                router = routers[sym]
            else:
                params = broker_params(s, sym)
                router = PaperRouter(EventOrder(PaperBroker(sym, params), self.latency_ns))
            st = _Symbol(sym, router, seq={"order": 0, "fill": 0})
            saved = self.store.state(sym)
            if saved is not None:
                router.restore(saved["router"])
                st.sig_ts, st.sig_n = int(saved["sig_ts"]), int(saved["sig_n"])
                st.trade_ts, st.trade_id = int(saved["trade_ts"]), int(saved["trade_id"])
                st.seq = {k: int(v) for k, v in saved.get("seq", {}).items()} or st.seq
                log.info("broker: %s restored (position %d, last trade %d)", sym,
                         router.position, st.trade_ts)  # fmt: skip
            if isinstance(router, ProfitDLLRouter):
                router.journal = lambda oid, e, sym=sym: self.store.routing_put(sym, oid, e)
                router.reconcile(self.store.routing_entries(sym))
            self.syms[sym] = st
        self._ctx: zmq.Context[Any] | None = None
        self._pub: zmq.Socket[Any] | None = None
        self._lease: ZapLease | None = None
        if publish:
            self._ctx = zmq.Context()
            self._pub = self._ctx.socket(zmq.PUB)
            try:
                self._lease = secure_server(self._pub, s)  # CURVE (zmq_curve) before the bind
            except BaseException:
                self._pub.close(linger=0)
                self._ctx.term()
                raise
            self._pub.bind(f"tcp://{s.zmq_host}:{s.zmq_orders_port}")

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One pass; how many orders and fills it produced."""
        return sum(self._step(st) for st in self.syms.values())

    def _step(self, st: _Symbol) -> int:
        w = self.store.watermark(st.symbol)  # W first, then the signals (rule 5)
        new_sigs = self._new_signals(st)
        r = st.router
        for sig in new_sigs:
            r.signal(sig)
        out: list[Order | Fill] = []
        if w is not None:
            out += self._apply_trades(st, w)
        out += r.drain()
        done = sorted(r.journaled) if isinstance(r, ProfitDLLRouter) else []
        if not out and not new_sigs and not done and not r.dirty:
            return 0
        state = {"router": r.state(), "sig_ts": st.sig_ts, "sig_n": st.sig_n,
                 "trade_ts": st.trade_ts, "trade_id": st.trade_id, "seq": st.seq}  # fmt: skip
        self.store.commit(st.symbol, out, state, self.position(st), done)
        r.dirty = False
        if isinstance(r, ProfitDLLRouter):
            r.journaled.clear()
        self._publish(st, out)
        return len(out)

    def _new_signals(self, st: _Symbol) -> list[Signal]:
        sigs = self.signals.signals(st.symbol, max(st.sig_ts, 0), _END)
        skip = 0
        out: list[Signal] = []
        for s in sigs:
            if s.ts_event < st.sig_ts:
                continue
            if s.ts_event == st.sig_ts and skip < st.sig_n:
                skip += 1
                continue
            out.append(s)
            if s.ts_event == st.sig_ts:
                st.sig_n += 1
            else:
                st.sig_ts, st.sig_n = s.ts_event, 1
        return out

    def _apply_trades(self, st: _Symbol, w: int) -> list[Order | Fill]:
        upto = w + self.latency_ns  # trades with ts_event <= W + latency
        if upto < st.trade_ts:
            return []
        batch = live_trades(self.vault, st.symbol, max(st.trade_ts, 0), upto + 1)
        ts, tid = batch.ts_event, batch.trade_id
        keep = (ts > st.trade_ts) | ((ts == st.trade_ts) & (tid > st.trade_id))
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            return []
        days = trading_days(ts[idx], self.vault.settings.tz)
        out: list[Order | Fill] = []
        r = st.router
        for k, i in enumerate(idx):
            out += r.trade(int(ts[i]), int(tid[i]), float(batch.price[i]), int(days[k]))
        st.trade_ts, st.trade_id = int(ts[idx[-1]]), int(tid[idx[-1]])
        return out

    def position(self, st: _Symbol) -> dict[str, Any]:
        b = st.router.broker
        return {"position": b.position, "avg_price": b.avg_price, "realized": b.realized,
                "fees": b.fees, "open_pnl": b.open_pnl(), "day_pnl": b.day_pnl(),
                "last_price": "" if b.last_price is None else b.last_price,
                "killed_day": "" if b.killed_day is None else b.killed_day,
                "refused": b.refused, "pending": len(b.pending), "routing": st.router.name,
                "last_trade_ts": st.trade_ts, "routing_errors": len(st.router.errors),
                "rejected": len(getattr(st.router, "rejections", ())),
                "unconfirmed": len(st.router.unconfirmed)}  # fmt: skip

    def _publish(self, st: _Symbol, items: list[Order | Fill]) -> None:
        if self._pub is None or st.seq is None:
            return
        for it in items:
            kind = "order" if isinstance(it, Order) else "fill"
            st.seq[kind] += 1
            topic = f"{kind}.{st.symbol}".encode()
            self._pub.send_multipart([topic, struct.pack("<q", st.seq[kind]),
                                      it.to_record().tobytes()])  # fmt: skip

    def run(self) -> None:
        while not self._stop.is_set():
            if not self.step():
                self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for st in self.syms.values():
            st.router.close()
        if self._pub is not None:
            self._pub.close(linger=0)
        if self._lease is not None:
            self._lease.release()  # stops the ZAP thread, so the context can end
        if self._ctx is not None:
            self._ctx.term()


def queued_signals(router: Router) -> list[dict[str, Any]]:
    return [signal_to_state(s) for s in router.orders.queued]
