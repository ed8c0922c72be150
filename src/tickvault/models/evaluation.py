"""Walk-forward evaluation of a classifier beside the naive baselines (pure: arrays in).

    data = Dataset(times_ns, session_ids, clock_ns, X, feature_names, y, fwd_ret,
                   move_ticks, ret_1min)
    ev = evaluate_walk_forward(data, horizon_ns, folds=4, make_estimator=...)
    ev.overall["model"]["auc"], ev.folds[0].metrics["last_1min"]["pnl_brl"]

``make_estimator()`` returns a fresh scikit-learn-compatible classifier (``fit(X, y)``,
``predict_proba(X)``, ``classes_``). Each fold fits a fresh one on the fold's
training rows only (``splits.walk_forward``) and predicts its test rows; the
baselines take their probabilities from the same training rows
(``baselines.calibrated_proba``). ``overall`` is computed on all the folds' test
rows together (each row predicted once, by the fold that tested it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.models.baselines import (
    BASELINES,
    always_flat,
    calibrated_proba,
    previous_session_window,
    sign_call,
)
from tickvault.models.labels import NO_LABEL
from tickvault.models.metrics import Costs, evaluate
from tickvault.models.splits import Window, walk_forward
from tickvault.venue.contracts import Contract

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MODEL = "model"
"""The key of the model's metrics beside the baselines' (``BASELINES``)."""


@dataclass(frozen=True)
class Dataset:
    """One row per step T with a label (rows with ``NO_LABEL`` are dropped here)."""

    times_ns: I64
    session_ids: I64
    clock_ns: I64
    """ns since local midnight (for the previous-session baseline)."""
    X: F64
    feature_names: tuple[str, ...]
    y: I64
    """FUTURE: the realised class over [T, T + h]."""
    fwd_ret: F64
    """FUTURE: the realised forward log return over [T, T + h]."""
    move_ticks: F64
    """FUTURE: the realised forward move in ticks."""
    ret_1min: F64
    """The last 1-minute return known at T (a feature; the ``last_1min`` baseline)."""

    def labelled(self) -> Dataset:
        """The rows with a label (a row without one has no forward return either, so
        the previous-session baseline loses nothing)."""
        keep = self.y != NO_LABEL
        return Dataset(
            self.times_ns[keep], self.session_ids[keep], self.clock_ns[keep], self.X[keep],
            self.feature_names, self.y[keep], self.fwd_ret[keep], self.move_ticks[keep],
            self.ret_1min[keep],
        )  # fmt: skip


@dataclass
class FoldResult:
    number: int
    train_rows: int
    test_rows: int
    purged: int
    train_sessions: tuple[int, ...]
    test_sessions: tuple[int, ...]
    metrics: dict[str, dict[str, float]]


@dataclass
class Evaluation:
    folds: list[FoldResult]
    overall: dict[str, dict[str, float]]
    test_index: I64
    """Positions (into the labelled dataset) of every test row, in time order."""
    pnl: dict[str, F64] = field(default_factory=dict)
    """Per model/baseline: the PnL (BRL) of each test row (0 when not traded)."""
    class_share: dict[str, float] = field(default_factory=dict)


def proba3(estimator: Any, x: F64) -> F64:
    """``predict_proba`` as n x 3 (down, flat, up) whatever classes the fit saw."""
    raw = np.asarray(estimator.predict_proba(x), dtype=np.float64)
    out = np.zeros((x.shape[0], 3))
    for j, c in enumerate(np.asarray(estimator.classes_).tolist()):
        out[:, int(c)] = raw[:, j]
    return out


def _fit_predict(make: Callable[[], Any], x_tr: F64, y_tr: I64, x_te: F64) -> F64:
    if np.unique(y_tr).size < 2:  # one class only: no classifier can be fitted
        none_tr, none_te = np.zeros(y_tr.size, np.int64), np.zeros(x_te.shape[0], np.int64)
        return calibrated_proba(none_tr, y_tr, none_te)
    est = make()
    est.fit(x_tr, y_tr)
    return proba3(est, x_te)


def _row_pnl(pred: I64, move: F64, contract: Contract, costs: Costs) -> F64:
    side = np.where(pred == 2, 1.0, np.where(pred == 0, -1.0, 0.0))
    gross = side * move * contract.tick_size * contract.point_value
    return np.asarray(gross - (side != 0) * costs.round_trip_brl(contract), dtype=np.float64)


def evaluate_walk_forward(
    data: Dataset,
    horizon_ns: int,
    folds: int,
    make_estimator: Callable[[], Any],
    *,
    contract: Contract,
    costs: Costs | None = None,
    embargo_ns: int | None = None,
    window: Window = "expanding",
    train_sessions: int | None = None,
) -> Evaluation:
    """See the module docstring. ``data`` must hold labelled rows only."""
    costs = costs or Costs()
    if data.y.size == 0:
        raise QueryError("no labelled rows to evaluate")
    if bool((data.y == NO_LABEL).any()):
        raise QueryError("evaluate_walk_forward needs labelled rows only (Dataset.labelled())")
    prev = previous_session_window(data.session_ids, data.clock_ns, data.fwd_ret)
    calls = {
        "always_flat": always_flat(data.y.size),
        "last_1min": sign_call(data.ret_1min),
        "prev_session": sign_call(prev),
    }
    splits = walk_forward(
        data.times_ns, data.session_ids, horizon_ns, folds,
        embargo_ns=embargo_ns, window=window, train_sessions=train_sessions,
    )  # fmt: skip
    names = (MODEL, *BASELINES)
    all_p: dict[str, list[F64]] = {n: [] for n in names}
    results: list[FoldResult] = []
    for f in splits:
        if f.train.size == 0:
            raise QueryError(
                f"fold {f.number} has no training rows left after the purge and embargo: "
                "ask for a longer range or fewer folds"
            )
        tr, te = f.train, f.test
        probs = {MODEL: _fit_predict(make_estimator, data.X[tr], data.y[tr], data.X[te])}
        for b in BASELINES:
            probs[b] = calibrated_proba(calls[b][tr], data.y[tr], calls[b][te])
        metrics: dict[str, dict[str, float]] = {}
        for n in names:
            own = None if n == MODEL else calls[n][te]
            metrics[n] = evaluate(
                probs[n], data.y[te], data.fwd_ret[te], data.move_ticks[te], contract, costs, own
            )
            all_p[n].append(probs[n])
        results.append(
            FoldResult(f.number, int(tr.size), int(te.size), f.purged, f.train_sessions,
                       f.test_sessions, metrics)
        )  # fmt: skip
    test = np.concatenate([f.test for f in splits])
    overall: dict[str, dict[str, float]] = {}
    pnl: dict[str, F64] = {}
    for n in names:
        p = np.concatenate(all_p[n])
        pred = p.argmax(axis=1) if n == MODEL else calls[n][test]
        overall[n] = evaluate(
            p, data.y[test], data.fwd_ret[test], data.move_ticks[test], contract, costs, pred
        )
        pnl[n] = _row_pnl(pred, data.move_ticks[test], contract, costs)
    yt = data.y[test]
    share = {c: float((yt == i).mean()) for i, c in enumerate(("down", "flat", "up"))}
    return Evaluation(results, overall, test.astype(np.int64), pnl, share)
