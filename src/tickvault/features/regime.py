"""The regime analyzer (pure): a label per step from the volatility regime and the
strength of the trend, for one model per regime (the original design's ModelManager).

From the history features of the same row (docs/features.md, section 5):

- ``trend_strength = momentum_30min / rv_30min``: the last 30 minutes' log return in
  units of their realized volatility (a t-statistic-like ratio; NaN when rv is 0 or
  NaN, or momentum is NaN);
- the trend: ``up`` when ``trend_strength >= threshold``, ``down`` when
  ``<= -threshold``, else ``range`` (threshold 1.0 by default);
- the regime: ``<volatility_regime>_<trend>`` (``low``/``normal``/``high`` ×
  ``up``/``down``/``range``: nine labels), or ``unknown`` when either part is
  missing (fewer than 5 previous sessions, or no trade yet).

A pure function of columns every feature row stores (``momentum_30min``,
``rv_30min``, ``volatility_regime``), so the regime at T is as point-in-time as the
features it reads, live and in a backtest, and recomputes exactly from stored rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tickvault.errors import ValidationError

UNKNOWN = "unknown"
VOL_LABELS = ("low", "normal", "high")
TRENDS = ("up", "down", "range")
REGIMES = tuple(f"{v}_{t}" for v in VOL_LABELS for t in TRENDS)
"""Every label but ``unknown``."""


def _check(threshold: float) -> None:
    if not threshold > 0:
        raise ValidationError(f"trend threshold must be > 0, got {threshold}", field="threshold")


def trend_strength(momentum: float, rv: float) -> float:
    if math.isnan(momentum) or math.isnan(rv) or rv <= 0:
        return math.nan
    return momentum / rv


def regime_of(
    volatility_regime: str | None, momentum: float, rv: float, threshold: float = 1.0
) -> str:
    """The regime label of one row (see the module docstring)."""
    _check(threshold)
    ts = trend_strength(momentum, rv)
    if volatility_regime not in VOL_LABELS or math.isnan(ts):
        return UNKNOWN
    trend = "up" if ts >= threshold else "down" if ts <= -threshold else "range"
    return f"{volatility_regime}_{trend}"


def add_regime(frame: pd.DataFrame, threshold: float = 1.0) -> pd.DataFrame:
    """``frame`` (a training frame or stored feature rows) with two more columns,
    ``trend_strength`` and ``regime``, computed row by row as ``regime_of`` does."""
    _check(threshold)
    missing = {"momentum_30min", "rv_30min", "volatility_regime"} - set(frame.columns)
    if missing:
        raise ValidationError(
            f"the regime needs the columns {sorted(missing)}: pass a frame with the history "
            "features (FeatureEngine.frame or the stored feature rows)",
            field="columns",
        )
    mom = frame["momentum_30min"].to_numpy(np.float64)
    rv = frame["rv_30min"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(rv > 0, mom / np.where(rv > 0, rv, 1.0), np.nan)
    vol = frame["volatility_regime"].to_numpy(object)
    ok = np.isin(vol, VOL_LABELS) & ~np.isnan(ts)
    trend = np.where(ts >= threshold, "up", np.where(ts <= -threshold, "down", "range"))
    labels = np.where(ok, np.char.add(np.char.add(vol.astype(str), "_"), trend), UNKNOWN)
    out = frame.copy()
    out["trend_strength"] = ts
    out["regime"] = pd.Series(labels, index=frame.index, dtype=object)
    return out
