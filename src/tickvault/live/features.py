"""``FeatureWorker``: the live feature worker, a process of its own like the bridge.

Two threads. The subscriber thread (the project's ``Subscriber``: in sequence per
topic, with replay and gap handling) receives the trade and book topics of the
worker's symbols and appends each message to the pending list. The compute thread
takes everything pending whenever it is free and, per symbol, in arrival order,
feeds it to the symbol's ``features.stream.FeatureStream`` (the pure compute, which
a backtest runs too), which does:

- a book message updates the book (``records.book.BookState``) and the live state's
  book top (best price and the quantity at it, per side);
- a trade updates the intraday set (``IntradayState.update``, O(1) amortised) and the
  current session's aggregates (``SessionAggregatesBuilder``); corrections
  (EDIT/CANCEL), trades already handled (same or older (ts_event, trade_id): a
  replay, a second publisher) and trades older than the last one (a late trade: the
  live state moves forward only) are skipped and counted;
- after the last trade of an event time e seen in the cycle it emits the row of
  T = e + 1 ns (the value at T given the trades seen: every trade with ts_event < T;
  the worker flushes the open row at the end of each cycle);
- the history features are refreshed at T when T enters a new minute of the session
  or ``features_history_step_ms`` of event time has passed since the last refresh,
  not per trade (one refresh costs 100-300 us; the values are defined on the
  session's minute grid, so a refresh at each minute boundary makes them exact);
  between refreshes a row carries the values of the last one. Outside a session
  they are NaN.

The cycle's rows are then written to ``features:{SYMBOL}`` (one columnar block per
symbol, ``engine.rows``) together with the worker's cursor, in one atomic script
call, just after they are published on ZeroMQ (``FeaturePublisher``; the next cycle
starts only once they are stored, see ``_write``). The cursor holds, per
(publisher, topic), the last sequence number handled and the last trade's
(ts_event, trade_id). A worker killed at any point and restarted warms up from the
store (the session's live trades up to the cursor, so the intraday windows and the
session aggregates are full, and the book as of then), asks the publishers' replay
buffers for what follows its cursor, and goes on: no row is lost, none is written
twice. Valkey unreachable: the cycle is retried with backoff; on a stop during an
outage the cycle is dropped (its cursor never moved, the next run recomputes it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
import zmq

from tickvault.config import Settings
from tickvault.engine.parity import day_start_ns, live_trades, previous_aggregates
from tickvault.engine.rows import HISTORY_NUMBERS, FeatureRows
from tickvault.errors import ConfigError, LeaseLost, QueryError, ServerError, TickvaultError
from tickvault.features import FeatureSet, HistoryParams
from tickvault.features.stream import FeatureStream, Row, StreamStats, book_top
from tickvault.records.validate import check_symbol
from tickvault.storage.connection import translated
from tickvault.storage.leases import Fence
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.security import ZapLease, secure_server
from tickvault.transport.subscriber import Gap, Subscriber
from tickvault.transport.wire import Kind, Message, WireError
from tickvault.vault import Vault
from tickvault.venue.b3 import default_hours

log = logging.getLogger(__name__)

_CYCLE_RECORDS = 16_384
"""Most records (trades and book updates) one compute cycle takes."""
FEATURE_TOPIC = "feature"
WIRE_VERSION = 1


def seq_field(publisher: int, topic: str) -> str:
    return f"seq:{publisher:016x}:{topic}"


class FeaturePublisher:
    """The rows on ZeroMQ for the model layer: one PUB socket, topic ``feature.SYMBOL``.

    A message is three frames: the topic (ASCII); a JSON header ``{"v": 1, "schema":
    hash, "seq": n, "rows": n, "columns": [[name, dtype], ...]}`` (``seq`` counts the
    messages of the topic from 1 in this worker's life); and the columns, each ``rows``
    little-endian values of its dtype, one after the other in the header's order (the
    row layout of ``engine.rows``, uncompressed). A message is published just before
    its rows are stored and the next one only after they are, so a subscriber that
    missed messages reads them from ``features:{SYMBOL}``.
    """

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context[Any] | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``settings``: for CURVE (``zmq_curve``); None: a plain socket."""
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 500)
        self._sock.setsockopt(zmq.SNDHWM, 10_000)
        self._lease: ZapLease | None = None
        try:
            if settings is not None:
                self._lease = secure_server(self._sock, settings)
            self._sock.bind(endpoint)
        except ConfigError:
            self._sock.close(linger=0)
            raise
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            if self._lease is not None:
                self._lease.release()
            raise QueryError(
                f"cannot publish feature rows on {endpoint}: {exc} (another worker running? "
                "set zmq_features_port)"
            ) from None
        self.endpoint = endpoint
        self._seq: dict[str, int] = {}

    def publish(
        self, symbol: str, schema: str, columns: Sequence[tuple[str, str]], values: dict[str, Any]
    ) -> None:
        topic = f"{FEATURE_TOPIC}.{symbol}"
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        n = len(values["T"])
        header = orjson.dumps({"v": WIRE_VERSION, "schema": schema, "seq": seq, "rows": n,
                               "columns": [list(c) for c in columns]})  # fmt: skip
        payload = b"".join(
            np.ascontiguousarray(values[name], dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
            for name, dtype in columns
        )
        # a slow model layer must not stall the worker: the rows are stored
        with contextlib.suppress(zmq.Again):
            self._sock.send_multipart([topic.encode("ascii"), header, payload], zmq.NOBLOCK)

    def close(self) -> None:
        self._sock.close()
        if self._lease is not None:
            self._lease.release()


def decode_feature_message(frames: list[bytes]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(symbol, header, columns) of a ``FeaturePublisher`` message."""
    topic, header_raw, payload = frames
    header = orjson.loads(header_raw)
    n, at, cols = int(header["rows"]), 0, {}
    for name, dtype in header["columns"]:
        d = np.dtype(dtype).newbyteorder("<")
        cols[name] = np.frombuffer(payload, dtype=d, count=n, offset=at)
        at += n * d.itemsize
    return topic.decode().partition(".")[2], header, cols


@dataclass
class WorkerStats(StreamStats):
    """The streams' counts (trades, rows, skips...) and the worker's own. ``rows``: rows
    computed (the streams count them); ``rows_by_symbol``: rows stored, per symbol."""

    messages: int = 0
    writes: int = 0
    write_errors: int = 0
    gaps: int = 0
    fenced_writes: int = 0
    """Symbol writes a pool worker's lease fence refused (dropped, not stored)."""
    rows_by_symbol: dict[str, int] = field(default_factory=dict)


class InlineDecisions(Protocol):
    """What the inline model worker returns for a cycle's rows (``live.models.Decided``)."""

    def queue(self, pipe: Any) -> None:
        """Queue its writes on the pipeline that stores the rows."""
        ...

    def stored(self) -> None:
        """Called once the rows and its writes are stored (it publishes its signals)."""
        ...


class _Symbol:
    """One symbol: its stream (the compute) and the sequence numbers handled."""

    def __init__(self, stream: FeatureStream) -> None:
        self.symbol = stream.symbol
        self.stream = stream
        self.seqs: dict[str, int] = {}
        """seq field -> last seq handled (stored with the rows)."""


class FeatureWorker:
    """Subscribe, compute, store and publish feature rows. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        vault: Vault,
        symbols: Iterable[str],
        *,
        endpoints: Sequence[Endpoints] | None = None,
        feature_set: FeatureSet | None = None,
        params: HistoryParams | None = None,
        publish_endpoint: str | None = None,
        publish: bool = True,
        on_rows: Callable[[str, dict[str, Any]], InlineDecisions | None] | None = None,
        context: zmq.Context[Any] | None = None,
        fence: Fence | None = None,
        on_lease_lost: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.vault = vault
        self.fence = fence
        """A pool worker's fence (``live.pool``): each symbol's rows are stored only while
        its lease is this worker's; a refused write is dropped (``stats.fenced_writes``)
        and ``on_lease_lost`` told: the symbol's new owner recomputes from the cursor."""
        self.on_lease_lost = on_lease_lost
        self.on_rows = on_rows
        """Called in the compute thread with each cycle's rows of a symbol (the columns
        of its feature message) after they are published and before they are stored:
        the inline model worker (``ModelWorker.on_columns``, ``features run --models``),
        whose decisions are then stored in one transaction with the rows."""
        self.settings = vault.settings
        self.symbols = sorted({check_symbol(s) for s in symbols})
        if not self.symbols:
            raise QueryError("the feature worker needs at least one symbol (--symbols WINZ25,...)")
        for s in self.symbols:
            default_hours(s)  # a symbol without session hours: a clear error now
        self.fs = feature_set or FeatureSet()
        self.params = params or HistoryParams()
        self.rows = FeatureRows(vault, self.fs, self.params)
        for s in self.symbols:  # rows of another feature set: refused before anything starts
            self.rows.check_schema(s)
        self.step_ns = self.settings.features_history_step_ms * 1_000_000
        self.stats = WorkerStats()
        self.error: BaseException | None = None
        """What stopped the compute thread, if it failed (``run`` raises it)."""
        self.ready = threading.Event()
        """Set once warmed up (the subscriber then starts receiving)."""
        self._syms = {s: _Symbol(self._stream(s)) for s in self.symbols}
        self._cond = threading.Condition()
        self._pending: list[Message] = []
        self._gaps: list[Gap] = []
        self._stopping = False
        self._stop_requested = False
        self._busy = False
        self._cursors: dict[str, dict[str, str]] = {}
        self.publisher: FeaturePublisher | None = None
        if publish:
            ep = (
                publish_endpoint
                or f"tcp://{self.settings.zmq_host}:{self.settings.zmq_features_port}"
            )
            self.publisher = FeaturePublisher(ep, context, self.settings)
        try:
            self.subscriber = Subscriber(
                self.settings,
                handler=self,
                endpoints=endpoints,
                kinds=(Kind.TRADE, Kind.BOOK),
                symbols=self.symbols,
                recover_from_start=True,
                context=context,
            )
        except BaseException:
            if self.publisher is not None:
                self.publisher.close()
            raise
        self._names = self.fs.names
        self._thread: threading.Thread | None = None
        self._compute = threading.Thread(target=self._compute_loop, name="tickvault-features",
                                         daemon=True)  # fmt: skip

    def _stream(self, symbol: str) -> FeatureStream:
        def previous(sym: str, day: Any) -> Any:
            return previous_aggregates(self.vault, sym, day, self.params)

        return FeatureStream(symbol, previous, feature_set=self.fs, params=self.params,
                             step_ns=self.step_ns, stats=self.stats)  # fmt: skip

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        """Warm up, then receive and compute until ``stop()``; then flush and return."""
        for s in self.symbols:
            self.rows.check_schema(s)
        for sym in self._syms.values():
            self._warm_up(sym)
        self.ready.set()
        self._compute.start()
        try:
            if not self._stop_requested:
                self.subscriber.run()
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._compute.join()
        if self.error is not None:
            raise self.error

    def start(self) -> FeatureWorker:
        self._thread = threading.Thread(target=self.run, name="tickvault-feature-worker",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask ``run()`` to return (safe from a signal handler or another thread)."""
        self._stop_requested = True
        self.subscriber.stop()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
        self.subscriber.close()
        if self.publisher is not None:
            self.publisher.close()

    def __enter__(self) -> FeatureWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    # ------------------------------------------------------------------ warm-up
    def _warm_up(self, sym: _Symbol) -> None:
        """Restore the state from the store: the session's live trades up to the cursor
        (all of today's when there is no cursor), fed through the same updates."""
        cursor = self.rows.cursor(sym.symbol)
        self._cursors[sym.symbol] = cursor
        sym.seqs = {k: int(v) for k, v in cursor.items() if k.startswith("seq:")}
        if "ts" in cursor:
            last_ts, last_tid = int(cursor["ts"]), int(cursor["tid"])
        else:
            last_ts, last_tid = time.time_ns(), 2**62
        start = day_start_ns(last_ts, self.vault)
        trades = live_trades(self.vault, sym.symbol, start, last_ts + 1)
        if "ts" in cursor:
            deadline = time.monotonic() + 10.0
            while not self._holds(trades, last_ts, last_tid) and time.monotonic() < deadline:
                time.sleep(0.05)  # the bridge may not have stored the last trades yet
                trades = live_trades(self.vault, sym.symbol, start, last_ts + 1)
            if not self._holds(trades, last_ts, last_tid):
                log.warning("features: %s: the store does not hold the cursor's last trade "
                            "(ts %d, id %d); warming up from what it holds", sym.symbol,
                            last_ts, last_tid)  # fmt: skip
        keep = (trades.ts_event < last_ts) | (
            (trades.ts_event == last_ts) & (trades.trade_id <= last_tid)
        )
        trades = trades.take(np.flatnonzero(keep))
        cols = [trades.ts_event.tolist(), trades.trade_id.tolist(), trades.price.tolist(),
                trades.qty.tolist(), trades.trade_type.tolist(),
                trades.ts_recv.tolist()]  # fmt: skip
        warm = sym.stream.warm
        for ts, tid, price, qty, tt, recv in zip(*cols, strict=True):
            warm(ts, tid, price, qty, tt, recv)
        if len(trades):  # the book as it stood at the last trade, with its offer list
            with translated():
                book, _ = self.vault.books._rebuild(sym.symbol, int(trades.ts_event[-1]))
            sym.stream.set_book(book)
        self.stats.trades = 0  # count live trades only
        if len(trades):
            log.info("features: %s warmed up on %d trades up to ts %d", sym.symbol,
                     len(trades), sym.stream.last_ts)  # fmt: skip

    @staticmethod
    def _holds(trades: Any, ts: int, tid: int) -> bool:
        hit = np.flatnonzero(trades.ts_event == ts)
        return bool(hit.size) and bool((trades.trade_id[hit] == tid).any())

    # ------------------------------------------------------------------ handler (subscriber thread)
    def resume_seq(self, publisher: int, topic: str) -> int | None:
        symbol = topic.partition(".")[2]
        cursor = self._cursors.get(symbol)
        if cursor is None:
            return None
        raw = cursor.get(seq_field(publisher, topic))
        return int(raw) if raw is not None else None

    def on_message(self, msg: Message) -> None:
        if msg.kind not in (Kind.TRADE, Kind.BOOK) or msg.symbol not in self._syms:
            return
        with self._cond:
            self._pending.append(msg)
            self._cond.notify()

    def on_gap(self, gap: Gap) -> None:
        self.stats.gaps += 1
        log.warning("features: messages %d..%d of %s lost (%s): no rows for their trades",
                    gap.seq_first, gap.seq_last, gap.topic, gap.reason)  # fmt: skip
        with self._cond:
            self._gaps.append(gap)
            self._cond.notify()

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        log.warning("features: rejected a message (%s)", error)

    # ------------------------------------------------------------------ compute thread
    def _compute_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._gaps or self._stopping):
                    self._cond.wait()
                if not (self._pending or self._gaps):
                    return
                # a bounded cycle: rows are stored and published in step with the input,
                # and a backlog (a catch-up after a restart) never builds one huge block
                taken, records = 0, 0
                for msg in self._pending:
                    taken += 1
                    records += msg.count
                    if records >= _CYCLE_RECORDS:
                        break
                pending, self._pending = self._pending[:taken], self._pending[taken:]
                gaps, self._gaps = self._gaps, []
                self._busy = True
            try:
                out = self._cycle(pending, gaps)
                self._write(out)
            except TickvaultError as exc:
                log.error("features: cycle failed: %s", exc)
                self.error = exc
                self.stop()
                return
            except BaseException as exc:
                log.exception("features: cycle failed")
                self.error = exc
                self.stop()
                return
            finally:
                with self._cond:
                    self._busy = False

    def _cycle(self, pending: list[Message], gaps: list[Gap]) -> dict[str, dict[str, Any]]:
        """Compute the rows of the pending messages; per symbol the columns and cursor."""
        rows: dict[str, list[Row]] = {}
        touched: set[str] = set()
        for gap in gaps:  # a lost range: move past it (its trades get no row)
            sym = self._syms.get(gap.symbol)
            if sym is not None:
                f = seq_field(gap.publisher_id, gap.topic)
                sym.seqs[f] = max(sym.seqs.get(f, 0), gap.seq_last)
                touched.add(sym.symbol)
        for msg in pending:
            sym = self._syms[msg.symbol]
            touched.add(sym.symbol)
            self.stats.messages += 1
            f = seq_field(msg.publisher, msg.topic)
            if msg.seq <= sym.seqs.get(f, 0):
                continue  # handled before a restart
            sym.seqs[f] = msg.seq
            records = msg.records()
            if msg.kind is Kind.BOOK:
                sym.stream.book_records(records)
                continue
            sym.stream.trade_columns(records, rows.setdefault(sym.symbol, []))
        result: dict[str, dict[str, Any]] = {}
        for symbol in touched:
            sym = self._syms[symbol]
            out = rows.get(symbol, [])
            sym.stream.flush(out)  # more of its nanosecond may come: a later row supersedes
            result[symbol] = {"rows": out, "cursor": self._cursor(sym)}
        return result

    def _cursor(self, sym: _Symbol) -> dict[str, Any]:
        c: dict[str, Any] = dict(sym.seqs)
        if sym.stream.last_tid >= 0:
            c["ts"], c["tid"] = sym.stream.last_ts, sym.stream.last_tid
        return c

    # ------------------------------------------------------------------ writes
    def _columns(self, rows: list[Row], computed: int) -> dict[str, Any]:
        n = len(rows)
        values: dict[str, Any] = {
            "T": np.fromiter((r[0] for r in rows), np.int64, n),
            "computed_ns": np.full(n, computed, np.int64),
            "last_trade_id": np.fromiter((r[1] for r in rows), np.int64, n),
            "ts_recv": np.fromiter((r[2] for r in rows), np.int64, n),
        }
        intraday = np.array([r[3] for r in rows], dtype=np.float64).reshape(n, len(self._names))
        for i, name in enumerate(self._names):
            values[name] = intraday[:, i]
        hist = np.array([r[4] for r in rows], dtype=np.float64).reshape(n, len(HISTORY_NUMBERS))
        for i, name in enumerate(HISTORY_NUMBERS):
            values[name] = hist[:, i]
        values["volatility_regime"] = np.fromiter((r[5] for r in rows), np.int8, n)
        return values

    def _write(self, out: dict[str, dict[str, Any]]) -> None:
        """Publish the cycle's rows, then store them with the cursor. Publishing first
        takes the store's round trip off the path to the model worker; the next cycle
        starts only once these rows are stored, so a subscriber that sees a sequence
        gap (or a worker restart) finds every row before the message it holds in
        ``features:{SYMBOL}``. A row published but not stored (a kill in between) is
        recomputed from the cursor by the next run, the same row (same T, trades and
        values), and stored then."""
        computed = time.time_ns()
        blocks = {s: self._columns(o["rows"], computed) for s, o in out.items()}
        if self.publisher is not None:
            for symbol, o in out.items():
                if o["rows"]:
                    self.publisher.publish(symbol, self.rows.schema.hash,
                                           self.rows.schema.columns, blocks[symbol])  # fmt: skip
        decided: dict[str, InlineDecisions | None] = {}
        if self.on_rows is not None:
            for symbol, o in out.items():
                if o["rows"]:
                    decided[symbol] = self.on_rows(symbol, blocks[symbol])
        delay = 0.05
        for symbol, o in out.items():
            pending = decided.get(symbol)
            refused = False
            while True:
                try:
                    if self.fence is not None:
                        self._append_fenced(symbol, blocks[symbol], o["cursor"], pending,
                                            self.fence)  # fmt: skip
                    elif pending is None:
                        self.rows.append(symbol, blocks[symbol], o["cursor"])
                    else:
                        self._append_with(symbol, blocks[symbol], o["cursor"], pending)
                    break
                except LeaseLost as exc:
                    refused = True
                    self.stats.fenced_writes += 1
                    log.warning("features: %s", exc)
                    if self.on_lease_lost is not None:
                        self.on_lease_lost([symbol])
                    break
                except ServerError as exc:
                    self.stats.write_errors += 1
                    if self._stop_requested or self._stopping:
                        log.error(
                            "features: stopping while Valkey is unreachable (%s); the "
                            "rows of this cycle are recomputed by the next run",
                            exc,
                        )
                        return
                    log.warning("features: cannot write rows (%s); retrying", exc)
                    time.sleep(delay)
                    delay = min(delay * 2, self.settings.store_retry_max_s)
            if refused:
                continue  # not stored: not counted, no signals
            if pending is not None:
                pending.stored()
            n = len(o["rows"])  # ``stats.rows`` is the streams' count of the same rows
            self.stats.writes += 1
            self.stats.rows_by_symbol[symbol] = self.stats.rows_by_symbol.get(symbol, 0) + n

    def _append_fenced(self, symbol: str, block: dict[str, Any], cursor: dict[str, Any],
                       pending: InlineDecisions | None, fence: Fence) -> None:  # fmt: skip
        """The rows (and the inline decisions) in one transaction that lands only while
        this pool worker holds ``symbol``'s lease (``storage.leases``); else LeaseLost."""

        def queue(pipe: Any) -> Callable[[list[Any]], None]:
            check = self.rows.append_queued(pipe, symbol, block, cursor)
            if pending is not None:
                pending.queue(pipe)

            def after(replies: list[Any]) -> None:
                check(replies[0])

            return after

        self.vault.fenced(fence, [symbol], queue)

    def _append_with(self, symbol: str, block: dict[str, Any], cursor: dict[str, Any],
                     pending: InlineDecisions) -> None:  # fmt: skip
        """The rows and the inline model worker's decisions on them in one transaction
        (MULTI/EXEC, one round trip; the keys share the symbol's hash tag)."""
        with translated():
            pipe = self.vault.client.pipeline(transaction=True)
            check = self.rows.append_queued(pipe, symbol, block, cursor)
            pending.queue(pipe)
            replies = pipe.execute()
            check(replies[0])


__all__ = [
    "FeaturePublisher",
    "FeatureWorker",
    "InlineDecisions",
    "WorkerStats",
    "book_top",
    "decode_feature_message",
]
