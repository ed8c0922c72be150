"""``FeatureEngine``: point-in-time features and training frames over the store.

    from tickvault import Vault
    from tickvault.engine import FeatureEngine

    with Vault.open() as vault:
        fe = FeatureEngine(vault)
        row = fe.at("WINZ25", "2025-11-25T15:00")       # dict: feature name -> value
        hist = fe.history("WINZ25", "2025-11-25T15:00")  # the history features only
        df = fe.frame("WINZ25", "2025-10-14", "2025-11-26", every="1min",
                      labels=("1min", "5min"))           # one row per step T in a session

Every value equals the pure reference path on the raw records
(``features.pointintime.intraday_at`` and ``history_at``) exactly: the engine only
chooses cheaper inputs that are provably the same (docs/features.md, "The
aggregate store"):

- history features read the sessions' aggregates materialised in Valkey
  (``engine.aggregates``), filled on demand; a session is used at T only when every
  record it was built from that the features read was known at T, else that
  session is rebuilt from its raw records as known at T (the slow, exact path);
- intraday features read the raw records of T's trading day (the intraday set
  restarts each day), as known at T;
- a frame reads each session's raw records once and derives every step from
  them: the session's rows at steps with no record "in flight" (ts_event before
  the step, known after it) come from one vectorised evaluation of the final
  records; the few steps with records in flight are evaluated from the records as
  known at that step.

Modes: ``mode="knowledge"`` (default) counts a record from its knowledge time
(an imported trade at ``ts_event + feed_latency_ns``: ``features.known``);
``mode="store"`` counts it from its ``ts_recv``, the store's ``known_at``, to audit
what a live model saw.

Rows, columns: ``at`` returns a dict (name -> float, and the ``volatility_regime``
label as a str or None) in the order of ``names``: the intraday set
(``FeatureSet``, 14 features by default), then ``HISTORY_FEATURES``. ``frame``
returns a DataFrame indexed by T (``DatetimeIndex``, UTC, named ``T``), the same
columns, then one ``label_fwd_ret_<h>`` column per label horizon.

Book features (``spread``, ``book_imbalance``, ``microprice``) read the stored offer
book (``engine.books``: the top as it stood at T, from ``book:{SYMBOL}``); NaN when
no book is stored for the symbol.

Bad input: an unknown symbol (no trades stored), T outside every session of the
symbol, or a malformed time or duration raise ``QueryError``; a window longer than
the stored history gives the documented NaN (docs/features.md, section 5).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.engine.aggregates import (
    AggregateStore,
    MaterialisedSession,
    materialise,
    resolve_final,
)
from tickvault.engine.books import book_tops
from tickvault.errors import QueryError
from tickvault.features.aggregates import MINUTE_NS, SessionAggregates, build_session_aggregates
from tickvault.features.featureset import FeatureSet
from tickvault.features.history import HISTORY_FEATURES, HistoryParams, history_features
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, Mode, as_known_at, knowledge_time
from tickvault.features.labels import forward_return_labels, label_name
from tickvault.records.trades import TradeBatch
from tickvault.records.validate import check_symbol
from tickvault.timeutil import TimeLike, format_ns, to_ns
from tickvault.vault import Vault
from tickvault.venue.b3 import (
    B3_TZ,
    Session,
    SessionHours,
    default_hours,
    previous_sessions,
    session,
    session_of,
    sessions,
)

I64 = npt.NDArray[np.int64]
Value = float | str | None
MAX_FRAME_ROWS = 5_000_000
"""A frame larger than this is refused (ask for a shorter range or a larger step)."""


def parse_duration(value: str | int | pd.Timedelta | dt.timedelta, name: str) -> int:
    """A positive duration ("1min", "5min", "30s", a timedelta, or int ns) as ns."""
    try:
        ns = int(value) if isinstance(value, int) else int(pd.Timedelta(value).value)
    except (ValueError, TypeError):
        raise QueryError(
            f"{name}: cannot read {value!r} as a duration; use e.g. '1s', '1min', '5min', '1h'"
        ) from None
    if ns <= 0:
        raise QueryError(f"{name}: a duration must be > 0, got {value!r}")
    return ns


def history_descriptions(p: HistoryParams) -> list[dict[str, object]]:
    """``describe()`` entries of the history features (docs/features.md, section 5)."""

    def w(minutes: int) -> str:
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"

    vol = [w(p.volume_window_min), f"{p.bucket_min}min buckets", "1 previous session"]
    mom = [w(p.momentum_window_min), f"{p.momentum_sessions} sessions"]
    rv = [w(p.volatility_window_min), f"{p.volatility_sessions} sessions"]
    rows: list[tuple[str, list[str], str, str]] = [
        ("volume_pattern_similarity", vol, "correlation in [-1, 1]",
         "Pearson correlation of the 5-minute volume buckets of the last 3 hours (clipped "
         "at the open) with the same clock buckets of the previous session"),
        ("volume_ratio_prev_session", vol, "ratio",
         "volume of those buckets now / in the previous session"),
        ("momentum_30min", mom[:1], "log return", "ln(p(T_g) / p(T_g - 30 min))"),
        ("historical_momentum_percentile", mom, "percent in [0, 100]",
         "mid-rank percentile of momentum_30min among the same clock window of the "
         "previous sessions (NaN with fewer than 5)"),
        ("rv_30min", rv[:1], "log return",
         "sqrt of the sum of squared 1-minute log returns over the last 30 minutes"),
        ("volatility_regime_score", rv, "z-score",
         "z-score of ln rv_30min against the same clock window of the previous sessions "
         "(sample std; NaN with fewer than 5)"),
        ("volatility_regime", rv, "label", "low below -1, high above +1, else normal"),
    ]  # fmt: skip
    return [
        {"name": n, "version": 1, "units": u, "windows": win, "definition": d, "kind": "history"}
        for n, win, u, d in rows
    ]


class FeatureEngine:
    """Features at any T and training frames from one Vault (see the module docstring)."""

    def __init__(
        self,
        vault: Vault,
        feature_set: FeatureSet | None = None,
        params: HistoryParams | None = None,
        mode: Mode = "knowledge",
        feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
        *,
        hours: SessionHours | None = None,
    ) -> None:
        self.vault = vault
        self.feature_set = feature_set or FeatureSet()
        self.params = params or HistoryParams()
        self.mode = self._mode(mode)
        if feed_latency_ns < 0:
            raise QueryError(f"feed_latency_ns must be >= 0, got {feed_latency_ns}")
        self.feed_latency_ns = feed_latency_ns
        self.hours = hours
        self.aggregates = AggregateStore(vault, hours=hours)
        self._lookback = max(self.params.momentum_sessions, self.params.volatility_sessions, 1)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _mode(mode: str) -> Mode:
        if mode == "knowledge":
            return "knowledge"
        if mode == "store":
            return "store"
        raise QueryError(f"mode must be 'knowledge' or 'store', got {mode!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The feature columns, in order: the intraday set, then the history features."""
        return (*self.feature_set.names, *HISTORY_FEATURES)

    def describe(self) -> list[dict[str, object]]:
        """Name, version, windows, units and definition of every feature."""
        intraday = [{**f, "kind": "intraday"} for f in self.feature_set.describe()]
        return intraday + history_descriptions(self.params)

    def _time(self, value: TimeLike, name: str) -> int:
        return to_ns(value, self.vault.settings.tz, name=name)

    def _session(self, symbol: str, t_ns: int) -> Session:
        s = session_of(symbol, t_ns, self.hours)
        if s is None:
            h = self.hours or default_hours(symbol)
            raise QueryError(
                f"T={format_ns(t_ns, B3_TZ)} (America/Sao_Paulo) is outside every {symbol} "
                f"session ({h.open:%H:%M}-{h.close:%H:%M} on B3 trading days): features at "
                "T exist only during a session; pick a T inside one"
            )
        return s

    @staticmethod
    def _unknown(symbol: str) -> QueryError:
        return QueryError(
            f"no trades stored for {symbol}: check the symbol (tickvault status lists the "
            "stored ones) or import or record its history first"
        )

    # ------------------------------------------------------------------ point in time
    def history(self, symbol: str, t: TimeLike, *, mode: Mode | None = None) -> dict[str, Value]:
        """The history features at T (``HISTORY_FEATURES``): a few small reads when the
        sessions' aggregates are materialised and fresh (warm)."""
        symbol = check_symbol(symbol)
        t_ns = self._time(t, "T")
        return self._history(
            symbol, self._session(symbol, t_ns), t_ns, self._mode(mode or self.mode)
        )

    def at(self, symbol: str, t: TimeLike, *, mode: Mode | None = None) -> dict[str, Value]:
        """One row at T: the intraday set, then the history features (``names``).

        Costs a read of T's trading day so far (the intraday set) plus ``history``."""
        symbol = check_symbol(symbol)
        t_ns = self._time(t, "T")
        m = self._mode(mode or self.mode)
        s = self._session(symbol, t_ns)
        records = self.aggregates.records(symbol, s.date)
        hist = self._history(symbol, s, t_ns, m, current_raw=records)
        known = as_known_at(records, t_ns, mode=m, feed_latency_ns=self.feed_latency_ns)
        tops = book_tops(self.vault, symbol, _day_start(s.date), t_ns)
        row = self.feature_set.at(known, [t_ns], book=tops)
        out: dict[str, Value] = {name: float(row[name].iloc[0]) for name in self.feature_set.names}
        out.update(hist)
        return out

    def _history(
        self,
        symbol: str,
        s: Session,
        t_ns: int,
        mode: Mode,
        current_raw: TradeBatch | None = None,
    ) -> dict[str, Value]:
        lat = self.feed_latency_ns
        prev_dates = previous_sessions(symbol, s.date, self._lookback)
        raw: dict[dt.date, TradeBatch] = {}
        if current_raw is not None:
            raw[s.date] = current_raw
        has, mats = self.aggregates.sessions(
            symbol, [*prev_dates, s.date], mode=mode, feed_latency_ns=lat, raw=raw
        )
        if not has:
            raise self._unknown(symbol)
        k = (t_ns - s.open_ns) // MINUTE_NS
        cur = mats[s.date]
        if cur.known_by(t_ns, mode, lat, minutes=k):
            current = cur.aggs
        else:
            records = raw.get(s.date) or self.aggregates.records(symbol, s.date)
            known = as_known_at(records, t_ns, mode=mode, feed_latency_ns=lat)
            current = build_session_aggregates(
                symbol, s.date, known, as_of_ns=t_ns, hours=self.hours
            )
        previous: dict[dt.date, SessionAggregates] = {}
        for d in prev_dates:
            ms = mats[d]
            if ms.known_by(t_ns, mode, lat):
                a = ms.aggs
            else:
                records = raw.get(d) or self.aggregates.records(symbol, d)
                known = as_known_at(records, t_ns, mode=mode, feed_latency_ns=lat)
                a = build_session_aggregates(symbol, d, known, hours=self.hours)
            if a.first_ts is not None:
                previous[d] = a
        return history_features(symbol, t_ns, current, previous, self.params)

    # ------------------------------------------------------------------ frames
    def steps(self, symbol: str, start: TimeLike, end: TimeLike, every: Any = "1min") -> I64:
        """The frame's steps: start + i * every in [start, end), inside a session only."""
        symbol = check_symbol(symbol)
        start_ns, end_ns = self._time(start, "start"), self._time(end, "end")
        return np.concatenate(
            [
                t
                for _, t in self._session_steps(
                    symbol, start_ns, end_ns, parse_duration(every, "every")
                )
            ]
            or [np.empty(0, np.int64)]
        )

    def _session_steps(
        self, symbol: str, start_ns: int, end_ns: int, every_ns: int
    ) -> list[tuple[Session, I64]]:
        if start_ns >= end_ns:
            raise QueryError(
                f"start ({format_ns(start_ns, B3_TZ)}) must be before end "
                f"({format_ns(end_ns, B3_TZ)}); the frame covers [start, end)"
            )
        d0 = dt.datetime.fromtimestamp(start_ns / 1e9, B3_TZ).date()
        d1 = dt.datetime.fromtimestamp((end_ns - 1) / 1e9, B3_TZ).date()
        out: list[tuple[Session, I64]] = []
        total = 0
        for d in sessions(symbol, d0, d1):
            s = session(symbol, d, self.hours)
            lo, hi = max(s.open_ns, start_ns), min(s.close_ns, end_ns - 1)
            if lo > hi:
                continue
            i0 = -(-(lo - start_ns) // every_ns)
            i1 = (hi - start_ns) // every_ns
            if i1 < i0:
                continue
            total += i1 - i0 + 1
            if total > MAX_FRAME_ROWS:
                raise QueryError(
                    f"the frame would have more than {MAX_FRAME_ROWS:,} rows: ask for a "
                    "shorter range or a larger step (every=...)"
                )
            out.append((s, start_ns + every_ns * np.arange(i0, i1 + 1, dtype=np.int64)))
        return out

    def frame(
        self,
        symbol: str,
        start: TimeLike,
        end: TimeLike,
        every: Any = "1min",
        labels: Sequence[Any] = ("1min", "5min"),
        mode: Mode | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> pd.DataFrame:
        """A training frame: one row per step T = start + i * every in [start, end) that
        falls inside a session (open <= T <= close), one column per feature (``names``),
        then ``label_fwd_ret_<h>`` per horizon in ``labels`` (computed from the trades
        AFTER T: ``features.labels``). ``progress(done, total)`` is called after each
        session. Each session's raw records are read once (module docstring)."""
        symbol = check_symbol(symbol)
        m = self._mode(mode or self.mode)
        start_ns, end_ns = self._time(start, "start"), self._time(end, "end")
        every_ns = parse_duration(every, "every")
        horizons = [parse_duration(h, "label") for h in labels]
        plan = self._session_steps(symbol, start_ns, end_ns, every_ns)
        columns = [*self.names, *(label_name(h) for h in horizons)]
        if not plan:
            return _empty_frame(columns)
        lat = self.feed_latency_ns
        frame_days = {s.date for s, _ in plan}
        first = plan[0][0].date
        before = [
            d for d in previous_sessions(symbol, first, self._lookback) if d not in frame_days
        ]
        has, mats = self.aggregates.sessions(symbol, before, mode=m, feed_latency_ns=lat)
        if not has:
            raise self._unknown(symbol)
        mats = dict(mats)
        prev_raw: OrderedDict[dt.date, TradeBatch] = OrderedDict()
        parts: list[pd.DataFrame] = []
        for i, (s, steps) in enumerate(plan):
            records = self.aggregates.records(symbol, s.date)
            part, ms = self._session_frame(symbol, s, steps, records, mats, m, horizons, prev_raw)
            mats[s.date] = ms
            self.aggregates.put(symbol, s.date, ms)
            parts.append(part)
            if progress is not None:
                progress(i + 1, len(plan))
        out = pd.concat(parts)[columns]
        return _regime_as_object(out)

    def _prev_raw(
        self, symbol: str, d: dt.date, cache: OrderedDict[dt.date, TradeBatch]
    ) -> TradeBatch:
        got = cache.get(d)
        if got is None:
            got = self.aggregates.records(symbol, d)
            cache[d] = got
            while len(cache) > 4:
                cache.popitem(last=False)
        return got

    def _session_frame(
        self,
        symbol: str,
        s: Session,
        steps: I64,
        records: TradeBatch,
        mats: dict[dt.date, MaterialisedSession],
        mode: Mode,
        horizons: Sequence[int],
        prev_raw: OrderedDict[dt.date, TradeBatch],
    ) -> tuple[pd.DataFrame, MaterialisedSession]:
        lat = self.feed_latency_ns
        fs = self.feature_set
        kt = (
            knowledge_time(records, lat)
            if mode == "knowledge"
            else records.ts_recv.astype(np.int64)
        )
        final = resolve_final(records, mode=mode, feed_latency_ns=lat)
        ms = materialise(symbol, s.date, records, mode=mode, feed_latency_ns=lat,
                         hours=self.hours, resolved=final)  # fmt: skip

        def known_at(t: int, before: int) -> TradeBatch:
            """The records with ts_event < ``before`` as known at t, resolved."""
            got = _known_from_final(records, kt, final, t, before)
            if got is not None:
                return got
            sub = records.take(np.flatnonzero(records.ts_event < before))
            return as_known_at(sub, t, mode=mode, feed_latency_ns=lat)

        ev = np.asarray(records.ts_event, dtype=np.int64)
        order = np.argsort(ev, kind="stable")
        ev_sorted = ev[order]
        known_max = np.maximum.accumulate(kt[order]) if ev.size else kt

        def in_flight(t: I64) -> npt.NDArray[np.bool_]:
            """True where some record with ts_event < t was known after t."""
            n = np.searchsorted(ev_sorted, t, side="left")
            return (n > 0) & (known_max[np.maximum(n - 1, 0)] > t) if ev.size else n > 0

        # intraday: one vectorised pass over the final records, exact per step elsewhere
        tops = book_tops(self.vault, symbol, _day_start(s.date), int(steps[-1]))
        slow = in_flight(steps)
        intraday = fs.at(final, steps[~slow], book=tops)
        if slow.any():
            extra = [fs.at(known_at(t, t), [t], book=tops) for t in steps[slow].tolist()]
            intraday = pd.concat([intraday, *extra]).loc[steps]

        # history: the current session from its complete aggregates where nothing the
        # step reads was in flight, else from the records known at the step
        prev_dates = previous_sessions(symbol, s.date, self._lookback)
        t0 = int(steps[0])
        fixed: dict[dt.date, SessionAggregates] = {}
        varying: list[dt.date] = []
        for d in prev_dates:
            pm = mats.get(d)
            if pm is None:
                continue
            if pm.known_by(t0, mode, lat):  # monotone in T: known at every later step
                if pm.aggs.first_ts is not None:
                    fixed[d] = pm.aggs
            else:
                varying.append(d)
        grid = s.open_ns + (steps - s.open_ns) // MINUTE_NS * MINUTE_NS
        cur_slow = _inside_in_flight(ev, kt, s, grid, steps)
        built: dict[tuple[dt.date, int], SessionAggregates] = {}
        rows: list[dict[str, Value]] = []
        for j, t in enumerate(steps.tolist()):
            if cur_slow[j]:
                tg = int(grid[j])
                sel = np.flatnonzero(ev < tg)
                key = (s.date, int((kt[sel] <= t).sum()))
                current = built.get(key)
                if current is None:
                    known = known_at(t, tg)
                    current = build_session_aggregates(symbol, s.date, known, hours=self.hours)
                    built[key] = current
            else:
                current = ms.aggs
            previous = fixed
            if varying:
                previous = dict(fixed)
                for d in varying:
                    pm = mats[d]
                    if pm.known_by(t, mode, lat):
                        a = pm.aggs
                    else:
                        raw_d = self._prev_raw(symbol, d, prev_raw)
                        kd = knowledge_time(raw_d, lat) if mode == "knowledge" else raw_d.ts_recv
                        key = (d, int((kd <= t).sum()))
                        got = built.get(key)
                        if got is None:
                            known = as_known_at(raw_d, t, mode=mode, feed_latency_ns=lat)
                            got = build_session_aggregates(symbol, d, known, hours=self.hours)
                            built[key] = got
                        a = got
                    if a.first_ts is not None:
                        previous[d] = a
            rows.append(history_features(symbol, t, current, previous, self.params))
        hist = pd.DataFrame(rows, index=intraday.index, columns=list(HISTORY_FEATURES))
        labels = forward_return_labels(symbol, final, steps, horizons, hours=self.hours)
        part = pd.concat([intraday, hist, pd.DataFrame(labels, index=intraday.index)], axis=1)
        part.index = pd.DatetimeIndex(pd.to_datetime(steps, utc=True), name="T")
        return part, ms


def _day_start(day: dt.date) -> int:
    """Local midnight of ``day`` at the exchange, in ns UTC (the intraday set's day)."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=B3_TZ).timestamp()) * 1_000_000_000


def _known_from_final(
    records: TradeBatch, kt: I64, final: TradeBatch, t: int, before: int
) -> TradeBatch | None:
    """The records of one trading day with ts_event < ``before`` as known at t, resolved,
    taken from ``final`` (the same records resolved with everything known) without
    resolving again: ``final`` less every trade that has a record unknown at t. Exact
    when none of those trades has a record known at t (each other trade then has all
    its records known, so it resolves as in ``final``); None otherwise."""
    ev = records.ts_event
    unknown = (ev < before) & (kt > t)
    ids = np.unique(records.trade_id[unknown])
    if ids.size and bool((np.isin(records.trade_id, ids) & (kt <= t)).any()):
        return None
    n = int(np.searchsorted(final.ts_event, before, side="left"))
    keep = np.arange(n)
    if ids.size:
        keep = keep[~np.isin(final.trade_id[:n], ids)]
    return final.take(keep)


def _inside_in_flight(ev: I64, kt: I64, s: Session, grid: I64, steps: I64) -> npt.NDArray[np.bool_]:
    """Per step: some record inside the session with ts_event < the step's grid minute
    was known after the step (the history features read only those minutes)."""
    inside = (ev >= s.open_ns) & (ev <= s.close_ns)
    e, k = ev[inside], kt[inside]
    if e.size == 0:
        return np.zeros(steps.size, dtype=bool)
    order = np.argsort(e, kind="stable")
    e, pm = e[order], np.maximum.accumulate(k[order])
    n = np.searchsorted(e, grid, side="left")
    return (n > 0) & (pm[np.maximum(n - 1, 0)] > steps)


def _regime_as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``volatility_regime`` column as objects, None where there is no label (pandas
    would otherwise infer a string dtype with NaN for None)."""
    values = [v if isinstance(v, str) else None for v in frame["volatility_regime"].tolist()]
    frame["volatility_regime"] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c == "volatility_regime" else np.float64) for c in columns},
        index=pd.DatetimeIndex([], tz="UTC", name="T"),
    )
