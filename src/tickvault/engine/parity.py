"""What the live feature worker wrote, recomputed from the store (``check_rows``), and the
previous sessions' aggregates both use (``previous_aggregates``).

The recomputation is the pure batch path over the records the worker saw:

- the symbol's live trades (realtime stream) as stored, of each local day in the
  range (from the day's start, so the windows and the VWAP are complete), in
  (ts_event, trade_id) order, corrections left out (the worker skips EDIT/CANCEL
  records: it updates on trades) - live records are known at ``ts_recv``, and
  every stored one was received before the check, so the store's resolution at
  the check's time is what the worker saw, in order;
- the intraday set by ``FeatureSet.batch`` (the row after each trade, equal bit for
  bit to the live state's), taken at the last trade of each event time e: the value
  at T = e + 1 ns;
- the history features by ``history_features`` at T, from the current session's
  aggregates as of T (``build_session_aggregates``) and the previous sessions' from
  ``previous_aggregates``, the same function the worker warms up with.

Exact comparison (NaN equals NaN), with one documented exception: the book features
(``spread``, ``book_imbalance``, ``microprice``) are left out. The worker reads the book
top from the book topic as it arrives, interleaved with the trade topic in arrival
order, and the store keeps no record of that interleaving, so the book top the worker
had at a trade cannot be recomputed exactly from the store (and the book changes an
aggression causes arrive after its trades, so the live row usually has the book from
before them, where the batch definition takes the book tops with ts <= ts_event).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tickvault.engine.aggregates import AggregateStore
from tickvault.engine.rows import REGIME_CODES, FeatureRows
from tickvault.errors import QueryError
from tickvault.features import (
    FeatureSet,
    HistoryParams,
    SessionAggregates,
    build_session_aggregates,
    history_features,
)
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.records.validate import check_symbol
from tickvault.timeutil import NS_PER_DAY, TimeLike, local_to_utc_ns, to_ns, trading_days
from tickvault.vault import Vault
from tickvault.venue.b3 import default_hours, previous_sessions, session_of

BOOK_FEATURES = ("spread", "book_imbalance", "microprice")
_CORRECTION = np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)


def previous_aggregates(
    vault: Vault, symbol: str, day: dt.date, params: HistoryParams | None = None
) -> dict[dt.date, SessionAggregates]:
    """The complete aggregates of the sessions before ``day`` that the history features
    read (sessions with trades only), from the aggregate store (``engine.aggregates``:
    materialised in Valkey, rebuilt from the raw records when missing or stale).

    The one place the worker and the check get previous sessions from."""
    p = params or HistoryParams()
    n = max(p.momentum_sessions, p.volatility_sessions, 1)
    _, mats = AggregateStore(vault).sessions(symbol, previous_sessions(symbol, day, n))
    return {d: m.aggs for d, m in mats.items() if m.aggs.first_ts is not None}


def _plain(batch: TradeBatch) -> TradeBatch:
    """Resolved records as trades: cancels out, an edit's flag cleared (it is the trade)."""
    keep = np.flatnonzero((batch.flags & np.uint8(TradeFlag.CANCEL)) == 0)
    batch = batch.take(keep)
    if bool((batch.flags & _CORRECTION).any()):
        batch = TradeBatch(**{**batch.columns(), "flags": batch.flags & ~_CORRECTION})
    return batch


def live_trades(vault: Vault, symbol: str, start_ns: int, end_ns: int) -> TradeBatch:
    """The live trades the worker updates on, as stored, with start <= ts_event < end."""
    cols = vault.range_columns(symbol, start_ns, end_ns, streams=("realtime",))
    batch = TradeBatch(**cols)
    batch = batch.take(np.flatnonzero((batch.flags & _CORRECTION) == 0))
    return batch.take(np.lexsort((batch.trade_id, batch.ts_event)))


def day_start_ns(ts_ns: int, vault: Vault) -> int:
    tz = vault.settings.tz
    day = int(trading_days(np.array([ts_ns], np.int64), tz)[0])
    return int(local_to_utc_ns(np.array([day * NS_PER_DAY], np.int64), tz)[0])


@dataclasses.dataclass(frozen=True)
class CheckReport:
    symbol: str
    rows: int
    """Live rows compared (the latest per T)."""
    differences: pd.DataFrame
    """One row per difference: T, feature, live, recomputed."""
    missing: list[int]
    """T of a trade group in the range with no live row (between the first and last row)."""
    extra: list[int]
    """T of live rows no stored trade explains."""
    skipped: tuple[str, ...] = BOOK_FEATURES

    @property
    def ok(self) -> bool:
        return self.differences.empty and not self.missing and not self.extra


def check_rows(
    vault: Vault,
    symbol: str,
    start: TimeLike,
    end: TimeLike,
    *,
    feature_set: FeatureSet | None = None,
    params: HistoryParams | None = None,
) -> CheckReport:
    """Recompute from the store what the worker wrote for T in [start, end) (module doc)."""
    symbol = check_symbol(symbol)
    default_hours(symbol)  # a symbol without session hours: a clear error now
    tz = vault.settings.tz
    s, e = to_ns(start, tz, name="start"), to_ns(end, tz, name="end")
    if s >= e:
        raise QueryError(f"--start {start} must be before --end {end}")
    fs = feature_set or FeatureSet()
    rows_api = FeatureRows(vault, fs, params)
    rows_api.check_schema(symbol)
    live = rows_api.range(symbol, s, e)
    if live.empty:
        raise QueryError(
            f"no feature rows of {symbol} with T in [{start}, {end}): run the worker "
            "(tickvault features run --symbols ...) or choose another range"
        )
    p = params or HistoryParams()
    trades = live_trades(vault, symbol, day_start_ns(s, vault), e)
    ts = trades.ts_event
    cols = fs.batch(trades)
    # the last trade of each event time: its row is the value at T = e + 1
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    group_t = ts[last] + 1
    want_idx = np.flatnonzero(last)
    in_range = (group_t >= s) & (group_t < e)
    expected_t = group_t[in_range]
    live_t = live.index.to_numpy(dtype=np.int64)
    pos = np.searchsorted(expected_t, live_t)
    found = (pos < expected_t.size) & (expected_t[np.minimum(pos, expected_t.size - 1)] == live_t)
    extra = live_t[~found].tolist()
    lo, hi = live_t.min(), live_t.max()
    covered = np.isin(expected_t, live_t)
    missing = expected_t[~covered & (expected_t >= lo) & (expected_t <= hi)].tolist()

    names = [f.name for f in fs.features if f.name not in BOOK_FEATURES]
    matched_t = live_t[found]
    rec_idx = want_idx[in_range][pos[found]]
    diffs: list[tuple[int, str, object, object]] = []
    sub = live.loc[matched_t]
    for name in names:
        lv = sub[name].to_numpy(dtype=np.float64)
        rv = cols[name][rec_idx]
        _compare(diffs, matched_t, name, lv, rv)
    # history features: per row, at its T, from the aggregates as of T
    hist = _history_expected(vault, symbol, trades, matched_t, p)
    for name, rv in hist.items():
        if name == "volatility_regime":
            lv_codes = np.array(
                [REGIME_CODES[v if isinstance(v, str) else None] for v in sub[name]],
                dtype=np.float64,
            )
            _compare(diffs, matched_t, name, lv_codes, rv, labels=True)
        else:
            _compare(diffs, matched_t, name, sub[name].to_numpy(dtype=np.float64), rv)
    frame = pd.DataFrame(diffs, columns=["T", "feature", "live", "recomputed"])
    return CheckReport(symbol, int(found.sum()), frame, missing, extra)


def _compare(
    out: list[tuple[int, str, object, object]],
    t: np.ndarray,
    name: str,
    live: np.ndarray,
    rec: np.ndarray,
    *,
    labels: bool = False,
) -> None:
    same = (live == rec) | (np.isnan(live) & np.isnan(rec))
    from tickvault.engine.rows import REGIME_LABELS

    for i in np.flatnonzero(~same).tolist():
        lv, rv = float(live[i]), float(rec[i])
        if labels:
            out.append((int(t[i]), name, REGIME_LABELS.get(int(lv)), REGIME_LABELS.get(int(rv))))
        else:
            out.append((int(t[i]), name, lv, rv))


def _history_expected(
    vault: Vault, symbol: str, trades: TradeBatch, times: np.ndarray, p: HistoryParams
) -> dict[str, np.ndarray]:
    from tickvault.engine.rows import HISTORY_NUMBERS

    out = {n: np.full(times.size, math.nan) for n in (*HISTORY_NUMBERS, "volatility_regime")}
    previous: dict[dt.date, dict[dt.date, SessionAggregates]] = {}
    current: dict[int, SessionAggregates] = {}
    values: dict[int, dict[str, float | str | None]] = {}
    ts = trades.ts_event
    for i, t in enumerate(times.tolist()):
        sess = session_of(symbol, t)
        if sess is None:
            out["volatility_regime"][i] = REGIME_CODES[None]
            continue
        if sess.date not in previous:
            previous[sess.date] = previous_aggregates(vault, symbol, sess.date, p)
        # the values depend only on trades before T's minute: build per minute
        minute = (t - sess.open_ns) // 60_000_000_000
        key = sess.open_ns + minute * 60_000_000_000
        if key not in current:
            upto = int(np.searchsorted(ts, key, side="left"))
            current[key] = build_session_aggregates(
                symbol, sess.date, trades.take(np.arange(upto)), as_of_ns=key
            )
        f = values.get(key)
        if f is None:  # one value per minute of the session (the minute grid)
            f = values[key] = history_features(symbol, t, current[key], previous[sess.date], p)
        for n in HISTORY_NUMBERS:
            v = f[n]
            out[n][i] = float(v) if isinstance(v, (int, float)) else math.nan
        out["volatility_regime"][i] = REGIME_CODES[f["volatility_regime"]]  # type: ignore[index]
    return out


def format_report(report: CheckReport, tz: object) -> Sequence[str]:
    """Lines for the CLI (without the table)."""
    return [
        f"{report.symbol}: {report.rows:,} live rows compared, {len(report.differences):,} "
        f"differences, {len(report.missing):,} missing rows, {len(report.extra):,} extra rows "
        f"(book features not compared: {', '.join(report.skipped)})"
    ]
