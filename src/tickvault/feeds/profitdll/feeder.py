"""``ProfitDLLFeeder``: Nelogica's ProfitDLL as a tickvault feeder.

The DLL calls back on its own single thread. Each callback only copies what it
was given (translating the opaque trade pointer with ``TranslateTrade``, copying
full-book arrays and releasing them with ``FreePointer``, as they belong to the
caller once delivered) into a queue and returns; a worker thread converts and
delivers the events. No I/O and no DLL request (subscribe, history, orders)
ever runs inside a callback.

Offer-book edits are quantity deltas and full books may come in pages: the
worker keeps each symbol's book (``book.ProfitBook``) and publishes records of
the resulting offers. An edit of a trade whose number was never seen this
session is not delivered (it would be stored as a second trade): it is logged
and counted in ``unknown_edits``. A ticker the DLL reports unknown (its
invalid-ticker callback) is logged as an error, published as the state
``(CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER)`` and listed in ``status()``;
when no subscribed ticker is left, ``run`` fails naming them.

History requests follow the DLL's rules (``history``); the states' texts and the
readiness rule are in ``states``, credentials and subscriptions in ``credentials``.

Over 400 lines because the DLL-thread callbacks and the worker that delivers what
they queued share the queue's item layout; they are kept in one class so that layout
is read in one place.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from tickvault.errors import FeedError, TickvaultError
from tickvault.feeds.base import Feeder, FeedEvents
from tickvault.feeds.profitdll import convert
from tickvault.feeds.profitdll import types as t
from tickvault.feeds.profitdll.binding import ProfitDLL, ProfitDLLError
from tickvault.feeds.profitdll.book import ProfitBook
from tickvault.feeds.profitdll.credentials import ProfitCredentials, Subscription
from tickvault.feeds.profitdll.history import HistoryRequests, HistoryWait
from tickvault.feeds.profitdll.states import (
    CONNECTION_NAMES,
    session_ready,
    state_text,
    waiting_for,
)
from tickvault.logutil import RateLimitedLog
from tickvault.records.book import BOOK_DTYPE
from tickvault.records.events import (
    CONN_LOGIN,
    CONN_MARKET,
    CONN_SUBSCRIPTION,
    MARKET_PARTIAL,
    SUBSCRIPTION_UNKNOWN_TICKER,
)

log = logging.getLogger(__name__)


class ProfitDLLFeeder(HistoryRequests, Feeder):
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
        self.unknown_edits = 0
        """Edits of a trade number never seen this session, not delivered."""
        self.free_errors = 0
        """Full-book arrays FreePointer refused."""
        self.invalid_tickers: dict[str, str] = {}
        """Ticker -> exchange of each subscription the DLL reported unknown."""
        self.order_updates: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
        """(local order id, ClOrdID) per order-callback call."""
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._state_changed = threading.Condition()
        self._history_locks: dict[str, threading.Lock] = {}
        self._history: dict[str, HistoryWait] = {}
        self._events: FeedEvents | None = None
        self._rate_log = RateLimitedLog(log)
        self._parse_date = convert.ProfitDateParser(tz)
        self._books: dict[str, ProfitBook] = {}
        self._trade_numbers = convert.TradeNumbers(days=2)
        self._failure: FeedError | None = None
        """Set by the worker when the session cannot go on (no valid ticker left)."""

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
        if buy or sell:  # ours once delivered: copied, then freed
            arrays = (self._take_array(buy), self._take_array(sell))
        self._queue.put((
            "book", str(asset.ticker).upper(), time.time_ns(), action, position, side, qty,
            agent, offer_id, price, (bool(has_price), bool(has_qty), bool(has_offer),
            bool(has_agent)), date if has_date else None, arrays,
        ))  # fmt: skip

    def _take_array(self, pointer: int | None) -> bytes | None:
        """The bytes of a full-book array (its header says the total size), copied; then
        the array is freed with ``FreePointer(pointer, size)``, once."""
        if not pointer:
            return None
        assert self.dll is not None
        header = ctypes.string_at(pointer, 8)
        size = convert.array_size(header)
        try:
            if convert.ARRAY_MIN_SIZE <= size <= convert.ARRAY_MAX_SIZE:
                return ctypes.string_at(pointer, size)
            return header  # a corrupt header: parsing reports it
        finally:
            try:
                self.dll.free_pointer(pointer, size)
            except ProfitDLLError as exc:
                self.free_errors += 1
                self._rate_log.warning("free", "ProfitDLL: %s", exc)

    def _on_order(self, order: t.TConnectorOrderIdentifier) -> None:
        self.order_updates.put((int(order.local_order_id), order.cl_order_id))

    def _on_invalid_ticker(self, asset: t.TConnectorAssetIdentifier) -> None:
        self._queue.put(("invalid", str(asset.ticker or "").upper(), str(asset.exchange or "")))

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
            elif kind == "invalid":
                self._deliver_invalid_ticker(item[1], item[2], events)
            elif kind == "sync":
                item[1].set()

    def _deliver_trades(self, run: list[tuple[Any, ...]], events: FeedEvents) -> None:
        kind, symbol = run[0][0], run[0][1]
        wait = self._history.get(symbol) if kind == "history" else None
        last_packet = any(item[11] & t.TRADE_FLAG_LAST_PACKET for item in run)
        raw = [
            convert.RawTrade(convert.systemtime_ns(date, self.tz), recv, number, price, qty,
                             volume, buy, sell, ttype, flags)
            for _, _, recv, date, number, price, qty, volume, buy, sell, ttype, flags in run
            if self._admit(symbol, date, number, flags, wait)
        ]  # fmt: skip
        records = convert.trade_records(raw, history=kind == "history")
        if kind == "trade":
            if len(records):
                events.on_trade(symbol, records)
            self.delivered += len(records)
            return
        if wait is None:
            if len(records):
                events.on_history_trade(symbol, records)
            return
        keep = (records["ts_event"] >= wait.start_ns) & (records["ts_event"] < wait.end_ns)
        if keep.any():
            wait.events.on_history_trade(symbol, records[keep])
            wait.delivered += int(keep.sum())
        if last_packet:
            wait.last_packet_at = time.monotonic()

    def _admit(self, symbol: str, date: tuple[int, ...], number: int, flags: int,
               wait: HistoryWait | None) -> bool:  # fmt: skip
        """False for an edit of a trade number not seen this session (in the live feed or
        the history request under way): ProfitDLL's manual identifies an edited trade by
        its date, the examples and the store by number, and an edit stored under a number
        of its own would add a second trade. Every other trade's number is remembered."""
        day = (date[0], date[1], date[2])
        if flags & t.TRADE_FLAG_EDIT:
            if self._trade_numbers.seen(symbol, day, number) or (
                wait is not None and wait.numbers.seen(symbol, day, number)
            ):
                return True
            self.unknown_edits += 1
            self._rate_log.warning(
                "unknown-edit",
                "ProfitDLL: %s: an edit of trade %d of %04d-%02d-%02d, a trade number not seen "
                "this session, was ignored (stored, it would count as a second trade)",
                symbol, number, *day,
            )  # fmt: skip
            return False
        self._trade_numbers.add(symbol, day, number)
        if wait is not None:
            wait.numbers.add(symbol, day, number)
        return True

    def _deliver_state(self, conn_type: int, result: int, events: FeedEvents) -> None:
        text = state_text(conn_type, result)
        if (conn_type, result) == (CONN_MARKET, MARKET_PARTIAL):
            log.warning("ProfitDLL: %s; the feeder falls behind the market, and callbacks may "
                        "have been lost: the span is checked against history", text)  # fmt: skip
        elif conn_type == CONN_LOGIN and result != 0:
            log.error("ProfitDLL: %s", text)
        else:
            log.info("ProfitDLL: %s", text)
        events.on_state(conn_type, result)

    def _deliver_book(self, item: tuple[Any, ...], events: FeedEvents) -> None:
        (_, symbol, recv, action, position, side, qty, agent, offer_id, price, has, date,
         arrays) = item  # fmt: skip
        ts = self._parse_date(date) if date else recv
        book = self._books.setdefault(symbol, ProfitBook())
        if action == 4:
            parts = [
                book.full_book(side_no, convert.parse_book_array(raw), ts, recv)
                for side_no, raw in zip((0, 1), arrays or (None, None), strict=True)
                if raw is not None
            ]
            records = np.concatenate(parts) if parts else np.zeros(0, BOOK_DTYPE)
        else:
            if arrays is not None:
                self._rate_log.warning("arrays", "ProfitDLL: book arrays with action %d "
                                       "ignored (freed)", action)  # fmt: skip
            records = book.update(
                action=action, position=position, side=side, qty=qty, agent=agent,
                offer_id=offer_id, price=price, has=has, ts_event=ts, ts_recv=recv,
            )  # fmt: skip
        if len(records):
            events.on_book(symbol, records)

    def _deliver_invalid_ticker(self, ticker: str, exchange: str, events: FeedEvents) -> None:
        """The DLL does not know a subscribed ticker: say so where the user looks (the log,
        the state stream, ``status()``), and end the session when no ticker is left."""
        with self._state_changed:
            if ticker in self.invalid_tickers:  # one report per ticker (ticker and book)
                return
            self.invalid_tickers[ticker] = exchange
        wait = self._history.get(ticker)
        if wait is not None:  # a history request for it would wait for nothing
            wait.error = FeedError(f"ProfitDLL does not know ticker {ticker} ({exchange or '?'})")
            wait.done.set()
        log.error(
            "ProfitDLL: unknown ticker %s on exchange %s: no data will come for it. Check "
            "the spelling, the contract month (an expired contract is unknown) and the "
            "exchange (F for BMF futures such as WIN and WDO, B for Bovespa equities)",
            ticker, exchange or "?",
        )  # fmt: skip
        events.on_state(CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER)
        if self.subscriptions and all(s.ticker in self.invalid_tickers for s in self.subscriptions):
            self._failure = FeedError(
                "ProfitDLL knows none of the tickers subscribed ("
                + ", ".join(f"{k} on {v or '?'}" for k, v in self.invalid_tickers.items())
                + "): check their spelling, contract month and exchange (F BMF, B Bovespa)"
            )

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
            dll.call("SetInvalidTickerCallback",
                     cb(t.InvalidTickerCallback, self._guard(self._on_invalid_ticker)))  # fmt: skip
            if self.routing:
                dll.call("SetOrderCallback", cb(t.OrderCallback, self._guard(self._on_order)))
            self._wait_ready(stop)
            for sub in self.subscriptions:
                dll.call("SubscribeTicker", sub.ticker, sub.exchange)
                if self.book:
                    dll.call("SubscribeOfferBook", sub.ticker, sub.exchange)
            self._ready.set()
            while not stop.wait(0.2):
                if self._failure is not None:
                    raise self._failure
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

    def session_ready(self) -> bool:
        """Logged in, market data connected and, with routing, routing connected: (1, 2)
        as the manual says, or (1, 5) as Nelogica's examples treat it."""
        with self._state_changed:
            return self._session_ready()

    def _session_ready(self) -> bool:
        return session_ready(self.states, self.routing)

    def _wait_ready(self, stop: threading.Event) -> None:
        """Until the session is ready (``session_ready``); a refused login raises at once."""
        deadline = time.monotonic() + self.login_timeout_s
        with self._state_changed:
            while True:
                login = self.states.get(CONN_LOGIN)
                if login is not None and login != 0:
                    raise FeedError(f"ProfitDLL {state_text(CONN_LOGIN, login)}")
                if self._session_ready():
                    return
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    raise FeedError(
                        f"ProfitDLL did not connect ({waiting_for(self.states)}) within "
                        f"{self.login_timeout_s:.0f} s "
                        f"(last states: {[state_text(k, v) for k, v in self.states.items()]}); "
                        "check the activation key, the network and Nelogica's status"
                    )
                self._state_changed.wait(min(left, 0.5))

    def status(self) -> dict[str, str]:
        """The last state of each connection, in words: {"login": "logged in", ...}."""
        names = CONNECTION_NAMES
        with self._state_changed:
            out = {names.get(k, str(k)): state_text(k, v) for k, v in sorted(self.states.items())}
            if self.invalid_tickers:
                out["subscription"] = "unknown tickers: " + ", ".join(
                    f"{k} ({v or '?'})" for k, v in self.invalid_tickers.items()
                )
        return out

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
