"""The pure checks of ``tickvault chaos``: what counts as lost, duplicated, corrupted."""

from __future__ import annotations

import itertools

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.bench.chaos import (
    check_rows,
    check_trades,
    checksum,
    expected_rows,
    split_points,
)

trade_sets = st.lists(
    st.tuples(st.integers(1, 2**40), st.floats(1, 1e6, allow_nan=False), st.integers(1, 500)),
    min_size=1, max_size=60, unique_by=lambda t: t[0],
)  # fmt: skip


def _cols(trades: list[tuple[int, float, int]]) -> dict[str, np.ndarray]:
    ids, prices, qtys = zip(*trades, strict=True) if trades else ((), (), ())
    n = len(ids)
    return {
        "trade_id": np.array(ids, np.int64),
        "price": np.array(prices, np.float64),
        "qty": np.array(qtys, np.int64),
        "ts_event": np.arange(n, dtype=np.int64) * 10,
    }


@given(trade_sets, st.randoms())
def test_the_checksum_does_not_depend_on_order(trades: list[tuple[int, float, int]], rnd) -> None:
    shuffled = list(trades)
    rnd.shuffle(shuffled)
    a, b = _cols(trades), _cols(shuffled)
    assert checksum(a["trade_id"], a["price"], a["qty"]) == checksum(
        b["trade_id"], b["price"], b["qty"]
    )


@given(trade_sets, st.data())
def test_a_changed_price_or_quantity_changes_the_checksum(trades, data) -> None:
    cols = _cols(trades)
    i = data.draw(st.integers(0, len(trades) - 1))
    field = data.draw(st.sampled_from(["price", "qty"]))
    changed = {k: v.copy() for k, v in cols.items()}
    changed[field][i] += 1
    assert checksum(cols["trade_id"], cols["price"], cols["qty"]) != checksum(
        changed["trade_id"], changed["price"], changed["qty"]
    )
    check = check_trades(cols, changed, len(trades), [])
    assert not check.checksum_ok and check.lost == 0 and check.extra == 0


@given(trade_sets, st.data())
def test_lost_trades_are_counted_and_those_inside_a_gap_marker_are_reported(trades, data) -> None:
    sent = _cols(trades)
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(trades),
                                       max_size=len(trades))))  # fmt: skip
    stored = {k: v[keep] for k, v in sent.items()}
    lost_ts = sent["ts_event"][~keep]
    gaps = [(int(t), int(t)) for t in lost_ts[::2]]  # every other lost trade is covered
    check = check_trades(sent, stored, int(keep.sum()), gaps)
    assert check.lost == int((~keep).sum())
    assert check.lost_outside_gaps == len(lost_ts) - len(lost_ts[::2])
    assert check.checksum_ok == bool(keep.all())
    assert check.duplicated == 0 and check.stored == int(keep.sum())


def test_records_stored_beyond_the_distinct_trades_are_duplicates() -> None:
    sent = _cols([(1, 10.0, 1), (2, 11.0, 2)])
    check = check_trades(sent, sent, records=3, gaps=[])
    assert check.duplicated == 1 and check.lost == 0 and check.checksum_ok


@given(st.lists(st.integers(0, 40), min_size=2, max_size=300), st.integers(1, 6))
def test_parts_cover_every_trade_once_and_never_split_an_event_time(steps, parts) -> None:
    ts = np.cumsum(np.array(steps, dtype=np.int64))
    if len(np.unique(ts)) < parts:
        return
    cuts = split_points(ts, parts)
    assert cuts[0] == 0 and cuts[-1] == len(ts) and len(cuts) == parts + 1
    assert all(a < b for a, b in itertools.pairwise(cuts))
    assert all(ts[c] != ts[c - 1] for c in cuts[1:-1])


def test_expected_rows_are_one_per_event_time_with_its_last_trade() -> None:
    ts = np.array([5, 5, 7, 9, 9, 9], dtype=np.int64)
    tid = np.array([1, 2, 3, 4, 5, 6], dtype=np.int64)
    t, last = expected_rows(ts, tid)
    assert t.tolist() == [6, 8, 10] and last.tolist() == [2, 3, 6]
    assert check_rows(t, last, t, last).lost == 0
    missing = check_rows(t, last, t[1:], last[1:])
    assert missing.lost == 1 and missing.doubled == 0
    doubled = check_rows(t, last, np.r_[t, t[:1]], np.r_[last, last[:1]])
    assert doubled.doubled == 1 and doubled.lost == 0
    assert check_rows(t, last, t, np.array([1, 3, 6])).wrong == 1


def test_the_documented_loss_is_ok_only_when_every_lost_trade_is_under_a_gap_marker() -> None:
    from tickvault.bench.chaos import Row, RowCheck, TradeCheck

    def row(lost_outside: int, rows: RowCheck, expected_loss: bool = True) -> Row:
        t = TradeCheck(sent=100, stored=60, lost=40, extra=0, duplicated=0, checksum_ok=False,
                       gap_markers=1, lost_outside_gaps=lost_outside)  # fmt: skip
        return Row("buffer overrun (no journal)", t, rows, expected_loss=expected_loss)

    partial = RowCheck(expected=50, stored=40, lost=10, doubled=0, wrong=1)
    assert row(0, partial).ok  # lost under the marker; the worker's rows made without them
    assert not row(1, partial).ok  # a lost trade no marker reports
    assert not row(0, RowCheck(50, 51, 0, 1, 0)).ok  # a row stored twice: never
    assert not row(0, partial, expected_loss=False).ok  # any other scenario: 0 lost
