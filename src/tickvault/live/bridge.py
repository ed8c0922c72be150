"""``Bridge``: ZeroMQ in, Valkey out; nothing lost, nothing stored twice.

Two threads. The subscriber thread (``Subscriber.run``) receives, puts messages
in sequence order, repairs gaps from the publisher's replay buffer, checks the
records and appends them to the pending batch of their (symbol, stream), where
the stream is realtime or historical trades, or the offer book. The writer
thread takes everything pending whenever it is free and stores it, one script
call per (symbol, stream), trades before book updates: a lone trade is written
at once, and what arrives while a write is in flight is packed into the next
one. A feeder's report of trades it missed for good (a GAP message) becomes a
gap marker.

Each write also moves the bridge's cursor (last sequence number stored per
publisher and topic) in the same atomic script call, so a bridge killed at any
point and restarted asks the replay buffer for exactly what it had not stored.
A message that breaks the wire format or carries bad values is rejected,
counted by reason and kept raw in the ``quarantine`` stream; its sequence
number stays missing and is asked for again, and a range that could not be
recovered becomes a gap marker (``Vault.gaps``).

Valkey unreachable (restarting, killed, network) or refusing writes (out of memory
under ``noeviction``, MISCONF when it cannot persist): the writer keeps the batch and
retries with exponential backoff up to ``store_retry_max_s``, logging once when
the outage starts and once when it ends; the subscriber thread keeps receiving
and holding, up to ``bridge_max_held_mb``, past which it stops reading (ZeroMQ
then drops, and the replay buffer or journal supplies the rest later). Stopped
during an outage, the bridge gives up within about ``store_retry_max_s`` and
says what it did not store; the cursors were not moved past it, so the next run
asks the publisher (replay buffer or journal) for it again. A server that comes
back without writes it had acknowledged (a restart shows as a new run id; a
stored cursor then lags what this bridge stored) makes every topic restart from
the stored cursors, so no hole is written over (``outage``).

What is held between writes is in ``batching`` (pure), the counters in ``stats``; after
a write, at most twice a second, the bridge reports them as the hash
``status:bridge:<host>:<pid>`` (trades/s, publish-to-stored lag p50/p99 since the last
report, gaps, rejections, bytes held), which the dashboard shows.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import zmq

from tickvault.errors import (
    LeaseLost,
    ServerError,
    ServerUnreachable,
    TickvaultError,
    ValidationError,
)
from tickvault.live.batching import Batches, Cycle
from tickvault.live.outage import OutageHandling
from tickvault.live.stats import BridgeStats, LagTrace, percentiles
from tickvault.logutil import RateLimitedLog
from tickvault.records.events import Gap, feeder_gaps
from tickvault.records.trades import TradeBatch
from tickvault.records.validate import check_symbol, validate, validate_book, validate_gaps
from tickvault.storage.keys import StoreKind
from tickvault.storage.leases import Fence
from tickvault.storage.writes import StoreItem
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError, parse_topic
from tickvault.vault import Vault

log = logging.getLogger(__name__)

_STREAM_OF: dict[Kind, StoreKind] = {
    Kind.TRADE: "realtime",
    Kind.HISTORY: "historical",
    Kind.BOOK: "book",
}


SWITCH_INTERVAL_S = 0.0005
_STATUS_EVERY_S = 0.5
"""The bridge reports its status (``status:bridge:...``) after a write at most this often."""
_STATUS_TTL_S = 3600.0
_BRIDGES = itertools.count()


def tune_for_latency() -> None:
    """For a process whose job is bridging: let the receiving thread take the GIL from the
    writer within 0.5 ms instead of Python's default 5 ms. Measured with
    ``bench live`` at 50k trades/s: lag p99 fell from 10.6-13.7 ms to 6.4-7.5 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _gc_recorder(trace: LagTrace) -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` hook adding every collection to ``trace.gc_pauses``."""
    started: dict[int, int] = {}

    def hook(phase: str, info: dict[str, int]) -> None:
        now = time.time_ns()
        generation = info["generation"]
        if phase == "start":
            started[generation] = now
        elif generation in started:
            t0 = started.pop(generation)
            trace.gc_pauses.append((t0, now - t0, generation))

    return hook


def cursor_name(publisher: int, topic: str) -> str:
    return f"{publisher:016x}:{topic}"


class Bridge(OutageHandling):
    """Subscribe to publishers and store trades. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        vault: Vault,
        *,
        symbols: Iterable[str] | None = None,
        endpoints: Sequence[Endpoints] | None = None,
        context: zmq.Context[Any] | None = None,
        report_status: bool = True,
        fence: Fence | None = None,
        on_lease_lost: Callable[[list[str]], None] | None = None,
        status_name: str | None = None,
        trace: LagTrace | None = None,
    ):
        """``report_status``: write ``status:bridge:<host>:<pid>`` twice a second (the
        dashboard and metrics read it); a benchmark on a user's server turns it off.
        ``fence`` (a pool bridge, ``live.pool``): every write is fenced by the worker's
        leases of its symbols; the data of a symbol whose lease was lost is dropped
        (``stats.fenced_writes``; its new owner resumes from the stored cursor) and
        ``on_lease_lost`` told. ``status_name``: the status hash's name instead of
        ``bridge:<host>:<pid>`` (a pool worker keeps one across its instances).
        ``trace``: record where the lag of every live trade message goes, and the
        process's garbage collections (``live.stats.LagTrace``; ``bench live --stages``)."""
        self.vault = vault
        self.fence = fence
        self.on_lease_lost = on_lease_lost
        self._lost: set[str] = set()
        """Symbols whose lease this bridge lost: never written again by it."""
        self.settings = vault.settings
        self.symbols = sorted({check_symbol(s) for s in symbols}) if symbols else None
        self.stats = BridgeStats()
        self.trace = trace
        self._gc_hook: Callable[[str, dict[str, int]], None] | None = None
        if trace is not None:
            self._gc_hook = _gc_recorder(trace)
            gc.callbacks.append(self._gc_hook)
        self.subscriber = Subscriber(
            self.settings,
            handler=self,
            endpoints=endpoints,
            kinds=(Kind.TRADE, Kind.HISTORY, Kind.BOOK, Kind.GAP),
            symbols=self.symbols,
            recover_from_start=True,
            context=context,
        )
        self._cond = threading.Condition()
        self._batches = Batches(int(self.settings.bridge_max_held_mb * 2**20))
        self._stopping = False
        self._stop_requested = False
        self._busy = False
        self._outage = False
        self._abandoned = False
        self._resume_failed_at = 0.0
        self._resyncing = False
        self._run_id = ""
        self._run_id_checked = 0.0
        self._store_state = "ok"
        self._store_error = ""
        self._paused = False
        self._stored: dict[tuple[str, str], int] = {}
        """(symbol, cursor name) -> the last seq this bridge stored (as acknowledged)."""
        self._writer = threading.Thread(target=self._write_loop, name="tickvault-bridge-write",
                                        daemon=True)  # fmt: skip
        self._thread: threading.Thread | None = None
        self._rate_log = RateLimitedLog(log)
        n = next(_BRIDGES)
        self._status_name = status_name or (
            f"bridge:{socket.gethostname()}:{os.getpid()}" + (f":{n}" if n else "")
        )
        self._report_status_on = report_status
        self._status_at = 0.0
        self._lag_samples = 0
        self._status_last: tuple[float, int, int] = (time.monotonic(), 0, 0)
        """(monotonic, trades stored, lag samples taken) at the last status report."""

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        """Receive and store until ``stop()``; then store what is held and return."""
        self._adopt_journals()
        self._writer.start()
        try:
            self.subscriber.run()
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._writer.join()

    def _adopt_journals(self) -> None:
        """Cursors of publisher sessions whose journal is on this host and holds more than
        was stored (the bridge stopped before storing a publisher's tail, and the
        publisher has exited since): take the rest from the journal."""
        directory = self.settings.journal_path
        try:
            sessions = {int(p.name, 16) for p in directory.iterdir()
                        if p.is_dir() and len(p.name) == 16}  # fmt: skip
        except (OSError, ValueError):
            return
        if not sessions:
            return
        try:
            cursors = self.vault.bridge_cursors()
        except ServerError as exc:
            log.warning("bridge: cannot read the cursors (%s); journals not checked", exc)
            return
        for name, seq in cursors.items():
            pub_hex, _, topic = name.partition(":")
            try:
                publisher = int(pub_hex, 16)
            except ValueError:
                continue
            if publisher in sessions and self.subscriber.adopt(publisher, topic, seq):
                log.warning("bridge: %s of publisher %s resumes from its journal after seq %d",
                            topic, pub_hex, seq)  # fmt: skip

    def start(self) -> Bridge:
        self._thread = threading.Thread(target=self.run, name="tickvault-bridge", daemon=True)
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
        if self._gc_hook is not None and self._gc_hook in gc.callbacks:
            gc.callbacks.remove(self._gc_hook)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def idle(self) -> bool:
        """Nothing pending to write (everything delivered so far is stored)."""
        with self._cond:
            return self._batches.empty() and not self._busy

    # ------------------------------------------------------------------ handler (subscriber thread)
    def resume_seq(self, publisher: int, topic: str) -> int | None:
        try:
            symbol = check_symbol(topic.partition(".")[2])
        except ValidationError:
            return None
        if self._outage or time.monotonic() - self._resume_failed_at < 0.5:
            raise ServerUnreachable("Valkey is unreachable; the bridge is retrying")
        try:
            return self.vault.bridge_cursor(symbol, cursor_name(publisher, topic))
        except ServerError:
            self._resume_failed_at = time.monotonic()
            raise

    def check(self, msg: Message) -> WireError | None:
        """Why a well-formed message cannot be stored (its symbol or values), or None."""
        if msg.kind not in _STREAM_OF and msg.kind is not Kind.GAP:
            return None
        try:
            symbol = check_symbol(msg.symbol)
            if symbol != msg.symbol:
                raise ValidationError(f"symbol {msg.symbol!r} is not in canonical upper case")
        except ValidationError as exc:
            return WireError("symbol", str(exc))
        try:
            if msg.kind is Kind.GAP:
                validate_gaps(msg.records())
            elif msg.kind is Kind.BOOK:
                validate_book(msg.records())
            else:
                validate(TradeBatch.from_structured(msg.records()))
        except ValidationError as exc:
            return WireError(exc.field or "records", str(exc))
        return None

    def on_message(self, msg: Message) -> None:
        arrived = time.time_ns() if self.trace is not None else 0
        self.stats.messages += 1
        if msg.kind is Kind.GAP:
            self._feeder_gaps(msg)
            return
        stream = _STREAM_OF.get(msg.kind)
        if stream is None:
            return
        records = msg.records()  # checked on arrival (``check``)
        name = cursor_name(msg.publisher, msg.topic)
        # lag from the earliest trade's publish call (its ts_recv), so the publisher's
        # queueing and batching are counted too
        recv_ns = int(records["ts_recv"].min()) if msg.kind is Kind.TRADE and len(records) else None
        with self._cond:
            self._wait_for_room()
            self._batches.add((msg.symbol, stream), records, name, msg.seq,
                              size_bytes=len(msg.body), recv_ns=recv_ns)  # fmt: skip
            if self.trace is not None and recv_ns is not None:
                self.trace.messages.append(
                    (recv_ns, msg.ts_send, arrived, time.time_ns(), len(records))
                )
            self._cond.notify()

    def _wait_for_room(self) -> None:
        """While Valkey is down or refuses writes and the bridge holds ``bridge_max_held_mb``,
        stop reading (called holding ``_cond``): ZeroMQ drops what follows, and the replay
        buffer or journal supplies it once the store is back (what they no longer hold
        becomes a gap marker)."""
        if not self._batches.full():
            return
        self.stats.paused_reading += 1
        self._rate_log.warning(
            "held", "bridge: holding %.1f MiB not yet stored (bridge_max_held_mb = %g; Valkey "
            "%s); reading paused: ZeroMQ drops what follows for this bridge, and the "
            "publishers' replay buffers or journals supply it once the store takes writes",
            (self._batches.held_bytes + self._batches.inflight_bytes) / 2**20,
            self.settings.bridge_max_held_mb,
            {"refused": "refuses writes", "unreachable": "is unreachable"}.get(
                self._store_state, "is slower than the feed or refusing writes"),
        )  # fmt: skip
        self._paused = True
        try:
            while self._batches.full() and not self._stop_requested and not self._resyncing:
                self._cond.wait(0.5)
        finally:
            self._paused = False

    def _feeder_gaps(self, msg: Message) -> None:
        """A feeder reports trades it missed and could not backfill: record gap markers."""
        symbol = msg.symbol  # checked on arrival
        markers = feeder_gaps(
            msg.records(), symbol=symbol, publisher=msg.publisher, topic=msg.topic, seq=msg.seq
        )
        with self._cond:
            name = cursor_name(msg.publisher, msg.topic)
            self._batches.add_gaps((symbol, "realtime"), markers, name, msg.seq, msg.seq)
            self._cond.notify()

    def on_gap(self, gap: Gap) -> None:
        self.stats.gaps += 1
        stream = _STREAM_OF.get(parse_topic(gap.topic)[0], "realtime")
        try:
            symbol = check_symbol(gap.symbol)
        except ValidationError:
            return
        marker = dataclasses.replace(gap, symbol=symbol, stream=stream)
        with self._cond:
            name = cursor_name(gap.publisher_id, gap.topic)
            self._batches.add_gaps((symbol, stream), [marker], name, gap.seq_first, gap.seq_last)
            self._cond.notify()

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        self._reject(error.reason, error.detail, frames)

    def _reject(self, reason: str, detail: str, frames: list[bytes]) -> None:
        self.stats.rejected[reason] += 1
        self._rate_log.warning(reason, "bridge: rejected a message (%s): %s", reason, detail)
        with self._cond:
            self._batches.add_reject(reason, detail, frames)
            self._cond.notify()

    # ------------------------------------------------------------------ writer thread
    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._batches.empty() and not self._stopping:
                    self._cond.wait()
                if self._batches.empty():
                    return
                cycle = self._batches.take()
                self._busy = True
                started = time.time_ns() if self.trace is not None else 0
            try:
                if self._abandoned or not self._retrying(functools.partial(self._write, cycle)):
                    self._abandon(cycle)
                if self.trace is not None:
                    self.trace.cycles.append((started, time.time_ns()))
            finally:
                with self._cond:
                    self._busy = False
                    self._batches.written()
                    self._cond.notify_all()  # room again for a paused subscriber

    def on_resync(self) -> None:
        """(subscriber thread) Every topic restarts from the store: drop what is held."""
        with self._cond:
            self._batches.clear()

    def _abandon(self, cycle: Cycle) -> None:
        """Count what a stop during an outage leaves unstored (its cursors never moved)."""
        trades, book, ranges = cycle.unstored()
        self.stats.unstored_trades += trades
        self.stats.unstored_book_updates += book
        for name, (first, last) in ranges.items():
            old = self.stats.unstored.get(name)
            self.stats.unstored[name] = (
                (min(old[0], first), max(old[1], last)) if old else (first, last)
            )

    def _write(self, cycle: Cycle) -> None:
        # Each item leaves its list once stored, so a retry after a failure repeats none.
        pending, gaps, rejects = cycle.pending, cycle.gaps, cycle.rejects
        while rejects:
            self.vault.quarantine(*rejects[0])
            rejects.pop(0)
        # Gap markers go first: their sequence ranges ride on the cursors of the data
        # write below, so a crash in between re-detects the gap, never skips it.
        while gaps:
            self.vault.record_gap(gaps[0])
            gaps.pop(0)
        # One round trip for the whole cycle, trades first (``Cycle.items``).
        items = cycle.items()
        if self.fence is None:
            acked = self.vault.store_cycle(items)
            if acked is not None and acked < self.settings.valkey_wait_replicas:
                self.stats.replica_wait_short += 1
                self._rate_log.warning(
                    "wait", "bridge: WAIT %d %d: only %d replica(s) acknowledged a write cycle in "
                    "time (valkey_wait_replicas); it is stored on the primary, going on",
                    self.settings.valkey_wait_replicas, self.settings.valkey_wait_timeout_ms, acked,
                )  # fmt: skip
        else:
            items = self._store_fenced(cycle, items, self.fence)
        for item in items:
            for name, seq in item.cursors.items():
                key = (item.symbol, name)
                self._stored[key] = max(self._stored.get(key, 0), seq)
        done = time.time_ns()
        self.stats.writes += 1
        self.stats.last_write_ns = done
        for item in items:
            p = pending.pop((item.symbol, item.stream))
            if item.stream == "book":
                self.stats.book_updates_stored += len(item.records)
                continue
            self.stats.trades_stored += len(item.records)
            self.stats.stored_by_symbol[item.symbol] += len(item.records)
            self.stats.lag_ms.extend((done - recv) / 1e6 for recv in p.recv_ns)
            self._lag_samples += len(p.recv_ns)
        self._report_status()

    def _store_fenced(self, cycle: Cycle, items: list[StoreItem], fence: Fence) -> list[StoreItem]:
        """Store ``items`` fenced by the pool worker's leases; the items of symbols whose
        lease is lost are dropped from the cycle (never stored by this worker: their
        cursors stay where the store has them). The items stored."""
        if self._lost:
            items = self._drop(cycle, items, self._lost)
        while items:
            try:
                self.vault.store_cycle(items, fence=fence)
                return items
            except LeaseLost as exc:
                self.stats.fenced_writes += 1
                self._lost |= set(exc.symbols)
                items = self._drop(cycle, items, self._lost)
                log.warning("bridge: %s", exc)
                if self.on_lease_lost is not None:
                    self.on_lease_lost(sorted(exc.symbols))
        return items

    def _drop(self, cycle: Cycle, items: list[StoreItem], lost: set[str]) -> list[StoreItem]:
        """``items`` without those of the ``lost`` symbols (dropped from the cycle)."""
        for item in items:
            if item.symbol in lost:
                cycle.pending.pop((item.symbol, item.stream), None)
                if item.stream != "book":
                    self.stats.fenced_trades += len(item.records)
        return [i for i in items if i.symbol not in lost]

    def _report_status(self) -> None:
        """Report the counters as ``status:bridge:<host>:<pid>`` (the dashboard reads it),
        at most every ``_STATUS_EVERY_S``: figures since the previous report (trades/s, lag
        p50/p99), running totals, and whether the store accepts writes (``store``: ok,
        refused or unreachable, with ``store_error`` saying why and what to do)."""
        now = time.monotonic()
        if not self._report_status_on or now - self._status_at < _STATUS_EVERY_S:
            return
        t0, stored0, samples0 = self._status_last
        new = min(self._lag_samples - samples0, len(self.stats.lag_ms))
        recent = list(itertools.islice(reversed(self.stats.lag_ms), new)) if new else []
        p50, p99 = percentiles(recent, 50, 99)
        sub = self.subscriber.stats
        fields = {
            "updated_ns": time.time_ns(), "pid": os.getpid(), "host": socket.gethostname(),
            "trades_per_s": (self.stats.trades_stored - stored0) / max(now - t0, 1e-9),
            "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_samples": len(recent),
            "messages": self.stats.messages, "trades_stored": self.stats.trades_stored,
            "book_updates_stored": self.stats.book_updates_stored, "writes": self.stats.writes,
            "gaps_detected": sub.gaps_detected, "recovered_messages": sub.recovered_messages,
            "journal_messages": sub.journal_messages, "lost_messages": sub.lost_messages,
            "gaps_unrecovered": self.stats.gaps, "outages": self.stats.outages,
            "rollbacks": self.stats.rollbacks,
            "rejected": json.dumps(dict(self.stats.rejected)),
            "held_bytes": self._batches.held_bytes + self._batches.inflight_bytes,
            "max_held_bytes": self._batches.max_held_bytes,
            "store": self._store_state, "store_error": self._store_error,
            "refused_writes": self.stats.refused_writes, "reading_paused": int(self._paused),
            "paused_reading": self.stats.paused_reading,
            "replica_wait_short": self.stats.replica_wait_short,
        }  # fmt: skip
        self._status_at = now
        self._status_last = (now, self.stats.trades_stored, self._lag_samples)
        try:
            self.vault.put_status(self._status_name, fields, ttl_s=_STATUS_TTL_S)
        except TickvaultError as exc:  # a report is never worth failing a write for
            log.debug("bridge: status not reported: %s", exc)
