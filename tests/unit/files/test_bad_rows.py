"""Bad rows found by fuzzing the file readers (issue 17 item 3), each a regression test:
with ``skip_bad_rows`` a bad row is counted, its line reported, and the rest is read."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickvault.errors import FileFormatError
from tickvault.files import b3
from tickvault.files.mapped import ColumnMap, read_mapped
from tickvault.files.reader import Source, read_b3

SP = ZoneInfo("America/Sao_Paulo")
GOOD = "2025-11-03;WINZ25;0;127990,0;1;100000123;{id};1;2025-11-03;1;2"
MAPPING = ColumnMap(ts_event="time", price="price", qty="qty", symbol="symbol",
                    trade_id="trade_id")  # fmt: skip
T0 = 1_762_174_800_000_000_000  # 2025-11-03 13:00 UTC


def _b3_file(tmp_path: Path, bad: bytes) -> Path:
    path = tmp_path / "trades.txt"
    lines = [";".join(b3.B3_COLUMNS).encode(), GOOD.format(id=10).encode(), bad,
             GOOD.format(id=11).encode()]  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(
    "bad",
    [b"2025-11-03;WINZ25;0;\xff\xfe;1;100000123;12;1;2025-11-03;1;2",
     b"2025-11-03;WIN\xc3;0;127990,0;1;100000123;12;1;2025-11-03;1;2"],
    ids=["price", "symbol"],
)  # fmt: skip
def test_a_b3_cell_that_is_not_utf8_is_a_bad_row_not_a_crash(tmp_path: Path, bad: bytes) -> None:
    path = _b3_file(tmp_path, bad)
    out = read_b3(Source(str(path), path), SP, ts_recv=T0, skip_bad_rows=True)
    assert out.bad_rows == 1 and out.bad_lines == [3]
    assert "line 3" in out.bad_examples[0] and "\ufffd" in out.bad_examples[0]
    assert len(out.trades["WINZ25"]) == 2
    with pytest.raises(FileFormatError, match="line 3"):  # without skipping: a clear error
        read_b3(Source(str(path), path), SP, ts_recv=T0)


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "trades.csv"
    path.write_text("\n".join(["time,price,qty,symbol,trade_id", *rows]) + "\n")
    return path


def _row(i: int, time: object = None, price: object = "10.5") -> str:
    return f"{T0 + i if time is None else time},{price},1,WINZ25,{i}"


def test_a_ragged_line_in_a_mapped_csv_is_a_bad_row_and_later_lines_keep_their_numbers(
    tmp_path: Path,
) -> None:
    rows = [_row(1), "1,2", _row(2), _row(3, price="abc"), _row(4) + ",extra", _row(5)]
    path = _csv(tmp_path, rows)
    out = read_mapped(path, MAPPING, SP, ts_recv=T0, skip_bad_rows=True)
    assert out.bad_rows == 3 and out.rows == 6
    assert out.bad_lines == [3, 5, 6]  # the header is line 1
    assert any(e.startswith("line 5: bad value 'abc'") for e in out.bad_examples)
    assert out.trades["WINZ25"].trade_id.tolist() == [1, 2, 5]
    with pytest.raises(FileFormatError):  # without skipping, the file is refused
        read_mapped(path, MAPPING, SP, ts_recv=T0)


@pytest.mark.parametrize("cell", ["yesterday", "-1", "5", "9" * 25, "", "nan"])
def test_one_bad_cell_in_an_integer_time_column_makes_one_bad_row(
    tmp_path: Path, cell: str
) -> None:
    """It made the whole column text (every row bad); ``-1`` as a year crashed pandas;
    an out-of-range time failed the whole import at validation."""
    rows = [_row(i) for i in range(1, 6)]
    rows[2] = _row(3, time=cell)
    out = read_mapped(_csv(tmp_path, rows), MAPPING, SP, ts_recv=T0, skip_bad_rows=True)
    assert out.bad_rows == 1 and out.bad_lines == [4]
    assert out.trades["WINZ25"].trade_id.tolist() == [1, 2, 4, 5]


@pytest.mark.parametrize("price", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_price_in_parquet_is_a_bad_row_not_a_failed_import(
    tmp_path: Path, price: float
) -> None:
    path = tmp_path / "trades.parquet"
    pq.write_table(pa.table({
        "time": pa.array([T0, T0 + 1, 2**62], pa.int64()),
        "price": pa.array([10.0, price, 11.0], pa.float64()),
        "qty": pa.array([1, 1, 1], pa.int64()),
        "symbol": pa.array(["WINZ25"] * 3),
        "trade_id": pa.array([1, 2, 3], pa.int64()),
    }), path)  # fmt: skip
    out = read_mapped(path, MAPPING, SP, ts_recv=T0, skip_bad_rows=True)
    assert out.bad_rows == 2 and out.bad_lines == [1, 2]  # Parquet: row numbers
    assert out.trades["WINZ25"].trade_id.tolist() == [1]
