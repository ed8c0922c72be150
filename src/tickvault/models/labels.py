"""Class labels from forward returns: DOWN / FLAT / UP with a dead zone in ticks.

These are FUTURE data: a class at T says what the price did over [T, T + h]
(``label_fwd_ret_<h>``, docs/features.md section 7). They are training targets and
evaluation truth, never model inputs; every name here says ``future``/``fwd``.

    move = p(T) * (exp(r) - 1) / tick_size      # the forward move in ticks
    UP   if move >  dead_zone_ticks
    DOWN if move < -dead_zone_ticks
    FLAT otherwise (|move| <= dead_zone_ticks)

Prices lie on the tick grid, so the move is a whole number of ticks up to floating
point error; it is rounded before the comparison. NaN returns or prices give
``NO_LABEL`` (the row is dropped from training and evaluation).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError

DOWN, FLAT, UP = 0, 1, 2
CLASSES = (DOWN, FLAT, UP)
CLASS_NAMES = ("down", "flat", "up")
NO_LABEL = -1

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def future_move_ticks(
    fwd_log_return: npt.ArrayLike, price_at_t: npt.ArrayLike, tick_size: float
) -> F64:
    """The forward price move over the horizon in whole ticks (NaN where unknown)."""
    if not tick_size > 0:
        raise QueryError(f"tick_size must be > 0, got {tick_size}")
    r = np.asarray(fwd_log_return, dtype=np.float64)
    p = np.asarray(price_at_t, dtype=np.float64)
    if r.shape != p.shape:
        raise QueryError(f"returns and prices differ in shape: {r.shape} vs {p.shape}")
    with np.errstate(invalid="ignore"):
        return np.asarray(np.rint(p * np.expm1(r) / tick_size), dtype=np.float64)


def future_classes(
    fwd_log_return: npt.ArrayLike,
    price_at_t: npt.ArrayLike,
    tick_size: float,
    dead_zone_ticks: int,
) -> I64:
    """DOWN (0), FLAT (1), UP (2) per row, ``NO_LABEL`` (-1) where the return or the
    price is NaN (see the module docstring)."""
    if isinstance(dead_zone_ticks, bool) or int(dead_zone_ticks) != dead_zone_ticks:
        raise QueryError(f"dead_zone_ticks must be a whole number >= 0, got {dead_zone_ticks!r}")
    if dead_zone_ticks < 0:
        raise QueryError(f"dead_zone_ticks must be >= 0, got {dead_zone_ticks}")
    move = future_move_ticks(fwd_log_return, price_at_t, tick_size)
    out = np.full(move.shape, NO_LABEL, dtype=np.int64)
    ok = np.isfinite(move)
    out[ok] = FLAT
    out[ok & (move > dead_zone_ticks)] = UP
    out[ok & (move < -dead_zone_ticks)] = DOWN
    return out
