"""Turning text columns of a file into typed numpy columns, keeping track of bad cells (pure).

Every converter takes an Arrow string column and returns the values plus a
boolean mask of the rows whose cell could not be read. The fast path is one
Arrow cast of the whole column; only when it fails are the bad cells located,
so a clean file never pays for the error handling.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tickvault.timeutil import NS_PER_MS, NS_PER_S

Mask = npt.NDArray[np.bool_]

_INT_RE = r"^\s*[+-]?\d+\s*$"
_FLOAT_RE = r"^\s*[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?\s*$"


@dataclass(frozen=True, slots=True)
class BadCell:
    """One unreadable cell: its row (0-based, within the rows handed in), column and text."""

    row: int
    column: str
    value: str
    why: str


def _null_mask(arr: pa.Array) -> Mask:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _cast(col: pa.Array, target: pa.DataType, pattern: str) -> tuple[pa.Array, Mask]:
    """``col`` cast to ``target``; cells that do not match ``pattern`` become null and bad."""
    try:
        out = pc.cast(col, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = pc.fill_null(pc.match_substring_regex(col, pattern), False)
        try:
            out = pc.cast(pc.if_else(ok, col, pa.scalar(None, col.type)), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # matches, yet out of range
            values = [_py_cast(v, target) for v in col.to_pylist()]
            out = pa.array(values, type=target)
    return out, _null_mask(out)


def _py_cast(value: str | None, target: pa.DataType) -> Any:
    if value is None:
        return None
    try:
        if pa.types.is_integer(target):
            number = int(value)
            info = np.iinfo(target.to_pandas_dtype())
            return number if info.min <= number <= info.max else None
        return float(value.replace(",", "."))
    except ValueError:
        return None


def to_int(col: pa.Array, dtype: type[np.integer[Any]] = np.int64) -> tuple[npt.NDArray[Any], Mask]:
    """Integers; empty, non-numeric and out-of-range cells are bad (value 0)."""
    out, bad = _cast(col, pa.from_numpy_dtype(np.dtype(dtype)), _INT_RE)
    return np.asarray(out.fill_null(0).to_numpy(zero_copy_only=False), dtype=dtype), bad


def to_float(col: pa.Array, *, decimal_comma: bool = False) -> tuple[npt.NDArray[np.float64], Mask]:
    """Floats, with ``,`` as decimal point when ``decimal_comma``; bad cells are NaN."""
    if decimal_comma and pa.types.is_string(col.type):
        col = pc.replace_substring(col, ",", ".")
    out, bad = _cast(col, pa.float64(), _FLOAT_RE)
    values = np.asarray(out.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, bad | ~np.isfinite(values)


def to_days(col: pa.Array) -> tuple[npt.NDArray[np.int64], Mask]:
    """ISO dates (YYYY-MM-DD) as days since 1970-01-01. A file holds few distinct dates,
    so each distinct text is parsed once."""
    try:
        out = pc.cast(col, pa.date32())
        return (
            np.asarray(out.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64),
            _null_mask(out),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    distinct = pc.unique(col).to_pylist()
    parsed = np.array([_iso_day(v) for v in distinct], dtype=np.int64)
    index = np.asarray(
        pc.index_in(col, value_set=pa.array(distinct, col.type)).to_numpy(zero_copy_only=False)
    )
    index = np.nan_to_num(index.astype(np.float64), nan=0).astype(np.int64)
    days = parsed[index] if parsed.size else np.zeros(len(col), np.int64)
    bad = days < 0
    return np.where(bad, 0, days), bad


def _iso_day(text: str | None) -> int:
    if text is None:
        return -1
    try:
        return (dt.date.fromisoformat(text.strip()) - dt.date(1970, 1, 1)).days
    except ValueError:
        return -1


def hhmmssmmm_to_ns(col: pa.Array) -> tuple[npt.NDArray[np.int64], Mask]:
    """B3 ``HoraFechamento``: HHMMSSmmm as an integer (a leading zero may be missing)
    to ns since local midnight."""
    raw, bad = to_int(col)
    hh, rest = np.divmod(raw, 10_000_000)
    mm, rest = np.divmod(rest, 100_000)
    ss, ms = np.divmod(rest, 1_000)
    bad |= (raw < 0) | (hh > 23) | (mm > 59) | (ss > 59)
    ns = ((hh * 3600 + mm * 60 + ss) * NS_PER_S + ms * NS_PER_MS).astype(np.int64)
    return np.where(bad, 0, ns), bad


def bad_cells(column: str, bad: Mask, text: pa.Array, why: str, *, limit: int) -> list[BadCell]:
    """The first ``limit`` bad cells of ``column``, in detail."""
    shown = np.flatnonzero(bad)[:limit].tolist()
    if not shown:
        return []
    picked = text.take(pa.array(shown, pa.int64()))
    if pa.types.is_string(picked.type) or pa.types.is_large_string(picked.type):
        # read without a UTF-8 check: a cell of other bytes is shown with replacements
        raw = picked.cast(pa.binary()).to_pylist()
        values: list[object] = [None if v is None else v.decode("utf-8", "replace") for v in raw]
    else:
        values = picked.to_pylist()
    return [
        BadCell(row, column, "" if v is None else str(v), why)
        for row, v in zip(shown, values, strict=True)
    ]
