"""ProfitDLL conversions and history rules (pure)."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import FeedError, ValidationError
from tickvault.feeds.profitdll import convert
from tickvault.feeds.profitdll.book import ProfitBook, side_records
from tickvault.feeds.profitdll.types import NL_ERRORS, TRADE_TYPES, error_name, trade_type_name
from tickvault.records.book import ASK, BID, BookState
from tickvault.records.trades import TradeFlag, TradeType
from tickvault.timeutil import NS_PER_DAY, NS_PER_S

SP = ZoneInfo("America/Sao_Paulo")


def ns(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=SP).timestamp() * NS_PER_S)


@given(st.datetimes(dt.datetime(2012, 1, 1), dt.datetime(2035, 1, 1)))
def test_systemtime_matches_zoneinfo_during_exchange_hours(when: dt.datetime) -> None:
    when = when.replace(hour=9 + when.hour % 10, microsecond=(when.microsecond // 1000) * 1000)
    fields = (when.year, when.month, when.day, when.hour, when.minute, when.second,
              when.microsecond // 1000)  # fmt: skip
    aware = when.replace(tzinfo=SP)
    expected = int(aware.timestamp()) * NS_PER_S + when.microsecond * 1000
    assert convert.systemtime_ns(fields, SP) == expected
    text = when.strftime("%d/%m/%Y %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    assert convert.ProfitDateParser(SP)(text) == expected


def test_bad_dates() -> None:
    with pytest.raises(ValidationError, match="bad trade date"):
        convert.systemtime_ns((2025, 2, 30, 10, 0, 0, 0), SP)
    with pytest.raises(ValidationError, match="DD/MM/YYYY"):
        convert.ProfitDateParser(SP)("2025-11-03 10:00:00")


def test_trade_records_map_flags_and_types() -> None:
    raw = [
        convert.RawTrade(1, 2, 10, 5.0, 3, 15.0, 7, 8, 2, 0),
        convert.RawTrade(1, 2, 11, 5.0, 3, 15.0, 7, 8, 99, 1),
        convert.RawTrade(1, 2, 12, 5.0, 3, 15.0, 7, 8, 14, 0),
        convert.RawTrade(1, 2, 13, 5.0, 3, 15.0, 7, 8, 35, 0),
        convert.RawTrade(1, 2, 14, 5.0, 3, 15.0, 7, 8, 19, 0),
    ]
    live = convert.trade_records(raw, history=False)
    assert live["flags"].tolist() == [0, int(TradeFlag.EDIT), 0, 0, 0]
    # 14-18 and 33-35 (4.0.0.41) are kept as they come; undocumented codes become 32
    assert live["trade_type"].tolist() == [2, int(TradeType.UNKNOWN), 14, 35, 32]
    hist = convert.trade_records(raw, history=True)
    assert hist["flags"].tolist() == [4, 5, 4, 4, 4]


def test_trade_type_names() -> None:
    assert set(TRADE_TYPES) == {*range(1, 19), *range(32, 36)}
    assert trade_type_name(13) == "RLP" and trade_type_name(32) == "unknown"
    assert trade_type_name(16) == "type 16 (4.0.0.41)"
    assert trade_type_name(40) == "undocumented type 40"


def test_trade_numbers_tell_known_trades_per_symbol_and_day() -> None:
    seen = convert.TradeNumbers(days=2)
    day1, day2, day3 = (2025, 11, 3), (2025, 11, 4), (2025, 11, 5)
    for n in (0, 7, 65_535, 65_536, 2**32 - 1):
        seen.add("WINZ25", day1, n)
    assert all(seen.seen("WINZ25", day1, n) for n in (0, 7, 65_535, 65_536, 2**32 - 1))
    assert not any(seen.seen("WINZ25", day1, n) for n in (1, 6, 8, 65_537, 2**32 - 2))
    assert not seen.seen("WDOZ25", day1, 7) and not seen.seen("WINZ25", day2, 7)
    seen.add("WINZ25", day2, 1)
    seen.add("WINZ25", day3, 1)  # only the two latest days are kept
    assert not seen.seen("WINZ25", day1, 7) and seen.seen("WINZ25", day2, 1)
    seen.add("WINZ25", day1, 9)  # an older day than those kept is not remembered
    assert not seen.seen("WINZ25", day1, 9) and seen.seen("WINZ25", day3, 1)


def _array(entries: list[tuple[float, int, int, int, str]], flags: int = 3) -> bytes:
    body = b"".join(
        struct.pack("<dqiqH", p, q, a, o, len(d)) + d.encode() for p, q, a, o, d in entries
    )
    total = 8 + len(body) + 4
    return struct.pack("<ii", len(entries), total) + body + struct.pack("<I", flags)


def test_book_array_round_trip_and_positions() -> None:
    entries = [(10.0, 5, 1, 100, "03/11/2025 10:00:00.000"), (10.5, 7, 2, 101, "")]
    parsed = convert.parse_book_array(_array(entries))
    assert parsed.entries == entries and parsed.flags == 3
    recs = side_records(BID, parsed.entries, 5, 6)
    assert recs["position"].tolist() == [1, 0] and (recs["action"] == 4).all()
    assert (recs["side"] == 0).all() and recs["offer_id"].tolist() == [100, 101]
    cleared = side_records(ASK, convert.parse_book_array(_array([])).entries, 5, 6)
    assert cleared.tolist() == [(5, 6, 0, 0.0, 0, 0, 0, ASK, 4)]


@pytest.mark.parametrize(
    "raw",
    [b"\x00" * 4, struct.pack("<ii", 2, 12) + b"\x00" * 4, struct.pack("<ii", 1, 12) + b"\0" * 4],
)
def test_bad_book_arrays(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        convert.parse_book_array(raw)


# ---------------------------------------------------------------------- ProfitBook
FIRST, LAST = 2, 1
NO = (False, False, False, False)


def page(entries: list[tuple[float, int, int, int]], flags: int) -> convert.BookArray:
    return convert.BookArray([(p, q, a, o, "") for p, q, a, o in entries], flags)


def offers(state: BookState, side: int) -> list[tuple[float, int, int, int]]:
    return [o[:4] for o in state.sides[side].offers]


def stored(*parts: np.ndarray) -> BookState:
    """The book a reader of the records rebuilds (the store applies the same rules)."""
    state = BookState()
    for part in parts:
        state.apply(part)
    return state


def test_an_edit_adds_the_quantity_delta_and_replaces_the_fields_sent() -> None:
    book = ProfitBook()
    full = book.full_book(ASK, page([(10.0, 30, 1, 100), (9.5, 20, 2, 101)], FIRST | LAST), 1, 1)
    # a partial fill of the best ask (position 0, the end of the list): 20 - 5
    fill = book.update(action=1, position=0, side=ASK, qty=-5, agent=0, offer_id=0, price=0.0,
                       has=(False, True, False, False), ts_event=2, ts_recv=2)  # fmt: skip
    assert fill.tolist() == [(2, 2, 101, 9.5, 15, 2, 0, ASK, 1)]  # the resulting offer
    # more shown, by another agent, with a new offer id and price: 30 + 4
    grow = book.update(action=1, position=1, side=ASK, qty=4, agent=7, offer_id=555, price=10.5,
                       has=(True, True, True, True), ts_event=3, ts_recv=3)  # fmt: skip
    assert grow.tolist() == [(3, 3, 555, 10.5, 34, 7, 1, ASK, 1)]
    # an edit without a quantity keeps it
    agent = book.update(action=1, position=0, side=ASK, qty=99, agent=8, offer_id=0, price=0.0,
                        has=(False, False, False, True), ts_event=4, ts_recv=4)  # fmt: skip
    assert agent.tolist() == [(4, 4, 101, 9.5, 15, 8, 0, ASK, 1)]
    assert offers(book.state, ASK) == [(10.5, 34, 7, 555), (9.5, 15, 8, 101)]
    assert offers(stored(full, fill, grow, agent), ASK) == offers(book.state, ASK)
    assert book.inconsistent == 0


def test_updates_that_do_not_fit_the_book_are_counted() -> None:
    book = ProfitBook()
    book.full_book(BID, page([(9.0, 3, 1, 1)], FIRST | LAST), 1, 1)
    below = book.update(action=1, position=0, side=BID, qty=-5, agent=0, offer_id=0, price=0.0,
                        has=(False, True, False, False), ts_event=2, ts_recv=2)  # fmt: skip
    assert below["qty"].tolist() == [0] and book.inconsistent == 1
    outside = book.update(action=1, position=3, side=BID, qty=1, agent=0, offer_id=0, price=0.0,
                          has=(False, True, False, False), ts_event=3, ts_recv=3)  # fmt: skip
    assert outside["qty"].tolist() == [-1] and book.inconsistent == 2  # the store skips it too
    for action, side, position, price in ((5, BID, 0, 1.0), (0, 2, 0, 1.0), (0, BID, -1, 1.0),
                                          (0, BID, 0, float("nan"))):  # fmt: skip
        dropped = book.update(action=action, position=position, side=side, qty=1, agent=1,
                              offer_id=1, price=price, has=(True, True, True, True), ts_event=4,
                              ts_recv=4)  # fmt: skip
        assert len(dropped) == 0  # the store would refuse the message
    assert book.inconsistent == 6


def test_a_paged_full_book_is_published_once_complete() -> None:
    book = ProfitBook()
    first = book.full_book(BID, page([(9.0, 1, 1, 1), (9.5, 2, 1, 2)], FIRST), 10, 10)
    middle = book.full_book(BID, page([(9.6, 3, 1, 3)], 0), 11, 11)
    assert len(first) == len(middle) == 0 and offers(book.state, BID) == []
    last = book.full_book(BID, page([(9.8, 4, 1, 4), (10.0, 5, 1, 5)], LAST), 12, 12)
    assert last["position"].tolist() == [4, 3, 2, 1, 0] and (last["ts_event"] == 12).all()
    want = [(9.0, 1, 1, 1), (9.5, 2, 1, 2), (9.6, 3, 1, 3), (9.8, 4, 1, 4), (10.0, 5, 1, 5)]
    assert offers(book.state, BID) == offers(stored(last), BID) == want
    # a new first page starts the side over; a lone last page (no flag 2 sent) does too
    book.full_book(BID, page([(8.0, 1, 1, 9)], FIRST), 13, 13)
    again = book.full_book(BID, page([(8.5, 1, 1, 10)], LAST), 14, 14)
    assert offers(stored(last, again), BID) == [(8.0, 1, 1, 9), (8.5, 1, 1, 10)]
    lone = book.full_book(BID, page([(7.0, 1, 1, 11)], LAST), 15, 15)
    assert offers(stored(last, again, lone), BID) == [(7.0, 1, 1, 11)]
    # an empty side clears it
    empty = book.full_book(BID, page([], FIRST | LAST), 16, 16)
    assert offers(stored(last, again, lone, empty), BID) == [] == offers(book.state, BID)


def test_an_update_between_pages_applies_to_the_pages_received() -> None:
    book = ProfitBook()
    parts = [book.full_book(ASK, page([(11.0, 1, 1, 1), (10.5, 2, 1, 2)], FIRST), 1, 1)]
    # the update sees the two offers received so far, as the examples' growing list does
    parts.append(book.update(action=1, position=0, side=ASK, qty=3, agent=0, offer_id=0,
                             price=0.0, has=(False, True, False, False), ts_event=2,
                             ts_recv=2))  # fmt: skip
    assert offers(stored(*parts), ASK) == [(11.0, 1, 1, 1), (10.5, 5, 1, 2)]
    parts.append(book.full_book(ASK, page([(10.0, 4, 1, 3)], LAST), 3, 3))
    want = [(11.0, 1, 1, 1), (10.5, 5, 1, 2), (10.0, 4, 1, 3)]
    assert offers(stored(*parts), ASK) == offers(book.state, ASK) == want


class ListModel:
    """ProfitDLL's book as Nelogica's examples keep it: one list per side, positions
    counted from its end, an edit adding its quantity, pages appended."""

    def __init__(self) -> None:
        self.sides: list[list[list[Any]]] = [[], []]
        self.building: list[list[list[Any]] | None] = [None, None]

    def full(self, side: int, entries: list[tuple[float, int, int, int]], flags: int) -> None:
        if flags & FIRST or self.building[side] is None:
            self.building[side] = []
        building = self.building[side]
        assert building is not None
        building.extend([float(v) for v in e] for e in entries)
        if flags & LAST:
            self.sides[side], self.building[side] = building, None

    def update(self, action: int, side: int, pos: int, price: float, qty: int, agent: int,
               offer: int, has: tuple[bool, bool, bool, bool]) -> None:  # fmt: skip
        if self.building[side] is not None:  # the pages so far are the side
            self.sides[side] = self.building[side] or []
            self.building[side] = [list(o) for o in self.sides[side]]
        book = self.sides[side]
        if action == 0 and 0 <= len(book) - pos <= len(book):  # a field not sent is 0
            flags = (has[0], has[1], has[3], has[2])  # price, qty, agent, offer id
            sent = [v if h else 0 for v, h in zip((price, qty, agent, offer), flags, strict=True)]
            book.insert(len(book) - pos, sent)
        elif action == 1 and 0 <= len(book) - pos - 1 < len(book):
            o = book[len(book) - pos - 1]
            if has[0]:
                o[0] = price
            if has[1]:
                o[1] = max(0, o[1] + qty)
            if has[2]:
                o[3] = offer
            if has[3]:
                o[2] = agent
        elif action == 2 and 0 <= len(book) - pos - 1 < len(book):
            del book[len(book) - pos - 1]
        elif action == 3 and 0 <= len(book) - pos - 1 < len(book):
            del book[len(book) - pos - 1 :]
        if self.building[side] is not None:
            self.building[side] = [list(o) for o in book]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("full"), st.sampled_from([BID, ASK]),
                  st.lists(st.tuples(st.integers(1, 20).map(float), st.integers(1, 50),
                                     st.integers(1, 9), st.integers(1, 999)), max_size=4),
                  st.sampled_from([0, FIRST, LAST, FIRST | LAST])),
        st.tuples(st.just("update"), st.sampled_from([0, 0, 1, 1, 1, 2, 3]),
                  st.sampled_from([BID, ASK]), st.integers(0, 5),
                  st.integers(1, 20).map(float), st.integers(-30, 30), st.integers(1, 9),
                  st.integers(1, 999), st.tuples(st.booleans(), st.booleans(), st.booleans(),
                                                 st.booleans())),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(ops)
def test_records_rebuild_the_book_of_nelogicas_examples(steps: list[tuple]) -> None:
    """Whatever the sequence, the book rebuilt from the published records (by the store's
    rules) is the list Nelogica's examples would hold, once no paged book is pending."""
    book, model, parts = ProfitBook(), ListModel(), []
    for ts, step in enumerate(steps, start=1):
        if step[0] == "full":
            _, side, entries, flags = step
            parts.append(book.full_book(side, page(entries, flags), ts, ts))
            model.full(side, entries, flags)
        else:
            _, action, side, pos, price, qty, agent, offer, has = step
            if action == 0:  # an add is a new offer: a price (0 would read as an empty side)
                qty, has = abs(qty), (True, *has[1:])
            parts.append(book.update(action=action, position=pos, side=side, qty=qty,
                                     agent=agent, offer_id=offer, price=price, has=has,
                                     ts_event=ts, ts_recv=ts))  # fmt: skip
            model.update(action, side, pos, price, qty, agent, offer, has)
    rebuilt = stored(*parts)
    for side in (BID, ASK):
        if model.building[side] is not None:
            continue  # a paged book still in progress: not published yet
        want = [(float(o[0]), int(o[1]), int(o[2]), int(o[3])) for o in model.sides[side]]
        assert offers(rebuilt, side) == want == offers(book.state, side)


def test_history_plan_splits_win_by_day_and_refuses_old_starts() -> None:
    now = ns(2025, 11, 20, 15)
    start, end = ns(2025, 11, 17, 14), ns(2025, 11, 19, 11)
    windows = convert.plan_history("WINZ25", start, end, now_ns=now, tz=SP)
    assert windows == [(start, ns(2025, 11, 18)), (ns(2025, 11, 18), ns(2025, 11, 19)),
                       (ns(2025, 11, 19), end)]  # fmt: skip
    assert convert.plan_history("PETR4", start, end, now_ns=now, tz=SP) == [(start, end)]
    with pytest.raises(FeedError, match="30-day limit"):
        convert.plan_history("PETR4", now - 31 * NS_PER_DAY, now, now_ns=now, tz=SP)
    assert convert.plan_history("WDOZ25", end, start, now_ns=now, tz=SP) == []
    assert convert.format_request_date(start, SP) == "17/11/2025 14:00:00"


def test_error_names() -> None:
    assert error_name(-2147483645) == "NL_INVALID_ARGS"
    assert error_name(0x8000002E) == "NL_HISTORY_PERIOD_LIMIT"
    assert error_name(-1).startswith("unknown error")
    # every code of Nelogica's constants has its name (ProfitConstantsU.pas)
    assert set(NL_ERRORS) == {*range(0x80000001, 0x80000021), 0x8000002E}
    assert error_name(0x80000007) == "NL_PASSWORD_HASH_SHA1"
    assert error_name(0x8000000F - 2**32) == "NL_EXCHANGE_UNKNOWN"
    assert error_name(0x80000019) == "NL_SERIE_MAX_COUNT"
    assert error_name(0x80000020) == "NL_NOT_MASTER_ACCOUNT"
