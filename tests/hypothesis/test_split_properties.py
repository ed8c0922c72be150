"""Walk-forward splits never leak: for any frame, horizon, embargo, fold count and
window, no training row's label window [T, T + h] overlaps a test row's."""

from __future__ import annotations

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.models.splits import walk_forward

MIN = 60_000_000_000
DAY = 86_400_000_000_000


@st.composite
def frames(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Rows in sessions: each session a day, rows at random minutes within 9 hours."""
    n_sessions = draw(st.integers(2, 12))
    times, sids = [], []
    for s in range(n_sessions):
        k = draw(st.integers(1, 30))
        minutes = sorted(draw(st.lists(st.integers(0, 540), min_size=k, max_size=k)))
        times += [s * DAY + m * MIN for m in minutes]
        sids += [s] * k
    return np.array(times, dtype=np.int64), np.array(sids, dtype=np.int64)


@given(
    frame=frames(),
    horizon_min=st.integers(1, 600),
    extra_embargo_min=st.integers(0, 120),
    folds=st.integers(1, 6),
    rolling=st.booleans(),
    train_sessions=st.integers(1, 5),
)
@settings(max_examples=300, deadline=None)
def test_walk_forward_splits_never_overlap_label_windows_and_run_in_time_order(
    frame: tuple[np.ndarray, np.ndarray],
    horizon_min: int,
    extra_embargo_min: int,
    folds: int,
    rolling: bool,
    train_sessions: int,
) -> None:
    t, sid = frame
    h = horizon_min * MIN
    if np.unique(sid).size < folds + 1:
        return  # refused with a clear error: tested in tests/unit/models
    splits = walk_forward(
        t, sid, h, folds, embargo_ns=h + extra_embargo_min * MIN,
        window="rolling" if rolling else "expanding", train_sessions=train_sessions,
    )  # fmt: skip
    assert len(splits) == folds
    last_test_end = -1
    for f in splits:
        assert f.test.size > 0
        tr_t, te_t = t[f.train], t[f.test]
        # closed intervals [T, T + h] overlap iff a <= b + h and b <= a + h
        if tr_t.size:
            overlap = (tr_t[:, None] <= te_t[None, :] + h) & (te_t[None, :] <= tr_t[:, None] + h)
            assert not overlap.any()
            assert tr_t.max() + h + h + extra_embargo_min * MIN < te_t.min()  # the embargo
            assert tr_t.max() < te_t.min()  # train strictly before test
        assert te_t.min() > last_test_end  # test folds in time order, disjoint
        last_test_end = int(te_t.max())
        assert set(sid[f.test]) == set(f.test_sessions)
        assert set(sid[f.train]) <= set(f.train_sessions)
        if rolling:
            assert len(f.train_sessions) <= train_sessions
        else:
            assert min(f.train_sessions) == int(sid.min())  # expanding: from the first one
    # every session but the first block is tested exactly once
    tested = np.concatenate([f.test for f in splits])
    assert np.unique(tested).size == tested.size
