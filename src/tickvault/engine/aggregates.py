"""Session aggregates materialised in Valkey: ``SessionAggregates`` <-> stored arrays,
when a stored one may stand for "the session as known at T", and the fill/refresh
call of the live worker.

A materialised session (``MaterialisedSession``) is the complete
``SessionAggregates`` of one trading day, built from EVERY raw record stored for
that day when it was built (trades, repeats, edits, cancels, both streams,
resolved), plus what it was built from:

- ``records``: how many raw records; the store counts records per day on every
  write (``storage.aggregates``), so a different count means "stale: rebuild";
- per minute m of the session grid (by ``ts_event``, records inside [open, close]
  only, as the aggregates count them): ``recv_max[m]``, the latest ``ts_recv``;
  ``live_max[m]``, the latest ``ts_recv`` of the records whose knowledge time is
  their ``ts_recv`` (live records, and every edit or cancel); ``hist_recv_max[m]``
  and ``hist_event_max[m]``, the latest ``ts_recv`` and ``ts_event`` of imported
  plain trades (knowledge time ``min(ts_recv, ts_event + latency)``);
- ``copies_agree``: every identity stored more than once (the same trade through
  both streams) has the same ``ts_event``, price and qty in every copy, so which
  copy resolution keeps (it depends on the knowledge ordering, hence on the mode
  and latency) cannot change the aggregates; when False the aggregate stands only
  for the mode and latency it was resolved with.

Point in time. The minutes a history feature at T reads of a session are known
exactly: all of a previous session, the minutes before T's grid minute of the
current one (``features.history``). If every record of those minutes was known at
T (``known_bound`` <= T: store mode ``recv_max``; knowledge mode
``max(live_max, min(hist_recv_max, hist_event_max + latency))``, an upper bound of
the knowledge times), the records known at T are all of those records, each
identity resolves as it does in the complete aggregate (corrections carry the
trade's own ts_event, so an identity never spans minutes), and the stored
aggregate gives exactly the features of the raw-record reference path
(``features.pointintime.history_at``). Otherwise the caller takes the slow,
exact path: the session from its raw records as known at T.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.features.aggregates import MINUTE_NS, SessionAggregates, build_session_aggregates
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, Mode, as_known_at
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.storage import aggregates as store
from tickvault.storage.resolve import Columns
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ, SessionHours, previous_sessions, session

I64 = npt.NDArray[np.int64]
NEVER = -(2**62)
"""The knowledge bound of a minute without records."""
FAR_FUTURE_NS = 2**62
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


@dataclass(frozen=True, eq=False)
class MaterialisedSession:
    """A session's complete aggregates and what they were built from (module docstring)."""

    aggs: SessionAggregates
    records: int
    recv_max: I64
    live_max: I64
    hist_recv_max: I64
    hist_event_max: I64
    copies_agree: bool
    mode: Mode
    feed_latency_ns: int
    _bounds: dict[tuple[str, int], I64] = field(default_factory=dict, repr=False)

    def usable(self, mode: Mode, feed_latency_ns: int) -> bool:
        """True when the aggregate holds for this mode and latency (see ``copies_agree``)."""
        return self.copies_agree or (mode, feed_latency_ns) == (self.mode, self.feed_latency_ns)

    def known_bound(self, mode: Mode, feed_latency_ns: int) -> I64:
        """Per minute, a time by which every record of the minute was known (cumulative:
        element m covers minutes 0..m)."""
        key = (mode, feed_latency_ns)
        got = self._bounds.get(key)
        if got is None:
            if mode == "store":
                per_minute = self.recv_max
            else:
                hist = np.minimum(self.hist_recv_max, self.hist_event_max + feed_latency_ns)
                hist = np.where(self.hist_event_max == NEVER, NEVER, hist)
                per_minute = np.maximum(self.live_max, hist)
            got = np.maximum.accumulate(per_minute) if per_minute.size else per_minute
            self._bounds[key] = got
        return got

    def known_by(
        self, t_ns: int, mode: Mode, feed_latency_ns: int, minutes: int | None = None
    ) -> bool:
        """True when every record of the first ``minutes`` minutes (None: all) was known
        at ``t_ns``, and the aggregate holds for the mode: it then stands for the
        session as known at ``t_ns`` over those minutes."""
        if not self.usable(mode, feed_latency_ns):
            return False
        bound = self.known_bound(mode, feed_latency_ns)
        m = bound.size if minutes is None else min(minutes, bound.size)
        return m <= 0 or int(bound[m - 1]) <= t_ns


def _minute_max(minute: I64, values: I64, mask: npt.NDArray[np.bool_], size: int) -> I64:
    out = np.full(size, NEVER, dtype=np.int64)
    np.maximum.at(out, minute[mask], values[mask])
    return out


def materialise(
    symbol: str,
    day: dt.date,
    records: TradeBatch,
    *,
    mode: Mode = "knowledge",
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    hours: SessionHours | None = None,
    resolved: TradeBatch | None = None,
) -> MaterialisedSession:
    """The materialised session of ``day`` from every raw record of that day
    (``resolved``: ``resolve_final`` of them, when the caller has it already)."""
    s = session(symbol, day, hours)
    if resolved is None:
        resolved = resolve_final(records, mode=mode, feed_latency_ns=feed_latency_ns)
    aggs = build_session_aggregates(symbol, day, resolved, hours=hours)
    m = aggs.minutes
    ev = np.asarray(records.ts_event, dtype=np.int64)
    recv = np.asarray(records.ts_recv, dtype=np.int64)
    inside = (ev >= s.open_ns) & (ev <= s.close_ns)
    minute = np.clip((ev - s.open_ns) // MINUTE_NS, 0, m - 1)
    flags = records.flags
    hist_plain = ((flags & np.uint8(TradeFlag.HISTORY)) != 0) & ((flags & _CORRECTION) == 0)
    return MaterialisedSession(
        aggs=aggs,
        records=len(records),
        recv_max=_minute_max(minute, recv, inside, m),
        live_max=_minute_max(minute, recv, inside & ~hist_plain, m),
        hist_recv_max=_minute_max(minute, recv, inside & hist_plain, m),
        hist_event_max=_minute_max(minute, ev, inside & hist_plain, m),
        copies_agree=_plain_unique(records) or _copies_agree(records, inside),
        mode=mode,
        feed_latency_ns=feed_latency_ns,
    )


def _plain_unique(records: TradeBatch) -> bool:
    """No EDIT/CANCEL record and every trade_id once (records of one trading day)."""
    if bool((records.flags & _CORRECTION).any()):
        return False
    tid = np.sort(records.trade_id)
    return bool((tid[1:] != tid[:-1]).all()) if tid.size > 1 else True


def resolve_final(
    records: TradeBatch,
    *,
    mode: Mode = "knowledge",
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
) -> TradeBatch:
    """Every record of ONE trading day resolved with everything known: exactly
    ``as_known_at(records, far future, mode=...)``, whose usual case (no correction,
    each trade once) is taken here with a sort instead of a hash of every key."""
    if _plain_unique(records):
        return records.take(np.lexsort((records.trade_id, records.ts_event)))
    return as_known_at(records, FAR_FUTURE_NS, mode=mode, feed_latency_ns=feed_latency_ns)


def _copies_agree(records: TradeBatch, inside: npt.NDArray[np.bool_]) -> bool:
    plain = np.flatnonzero(inside & ((records.flags & _CORRECTION) == 0))
    if plain.size < 2:
        return True
    tid = records.trade_id[plain]
    order = np.argsort(tid, kind="stable")
    tid = tid[order]
    same = tid[1:] == tid[:-1]
    if not bool(same.any()):
        return True
    rows = plain[order]
    for col in (records.ts_event, records.price, records.qty):
        v = col[rows]
        if bool((v[1:][same] != v[:-1][same]).any()):
            return False
    return True


def to_stored(ms: MaterialisedSession) -> bytes:
    """The bytes stored in Valkey for ``ms`` (``storage.aggregates`` record)."""
    a = ms.aggs
    arrays = {
        "volume": a.volume,
        "count": a.count,
        "price": a.price,
        "recv_max": ms.recv_max,
        "live_max": ms.live_max,
        "hist_recv_max": ms.hist_recv_max,
        "hist_event_max": ms.hist_event_max,
    }
    scalars: dict[str, Any] = {
        "symbol": a.symbol,
        "date": a.date.isoformat(),
        "open_ns": a.open_ns,
        "close_ns": a.close_ns,
        "open_clock_min": a.open_clock_min,
        "first_ts": a.first_ts,
        "outside": a.outside,
        "copies_agree": ms.copies_agree,
        "mode": ms.mode,
        "feed_latency_ns": ms.feed_latency_ns,
    }
    return store.encode(arrays, scalars, ms.records)


def from_stored(raw: bytes) -> MaterialisedSession:
    """The materialised session ``to_stored`` wrote."""
    rec = store.decode(raw)
    s, x = rec.scalars, rec.arrays
    aggs = SessionAggregates(
        symbol=str(s["symbol"]),
        date=dt.date.fromisoformat(s["date"]),
        open_ns=int(s["open_ns"]),
        close_ns=int(s["close_ns"]),
        open_clock_min=int(s["open_clock_min"]),
        volume=x["volume"],
        count=x["count"],
        price=x["price"],
        first_ts=None if s["first_ts"] is None else int(s["first_ts"]),
        as_of_ns=None,
        outside=int(s["outside"]),
    )
    return MaterialisedSession(
        aggs=aggs,
        records=rec.records,
        recv_max=x["recv_max"],
        live_max=x["live_max"],
        hist_recv_max=x["hist_recv_max"],
        hist_event_max=x["hist_event_max"],
        copies_agree=bool(s["copies_agree"]),
        mode="store" if s["mode"] == "store" else "knowledge",
        feed_latency_ns=int(s["feed_latency_ns"]),
    )


def to_batch(cols: Columns) -> TradeBatch:
    return TradeBatch(**cols)


class AggregateStore:
    """The materialised sessions of one Vault: Valkey, with a small in-process cache.

    ``sessions`` costs one round trip when everything asked is cached and fresh (the
    per-day record counters are read every time, so a write by any process is seen),
    one more to fetch what is not cached, and a read of the raw records of each day
    that has no fresh aggregate (then built and written back: filled on demand).
    """

    def __init__(self, vault: Vault, *, hours: SessionHours | None = None, cache_size: int = 512):
        self.vault = vault
        self.hours = hours
        self.cache_size = cache_size
        self._cache: dict[tuple[str, dt.date], MaterialisedSession] = {}
        self._checked: dict[tuple[str, dt.date], tuple[int, ...]] = {}
        """Per cached session: the store's ``totals`` when it was last found fresh."""
        self.built = 0
        """Sessions built from raw records by this store (cold fills and refreshes)."""

    def clear_cache(self) -> None:
        """Forget the in-process copies (the next ``sessions`` reads Valkey again)."""
        self._cache.clear()
        self._checked.clear()

    def forget(self, symbol: str, day: dt.date) -> None:
        """Drop one session from the in-process cache."""
        self._cache.pop((symbol, day), None)
        self._checked.pop((symbol, day), None)

    def put(self, symbol: str, day: dt.date, ms: MaterialisedSession) -> None:
        """Write ``ms`` to Valkey and the cache (a caller that built it from raw records)."""
        store.write(self.vault.client, symbol, {day: to_stored(ms)})
        self._cache[(symbol, day)] = ms
        self._checked.pop((symbol, day), None)  # the next ``sessions`` checks it again

    def records(self, symbol: str, day: dt.date) -> TradeBatch:
        """Every raw record of ``symbol`` on ``day`` (both streams, unresolved)."""
        return to_batch(store.day_records(self.vault.client, self.vault.settings, symbol, day))

    def sessions(
        self,
        symbol: str,
        days: Sequence[dt.date],
        *,
        mode: Mode = "knowledge",
        feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
        raw: dict[dt.date, TradeBatch] | None = None,
    ) -> tuple[bool, dict[dt.date, MaterialisedSession]]:
        """(symbol has trades, fresh materialised session per day of ``days``).

        Stale or missing ones are rebuilt from the raw records and written back;
        ``raw`` receives the raw records read for that (so a caller needing them for
        the exact path reads them only once)."""
        r = self.vault.client
        cached = {d: self._cache.get((symbol, d)) for d in days}
        want = [d for d in days if cached[d] is None]
        checked = {self._checked.get((symbol, d)) for d in days}
        unchanged = (
            not want
            and len(checked) == 1
            and None not in checked
            and store.totals(r, symbol) == checked.pop()
        )
        if unchanged:  # nothing written or trimmed since every one was checked fresh
            return True, {d: ms for d, ms in cached.items() if ms is not None}
        found = store.read(r, symbol, days, fetch=want)
        out: dict[dt.date, MaterialisedSession] = {}
        rebuild: list[dt.date] = []
        for d in days:
            ms = cached[d]
            if ms is None and found.stored.get(d) is not None:
                ms = from_stored(found.stored[d])  # type: ignore[arg-type]
            # fresh: built from as many records as are stored now (no counter and no
            # aggregate records means an empty day; no counter otherwise: rebuild)
            fresh = ms is not None and (
                ms.records == found.counts[d] if found.counted[d] else ms.records == 0
            )
            if fresh and ms is not None:
                out[d] = ms
            else:
                rebuild.append(d)
        written: dict[dt.date, bytes] = {}
        for d in rebuild:
            given = raw.get(d) if raw is not None else None
            batch = given if given is not None else self.records(symbol, d)
            if raw is not None:
                raw[d] = batch
            ms = materialise(symbol, d, batch, mode=mode, feed_latency_ns=feed_latency_ns,
                             hours=self.hours)  # fmt: skip
            self.built += 1
            out[d] = ms
            written[d] = to_stored(ms)
        store.write(r, symbol, written)
        if len(self._cache) + len(out) > self.cache_size:
            self._cache.clear()
            self._checked.clear()
        for d, ms in out.items():
            self._cache[(symbol, d)] = ms
            if found.has_trades:
                self._checked[(symbol, d)] = found.totals
        return found.has_trades, out


def refresh_aggregates(
    vault: Vault,
    symbol: str,
    days: Sequence[dt.date] | None = None,
    *,
    now_ns: int | None = None,
    lookback: int = 30,
    hours: SessionHours | None = None,
) -> int:
    """Fill or refresh the materialised session aggregates of ``symbol`` in Valkey.

    For the live feature worker (and anyone who wants history features to be warm):
    call it at start-up and then every so often (say once a minute, or after the
    bridge stored a burst for the symbol). For each session date in ``days``
    (default: the ``lookback`` + 1 B3 sessions up to the local date of ``now_ns``,
    default now, that date's own session included when it is one) it reads the
    per-day record counters (one round trip) and rebuilds from the raw records, and
    writes back, only the
    sessions whose stored aggregate is missing or stale (records added, or trimmed,
    since it was built). Returns how many sessions were rebuilt (0: all were fresh).

    It never changes what a feature at T returns: a stale or missing aggregate is
    rebuilt on first use anyway (``FeatureEngine``); this only moves that cost out
    of the first request.
    """
    import time

    if days is None:
        t = time.time_ns() if now_ns is None else now_ns
        today = dt.datetime.fromtimestamp(t / 1e9, B3_TZ).date()
        # the sessions up to and including today's (if today is one)
        days = previous_sessions(symbol, today + dt.timedelta(days=1), lookback + 1)
    agg = AggregateStore(vault, hours=hours)
    agg.sessions(symbol, list(days))
    return agg.built
