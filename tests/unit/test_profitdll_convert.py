"""ProfitDLL conversions and history rules (pure)."""

from __future__ import annotations

import datetime as dt
import struct
from zoneinfo import ZoneInfo

import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import FeedError, ValidationError
from tickvault.feeds.profitdll import convert
from tickvault.feeds.profitdll.types import error_name
from tickvault.model.trades import TradeFlag, TradeType
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
    ]
    live = convert.trade_records(raw, history=False)
    assert live["flags"].tolist() == [0, int(TradeFlag.EDIT)]
    assert live["trade_type"].tolist() == [2, int(TradeType.UNKNOWN)]
    hist = convert.trade_records(raw, history=True)
    assert hist["flags"].tolist() == [4, 5]


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
    recs = convert.full_book_records(parsed, None, 5, 6)
    assert recs["position"].tolist() == [1, 0] and (recs["action"] == 4).all()
    assert (recs["side"] == 0).all() and recs["offer_id"].tolist() == [100, 101]
    empty = convert.parse_book_array(_array([]))
    cleared = convert.full_book_records(parsed, empty, 5, 6)
    assert cleared[-1]["side"] == 1 and cleared[-1]["price"] == 0 and cleared[-1]["action"] == 4


@pytest.mark.parametrize(
    "raw",
    [b"\x00" * 4, struct.pack("<ii", 2, 12) + b"\x00" * 4, struct.pack("<ii", 1, 12) + b"\0" * 4],
)
def test_bad_book_arrays(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        convert.parse_book_array(raw)


def test_absent_fields_in_an_edit_keep_their_values() -> None:
    rec = convert.book_update_record(action=1, position=0, side=1, qty=9, agent=0, offer_id=0,
                                     price=0.0, has=(False, True, False, False), ts_event=1,
                                     ts_recv=2)  # fmt: skip
    assert (rec["price"][0], rec["qty"][0], rec["agent"][0]) == (0.0, 9, 0)
    rec = convert.book_update_record(action=1, position=0, side=1, qty=9, agent=3, offer_id=4,
                                     price=1.0, has=(True, False, True, True), ts_event=1,
                                     ts_recv=2)  # fmt: skip
    assert rec["qty"][0] == -1 and rec["agent"][0] == 3


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
