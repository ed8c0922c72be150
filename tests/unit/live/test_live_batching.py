"""The bridge's batching: what a write takes, and when the subscriber must stop reading."""

from __future__ import annotations

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.live.batching import Batches
from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE
from tickvault.transport.wire import BOOK_DTYPE


def _trades(ids: list[int]) -> np.ndarray:
    rec = np.zeros(len(ids), dtype=TRADE_DTYPE)
    rec["trade_id"] = ids
    rec["ts_event"] = ids
    return rec


def _gap(first: int, last: int) -> Gap:
    return Gap("WINZ25", "realtime", 1, 2, "00000000000000aa", "trade.WINZ25", first, last, "x")


def test_batches_lone_trade_is_taken_by_the_next_write_at_once() -> None:
    batches = Batches(max_held_bytes=2**20)
    batches.add(("WINZ25", "realtime"), _trades([7]), "p:trade.WINZ25", 1, size_bytes=100)
    assert not batches.empty()
    [item] = batches.take().items()
    assert (item.symbol, item.stream, item.records["trade_id"].tolist()) == (
        "WINZ25", "realtime", [7],
    )  # fmt: skip
    assert item.cursors == {"p:trade.WINZ25": 1}
    assert batches.empty()


@given(bursts=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=20), max_size=10))
def test_batches_burst_is_packed_into_one_write_per_symbol_and_stream_in_order(
    bursts: list[list[int]],
) -> None:
    """Whatever arrives while a write is in flight goes into the next one: one item per
    (symbol, stream) holding every record in arrival order, the cursor at the last seq."""
    batches = Batches(max_held_bytes=2**40)
    sent: dict[str, list[int]] = {"WINZ25": [], "PETR4": []}
    seq = 0
    for burst in bursts:
        for n in burst:
            seq += 1
            symbol = "WINZ25" if n % 2 else "PETR4"
            ids = list(range(seq * 100, seq * 100 + n))
            sent[symbol].extend(ids)
            batches.add((symbol, "realtime"), _trades(ids), f"p:trade.{symbol}", seq,
                        size_bytes=58 * n)  # fmt: skip
    items = batches.take().items()
    assert len(items) == len({s for s, ids in sent.items() if ids})
    for item in items:
        assert item.records["trade_id"].tolist() == sent[item.symbol]
        assert max(item.cursors.values()) <= seq
    assert batches.empty() and batches.take().items() == []


def test_batches_trades_go_before_book_updates_in_a_write() -> None:
    batches = Batches(max_held_bytes=2**20)
    batches.add(("WINZ25", "book"), np.zeros(2, BOOK_DTYPE), "p:book.WINZ25", 1, size_bytes=1)
    batches.add(("WINZ25", "realtime"), _trades([1]), "p:trade.WINZ25", 1, size_bytes=1)
    assert [i.stream for i in batches.take().items()] == ["realtime", "book"]


def test_batches_full_once_held_and_in_flight_reach_the_bound_then_room_after_the_write() -> None:
    batches = Batches(max_held_bytes=1000)
    key = ("WINZ25", "realtime")
    batches.add(key, _trades([1]), "c", 1, size_bytes=600)
    assert not batches.full()
    batches.take()  # 600 in flight
    batches.add(key, _trades([2]), "c", 2, size_bytes=399)
    assert not batches.full()
    batches.add(key, _trades([3]), "c", 3, size_bytes=1)
    assert batches.full()  # 600 in flight + 400 held
    batches.written()
    assert not batches.full() and batches.held_bytes == 400


def test_batches_message_without_records_moves_the_cursor_and_holds_no_bytes() -> None:
    batches = Batches(max_held_bytes=10)
    batches.add(("WINZ25", "realtime"), _trades([]), "c", 5, size_bytes=10**6)
    assert batches.held_bytes == 0 and not batches.full()
    [item] = batches.take().items()
    assert len(item.records) == 0 and item.cursors == {"c": 5}


def test_batches_gap_moves_its_cursor_past_the_lost_range() -> None:
    batches = Batches(max_held_bytes=10)
    key = ("WINZ25", "realtime")
    batches.add(key, _trades([1]), "c", 3, size_bytes=1)
    batches.add_gaps(key, [_gap(4, 9)], "c", 4, 9)
    cycle = batches.take()
    assert cycle.gaps == [_gap(4, 9)]
    assert cycle.items()[0].cursors == {"c": 9}
    assert cycle.unstored() == (1, 0, {"c": (3, 9)})


def test_batches_clear_drops_what_is_held_but_not_what_is_in_flight() -> None:
    batches = Batches(max_held_bytes=100)
    key = ("WINZ25", "realtime")
    batches.add(key, _trades([1]), "c", 1, size_bytes=60)
    batches.take()
    batches.add(key, _trades([2]), "c", 2, size_bytes=30)
    batches.add_reject("crc", "bad", [b"x"])
    batches.clear()
    assert batches.held_bytes == 0 and batches.inflight_bytes == 60
    cycle = batches.take()
    assert cycle.items() == [] and cycle.rejects == [("crc", "bad", [b"x"])]
