"""Naive baselines, evaluated beside every model on the same folds.

Each baseline makes a call per row from data known at T (DOWN, FLAT or UP):

- ``always_flat``: FLAT everywhere (never trades);
- ``last_1min``: the sign of the last 1-minute return (``ret_1min``; FLAT when 0
  or NaN);
- ``prev_session``: the sign of the previous session's return over the same clock
  window [clock(T), clock(T) + h] (that session is over, so it is known at T;
  FLAT when the frame has no such row).

A call becomes probabilities through its fold's training rows: P(class | call) =
the class frequencies of the training rows where the baseline made the same call
(add-one smoothed), so log loss and AUC are finite and fair. The call itself is
the baseline's prediction for the accuracy and the PnL (``always_flat`` never
trades).
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from tickvault.models.labels import CLASSES, DOWN, FLAT, UP

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BASELINES = ("always_flat", "last_1min", "prev_session")


def sign_call(x: npt.ArrayLike) -> I64:
    """UP where x > 0, DOWN where x < 0, FLAT where 0 or NaN."""
    v = np.asarray(x, dtype=np.float64)
    out = np.full(v.shape, FLAT, dtype=np.int64)
    out[v > 0] = UP
    out[v < 0] = DOWN
    return out


def always_flat(n: int) -> I64:
    return np.full(n, FLAT, dtype=np.int64)


def previous_session_window(
    session_ids: npt.ArrayLike, clock_ns: npt.ArrayLike, fwd_log_return: npt.ArrayLike
) -> F64:
    """Per row: the forward return of the row at the same clock time (ns since local
    midnight) in the previous session of the frame; NaN when there is none."""
    sid = np.asarray(session_ids, dtype=np.int64)
    clock = np.asarray(clock_ns, dtype=np.int64)
    ret = np.asarray(fwd_log_return, dtype=np.float64)
    out = np.full(sid.shape, np.nan)
    uniq = np.unique(sid)
    for prev, cur in itertools.pairwise(uniq.tolist()):
        p = np.flatnonzero(sid == prev)
        c = np.flatnonzero(sid == cur)
        order = np.argsort(clock[p], kind="stable")
        pc = clock[p][order]
        j = np.searchsorted(pc, clock[c])
        hit = (j < pc.size) & (pc[np.minimum(j, pc.size - 1)] == clock[c])
        out[c[hit]] = ret[p[order][j[hit]]]
    return out


def calibrated_proba(train_calls: I64, train_y: I64, calls: I64) -> F64:
    """P(class | call) from the training rows (add-one smoothing), for ``calls``."""
    table = np.ones((3, 3))
    np.add.at(table, (train_calls, train_y), 1.0)
    table /= table.sum(axis=1, keepdims=True)
    return np.asarray(table[np.asarray(calls, dtype=np.int64)], dtype=np.float64)


__all__ = [
    "BASELINES",
    "CLASSES",
    "always_flat",
    "calibrated_proba",
    "previous_session_window",
    "sign_call",
]
