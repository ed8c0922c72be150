"""Walk-forward splits by trading session, with purging and an embargo.

The sessions of a frame (in time order) are cut into ``folds + 1`` consecutive
blocks of whole sessions. Fold k (k = 1..folds) tests on block k and trains on the
sessions before it: all of them (``window="expanding"``) or the last
``train_sessions`` (``window="rolling"``). Every row has a label window [T, T + h].
Then:

- **purge**: a training row is dropped when its label window overlaps the label
  window of any test row of the fold;
- **embargo** (>= h, default h): a training row is also dropped when its label
  window ends less than ``embargo`` before the first test row's T.

So a training row kept satisfies ``T + h + embargo < T_first_test``: its label is
known (with a margin) before anything the fold tests on starts. Test blocks are
disjoint and in time order; training rows are strictly before their test rows.

::

    sessions  | s0  s1  s2 | s3  s4 | s5  s6 | ...
    fold 1    | train......|~~ test |
    fold 2    | train..........|~~ test |          ~~ purged + embargoed rows
                                                      (T + h + embargo >= first test T)

Labels never span the night (docs/features.md, section 7), so with whole sessions
the purge usually removes nothing; it is applied anyway, on the times, so the
guarantee does not depend on that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError

I64 = npt.NDArray[np.int64]
Window = Literal["expanding", "rolling"]


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward fold: row positions into the frame, and its sessions."""

    number: int
    train: I64
    test: I64
    train_sessions: tuple[int, ...]
    test_sessions: tuple[int, ...]
    purged: int
    """Training rows of the fold's sessions dropped by the purge and the embargo."""


def walk_forward(
    times_ns: npt.ArrayLike,
    session_ids: npt.ArrayLike,
    horizon_ns: int,
    folds: int,
    *,
    embargo_ns: int | None = None,
    window: Window = "expanding",
    train_sessions: int | None = None,
) -> list[Fold]:
    """The folds of a frame with rows at ``times_ns`` (sorted, int ns) in sessions
    ``session_ids`` (one int per row, non-decreasing, e.g. the session's date
    ordinal). See the module docstring."""
    t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    sid = np.asarray(session_ids, dtype=np.int64).reshape(-1)
    if t.shape != sid.shape:
        raise QueryError(f"times and session ids differ in length: {t.size} vs {sid.size}")
    if t.size > 1 and (bool((np.diff(t) < 0).any()) or bool((np.diff(sid) < 0).any())):
        raise QueryError("walk-forward splits need rows sorted by time, sessions in order")
    if horizon_ns <= 0:
        raise QueryError(f"the horizon must be > 0 ns, got {horizon_ns}")
    embargo = horizon_ns if embargo_ns is None else int(embargo_ns)
    if embargo < horizon_ns:
        raise QueryError(
            f"the embargo ({embargo} ns) must be at least the horizon ({horizon_ns} ns)"
        )
    if folds < 1:
        raise QueryError(f"folds must be >= 1, got {folds}")
    if window not in ("expanding", "rolling"):
        raise QueryError(f"window must be 'expanding' or 'rolling', got {window!r}")
    if window == "rolling" and (train_sessions is None or train_sessions < 1):
        raise QueryError("a rolling window needs train_sessions >= 1")
    uniq = np.unique(sid)
    if uniq.size < folds + 1:
        raise QueryError(
            f"{folds} folds need at least {folds + 1} sessions with labelled rows, the frame "
            f"has {uniq.size}: ask for a longer range or fewer folds"
        )
    blocks = np.array_split(uniq, folds + 1)
    out: list[Fold] = []
    for k in range(1, folds + 1):
        test_s = blocks[k]
        before = np.concatenate(blocks[:k])
        if window == "rolling":
            assert train_sessions is not None
            before = before[-train_sessions:]
        test = np.flatnonzero(np.isin(sid, test_s))
        first_test = int(t[test[0]])
        cand = np.flatnonzero(np.isin(sid, before))
        keep = t[cand] + horizon_ns + embargo < first_test
        train = cand[keep]
        out.append(
            Fold(
                number=k,
                train=train.astype(np.int64),
                test=test.astype(np.int64),
                train_sessions=tuple(int(x) for x in before),
                test_sessions=tuple(int(x) for x in test_s),
                purged=int((~keep).sum()),
            )
        )
    return out
