"""``ProfitDLLFeeder``: Nelogica's ProfitDLL as a tickvault feeder.

The DLL calls back on its own single thread. Each callback only copies what it
was given (translating the opaque trade pointer with ``TranslateTrade`` and
copying full-book arrays, both only valid during the call) into a queue and
returns; a worker thread converts and delivers the events. No I/O and no DLL
request (subscribe, history, orders) ever runs inside a callback.

History requests follow the DLL's rules (``convert.plan_history``): no start
older than 30 days, WIN/WDO one day per request, and one request at a time per
symbol, since history callbacks carry no request id.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tickvault.config import Settings
from tickvault.errors import ConfigError, FeedError, TickvaultError
from tickvault.feeds.base import Feeder, FeedEvents
from tickvault.feeds.profitdll import convert
from tickvault.feeds.profitdll import types as t
from tickvault.feeds.profitdll.binding import ProfitDLL
from tickvault.logutil import RateLimitedLog
from tickvault.model.validate import check_symbol
from tickvault.timeutil import now_ns

log = logging.getLogger(__name__)

CONN_LOGIN, CONN_ROUTING, CONN_MARKET, CONN_ACTIVATION = 0, 1, 2, 3
MARKET_CONNECTED, MARKET_PARTIAL = 4, 6
STATE_TEXT: dict[tuple[int, int], str] = {
    (0, 0): "logged in",
    (0, 1): "login refused: invalid login",
    (0, 2): "login refused: wrong password",
    (0, 3): "login refused: account blocked",
    (0, 4): "login refused: password expired",
    (0, 200): "login failed: internal error",
    (1, 0): "routing disconnected",
    (1, 1): "routing connecting",
    (1, 2): "routing connected",
    (1, 3): "broker disconnected",
    (1, 4): "broker connecting",
    (1, 5): "routing connected (broker connected)",
    (2, 0): "market data disconnected",
    (2, 1): "market data connecting",
    (2, 2): "market data waiting",
    (2, 3): "market data: not logged in",
    (2, 4): "market data connected",
    (2, 5): "market data: performance warning",
    (2, 6): "market data partially connected: callbacks are not drained fast enough",
    (3, 0): "activation valid",
}
FUTURES_PREFIXES = ("WIN", "WDO", "IND", "DOL", "BIT", "DI1", "CCM", "BGI", "ICF", "SFI")


def state_text(conn_type: int, result: int) -> str:
    return STATE_TEXT.get((conn_type, result), f"state type {conn_type} result {result}")


@dataclass(frozen=True, slots=True)
class Subscription:
    ticker: str
    exchange: str
    """"F" BMF (futures) or "B" Bovespa (equities)."""


def parse_subscriptions(spec: str) -> list[Subscription]:
    """``WINZ25:F,PETR4:B`` (the exchange defaults to F for B3 futures roots, else B)."""
    subs = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        ticker, _, exchange = item.partition(":")
        ticker = check_symbol(ticker)
        exchange = (exchange or ("F" if ticker.startswith(FUTURES_PREFIXES) else "B")).upper()
        if exchange not in ("F", "B"):
            raise ConfigError(
                f"--symbols: exchange {exchange!r} of {item!r} must be F (BMF) or B (Bovespa)"
            )
        subs.append(Subscription(ticker, exchange))
    if not subs:
        raise ConfigError("--symbols: name at least one ticker, such as WINZ25:F,PETR4:B")
    return subs


class ProfitCredentials:
    """Activation key, user and password. Never shown: not in repr, logs or errors."""

    __slots__ = ("_key", "_password", "_user")

    def __init__(self, key: str, user: str, password: str):
        self._key, self._user, self._password = key, user, password

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfitCredentials:
        values = {
            "profitdll_key": settings.profitdll_key,
            "profitdll_user": settings.profitdll_user,
            "profitdll_password": settings.profitdll_password,
        }
        missing = [name for name, v in values.items() if v is None or not _secret(v)]
        if missing:
            envs = ", ".join(f"TICKVAULT_{m.upper()}" for m in missing)
            raise ConfigError(
                f"ProfitDLL credentials missing: set {envs} in the environment, or "
                f"{', '.join(missing)} in the config file (never on the command line)"
            )
        return cls(*(_secret(v) for v in values.values()))

    def __repr__(self) -> str:
        return "ProfitCredentials(<hidden>)"

    def reveal(self) -> tuple[str, str, str]:
        return self._key, self._user, self._password


def _secret(value: Any) -> str:
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


@dataclass(slots=True)
class _HistoryWait:
    events: FeedEvents
    start_ns: int
    end_ns: int
    done: threading.Event = field(default_factory=threading.Event)
    """Set by progress 100, which ends a request."""
    last_packet_at: float | None = None
    """When the trade flagged 'last packet' was delivered (monotonic s)."""
    delivered: int = 0


class ProfitDLLFeeder(Feeder):
    """Market data (and optionally routing) from ProfitDLL. ``run`` logs in, subscribes
    and delivers until ``stop`` is set; then it unsubscribes and finalizes the DLL."""

    name = "profitdll"

    def __init__(
        self,
        subscriptions: Sequence[Subscription],
        credentials: ProfitCredentials,
        *,
        library: str | Path,
        tz: ZoneInfo,
        book: bool = True,
        routing: bool = False,
        login_timeout_s: float = 60.0,
        history_timeout_s: float = 600.0,
    ):
        self.subscriptions = list(subscriptions)
        self.symbols = tuple(s.ticker for s in self.subscriptions)
        self._exchange = {s.ticker: s.exchange for s in self.subscriptions}
        self._credentials = credentials
        self.library = library
        self.tz = tz
        self.book = book
        self.routing = routing
        self.login_timeout_s = login_timeout_s
        self.history_timeout_s = history_timeout_s
        self.dll: ProfitDLL | None = None
        self.states: dict[int, int] = {}
        """Last result per connection type."""
        self.callback_errors = 0
        self.delivered = 0
        self.order_updates: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
        """(local order id, ClOrdID) per order-callback call."""
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._state_changed = threading.Condition()
        self._history_locks: dict[str, threading.Lock] = {}
        self._history: dict[str, _HistoryWait] = {}
        self._events: FeedEvents | None = None
        self._rate_log = RateLimitedLog(log)
        self._parse_date = convert.ProfitDateParser(tz)

    def __repr__(self) -> str:
        return f"ProfitDLLFeeder(symbols={self.symbols}, library={str(self.library)!r})"

    # ------------------------------------------------------------------ callbacks (DLL thread)
    def _guard(self, fn: Any) -> Any:
        """Callbacks never raise into the DLL: an error is counted and logged."""

        def wrapper(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self.callback_errors += 1
                self._rate_log.warning("callback", "ProfitDLL callback failed: %r", exc)

        return wrapper

    def _on_state(self, conn_type: int, result: int) -> None:
        with self._state_changed:
            self.states[conn_type] = result
            self._state_changed.notify_all()
        self._queue.put(("state", conn_type, result))

    def _on_progress(self, asset: t.TAssetID, progress: int) -> None:
        self._queue.put(("progress", str(asset.ticker).upper(), int(progress)))

    def _trade_item(self, kind: str, asset: t.TConnectorAssetIdentifier, p_trade: int,
                    flags: int) -> None:  # fmt: skip
        assert self.dll is not None
        tr = self.dll.translate_trade(p_trade)
        d = tr.trade_date
        self._queue.put((
            kind, str(asset.ticker).upper(), time.time_ns(),
            (d.year, d.month, d.day, d.hour, d.minute, d.second, d.milliseconds),
            tr.trade_number, tr.price, tr.quantity, tr.volume, tr.buy_agent, tr.sell_agent,
            tr.trade_type, int(flags),
        ))  # fmt: skip

    def _on_trade(self, asset: t.TConnectorAssetIdentifier, p_trade: int, flags: int) -> None:
        self._trade_item("trade", asset, p_trade, flags)

    def _on_history_trade(
        self, asset: t.TConnectorAssetIdentifier, p_trade: int, flags: int
    ) -> None:
        self._trade_item("history", asset, p_trade, flags)

    def _on_book(self, asset: t.TAssetID, action: int, position: int, side: int, qty: int,
                 agent: int, offer_id: int, price: float, has_price: int, has_qty: int,
                 has_date: int, has_offer: int, has_agent: int, date: str | None,
                 sell: int | None, buy: int | None) -> None:  # fmt: skip
        arrays = None
        if action == 4:  # full book: the arrays die when the callback returns
            arrays = tuple(_copy_array(p) for p in (buy, sell))
        self._queue.put((
            "book", str(asset.ticker).upper(), time.time_ns(), action, position, side, qty,
            agent, offer_id, price, (bool(has_price), bool(has_qty), bool(has_offer),
            bool(has_agent)), date if has_date else None, arrays,
        ))  # fmt: skip

    def _on_order(self, order: t.TConnectorOrderIdentifier) -> None:
        self.order_updates.put((int(order.local_order_id), order.cl_order_id))

    # ------------------------------------------------------------------ worker
    def _drain(self, events: FeedEvents) -> None:
        """Convert queued callback data and deliver it; consecutive trades of one symbol
        go out as one batch."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 4096:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                self._deliver(batch, events)
            except TickvaultError as exc:
                self._rate_log.warning("deliver", "ProfitDLL event dropped: %s", exc)
            except Exception:
                log.exception("ProfitDLL: delivering events failed")

    def _deliver(self, items: list[tuple[Any, ...]], events: FeedEvents) -> None:
        run: list[tuple[Any, ...]] = []
        for item in [*items, ("end",)]:
            if run and (item[0] != run[0][0] or item[1] != run[0][1]):
                self._deliver_trades(run, events)
                run = []
            kind = item[0]
            if kind in ("trade", "history"):
                run.append(item)
            elif kind == "state":
                self._deliver_state(item[1], item[2], events)
            elif kind == "progress":
                events.on_progress(item[1], item[2])
                wait = self._history.get(item[1])
                if wait is not None and item[2] >= 100:
                    wait.done.set()
            elif kind == "book":
                self._deliver_book(item, events)
            elif kind == "sync":
                item[1].set()

    def _deliver_trades(self, run: list[tuple[Any, ...]], events: FeedEvents) -> None:
        kind, symbol = run[0][0], run[0][1]
        raw = [
            convert.RawTrade(convert.systemtime_ns(date, self.tz), recv, number, price, qty,
                             volume, buy, sell, ttype, flags)
            for _, _, recv, date, number, price, qty, volume, buy, sell, ttype, flags in run
        ]  # fmt: skip
        records = convert.trade_records(raw, history=kind == "history")
        if kind == "trade":
            events.on_trade(symbol, records)
            self.delivered += len(records)
            return
        wait = self._history.get(symbol)
        if wait is None:
            events.on_history_trade(symbol, records)
            return
        keep = (records["ts_event"] >= wait.start_ns) & (records["ts_event"] < wait.end_ns)
        if keep.any():
            wait.events.on_history_trade(symbol, records[keep])
            wait.delivered += int(keep.sum())
        if any(r.dll_flags & t.TRADE_FLAG_LAST_PACKET for r in raw):
            wait.last_packet_at = time.monotonic()

    def _deliver_state(self, conn_type: int, result: int, events: FeedEvents) -> None:
        text = state_text(conn_type, result)
        if (conn_type, result) == (CONN_MARKET, MARKET_PARTIAL):
            log.warning("ProfitDLL: %s; the feeder falls behind the market", text)
        elif conn_type == CONN_LOGIN and result != 0:
            log.error("ProfitDLL: %s", text)
        else:
            log.info("ProfitDLL: %s", text)
        events.on_state(conn_type, result)

    def _deliver_book(self, item: tuple[Any, ...], events: FeedEvents) -> None:
        (_, symbol, recv, action, position, side, qty, agent, offer_id, price, has, date,
         arrays) = item  # fmt: skip
        ts = self._parse_date(date) if date else recv
        if action == 4:
            buy, sell = (convert.parse_book_array(a) if a else None for a in arrays)
            records = convert.full_book_records(buy, sell, ts, recv)
        else:
            records = convert.book_update_record(
                action=action, position=position, side=side, qty=qty, agent=agent,
                offer_id=offer_id, price=price, has=has, ts_event=ts, ts_recv=recv,
            )  # fmt: skip
        if len(records):
            events.on_book(symbol, records)

    # ------------------------------------------------------------------ session
    def run(self, events: FeedEvents, stop: threading.Event) -> None:
        self._events = events
        dll = self.dll = ProfitDLL(self.library)
        worker = threading.Thread(target=self._drain, args=(events,), name="profitdll-worker",
                                  daemon=True)  # fmt: skip
        worker.start()
        cb = dll.callback
        state_cb = cb(t.StateCallback, self._guard(self._on_state))
        progress_cb = cb(t.ProgressCallback, self._guard(self._on_progress))
        key, user, password = self._credentials.reveal()
        initialized = False
        try:
            dll.initialize(key, user, password, state_cb, progress_cb, routing=self.routing)
            initialized = True
            dll.call("SetTradeCallbackV2", cb(t.TradeCallbackV2, self._guard(self._on_trade)))
            dll.call("SetHistoryTradeCallbackV2",
                     cb(t.TradeCallbackV2, self._guard(self._on_history_trade)))  # fmt: skip
            dll.call("SetOfferBookCallbackV2",
                     cb(t.OfferBookCallbackV2, self._guard(self._on_book)))  # fmt: skip
            if self.routing:
                dll.call("SetOrderCallback", cb(t.OrderCallback, self._guard(self._on_order)))
            self._wait_ready(stop)
            for sub in self.subscriptions:
                dll.call("SubscribeTicker", sub.ticker, sub.exchange)
                if self.book:
                    dll.call("SubscribeOfferBook", sub.ticker, sub.exchange)
            self._ready.set()
            stop.wait()
        finally:
            self._ready.clear()
            self._ended.set()
            if initialized:
                for sub in self.subscriptions:
                    with contextlib.suppress(FeedError):
                        dll.call("UnsubscribeTicker", sub.ticker, sub.exchange)
                        if self.book:
                            dll.call("UnsubscribeOfferBook", sub.ticker, sub.exchange)
                with contextlib.suppress(FeedError):
                    dll.finalize()
            self._queue.put(None)
            worker.join(timeout=30)

    def _wait_ready(self, stop: threading.Event) -> None:
        """Until logged in and market data connected; a refused login raises at once."""
        deadline = time.monotonic() + self.login_timeout_s
        with self._state_changed:
            while True:
                login = self.states.get(CONN_LOGIN)
                if login is not None and login != 0:
                    raise FeedError(f"ProfitDLL {state_text(CONN_LOGIN, login)}")
                if login == 0 and self.states.get(CONN_MARKET) == MARKET_CONNECTED:
                    return
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    raise FeedError(
                        f"ProfitDLL did not connect within {self.login_timeout_s:.0f} s "
                        f"(last states: {[state_text(k, v) for k, v in self.states.items()]}); "
                        "check the activation key, the network and Nelogica's status"
                    )
                self._state_changed.wait(min(left, 0.5))

    def status(self) -> dict[str, str]:
        """The last state of each connection, in words: {"login": "logged in", ...}."""
        names = {CONN_LOGIN: "login", CONN_ROUTING: "routing", CONN_MARKET: "market data",
                 CONN_ACTIVATION: "activation"}  # fmt: skip
        with self._state_changed:
            return {names.get(k, str(k)): state_text(k, v) for k, v in sorted(self.states.items())}

    def _await_session(self) -> ProfitDLL:
        """Until the session is logged in and subscribed (a reconnect backfill can be
        asked while ``run`` still subscribes); at once if no session runs."""
        deadline = time.monotonic() + self.login_timeout_s
        while not self._ready.wait(0.05):
            if self.dll is None or self._ended.is_set():
                raise FeedError("no ProfitDLL session is running: start the feeder first")
            if time.monotonic() > deadline:
                raise FeedError(
                    f"ProfitDLL is not logged in after {self.login_timeout_s:.0f} s; "
                    "no history can be asked"
                )
        assert self.dll is not None
        return self.dll

    def wait_until_ready(self, timeout_s: float) -> bool:
        """True once logged in and subscribed."""
        return self._ready.wait(timeout_s)

    # ------------------------------------------------------------------ history
    def _await_history(self, wait: _HistoryWait, symbol: str, which: str) -> None:
        """Until the request ends: progress 100, or 1 s after the last-packet trade if no
        progress comes. Then every callback queued so far is drained, so nothing of this
        request is taken for the next one."""
        deadline = time.monotonic() + self.history_timeout_s
        while not wait.done.wait(0.05):
            now = time.monotonic()
            if wait.last_packet_at is not None and now - wait.last_packet_at > 1.0:
                break
            if now > deadline:
                raise FeedError(
                    f"ProfitDLL sent no end of history for {symbol} within "
                    f"{self.history_timeout_s:.0f} s ({which})"
                )
        drained = threading.Event()
        self._queue.put(("sync", drained))
        drained.wait(self.history_timeout_s)

    def set_exchange(self, symbol: str, exchange: str) -> None:
        """The exchange to ask for ``symbol``'s history ("F" or "B")."""
        self._exchange[check_symbol(symbol)] = exchange

    def exchange_of(self, symbol: str) -> str:
        return self._exchange.get(symbol, "F" if symbol.startswith(FUTURES_PREFIXES) else "B")

    def request_history(self, symbol: str, start_ns: int, end_ns: int, events: FeedEvents) -> None:
        """Fetch [start_ns, end_ns) through ``GetHistoryTrades``, within the DLL's rules;
        blocks until every request answered. Never call from a DLL callback."""
        dll = self._await_session()
        symbol = check_symbol(symbol)
        windows = convert.plan_history(symbol, start_ns, end_ns, now_ns=now_ns(), tz=self.tz)
        lock = self._history_locks.setdefault(symbol, threading.Lock())
        with lock:  # one request at a time per symbol: callbacks carry no request id
            for i, (lo, hi) in enumerate(windows):
                wait = _HistoryWait(events, lo, hi)
                self._history[symbol] = wait
                try:
                    dll.call(
                        "GetHistoryTrades", symbol, self.exchange_of(symbol),
                        convert.format_request_date(lo, self.tz),
                        convert.format_request_date(hi - 1, self.tz),
                    )  # fmt: skip
                    self._await_history(wait, symbol, f"request {i + 1} of {len(windows)}")
                finally:
                    self._history.pop(symbol, None)
                events.on_progress(symbol, (i + 1) * 100 // len(windows))


def _copy_array(pointer: int | None) -> bytes | None:
    """The bytes of a full-book array (header says its total size), copied."""
    if not pointer:
        return None
    header = ctypes.string_at(pointer, 8)
    return ctypes.string_at(pointer, convert.array_size(header))
