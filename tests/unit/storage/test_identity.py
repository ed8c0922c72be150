"""A trade keeps its event time: the pure checks agree with a brute-force reading."""

from __future__ import annotations

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.storage import identity

pairs = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=25)


@given(stored=pairs, batch=pairs)
def test_against_stored_finds_a_conflict_exactly_when_some_stored_record_differs(
    stored: list[tuple[int, int]], batch: list[tuple[int, int]]
) -> None:
    sid = np.array([i for i, _ in stored], dtype=np.int64)
    sts = np.array([t for _, t in stored], dtype=np.int64)
    bid = np.array([i for i, _ in batch], dtype=np.int64)
    bts = np.array([t for _, t in batch], dtype=np.int64)
    expected = any(i == j and t != u for i, t in batch for j, u in stored)
    found = identity.against_stored(3, bid, bts, sid, sts)
    assert (found is not None) == expected
    if found is not None:
        assert (found.trade_id, found.ts_second) in batch
        assert (found.trade_id, found.ts_first) in stored and found.ts_first != found.ts_second


@given(rows=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.integers(0, 3)),
                     max_size=25))  # fmt: skip
def test_within_batch_finds_an_id_given_two_times_on_one_day(
    rows: list[tuple[int, int, int]],
) -> None:
    days = np.array([d for d, _, _ in rows], dtype=np.int64)
    tid = np.array([i for _, i, _ in rows], dtype=np.int64)
    ts = np.array([t for _, _, t in rows], dtype=np.int64)
    expected = any(a[:2] == b[:2] and a[2] != b[2] for a in rows for b in rows)
    assert (identity.within_batch(days, tid, ts) is not None) == expected
