"""Fuzzing the live path and the file readers (issue 17 item 3), on real components.

``run_fuzz(vault, messages=N, rows=R)`` returns a ``FuzzReport`` (``table()`` prints it):

- **wire**: N hostile messages — random bodies, bit flips and truncations of valid
  messages, valid (sealed) headers with hostile sizes, counts, kinds and sequence
  numbers, wrong frame counts, non-ASCII topics, and well-formed messages whose records
  carry impossible values (trades, book updates, a feeder's GAP records) — interleaved
  with valid trade messages, sent on one real ZeroMQ XPUB socket to a real ``Bridge``
  (storing into ``vault``) and a real plain ``Subscriber``. Checked: neither crashes
  (their threads are alive) nor hangs (everything is accounted for within a bound);
  each hostile message is counted as rejected and kept raw in the quarantine stream
  (the bridge) or counted (the subscriber, which does not check values); the valid
  trades are all stored, by count and checksum (``trades_checksum``), with no gap.
- **files**: per format (a B3 trade file, a mapped CSV, a mapped Parquet file), R
  malformed rows mixed with valid rows, imported with ``skip_bad_rows``: each bad row is
  counted, its line (row) is reported, and the valid rows are stored.

Everything is written under the benchmark symbols (``TVBENCH_FUZZ*``, see
``bench.isolation``), cleared before and after, so a user's data is never touched;
what was quarantined stays in the ``quarantine`` stream for inspection (a bounded
stream: at full size its 10,000 entries push out older ones beyond
``quarantine_maxlen``, so run it on a store of its own, as ``tickvault chaos`` does).
``tickvault chaos`` runs it at full size (10,000 messages, 1,000 rows per format); the
tests at a small one.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.feeds.sim.generator import generate_trades
from tickvault.live.bridge import Bridge
from tickvault.records.book import BOOK_DTYPE
from tickvault.records.events import GAP_DTYPE, Gap
from tickvault.records.trades import TRADE_DTYPE
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError
from tickvault.vault import Vault

CHECKSUM_FIELDS = ("trade_id", "price", "qty")
SYMBOL = f"{SYMBOL_PREFIX}FUZZ"
"""The valid trades go here."""
BAD_SYMBOL = f"{SYMBOL_PREFIX}FUZZBAD"
"""Well-formed messages with impossible values go here (from made-up publishers)."""
SYMBOLS = (SYMBOL, BAD_SYMBOL)
TRADES_PER_MESSAGE = 20
HANG_S = 120.0
"""No progress for this long is a hang (a guard against a stuck run, not a time limit)."""


def trades_checksum(trades: Mapping[str, Any] | Any) -> str:
    """An order-independent checksum over (trade_id, price, qty) of ``trades`` (a
    structured array or a mapping of columns, as ``Vault.range_columns`` returns): the
    SHA-256 of the sorted rows. Equal for the same multiset of trades."""
    trade_id = np.asarray(trades["trade_id"]).astype(np.int64)
    price = np.asarray(trades["price"]).astype(np.float64)
    qty = np.asarray(trades["qty"]).astype(np.int64)
    order = np.lexsort((qty, price, trade_id))
    h = hashlib.sha256()
    for col in (trade_id[order], price[order], qty[order]):
        h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------- the report
@dataclass(slots=True)
class FuzzRow:
    """One target of the fuzz run and what it did with what it was sent."""

    target: str
    sent: int
    """Messages (or data rows) sent, hostile and valid."""
    hostile: int
    rejected: int
    """Hostile messages (rows) the target counted as rejected."""
    kept: int
    """Rejected messages kept raw in the quarantine (rows whose line is reported)."""
    valid_trades: int
    stored: int
    """Valid trades stored (or delivered, for the plain subscriber)."""
    problems: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class FuzzReport:
    rows: list[FuzzRow]
    seconds: float
    seed: int

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self) -> str:
        """The report as a text table, with every problem found below it."""
        head = ("target", "sent", "hostile", "rejected", "kept", "valid trades", "stored", "ok")
        body = [(r.target, f"{r.sent:,}", f"{r.hostile:,}", f"{r.rejected:,}", f"{r.kept:,}",
                 f"{r.valid_trades:,}", f"{r.stored:,}", "yes" if r.ok else "NO")
                for r in self.rows]  # fmt: skip
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                           for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                 for row in (head, *body)]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"seed {self.seed}, {self.seconds:.1f} s")
        for r in self.rows:
            if r.reasons:
                why = ", ".join(f"{k} {v:,}" for k, v in sorted(r.reasons.items()))
                lines.append(f"{r.target}: rejected by reason: {why}")
            lines.extend(f"{r.target}: PROBLEM: {p}" for p in r.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "seconds": round(self.seconds, 2), "seed": self.seed,
            "rows": [{**{k: getattr(r, k) for k in ("target", "sent", "hostile", "rejected",
                      "kept", "valid_trades", "stored", "problems", "reasons")}, "ok": r.ok}
                     for r in self.rows],
        }  # fmt: skip


# ---------------------------------------------------------------------- hostile messages
def valid_messages(
    symbol: str, publisher: int, n: int, *, seed: int = 1
) -> tuple[list[list[bytes]], np.ndarray[Any, Any]]:
    """``n`` valid trade messages (seq 1..n) of ``TRADES_PER_MESSAGE`` trades each, and
    every trade they carry."""
    per = TRADES_PER_MESSAGE
    arr = generate_trades("WINZ25", max(n * per, 1), seed=seed, trades_per_day=max(n * per, 1))
    records = arr.to_structured()[: n * per]
    topic = wire.topic_for(Kind.TRADE, symbol).encode("ascii")
    frames = []
    for i in range(n):
        chunk = records[i * per : (i + 1) * per]
        body = wire.encode_body(topic, Kind.TRADE, publisher, i + 1, time.time_ns(),
                                chunk.tobytes(), len(chunk))  # fmt: skip
        frames.append([topic, body])
    return frames, records


def _flip_bits(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """``frames`` with 1 to 8 distinct bits of the body flipped (a flip in the topic would
    make a topic nobody subscribed to: the SUB socket drops it unseen)."""
    body = bytearray(frames[1])
    for bit in rng.sample(range(len(body) * 8), rng.choice((1, 1, 1, 2, 3, 8))):
        body[bit // 8] ^= 1 << (bit % 8)
    return [frames[0], bytes(body)]


def _sealed(topic: bytes, kind: int, record_size: int, publisher: int, seq: int, count: int,
            payload: bytes, header_size: int = wire.HEADER_SIZE) -> list[bytes]:  # fmt: skip
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, kind, header_size, record_size,
                            publisher, seq, time.time_ns(), count, 0)  # fmt: skip
    return [topic, wire.seal(topic, head + payload)]


def _bad_records(rng: random.Random, dtype: np.dtype[Any], n: int, field_name: str,
                 value: Any) -> bytes:  # fmt: skip
    """``n`` records of random bytes with ``field_name`` of one of them set to ``value``
    (so at least one value is impossible whatever the random bytes say)."""
    raw = bytearray(rng.randbytes(dtype.itemsize * n))
    arr = np.frombuffer(raw, dtype=dtype).copy()
    arr[field_name][rng.randrange(n)] = value
    return arr.tobytes()


HOSTILE_KINDS = (
    "random", "random-header", "bitflip", "bitflip", "truncate", "truncate", "extend",
    "frames", "topic-ascii", "topic-suffix", "topic-kind", "count", "record-size", "header-size",
    "kind", "seq-zero", "version", "magic", "control-payload", "oversized-count",
    "values-trade", "values-book", "values-gap",
)  # fmt: skip
"""What ``hostile_message`` makes (bit flips and truncations twice as often)."""


def hostile_message(
    rng: random.Random, valid: list[list[bytes]], kind: str | None = None
) -> tuple[str, list[bytes]]:
    """One hostile message: (its kind, its frames). Kinds starting with ``values-`` are
    well-formed on the wire (a plain subscriber delivers them; the bridge rejects them for
    their values); every other kind breaks the wire format."""
    topic = wire.topic_for(Kind.TRADE, SYMBOL).encode("ascii")
    bad_topic = wire.topic_for(Kind.TRADE, BAD_SYMBOL).encode("ascii")
    base = rng.choice(valid)
    fake = rng.getrandbits(64) | 1 << 63  # a made-up publisher, never a real one
    kind = kind or rng.choice(HOSTILE_KINDS)
    n = rng.randint(1, 40)
    if kind == "random":
        return kind, [topic, rng.randbytes(rng.randint(0, 400))]
    if kind == "random-header":  # the right magic and version, the rest random
        body = wire.MAGIC + bytes([wire.VERSION]) + rng.randbytes(rng.randint(0, 300))
        return kind, [topic, body]
    if kind == "bitflip":
        return kind, _flip_bits(rng, base)
    if kind == "truncate":
        return kind, [base[0], base[1][: rng.randrange(len(base[1]))]]
    if kind == "extend":
        return kind, [base[0], base[1] + rng.randbytes(rng.randint(1, 64))]
    if kind == "frames":
        return kind, rng.choice(([topic], [*base, b"extra"], [*base, base[1], b""]))
    if kind == "topic-ascii":  # past the subscribed prefix: not ASCII
        return kind, [topic + bytes([rng.randint(128, 255)]) + rng.randbytes(5), base[1]]
    if kind == "topic-suffix":  # another (ASCII) topic than the body was sealed for
        return kind, [topic + bytes(rng.choices(range(32, 127), k=rng.randint(1, 9))), base[1]]
    payload = rng.randbytes(TRADE_DTYPE.itemsize * n)
    size = TRADE_DTYPE.itemsize
    if kind == "topic-kind":  # a book message on a trade topic, sealed
        return kind, _sealed(topic, Kind.BOOK, BOOK_DTYPE.itemsize, fake, 1, 1,
                             rng.randbytes(BOOK_DTYPE.itemsize))  # fmt: skip
    if kind == "count":  # a count the payload does not hold
        return kind, _sealed(topic, Kind.TRADE, size, fake, 1,
                             rng.choice((n + 1, n - 1, 2**32 - 1, 2**31)), payload)  # fmt: skip
    if kind == "oversized-count":  # a count that would need gigabytes
        return kind, _sealed(topic, Kind.TRADE, size, fake, 1, 2**32 - 1, b"")
    if kind == "record-size":
        return kind, _sealed(topic, Kind.TRADE, rng.choice((0, 1, size - 1, size + 1, 65535)),
                             fake, 1, n, payload)  # fmt: skip
    if kind == "header-size":
        header_size = rng.choice((0, 1, wire.HEADER_SIZE - 1, 65535))
        return kind, _sealed(topic, Kind.TRADE, size, fake, 1, n, payload, header_size)
    if kind == "kind":
        return kind, _sealed(topic, rng.randint(9, 255), size, fake, 1, n, payload)
    if kind == "seq-zero":
        return kind, _sealed(topic, Kind.TRADE, size, fake, 0, n, payload)
    if kind == "version":
        head = wire.HEADER.pack(wire.MAGIC, rng.choice((0, 1, 3, 255)), Kind.TRADE,
                                wire.HEADER_SIZE, size, fake, 1, 0, n, 0)  # fmt: skip
        return kind, [topic, wire.seal(topic, head + payload)]
    if kind == "magic":
        head = wire.HEADER.pack(rng.randbytes(2).replace(b"T", b"x"), wire.VERSION, Kind.TRADE,
                                wire.HEADER_SIZE, size, fake, 1, 0, n, 0)  # fmt: skip
        return kind, [topic, wire.seal(topic, head + payload)]
    if kind == "control-payload":  # a heartbeat without its 8 bytes
        return kind, _sealed(topic, Kind.HEARTBEAT, 0, fake, rng.randint(1, 10**9), 0,
                             rng.randbytes(rng.choice((0, 4, 7, 9, 64))))  # fmt: skip
    seq = 1
    if kind == "values-trade":
        value = rng.choice((("price", np.nan), ("price", -1.0), ("qty", -5),
                            ("ts_event", 5), ("trade_id", -1), ("flags", 3)))  # fmt: skip
        records = _bad_records(rng, TRADE_DTYPE, n, *value)
        return kind, _sealed(bad_topic, Kind.TRADE, size, fake, seq, n, records)
    if kind == "values-book":
        book_topic = wire.topic_for(Kind.BOOK, BAD_SYMBOL).encode("ascii")
        value = rng.choice((("price", np.inf), ("side", 7), ("action", 99), ("ts_event", -1)))
        records = _bad_records(rng, BOOK_DTYPE, n, *value)
        return kind, _sealed(book_topic, Kind.BOOK, BOOK_DTYPE.itemsize, fake, seq, n, records)
    gap_topic = wire.topic_for(Kind.GAP, BAD_SYMBOL).encode("ascii")
    value = rng.choice((("start_ns", -(2**62)), ("end_ns", 2**62), ("ts_event", 0)))
    records = _bad_records(rng, GAP_DTYPE, n, *value)
    return "values-gap", _sealed(gap_topic, Kind.GAP, GAP_DTYPE.itemsize, fake, seq, n, records)


# ---------------------------------------------------------------------- the wire run
class _Counting:
    """A plain subscriber's handler: counts what it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: Counter[str] = Counter()
        self.trades = 0
        self.invalid: Counter[str] = Counter()
        self.gaps = 0
        self.rejected_frames: list[list[bytes]] = []

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        with self.lock:
            self.messages[msg.topic] += 1
            if msg.topic == wire.topic_for(Kind.TRADE, SYMBOL):
                self.trades += len(msg.records())

    def on_gap(self, gap: Gap) -> None:
        with self.lock:
            self.gaps += 1

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        with self.lock:
            self.invalid[error.reason] += 1
            self.rejected_frames.append(list(frames))


def _wait(condition: Callable[[], bool], progress: Callable[[], object], alive: Callable[[], bool]
          ) -> str:  # fmt: skip
    """Poll until ``condition``; "" when met, else why not (a dead thread, no progress)."""
    last, since = progress(), time.monotonic()
    while not condition():
        if not alive():
            return "a thread died (crash)"
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > HANG_S:
            return f"no progress for {HANG_S:.0f} s (hang)"
        time.sleep(0.02)
    return ""


def fuzz_wire(vault: Vault, messages: int, *, seed: int = 17) -> list[FuzzRow]:
    """``messages`` hostile messages and a quarter as many valid ones, interleaved, to a
    Bridge and a plain Subscriber on one XPUB socket."""
    rng = random.Random(seed)
    n_valid = max(messages // 4, 1)
    publisher = rng.getrandbits(63) | 1
    valid, records = valid_messages(SYMBOL, publisher, n_valid, seed=seed)
    hostile = [hostile_message(rng, valid) for _ in range(messages)]
    order = [("valid", i) for i in range(n_valid)] + [("hostile", i) for i in range(messages)]
    rng.shuffle(order)
    # in sequence order among themselves: a valid message is never a gap to repair
    valid_iter = iter(range(n_valid))
    order = [(k, next(valid_iter) if k == "valid" else i) for k, i in order]
    wire_bad = sum(1 for k, _ in hostile if not k.startswith("values-"))

    tmp = tempfile.mkdtemp(prefix="tickvault-fuzz-")
    eps = Endpoints.ipc(tmp)
    ctx: zmq.Context[Any] = zmq.Context.instance()
    socks: dict[str, zmq.Socket[bytes]] = {}
    for name in ("ticks", "book", "history"):
        sock: zmq.Socket[bytes] = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, to know both are there
        sock.setsockopt(zmq.SNDHWM, 0)  # never drop: every message must arrive
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(getattr(eps, name))
        socks[name] = sock

    def socket_of(frames: list[bytes]) -> zmq.Socket[bytes]:
        head = frames[0] if frames else b""
        if head.startswith(b"book."):
            return socks["book"]
        return socks["history"] if head.startswith((b"gap.", b"history.")) else socks["ticks"]

    v = vault.with_settings(zmq_hwm=2 * (messages + n_valid) + 1_000, zmq_replay_timeout_s=0.5)
    counting = _Counting()
    bridge = Bridge(v, endpoints=[eps], symbols=SYMBOLS, report_status=False)
    plain = Subscriber(v.settings, handler=counting, endpoints=[eps],
                       kinds=(Kind.TRADE, Kind.HISTORY, Kind.BOOK, Kind.GAP), symbols=SYMBOLS,
                       recover_from_start=True)  # fmt: skip
    rows: list[FuzzRow] = []
    t0 = time.time_ns()
    try:
        bridge.start()
        plain.start()
        wanted = 2 * len(SYMBOLS) * 4  # two subscribers, four kinds per symbol
        deadline = time.monotonic() + HANG_S
        for sock in socks.values():
            subscribed = 0
            while subscribed < wanted and time.monotonic() < deadline:
                if sock.poll(100) and sock.recv().startswith(b"\x01"):
                    subscribed += 1
        for what, i in order:
            frames = valid[i] if what == "valid" else hostile[i][1]
            socket_of(frames).send_multipart(frames)
        last = records[-TRADES_PER_MESSAGE:]
        topic = wire.topic_for(Kind.TRADE, SYMBOL).encode("ascii")
        socks["ticks"].send_multipart([topic, wire.encode_heartbeat(topic, publisher, n_valid,
                                                         time.time_ns(),
                                                         int(last["ts_event"][-1]))])  # fmt: skip

        def bridge_alive() -> bool:
            t, w = bridge._thread, bridge._writer
            # its writer thread starts in run(), a moment after start(): not yet is not dead
            return (t is not None and t.is_alive()) and (w.is_alive() or w.ident is None)

        def stored() -> int:
            return len(vault.range_columns(SYMBOL)["trade_id"])

        why = _wait(
            lambda: (
                bridge.stats.trades_stored >= len(records)
                and sum(bridge.stats.rejected.values()) >= messages
                and bridge.idle()
            ),
            lambda: (bridge.stats.trades_stored, sum(bridge.stats.rejected.values())),
            bridge_alive,
        )
        plain_why = _wait(
            lambda: counting.trades >= len(records) and sum(counting.invalid.values()) >= wire_bad,
            lambda: (counting.trades, sum(counting.invalid.values())),
            lambda: plain._thread is not None and plain._thread.is_alive(),
        )
        cols = vault.range_columns(SYMBOL)
        kept = [q for q in vault.quarantined(messages + 1_000) if q["ts"] >= t0]
        row = FuzzRow("wire -> bridge", messages + n_valid, messages,
                      sum(bridge.stats.rejected.values()), len(kept), len(records),
                      len(cols["trade_id"]), reasons=dict(bridge.stats.rejected))  # fmt: skip
        if why:
            row.problems.append(why)
        if row.rejected != messages:
            row.problems.append(f"{row.rejected:,} rejected of {messages:,} hostile")
        if row.kept != messages:
            limit = v.settings.quarantine_maxlen
            row.problems.append(f"{row.kept:,} quarantined of {messages:,} hostile "
                                f"(quarantine_maxlen {limit:,})")  # fmt: skip
        if row.stored != len(records) or trades_checksum(cols) != trades_checksum(records):
            row.problems.append(f"stored {row.stored:,} of {len(records):,} valid trades, "
                                "or other ones (checksum)")  # fmt: skip
        if bridge.stats.trades_stored != len(records):
            row.problems.append(f"the bridge stored {bridge.stats.trades_stored:,} trades")
        if vault.gaps(SYMBOL):
            row.problems.append(f"{len(vault.gaps(SYMBOL))} gap markers on the valid stream")
        if vault.symbols() and BAD_SYMBOL in vault.symbols():
            row.problems.append("trades with impossible values were stored")
        rows.append(row)
        sub_row = FuzzRow("wire -> subscriber", messages + n_valid, wire_bad,
                          sum(counting.invalid.values()), 0, len(records), counting.trades,
                          reasons=dict(counting.invalid))  # fmt: skip
        if plain_why:
            sub_row.problems.append(plain_why)
        if sub_row.rejected != wire_bad:
            sub_row.problems.append(f"{sub_row.rejected:,} rejected of {wire_bad:,}")
        if counting.trades != len(records):
            sub_row.problems.append(f"{counting.trades:,} valid trades delivered")
        rows.append(sub_row)
    finally:
        bridge.close()
        plain.close()
        for sock in socks.values():
            sock.close(linger=0)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------- entry point
def run_fuzz(
    vault: Vault,
    messages: int = 10_000,
    rows: int = 1_000,
    *,
    seed: int = 17,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Fuzz the wire (``messages`` hostile messages) and the file readers (``rows``
    malformed rows per format); see the module docstring. Never raises for what it
    finds: the report says it (``ok``, ``table()``)."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    _clear(vault)
    out: list[FuzzRow] = []
    try:
        if messages:
            say(f"wire: {messages:,} hostile messages to a bridge and a subscriber")
            out += fuzz_wire(vault, messages, seed=seed)
        if rows:
            from tickvault.bench.fuzz_files import fuzz_files

            say(f"files: {rows:,} malformed rows per format (B3, CSV, Parquet)")
            out += fuzz_files(vault, rows, seed=seed)
    finally:
        _clear(vault)
    return FuzzReport(out, time.perf_counter() - started, seed)


def _clear(vault: Vault) -> None:
    for symbol in (*SYMBOLS, *(f"{SYMBOL_PREFIX}FUZZ{f}" for f in ("B3", "CSV", "PQ"))):
        clear_keys(vault, *symbol_keys(symbol))


__all__ = ["FuzzReport", "FuzzRow", "hostile_message", "run_fuzz", "trades_checksum",
           "valid_messages"]  # fmt: skip
