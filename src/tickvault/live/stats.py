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
