"""Look-ahead analysis: recompute each decision from data cut at its time and re-decide.

    from tickvault.engine.lookahead import lookahead
    report = lookahead(vault, "WINZ25", "2025-12-01", "2025-12-02", model="3f2a...")
    report.ok            # True: no signal changes when its data is cut at its T
    report.changes       # one row per signal whose side or strength changed

What is checked: the stored signals of ``signals:{SYMBOL}`` in [start, end) when there
are any (what the live model worker said), else the signals of a ``backtest`` over the
range with the same models and settings. For each signal made on the row of time T:

- **the data cut at T**: the symbol's raw records of T's trading day with
  ts_event < T and known by K, resolved (``features.known``: a record counts from its
  knowledge time; corrections apply), where K is when the row's last trade was known
  (the row's ``ts_recv`` in ``features:{SYMBOL}`` for a stored signal, the backtest's
  knowledge time of it otherwise; a stored signal without its row: T - 1 ns plus the
  feed latency). Nothing with ts_event >= T can reach a value;
- **the features at T from it**: the intraday set on those trades (the batch path,
  ``FeatureSet.at``), the stored book's top before T (``engine.books``), the history
  features from the current session's aggregates as of T and the previous sessions'
  (``engine.parity.previous_aggregates``), and each extra column (``backtest``'s
  ``extra``) computed on the cut trades, taken at the last one;
- **re-decided**: the same model kind as the signal's mode (or, when that model is
  missing, the backtest's rule), the policy restored to the state before the signal
  (the previous signal's side and time: signals are emitted only on side changes, so
  the sequence is the state), one step at T.

A signal changes when the re-decided side differs or the strength moves by more than
``tolerance``. The default features of the live stream are computed from exactly the
trades the cut keeps, so they report none; a feature that reads trades after T (an
extra column such as ``df["price"].shift(-20)``) is caught. Documented differences
that are not look-ahead: a correction known by K is applied here but skipped by the
live stream, and the stream's book top is the book as it stood when the next trade
arrived, where this takes the stored book before T (data with a book may show those).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tickvault.engine.aggregates import AggregateStore
from tickvault.engine.backtest import (
    ExtraFn,
    backtest,
    extra_column,
    load_models,
    policy_params,
)
from tickvault.engine.books import book_tops
from tickvault.engine.features import FeatureEngine
from tickvault.engine.parity import day_start_ns, previous_aggregates
from tickvault.engine.rows import FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.errors import QueryError
from tickvault.features import FeatureSet, HistoryParams, build_session_aggregates
from tickvault.features.batch import BookTops
from tickvault.features.history import history_features
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, knowledge_time, resolve_records
from tickvault.features.stream import HISTORY_NUMBERS
from tickvault.features.user import trades_frame
from tickvault.models.manager import ModelSet
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import TradeBatch
from tickvault.records.validate import check_symbol
from tickvault.signals.policy import PolicyParams, SignalPolicy
from tickvault.timeutil import TimeLike, format_ns, to_ns, trading_day
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ, default_hours, session_of

COLUMNS = ("T", "mode", "side", "new_side", "strength", "new_strength", "known_ns")


@dataclass(frozen=True)
class LookaheadReport:
    symbol: str
    source: str
    """"stored" (the signals of signals:{SYMBOL}) or "backtest"."""
    checked: int
    changes: pd.DataFrame
    """One row per changed signal: ``COLUMNS`` (sides as names, T and K as int ns)."""

    @property
    def ok(self) -> bool:
        return self.changes.empty


def lookahead(
    vault: Vault,
    symbol: str,
    start: TimeLike,
    end: TimeLike,
    *,
    model: str | None = None,
    fast_model: str | None = None,
    models: ModelSet | None = None,
    predict_every: Any = None,
    extra: Mapping[str, ExtraFn] | None = None,
    feature_set: FeatureSet | None = None,
    params: HistoryParams | None = None,
    policy: PolicyParams | None = None,
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    tolerance: float = 1e-9,
    use_stored: bool = True,
) -> LookaheadReport:
    """Check [start, end) of ``symbol`` (module docstring). ``use_stored=False``: check
    a backtest's signals even when stored signals exist."""
    symbol = check_symbol(symbol)
    default_hours(symbol)
    tz = vault.settings.tz
    start_ns, end_ns = to_ns(start, tz, name="start"), to_ns(end, tz, name="end")
    if start_ns >= end_ns:
        raise QueryError(f"--start {start} must be before --end {end}")
    fs = feature_set or FeatureSet()
    hp = params or HistoryParams()
    pp = policy or policy_params(vault.settings)
    if models is None:
        models = load_models(vault, symbol, model, fast_model,
                             engine=FeatureEngine(vault, fs, hp))  # fmt: skip
    store = SignalStore(vault)
    stored = store.signals(symbol, start_ns, end_ns) if use_stored else []
    if stored:
        source = "stored"
        signals = sorted(stored, key=lambda s: s.ts_event)
        before = store.signals(symbol, 0, start_ns)
        prior = max(before, key=lambda s: s.ts_event) if before else None
        known = _stored_known(vault, symbol, signals, fs, hp, feed_latency_ns)
    else:
        source = "backtest"
        r = backtest(vault, symbol, start_ns, end_ns, models=models, predict_every=predict_every,
                     feature_set=fs, params=hp, policy=pp, feed_latency_ns=feed_latency_ns,
                     extra=extra)  # fmt: skip
        signals, known, prior = r.signals, r.signal_known, None
    checker = _Recompute(vault, symbol, fs, hp, extra, feed_latency_ns)
    out: list[tuple[Any, ...]] = []
    prev = prior
    for sig, k in zip(signals, known, strict=True):
        row = checker.row(sig.t_features, k)
        side, strength = _redecide(symbol, models, pp, row, sig, prev)
        if side != sig.side or not abs(strength - sig.strength) <= tolerance:
            out.append((sig.t_features, sig.mode.name, sig.side.name,
                        side.name if side is not None else "-", sig.strength, strength,
                        k))  # fmt: skip
        prev = sig
    frame = pd.DataFrame(out, columns=list(COLUMNS))
    return LookaheadReport(symbol, source, len(signals), frame)


def _stored_known(
    vault: Vault,
    symbol: str,
    signals: Sequence[Signal],
    fs: FeatureSet,
    hp: HistoryParams,
    feed_latency_ns: int,
) -> list[int]:
    """K of each stored signal: its row's ts_recv (or T - 1 + the feed latency)."""
    if not signals:
        return []
    t = [s.t_features for s in signals]
    rows = FeatureRows(vault, fs, hp).range(symbol, min(t), max(t) + 1)
    recv = rows["ts_recv"] if "ts_recv" in rows.columns else None
    out = []
    for x in t:
        if recv is not None and x in recv.index and int(recv.loc[x]) > 0:
            out.append(int(recv.loc[x]))
        else:
            out.append(x - 1 + feed_latency_ns)
    return out


def _redecide(
    symbol: str,
    models: ModelSet,
    pp: PolicyParams,
    row: Mapping[str, Any],
    sig: Signal,
    prev: Signal | None,
) -> tuple[Side | None, float]:
    """(side after the step, strength) re-decided on ``row``; (None, NaN): no model."""
    mode: Mode | None = sig.mode if models.available(sig.mode) else None
    if mode is None:
        ready = models.ready(row) and models.available(Mode.HISTORY)
        mode = Mode.HISTORY if ready else Mode.FAST if models.available(Mode.FAST) else None
    if mode is None:
        return None, math.nan
    pred = models.predict(row, mode)
    if pred is None:
        return None, math.nan
    pol = SignalPolicy(symbol, pred.version, pred.horizon_ns, pp)
    pol.restore(prev.side if prev else Side.FLAT, prev.ts_event if prev else None, None)
    made = pol.step(sig.t_features, sig.t_features, pred.p_up, pred.p_down, mode)
    strength = max(-1.0, min(1.0, pred.p_up - pred.p_down))
    return (made.side if made is not None else pol.side), strength


class _Recompute:
    """Feature rows at (T, K) from the records cut there (module docstring)."""

    def __init__(
        self,
        vault: Vault,
        symbol: str,
        fs: FeatureSet,
        hp: HistoryParams,
        extra: Mapping[str, ExtraFn] | None,
        feed_latency_ns: int,
    ) -> None:
        self.vault, self.symbol, self.fs, self.hp = vault, symbol, fs, hp
        self.extra = dict(extra or {})
        self.lat = feed_latency_ns
        self._days: dict[int, tuple[TradeBatch, np.ndarray, BookTops | None]] = {}
        self._prev: dict[dt.date, Any] = {}

    def _day(self, t: int) -> tuple[TradeBatch, np.ndarray, BookTops | None]:
        day = trading_day(t - 1, B3_TZ)
        got = self._days.get(day)
        if got is None:
            d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
            records = AggregateStore(self.vault).records(self.symbol, d)
            known = knowledge_time(records, self.lat)
            lo = day_start_ns(t - 1, self.vault)
            tops = book_tops(self.vault, self.symbol, lo, lo + 86_400_000_000_000)
            got = self._days[day] = (records, known, tops if tops.ts.size else None)
        return got

    def row(self, t: int, k: int) -> dict[str, Any]:
        records, known, tops = self._day(t)
        mask = (records.ts_event < t) & (known <= k)
        cut = resolve_records(records.take(np.flatnonzero(mask)), known[mask])
        vals = self.fs.at(cut, [t], book=tops)
        row: dict[str, Any] = {n: float(vals[n].iloc[0]) for n in self.fs.names}
        s = session_of(self.symbol, t - 1)
        if s is None or not s.open_ns <= t <= s.close_ns or not len(cut):
            row.update(dict.fromkeys(HISTORY_NUMBERS, math.nan))
            row["volatility_regime"] = None
        else:
            if s.date not in self._prev:
                self._prev[s.date] = previous_aggregates(self.vault, self.symbol, s.date, self.hp)
            current = build_session_aggregates(self.symbol, s.date, cut, as_of_ns=t)
            f = history_features(self.symbol, t, current, self._prev[s.date], self.hp)
            for n in HISTORY_NUMBERS:
                v = f[n]
                row[n] = float(v) if isinstance(v, (int, float)) else math.nan
            row["volatility_regime"] = f["volatility_regime"]
        if self.extra:
            frame = trades_frame(cut.ts_event, cut.price, cut.qty, cut.trade_type)
            for name, fn in self.extra.items():
                col = extra_column(name, fn, frame) if len(frame) else np.full(1, math.nan)
                row[name] = float(col[-1])
        return row


def format_change_time(t_ns: int) -> str:
    return format_ns(t_ns, B3_TZ)


__all__ = ["COLUMNS", "LookaheadReport", "lookahead"]
