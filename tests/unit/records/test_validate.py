"""Input checking: every bad input names the field and row; good inputs of every form pass."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from tests.conftest import sim_trades
from tickvault import Trade, TradeFlag, ValidationError
from tickvault.records.validate import check_symbol, to_batch

NOW = 1_762_200_000_000_000_000
SP = ZoneInfo("America/Sao_Paulo")


def good_frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({k: v for k, v in sim_trades(n).items() if k != "ts_recv"})


@pytest.mark.parametrize("symbol", ["", "  ", "WIN{Z25}", "a:b", "X" * 65, None, 5])
def test_check_symbol_rejects_empty_or_malformed(symbol: object) -> None:
    with pytest.raises(ValidationError, match="symbol") as info:
        check_symbol(symbol)
    assert info.value.field == "symbol"


def test_check_symbol_canonicalises_case() -> None:
    assert check_symbol("winz25") == "WINZ25"
    assert check_symbol("WIN$N") == "WIN$N"


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("price", np.nan, "finite number above 0"),
        ("price", 0.0, "finite number above 0"),
        ("price", -5.0, "finite number above 0"),
        ("qty", -1, "must not be negative"),
        ("volume", np.inf, "finite"),
        ("ts_event", 1_700_000_000, "nanoseconds"),
        ("trade_id", -3, "trade_id"),
        ("flags", 64, "unknown flag bits"),
        ("flags", 3, "both EDIT and CANCEL"),
    ],
)
def test_to_batch_bad_value_names_field_and_row(field: str, value: object, why: str) -> None:
    frame = good_frame()
    frame.loc[3, field] = value
    with pytest.raises(ValidationError, match=why) as info:
        to_batch(frame, default_ts_recv=NOW, tz=SP)
    assert info.value.field == field
    assert info.value.row == 3
    assert "row 3" in str(info.value)


def test_to_batch_wrong_dtype_is_named() -> None:
    frame = good_frame()
    frame["price"] = ["a", "b", "c", "d", "e"]
    with pytest.raises(ValidationError, match="'price'"):
        to_batch(frame, default_ts_recv=NOW, tz=SP)


def test_to_batch_float_timestamps_are_refused() -> None:
    frame = good_frame()
    frame["ts_event"] = frame["ts_event"].astype(float)
    with pytest.raises(ValidationError, match="ts_event"):
        to_batch(frame, default_ts_recv=NOW, tz=SP)


def test_to_batch_missing_and_unknown_columns() -> None:
    with pytest.raises(ValidationError, match="missing required field 'price'"):
        to_batch(good_frame().drop(columns="price"), default_ts_recv=NOW, tz=SP)
    with pytest.raises(ValidationError, match="unknown columns"):
        to_batch(good_frame().assign(foo=1), default_ts_recv=NOW, tz=SP)


def test_to_batch_accepts_frame_with_datetime_index_and_defaults_ts_recv() -> None:
    frame = good_frame()
    frame.index = pd.DatetimeIndex(
        frame.pop("ts_event").to_numpy().view("M8[ns]"), tz="UTC", name="ts_event"
    )
    batch = to_batch(frame, default_ts_recv=NOW, tz=SP)
    assert (batch.ts_recv == NOW).all()
    np.testing.assert_array_equal(batch.ts_event, frame.index.asi8)


def test_to_batch_accepts_records_structured_arrays_and_column_dicts() -> None:
    trades = [
        Trade(ts_event=NOW - 10, trade_id=1, price=10.5, qty=3),
        {"ts_event": NOW - 5, "trade_id": 2, "price": 11.0, "qty": 1},
    ]
    batch = to_batch(trades, default_ts_recv=NOW, tz=SP, extra_flags=int(TradeFlag.HISTORY))
    assert batch.trade_id.tolist() == [1, 2]
    assert (batch.flags == TradeFlag.HISTORY).all()
    sim = sim_trades(10)
    assert len(to_batch(sim.to_structured(), default_ts_recv=NOW, tz=SP)) == 10
    assert len(to_batch(sim.columns(), default_ts_recv=NOW, tz=SP)) == 10


def test_to_batch_counts_all_bad_rows() -> None:
    frame = good_frame()
    frame.loc[[1, 2, 4], "qty"] = -1
    with pytest.raises(ValidationError, match=r"row 1.*3 bad rows"):
        to_batch(frame, default_ts_recv=NOW, tz=SP)


@pytest.mark.parametrize("as_index", [False, True])
def test_naive_datetimes_are_written_in_exchange_time_like_query_times(as_index: bool) -> None:
    from tickvault.timeutil import to_ns

    frame = good_frame(3)
    frame["ts_event"] = pd.to_datetime(["2025-11-03 10:00", "2025-11-03 10:00:01",
                                        "2025-11-03 17:59:59.5"], format="ISO8601")  # fmt: skip
    if as_index:
        frame = frame.set_index("ts_event")
    batch = to_batch(frame, default_ts_recv=NOW, tz=SP)
    assert batch.ts_event[0] == to_ns("2025-11-03T10:00", SP) == to_ns("2025-11-03T13:00Z", SP)
    assert batch.ts_event[2] == to_ns("2025-11-03 17:59:59.500", SP)


def test_naive_time_that_does_not_exist_in_the_exchange_zone_is_refused() -> None:
    frame = good_frame(1)
    frame["ts_event"] = pd.to_datetime(["2018-11-04 00:30"])  # Brazil skipped 00:00-01:00
    with pytest.raises(ValidationError, match=r"ts_event.*America/Sao_Paulo.*nothing was written"):
        to_batch(frame, default_ts_recv=NOW, tz=SP)
