"""Out-of-sample metrics of class probabilities (pure numpy).

Inputs per row: ``proba`` (n x 3: P(down), P(flat), P(up)), the realised class
``y`` (``labels``), the realised forward log return and the forward move in ticks.

- ``accuracy``: share of rows whose most likely class is the realised one;
- ``log_loss``: mean of -ln P(realised class), probabilities clipped at 1e-15;
- ``auc``: **up vs down**: the ROC AUC of the score P(up) - P(down) at telling
  rows that went up from rows that went down (flat rows left out; ties count
  half); NaN when either class is absent;
- ``ic``: the information coefficient, the Spearman rank correlation of the same
  score with the realised forward return (all rows); NaN when either is constant;
- ``pnl_brl``: the policy "trade the predicted side": one contract long when the
  most likely class is UP, short when DOWN, nothing when FLAT, entered at T and
  closed at T + h, after costs: per contract and side ``cost_brl`` plus
  ``slippage_ticks`` (so a round trip costs 2 x (cost_brl + slippage_ticks x
  tick_size x point_value)); ``trades`` counts the round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.models.labels import DOWN, UP
from tickvault.venue.contracts import Contract

F64 = npt.NDArray[np.float64]
METRICS = ("rows", "accuracy", "log_loss", "auc", "ic", "trades", "pnl_brl")


@dataclass(frozen=True, slots=True)
class Costs:
    """Trading costs of the PnL policy, per contract and per side (entry or exit)."""

    cost_brl: float = 0.25
    """Exchange and broker fees per contract per side, BRL."""
    slippage_ticks: float = 0.5
    """Price given away per contract per side, in ticks."""

    def __post_init__(self) -> None:
        if self.cost_brl < 0 or self.slippage_ticks < 0:
            raise QueryError(
                f"costs must be >= 0, got cost_brl={self.cost_brl}, "
                f"slippage_ticks={self.slippage_ticks}"
            )

    def round_trip_brl(self, c: Contract) -> float:
        return 2.0 * (self.cost_brl + self.slippage_ticks * c.tick_size * c.point_value)


def _ranks(x: F64) -> F64:
    """Mid-ranks (ties share the average rank), 1-based."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = xs.size
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    mid = (starts + ends + 1) / 2.0
    r = np.empty(n)
    r[order] = np.repeat(mid, ends - starts)
    return r


def auc(score: npt.ArrayLike, positive: npt.ArrayLike) -> float:
    """ROC AUC of ``score`` for the boolean ``positive`` (Mann-Whitney, ties half)."""
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def evaluate(
    proba: npt.ArrayLike,
    y: npt.ArrayLike,
    fwd_log_return: npt.ArrayLike,
    move_ticks: npt.ArrayLike,
    contract: Contract,
    costs: Costs,
    calls: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """The metrics of the module docstring, as a dict keyed by ``METRICS``. ``calls``
    (a baseline's own DOWN/FLAT/UP per row) replace the most likely class for the
    accuracy and the PnL; the probabilities still give log loss, AUC and IC."""
    p = np.asarray(proba, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64)
    ret = np.asarray(fwd_log_return, dtype=np.float64)
    move = np.asarray(move_ticks, dtype=np.float64)
    n = yy.size
    if p.shape != (n, 3) or ret.shape != (n,) or move.shape != (n,):
        raise QueryError(
            f"metrics need n x 3 probabilities and n labels, returns and moves; got "
            f"{p.shape}, {yy.shape}, {ret.shape}, {move.shape}"
        )
    if n == 0:
        return {m: float("nan") if m not in ("rows", "trades") else 0.0 for m in METRICS}
    pred = p.argmax(axis=1) if calls is None else np.asarray(calls, dtype=np.int64)
    score = p[:, UP] - p[:, DOWN]
    directional = (yy == UP) | (yy == DOWN)
    side = np.where(pred == UP, 1.0, np.where(pred == DOWN, -1.0, 0.0))
    traded = side != 0
    gross = side * move * contract.tick_size * contract.point_value
    pnl = float(gross[traded].sum() - traded.sum() * costs.round_trip_brl(contract))
    return {
        "rows": float(n),
        "accuracy": float((pred == yy).mean()),
        "log_loss": float(-np.log(np.clip(p[np.arange(n), yy], 1e-15, 1.0)).mean()),
        "auc": auc(score[directional], yy[directional] == UP),
        "ic": spearman(score, ret),
        "trades": float(traded.sum()),
        "pnl_brl": pnl,
    }
