"""``ModelWorker``: the live model worker (``tickvault ml run``), a process of its own.

One thread. It subscribes to ``feature.SYMBOL`` on ``zmq_features_port`` (the feature
worker's ``FeaturePublisher``: a header with ``seq`` and the columns), and per symbol:

- **rows in order, none lost**: a row is new when its (T, last_trade_id) is after the
  worker's position (rows of one symbol come in strictly increasing (T, trade id)). At
  start, on the first message of a topic, on a seq gap (a lost message, or a restarted
  feature worker whose seq starts again at 1) and after a second without messages, the
  rows after the position are read from ``features:{SYMBOL}`` (the feature worker
  publishes a message just before storing its rows and the next one only after, so the
  store holds every row of a missed message; the rows of the message in hand may not
  be stored yet and are decided from the message);
- **decides** each new row with the symbol's ``signals.coordinator.Decider`` (the
  promoted models, ``models.manager.ModelSet``; the settings ``signal_deadline_ms``,
  ``predict_every_ms`` and ``signal_*`` of the policy); what was received together is
  pending together, so a late row with a newer one behind it is skipped;
- **stores** the signals in ``signals:{SYMBOL}`` and the cursor in the hash
  ``signals:{SYMBOL}:cursor`` in one atomic script call, then **publishes** the signals
  with the project's ``Publisher`` on ``zmq_signals_port`` (topic ``signal.SYMBOL``;
  sequence numbers, replay service on ``zmq_signals_replay_port``, journal).

The cursor hash (docs/ml.md, "Running models live") is also the worker's status for
others (the dashboard, the broker): ``T`` (last row decided; the broker's watermark),
``tid``, ``side``, ``changed``, ``rows``, ``grid``, the counters ``predictions``,
``signals``, ``fast``, ``history``, ``misses``, ``skipped``, ``off_grid``,
``no_model``, the running ``p99_fast_ns`` / ``p99_history_ns``, ``models`` (JSON:
promotion key -> version) and ``updated_ns``. A worker killed at any point and
restarted restores the decider from it and goes on: no signal lost or doubled.

**Inline** (``inline=True``, ``tickvault features run --models``): no socket for the
rows and no loop; the feature worker of the same process calls ``on_columns`` with each
cycle's rows before storing them and stores the returned ``Decided`` (signals and
cursor) in the same MULTI/EXEC as the rows, then calls ``Decided.stored()``, which
publishes the signals. ``start_inline`` catches up from the store first.

Every minute it logs per symbol: rows, predictions (fast / history), signals, deadline
misses, skipped rows and the predict p99.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tickvault.config import Settings
from tickvault.engine.features import FeatureEngine
from tickvault.engine.parity import day_start_ns
from tickvault.engine.rows import META_COLUMNS, REGIME_LABELS, FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.engine.training import load_promoted
from tickvault.errors import LeaseLost, QueryError, ServerError, TickvaultError
from tickvault.live.features import FEATURE_TOPIC, decode_feature_message
from tickvault.models.manager import ModelSet, RowBlock, RowLayout, encode_regime
from tickvault.models.registry import Registry
from tickvault.records.signals import Mode, Signal
from tickvault.records.validate import check_symbol
from tickvault.signals.coordinator import CoordinatorParams, Decider
from tickvault.signals.policy import PolicyParams
from tickvault.storage.leases import Fence
from tickvault.transport.endpoints import Endpoints, inproc_address
from tickvault.transport.publisher import Publisher
from tickvault.transport.security import secure_client

log = logging.getLogger(__name__)

TRACE_ENV = "TV_BENCH_MODELS_TRACE"
"""A benchmark hook (``bench signals``): a file path. The worker then appends, per signal,
one line of six integers: T, the row's computed_ns, when its message was received, when
it was decided, when its flush was stored, when it was handed to the publisher (wall ns)."""
IDLE_CHECK_S = 1.0
"""Without a message for this long, the store is read for rows the worker missed."""
LOG_EVERY_S = 60.0
_STATS = ("predictions", "signals", "fast", "history", "misses", "skipped", "off_grid",
          "no_model")  # fmt: skip

Row = tuple[Mapping[str, Any], int, int, int]
"""(values, T, last_trade_id, ts_recv)."""
_META = frozenset(name for name, _ in META_COLUMNS)
_REGIME_LUT = np.array([encode_regime(REGIME_LABELS.get(c)) for c in range(-1, 3)])
"""Stored ``volatility_regime`` codes -1..2 (``features.stream.REGIME_CODES``) as the
models' encoding (``models.manager.REGIME_CODES``, NaN: none)."""


def signal_endpoints(settings: Settings, host: str | None = None) -> Endpoints:
    """The model worker's publisher endpoints: signals on ``zmq_signals_port``, replay on
    ``zmq_signals_replay_port``; the sockets it does not use are private inproc ones (so
    it never binds the feeder's ports). Subscribers to ``signal.SYMBOL`` use it too."""
    h = host or settings.zmq_host
    unused = f"inproc://tickvault-models-{os.getpid()}-{id(settings)}-{time.monotonic_ns()}"
    return Endpoints(ticks=f"{unused}-ticks", book=f"{unused}-book",
                     history=f"{unused}-history",
                     signals=f"tcp://{h}:{settings.zmq_signals_port}",
                     replay=f"tcp://{h}:{settings.zmq_signals_replay_port}")  # fmt: skip


def coordinator_params(settings: Settings) -> CoordinatorParams:
    return CoordinatorParams(deadline_ns=int(settings.signal_deadline_ms * 1_000_000),
                             predict_every_ns=settings.predict_every_ms * 1_000_000)  # fmt: skip


def policy_params(settings: Settings) -> PolicyParams:
    return PolicyParams(enter=settings.signal_enter, exit=settings.signal_exit,
                        min_confidence=settings.signal_min_confidence,
                        cooldown_ns=int(settings.signal_cooldown_s * 1e9))  # fmt: skip


def frame_rows(frame: Any) -> list[Row]:
    """Rows of a ``FeatureRows.range`` frame (index T, regime as labels)."""
    if frame.empty:
        return []
    recs = frame.reset_index().to_dict("records")
    return [(r, int(r["T"]), int(r["last_trade_id"]), int(r["ts_recv"])) for r in recs]


_LAYOUTS: dict[tuple[str, ...], RowLayout] = {}


def message_layout(names: Iterable[str]) -> RowLayout:
    """The ``RowLayout`` of a message's feature columns (every column but the meta ones),
    one per schema's column names."""
    key = tuple(names)
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = _LAYOUTS[key] = RowLayout([n for n in key if n not in _META])
    return lay


def regime_column(codes: np.ndarray) -> np.ndarray:
    """Stored ``volatility_regime`` codes as the models' encoding (NaN: none or unknown)."""
    c = np.asarray(codes, dtype=np.int64)
    ok = (c >= -1) & (c <= 2)
    return np.where(ok, _REGIME_LUT[np.where(ok, c + 1, 0)], np.nan)


def message_rows(cols: Mapping[str, np.ndarray]) -> list[Row]:
    """Rows of a ``FeaturePublisher`` message's columns: views of one ``RowBlock`` (no dict
    per row; the block's matrix is built only when a row of it is predicted on)."""
    lay = message_layout(cols)
    block = RowBlock(lay, [regime_column(cols[n]) if j == lay.regime else cols[n]
                           for j, n in enumerate(lay.names)])  # fmt: skip
    ts, tids, recvs = cols["T"].tolist(), cols["last_trade_id"].tolist(), cols["ts_recv"].tolist()
    return [(block.row(i), t, tid, recv) for i, (t, tid, recv) in
            enumerate(zip(ts, tids, recvs, strict=True))]  # fmt: skip


@dataclass
class _Symbol:
    symbol: str
    decider: Decider
    models: ModelSet
    position: tuple[int, int] | None = None
    """(T, last_trade_id) of the last row decided and stored (set once its flush is)."""
    seq: int | None = None
    """Last feature message seq handled (None: none since start)."""


@dataclass
class Decided:
    """The decisions on one flush of rows, to store (signals and the cursor) and then
    publish (``stored``)."""

    worker: ModelWorker
    sym: _Symbol
    signals: list[Signal]
    position: tuple[int, int]
    cursor: dict[str, Any]
    decided: list[tuple[int, int]]
    """Trace (``TRACE_ENV``): (T, decided at) per signal."""

    def queue(self, pipe: Any) -> None:
        """Queue the store of the signals and cursor on a valkey-py pipeline."""
        self.worker.store.append_decided_queued(pipe, self.sym.symbol, self.signals,
                                                self.cursor)  # fmt: skip

    def stored(self) -> None:
        self.worker._stored(self)


class ModelWorker:
    """Receive feature rows, decide, store and publish signals (module docstring).
    ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        vault: Any,
        symbols: Iterable[str],
        *,
        models: Mapping[str, ModelSet] | None = None,
        features_endpoint: str | None = None,
        endpoints: Endpoints | None = None,
        params: CoordinatorParams | None = None,
        policy: PolicyParams | None = None,
        publish: bool = True,
        inline: bool = False,
        context: zmq.Context[Any] | None = None,
        fence: Fence | None = None,
        on_lease_lost: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.vault = vault
        self.fence = fence
        """A pool worker's fence (``live.pool``): a symbol's signals and cursor are stored
        only while its lease is this worker's; once refused, the symbol is left to its new
        owner (which decides from the stored cursor) and ``on_lease_lost`` is told."""
        self.on_lease_lost = on_lease_lost
        self._lost: set[str] = set()
        self.settings: Settings = vault.settings
        self.inline = inline
        """Inline: no socket of its own for the rows; the feature worker of the same
        process hands each cycle's rows to ``on_columns`` (``tickvault features run
        --models``; module docstring, "Inline")."""
        self.symbols = sorted({check_symbol(s) for s in symbols})
        if not self.symbols:
            raise QueryError("the model worker needs at least one symbol (--symbols WINZ25,...)")
        self.params = params or coordinator_params(self.settings)
        self.policy = policy or policy_params(self.settings)
        self.rows = FeatureRows(vault)
        self.store = SignalStore(vault)
        if models is None:
            registry = Registry.of_data_dir(self.settings.data_dir)
            engine = FeatureEngine(vault)
            models = {s: load_promoted(registry, s, engine) for s in self.symbols}
        self._syms: dict[str, _Symbol] = {}
        for s in self.symbols:
            ms = models.get(s)
            if ms is None or not len(ms):
                raise QueryError(f"no models for {s}: promote one (tickvault ml promote VERSION)")
            self._syms[s] = self._restore(s, ms)
            self._announce(s, ms)
        self.error: BaseException | None = None
        self.ready = threading.Event()
        """Set once caught up from the store and listening."""
        self._stop = threading.Event()
        self._ctx = context or zmq.Context.instance()
        ep = features_endpoint or (
            f"tcp://{self.settings.zmq_host}:{self.settings.zmq_features_port}"
        )
        self.features_endpoint = ep
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 100_000)
        if not inline:
            try:
                secure_client(self._sub, self.settings)  # CURVE (zmq_curve) before the connect
            except BaseException:
                self._sub.close(linger=0)
                raise
            self._sub.connect(ep)
            for s in self.symbols:
                self._sub.setsockopt(zmq.SUBSCRIBE, f"{FEATURE_TOPIC}.{s}".encode("ascii"))
        self._wake_addr = inproc_address("models-wake")
        self._wake = self._ctx.socket(zmq.PAIR)
        self._wake.bind(self._wake_addr)
        self._wake_out = self._ctx.socket(zmq.PAIR)
        self._wake_out.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self._received = 0
        self.publisher: Publisher | None = None
        if publish:
            try:
                self.publisher = Publisher(
                    self.settings, endpoints=endpoints or signal_endpoints(self.settings),
                    context=self._ctx,
                )  # fmt: skip
            except BaseException:
                self._close_sockets()
                raise
        self._thread: threading.Thread | None = None
        self._last_log = time.monotonic()
        self.invalid = 0
        """Feature messages refused (another schema, undecodable)."""
        self._trace_path = os.environ.get(TRACE_ENV) or None
        self._trace_file = Path(self._trace_path).open("a") if self._trace_path else None  # noqa: SIM115
        self._computed: dict[int, int] = {}

    # ------------------------------------------------------------------ set-up
    def _restore(self, symbol: str, models: ModelSet) -> _Symbol:
        d = Decider(symbol, models, self.params, self.policy)
        cursor = self.store.cursor(symbol)
        sym = _Symbol(symbol, d, models)
        if cursor.get("T"):
            d.restore(cursor)
            for name in _STATS:
                setattr(d.stats, name, int(cursor.get(name) or 0))
            sym.position = (int(cursor["T"]), int(cursor.get("tid") or -1))
            log.info("models: %s resumes after T %s (%s rows decided, side %s)", symbol,
                     cursor["T"], cursor.get("rows"), cursor.get("side"))  # fmt: skip
        return sym

    @staticmethod
    def _announce(symbol: str, models: ModelSet) -> None:
        log.info("models: %s uses %s", symbol,
                 ", ".join(f"{k} {v}" for k, v in models.versions().items()))  # fmt: skip
        if not models.has(Mode.FAST):
            log.warning(
                "models: %s has no fast model promoted: HISTORY when the history features are "
                "ready (even past the deadline), else no prediction; train one with "
                "tickvault ml train %s --features fast and promote it", symbol, symbol,
            )  # fmt: skip
        if not models.has(Mode.HISTORY):
            log.warning("models: %s has no full model promoted: every prediction is FAST",
                        symbol)  # fmt: skip

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ModelWorker:
        self._thread = threading.Thread(target=self.run, name="tickvault-model-worker",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make ``run()`` return (from any thread or a signal handler)."""
        self._stop.set()
        with self._wake_lock:
            if not self._wake_out.closed:
                with contextlib.suppress(zmq.ZMQError):
                    self._wake_out.send(b"stop", zmq.NOBLOCK)

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._sub.close(linger=0)
        with self._wake_lock:
            self._wake_out.close(linger=0)
        self._wake.close(linger=0)

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self, symbol: str) -> dict[str, int]:
        return self._syms[check_symbol(symbol)].decider.stats.as_dict()

    def position(self, symbol: str) -> tuple[int, int] | None:
        return self._syms[check_symbol(symbol)].position

    # ------------------------------------------------------------------ inline
    def start_inline(self) -> ModelWorker:
        """Inline mode: catch up from the store (the rows stored while no worker ran);
        then the feature worker calls ``on_columns`` with each cycle's rows."""
        if not self.inline:
            raise QueryError("start_inline() is for a model worker made with inline=True")
        for sym in self._syms.values():
            self._catch_up(sym)
        self.ready.set()
        return self

    def on_columns(self, symbol: str, cols: Mapping[str, np.ndarray]) -> Decided | None:
        """Inline mode: decide on a feature-worker cycle's rows of ``symbol`` (the columns
        of a feature message). The feature worker queues the result (``Decided.queue``)
        in the same transaction as the rows, so rows and the decisions on them are
        stored together or not at all; then ``Decided.stored()`` publishes the signals."""
        sym = self._syms.get(symbol)
        if sym is None or not len(cols["T"]):
            return None
        if self._trace_path is not None:
            self._received = time.time_ns()
            self._trace_rows(cols)
        self._maybe_log()
        return self._decide(sym, message_rows(cols))

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Catch up from the store, then decide on what arrives until ``stop()``."""
        if self.inline:
            raise QueryError(
                "an inline model worker has no loop: the feature worker calls "
                "on_columns (start_inline)"
            )
        try:
            for sym in self._syms.values():
                self._catch_up(sym)
            self.ready.set()
            poller = zmq.Poller()
            poller.register(self._sub, zmq.POLLIN)
            poller.register(self._wake, zmq.POLLIN)
            while not self._stop.is_set():
                events = dict(poller.poll(int(IDLE_CHECK_S * 1000)))
                if self._stop.is_set():
                    break
                if self._sub in events:
                    self._handle(self._drain())
                else:
                    for sym in self._syms.values():
                        self._catch_up(sym)
                self._maybe_log()
        except TickvaultError as exc:
            log.error("models: stopped: %s", exc)
            self.error = exc
        except BaseException as exc:
            log.exception("models: stopped")
            self.error = exc
        finally:
            self.ready.set()
            if self._trace_file is not None:
                self._trace_file.close()
        if self.error is not None:
            raise self.error

    def _drain(self) -> list[list[bytes]]:
        """Every message waiting now (what arrived together is pending together)."""
        out = [self._sub.recv_multipart()]
        while len(out) < 10_000:
            try:
                out.append(self._sub.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return out

    def _trace_rows(self, cols: Mapping[str, np.ndarray]) -> None:
        """The trace hook (``TRACE_ENV``): the computed_ns of rows about to be decided."""
        if len(self._computed) > 100_000:  # rows that gave no signal: never popped
            self._computed.clear()
        self._computed.update(zip(cols["T"].tolist(), cols["computed_ns"].tolist(),
                                  strict=True))  # fmt: skip

    def _handle(self, messages: list[list[bytes]]) -> None:
        if self._trace_path is not None:
            self._received = time.time_ns()
        todo: dict[str, list[Row]] = {}
        for frames in messages:
            try:
                symbol, header, cols = decode_feature_message(frames)
            except (ValueError, KeyError, TypeError) as exc:
                self.invalid += 1
                log.warning("models: rejected a feature message (%s)", exc)
                continue
            sym = self._syms.get(symbol)
            if sym is None:
                continue
            if header.get("schema") != self.rows.schema.hash:
                self.invalid += 1
                log.error("models: %s: feature rows of schema %s, this worker reads %s: run "
                          "the feature worker and the model worker of one version", symbol,
                          header.get("schema"), self.rows.schema.hash)  # fmt: skip
                continue
            seq = int(header["seq"])
            if sym.seq is None or seq != sym.seq + 1:
                if sym.seq is not None:
                    log.info("models: %s: feature message %d after %d: reading the rows "
                             "between from the store", symbol, seq, sym.seq)  # fmt: skip
                self._flush(sym, todo.pop(symbol, []))
                self._catch_up(sym)
            sym.seq = seq
            todo.setdefault(symbol, []).extend(message_rows(cols))
            if self._trace_path is not None:
                self._trace_rows(cols)
        for symbol, rows in todo.items():
            self._flush(self._syms[symbol], rows)

    def _catch_up(self, sym: _Symbol) -> None:
        """Decide on the stored rows after the position (module docstring)."""
        if sym.position is None:
            last = self.rows.last(sym.symbol)
            if last is None:
                return
            last_t: int = last.name  # type: ignore[assignment]
            start = day_start_ns(last_t, self.vault)  # the day in progress
        else:
            start = sym.position[0]
        self._flush(sym, frame_rows(self.rows.range(sym.symbol, start, versions=True)))

    def _flush(self, sym: _Symbol, rows: Sequence[Row]) -> None:
        """Decide on the new ``rows``, store the signals with the cursor, publish them."""
        if sym.symbol in self._lost:
            return  # its lease is another worker's now: it decides from the stored cursor
        pending = self._decide(sym, rows)
        if pending is None:
            return
        delay = 0.05
        while True:
            try:
                if self.fence is None:
                    self.store.append_decided(sym.symbol, pending.signals, pending.cursor)
                else:
                    self.vault.fenced(self.fence, [sym.symbol], pending.queue)
                break
            except LeaseLost as exc:
                log.warning("models: %s", exc)
                self._lost.add(sym.symbol)
                if self.on_lease_lost is not None:
                    self.on_lease_lost([sym.symbol])
                return
            except ServerError as exc:
                if self._stop.is_set():
                    raise
                log.warning("models: cannot store %s's signals (%s); retrying", sym.symbol, exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.store_retry_max_s)
        pending.stored()

    def _decide(self, sym: _Symbol, rows: Sequence[Row]) -> Decided | None:
        """Decide on the rows after the position (None: none is new); what to store."""
        pos = sym.position
        new = [r for r in rows if pos is None or (r[1], r[2]) > pos]
        if not new:
            return None
        decider = sym.decider
        signals: list[Signal] = []
        trace = self._trace_path is not None
        decided: list[tuple[int, int]] = []
        last = len(new) - 1
        for i, (values, t, _tid, recv) in enumerate(new):
            d = decider.on_row(values, t, recv, time.time_ns(), newer_pending=i < last)
            if d.signal is not None:
                signals.append(d.signal)
                if trace:
                    decided.append((new[i][1], time.time_ns()))
        position = (new[-1][1], new[-1][2])
        return Decided(self, sym, signals, position, self._cursor(sym, position), decided)

    def _stored(self, p: Decided) -> None:
        """After ``p`` is stored: move the position, publish the signals (and trace)."""
        p.sym.position = p.position
        stored = time.time_ns()
        if self.publisher is not None and p.signals:
            self.publisher.publish_signals(p.sym.symbol, p.signals)
        if self._trace_file is not None and p.decided:
            handed = time.time_ns()
            for t, at in p.decided:
                computed = self._computed.pop(t, 0)
                self._trace_file.write(f"{t} {computed} {self._received} {at} {stored} "
                                       f"{handed}\n")  # fmt: skip
            self._trace_file.flush()

    def _cursor(self, sym: _Symbol, position: tuple[int, int]) -> dict[str, Any]:
        d = sym.decider
        out: dict[str, Any] = dict(d.state())
        out["tid"] = position[1]
        out.update({k: v for k, v in d.stats.as_dict().items() if k in _STATS})
        out["p99_fast_ns"] = d.p99_ns(Mode.FAST)
        out["p99_history_ns"] = d.p99_ns(Mode.HISTORY)
        out["models"] = json.dumps(sym.models.versions())
        out["updated_ns"] = time.time_ns()
        return out

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY_S:
            return
        self._last_log = now
        for sym in self._syms.values():
            log.info("models: %s", status_line(sym.symbol, self._cursor_or_stats(sym)))

    def _cursor_or_stats(self, sym: _Symbol) -> dict[str, Any]:
        d = sym.decider
        return {**d.stats.as_dict(), "p99_fast_ns": d.p99_ns(Mode.FAST),
                "p99_history_ns": d.p99_ns(Mode.HISTORY)}  # fmt: skip


def status_line(symbol: str, status: Mapping[str, Any]) -> str:
    """One line of counts (from a cursor hash or the live stats)."""

    def n(key: str) -> int:
        return int(status.get(key) or 0)

    return (
        f"{symbol}: {n('rows'):,} rows, {n('predictions'):,} predictions ({n('fast'):,} fast, "
        f"{n('history'):,} history), {n('signals'):,} signals, {n('misses'):,} deadline "
        f"misses, {n('skipped'):,} skipped, predict p99 fast {n('p99_fast_ns') / 1e3:.0f} us "
        f"history {n('p99_history_ns') / 1e3:.0f} us"
    )


__all__ = ["ModelWorker", "coordinator_params", "policy_params", "signal_endpoints",
           "status_line"]  # fmt: skip
