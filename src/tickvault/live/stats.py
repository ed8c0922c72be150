"""The bridge's counters (pure)."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

_LAG_SAMPLES = 200_000


@dataclass(slots=True)
class BridgeStats:
    messages: int = 0
    trades_stored: int = 0
    writes: int = 0
    write_errors: int = 0
    gaps: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    lag_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_LAG_SAMPLES)
    )
    """Per live message: from the publish call of its earliest trade (``ts_recv``) to
    stored and readable, in ms."""
    stored_by_symbol: collections.Counter[str] = field(default_factory=collections.Counter)
    last_write_ns: int = 0
    book_updates_stored: int = 0
    """Wall time when the latest write returned."""
    outages: int = 0
    """Times Valkey became unreachable while the bridge had something to write."""
    rollbacks: int = 0
    """Times Valkey came back without writes it had acknowledged (killed with appendfsync
    everysec, or restored from an older copy): the bridge asked again from its cursors."""
    refused_writes: int = 0
    """Write attempts the server refused (out of memory, MISCONF); each is retried."""
    replica_wait_short: int = 0
    """Write cycles whose ``WAIT`` (``valkey_wait_replicas``) returned fewer replicas than
    asked within ``valkey_wait_timeout_ms``."""
    paused_reading: int = 0
    """Times the bridge stopped reading because it held ``bridge_max_held_mb``."""
    fenced_writes: int = 0
    """Writes a pool bridge's lease fence refused (``LeaseLost``): their symbols' data
    was dropped, not stored; the symbols' new owner resumes from the stored cursor."""
    fenced_trades: int = 0
    """Trades in those writes."""
    unstored_trades: int = 0
    unstored_book_updates: int = 0
    unstored: dict[str, tuple[int, int]] = field(default_factory=dict)
    """What a stop during an outage left unstored: cursor name -> (first, last) seq."""

    def unstored_summary(self) -> str:
        """One sentence on what was not stored (empty when everything was)."""
        if not self.unstored:
            return ""
        spans = ", ".join(f"{name.partition(':')[2]} seq {a}..{b}"
                          for name, (a, b) in sorted(self.unstored.items()))  # fmt: skip
        return (
            "NOT stored (Valkey unreachable or refusing writes at stop): "
            f"{self.unstored_trades:,} trades and "
            f"{self.unstored_book_updates:,} book updates ({spans}); the stored cursors stay "
            "before them, so the next bridge run asks the publisher's replay buffer or "
            "journal for them again"
        )

    def lag_percentiles(self, *qs: float) -> list[float]:
        return percentiles(self.lag_ms, *qs)


def percentiles(samples: Iterable[float], *qs: float) -> list[float]:
    """The ``qs`` percentiles of ``samples`` (NaN when there are none)."""
    values = np.fromiter(samples, float)
    if not values.size:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


STAGES = ("publisher_queue", "send_and_receive", "handoff", "wait_for_writer", "write")
"""The stages of a trade's publish-to-stored lag (``LagTrace``), in order."""


@dataclass(slots=True)
class LagTrace:
    """Where a bridge's publish-to-stored lag goes, message by message (``Bridge(trace=)``;
    ``tickvault bench live --stages``). All times are wall-clock ns.

    Per live trade message: the publish call of its earliest trade (``ts_recv``), the
    publisher's numbering of the message (``ts_send``, when its sender thread drained
    it), its arrival in the bridge's handler, and the end of the handoff to the writer.
    Per write cycle: its start and end. A message is stored by the first cycle that
    starts after its handoff (the writer takes everything handed off when it starts)."""

    messages: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    """(ts_recv of the earliest trade, ts_send, arrived, handed off, trades)."""
    cycles: list[tuple[int, int]] = field(default_factory=list)
    """(start, end) of every write cycle."""
    gc_pauses: list[tuple[int, int, int]] = field(default_factory=list)
    """(start, duration, generation) of the garbage collections in the bridge process."""


def lag_stages(trace: LagTrace, tail_quantile: float = 99.0) -> dict[str, object]:
    """The lag split into ``STAGES`` (ms): each stage's p50 and p99 over trades, and its
    mean over the trades of the lag's tail (lag at or above ``tail_quantile``): which
    stage the slow trades lost their time in. Plus the GC pauses (count, longest, total)."""
    msgs = np.array(trace.messages, dtype=np.int64).reshape(-1, 5)
    cycles = np.array(trace.cycles, dtype=np.int64).reshape(-1, 2)
    if not len(msgs) or not len(cycles):
        return {"messages": 0}
    which = np.searchsorted(cycles[:, 0], msgs[:, 3], side="left")
    stored = which < len(cycles)
    msgs, which = msgs[stored], which[stored]
    start, end = cycles[which, 0], cycles[which, 1]
    recv, sent, arrived, handed = msgs[:, 0], msgs[:, 1], msgs[:, 2], msgs[:, 3]
    parts = dict(zip(STAGES, (sent - recv, arrived - sent, handed - arrived,
                              start - handed, end - start), strict=True))  # fmt: skip
    weight = np.repeat(np.arange(len(msgs)), msgs[:, 4])  # every trade counts once
    lag = (end - recv)[weight] / 1e6
    tail = lag >= np.percentile(lag, tail_quantile)
    stages: dict[str, dict[str, float]] = {}
    for name, ns in parts.items():
        ms = ns[weight] / 1e6
        p50, p99 = np.percentile(ms, [50, 99])
        stages[name] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
                        "tail_mean": round(float(ms[tail].mean()), 3)}  # fmt: skip
    gc = np.array(trace.gc_pauses, dtype=np.int64).reshape(-1, 3)
    lag_p50, lag_p99 = np.percentile(lag, [50, 99])
    pauses = {"collections": len(gc), "longest_ms": round(float(gc[:, 1].max(initial=0)) / 1e6, 3),
              "total_ms": round(float(gc[:, 1].sum()) / 1e6, 3)}  # fmt: skip
    return {
        "messages": len(msgs),
        "cycles": len(cycles),
        "lag_ms": {"p50": round(float(lag_p50), 3), "p99": round(float(lag_p99), 3)},
        "stages_ms": stages,
        "gc": pauses,
    }
