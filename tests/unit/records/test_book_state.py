"""Offer-book reconstruction from ProfitDLL-style updates (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.records.book import ADD, ASK, BID, DELETE, DELETE_FROM, EDIT, FULL_BOOK, BookState
from tickvault.transport.wire import BOOK_DTYPE

T0 = 1_762_171_200_000_000_000


def upd(*rows: tuple[int, int, int, float, int, int], step: int = 1) -> np.ndarray:
    """(action, side, position, price, qty, agent) rows, ``step`` ns apart."""
    out = np.zeros(len(rows), dtype=BOOK_DTYPE)
    for i, (action, side, pos, price, qty, agent) in enumerate(rows):
        out[i] = (T0 + i * step, 0, i + 1, price, qty, agent, pos, side, action)
    return out


def prices(state: BookState, side: int) -> list[float]:
    return state.side_frame(side)["price"].tolist()


def test_full_book_then_add_edit_delete_by_position_from_the_end() -> None:
    s = BookState()
    # full bid side: list order by position high to low; position 0 is the list's end
    s.apply(upd((FULL_BOOK, BID, 2, 98.0, 1, 1), (FULL_BOOK, BID, 1, 99.0, 1, 1),
                (FULL_BOOK, BID, 0, 100.0, 1, 1), step=0))  # fmt: skip
    assert [o[0] for o in s.sides[BID].offers] == [98.0, 99.0, 100.0]
    s.apply(upd((ADD, BID, 0, 100.5, 7, 3)))  # appended at the end (position 0)
    assert [o[0] for o in s.sides[BID].offers] == [98.0, 99.0, 100.0, 100.5]
    s.apply(upd((EDIT, BID, 1, 100.0, 42, 0)))  # index = 4 - 1 - 1 = 2
    assert s.sides[BID].offers[2][:3] == (100.0, 42, 1)  # absent agent keeps its value
    s.apply(upd((DELETE, BID, 3, 0.0, 0, 0)))  # index 0
    assert [o[0] for o in s.sides[BID].offers] == [99.0, 100.0, 100.5]
    s.apply(upd((DELETE_FROM, BID, 1, 0.0, 0, 0)))  # index 1 to the end
    assert [o[0] for o in s.sides[BID].offers] == [99.0]
    assert prices(s, ASK) == [] and s.inconsistent == 0


def test_views_sort_best_first_and_levels_aggregate() -> None:
    s = BookState()
    s.apply(upd((ADD, ASK, 0, 101.0, 5, 1), (ADD, ASK, 0, 102.0, 1, 2),
                (ADD, ASK, 0, 101.0, 2, 3), (ADD, BID, 0, 99.0, 4, 4)))  # fmt: skip
    asks = s.side_frame(ASK)
    assert asks["price"].tolist() == [101.0, 101.0, 102.0]
    assert asks["agent"].tolist() == [1, 3, 2]  # feed order kept at one price


def test_out_of_range_updates_are_counted_and_skipped() -> None:
    s = BookState()
    s.apply(upd((EDIT, BID, 0, 1.0, 1, 1), (DELETE, ASK, 5, 0.0, 0, 0), (ADD, BID, 3, 1.0, 1, 1)))
    assert s.inconsistent == 3 and s.updates == 3
    assert s.sides[BID].offers == [] and s.sides[ASK].offers == []


def test_a_new_full_book_replaces_the_side() -> None:
    s = BookState()
    s.apply(upd((FULL_BOOK, ASK, 0, 10.0, 1, 1)))
    s.apply(upd((ADD, ASK, 0, 11.0, 1, 1)))
    s.apply(upd((FULL_BOOK, ASK, 0, 20.0, 1, 1)))
    assert prices(s, ASK) == [20.0]
    # two full books back to back at one time: the second replaces the first
    s.apply(upd((FULL_BOOK, ASK, 1, 31.0, 1, 1), (FULL_BOOK, ASK, 0, 30.0, 1, 1),
                (FULL_BOOK, ASK, 0, 40.0, 1, 1), step=0))  # fmt: skip
    assert prices(s, ASK) == [40.0]


updates = st.lists(
    st.tuples(
        st.sampled_from([ADD, ADD, ADD, EDIT, DELETE, DELETE_FROM, FULL_BOOK]),
        st.sampled_from([BID, ASK]),
        st.integers(0, 6),
        st.integers(1, 40).map(float),
        st.integers(0, 50),
        st.integers(1, 9),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(rows=updates, cut=st.integers(0, 120))
def test_snapshot_plus_the_rest_equals_replaying_everything(rows: list, cut: int) -> None:
    arr = upd(*rows) if rows else np.zeros(0, BOOK_DTYPE)
    whole = BookState()
    whole.apply(arr)
    first = BookState()
    first.apply(arr[:cut])
    resumed = BookState.from_snapshot(first.to_snapshot(), first.ts_event)
    resumed.apply(arr[cut:])
    for side in (BID, ASK):
        assert [o[:4] for o in resumed.sides[side].offers] == [
            o[:4] for o in whole.sides[side].offers
        ]


@pytest.mark.parametrize("side", [2, 9])
def test_unknown_side_is_inconsistent(side: int) -> None:
    s = BookState()
    s.apply(upd((ADD, side, 0, 1.0, 1, 1)))
    assert s.inconsistent == 1


def test_a_full_book_with_an_empty_side_clears_it() -> None:
    s = BookState()
    s.apply(upd((FULL_BOOK, ASK, 1, 10.0, 1, 1), (FULL_BOOK, ASK, 0, 11.0, 1, 1), step=0))
    assert prices(s, ASK) == [10.0, 11.0]
    s.apply(upd((FULL_BOOK, ASK, 0, 0.0, 0, 0)))
    assert prices(s, ASK) == [] and s.inconsistent == 0
