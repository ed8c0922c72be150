"""Turn what users pass to ``write_trades`` into a checked ``TradeBatch`` (pure).

Accepted: a numpy structured array with the trade fields, a dict of columns, a
pandas DataFrame
(``ts_event`` as a column or as the index; datetime or int ns), or an iterable
of ``Trade`` objects or dicts. ``ts_recv`` may be missing: it defaults to now.
Integer times are ns UTC; aware datetimes are converted; naive datetimes are in
the exchange time zone, the same rule as for query times.
Anything wrong raises ``ValidationError`` naming the field and the first bad
row; nothing is written then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.errors import ValidationError
from tickvault.records.book import ASK
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS, Trade, TradeBatch, TradeFlag
from tickvault.timeutil import MAX_SANE_NS, MIN_SANE_NS

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_.$-]{0,63}$")
TRADE_ID_LIMIT = 1 << 43
"""trade_id must be below this: (trading day, trade_id) packs into one int64 key."""

_REQUIRED = ("ts_event", "trade_id", "price", "qty")
_DEFAULTS: dict[str, int | float] = {
    "volume": 0.0,
    "buy_agent": 0,
    "sell_agent": 0,
    "trade_type": 32,
    "flags": 0,
}
_VALID_FLAGS = int(TradeFlag.EDIT | TradeFlag.CANCEL | TradeFlag.HISTORY)


def check_symbol(symbol: object) -> str:
    """The symbol in canonical (upper-case) form, or ValidationError."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValidationError(
            f"symbol must be a non-empty string such as 'WINZ25', got {symbol!r}", field="symbol"
        )
    canonical = symbol.strip().upper()
    if not SYMBOL_RE.match(canonical):
        raise ValidationError(
            f"malformed symbol {symbol!r}: use letters, digits and _ . $ - "
            "(at most 64 characters, no braces or colons)",
            field="symbol",
        )
    return canonical


def _first_bad(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _fail(field: str, mask: npt.NDArray[np.bool_], values: npt.NDArray[Any], why: str) -> None:
    row = _first_bad(mask)
    count = int(mask.sum())
    more = f" ({count} bad rows in all)" if count > 1 else ""
    raise ValidationError(
        f"field {field!r}, row {row}: {why}, got {values[row]!r}{more}; nothing was written",
        field=field,
        row=row,
    )


def _naive_local(name: str, arr: npt.NDArray[Any], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """Naive datetimes read in the exchange zone ``tz``, as int ns UTC."""
    try:
        local = pd.DatetimeIndex(arr.astype("M8[ns]")).tz_localize(
            tz, ambiguous="raise", nonexistent="raise"
        )
    except (ValueError, OverflowError) as exc:  # pytz/pandas raise ValueError subclasses
        raise ValidationError(
            f"field {name!r}: naive times are read in the exchange time zone ({tz.key}) and "
            f"{exc}; pass aware times (tz_localize) or int ns UTC; nothing was written",
            field=name,
        ) from None
    return np.asarray(local.asi8, dtype=np.int64)


def _column(name: str, raw: Any, tz: ZoneInfo) -> npt.NDArray[Any]:
    """One input column converted to the record dtype, refusing lossy or textual input."""
    target = TRADE_DTYPE[name]
    if isinstance(raw, pd.Series | pd.Index) and isinstance(raw.dtype, pd.DatetimeTZDtype):
        if name not in ("ts_event", "ts_recv"):
            raise ValidationError(f"field {name!r} holds datetimes, expected {target}", field=name)
        return np.asarray(pd.DatetimeIndex(raw).as_unit("ns").asi8, dtype=np.int64)
    arr = np.asarray(raw)
    if name in ("ts_event", "ts_recv") and arr.dtype.kind == "M":
        return _naive_local(name, arr, tz)
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(target)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"field {name!r} holds values that are not {target} numbers ({exc}); "
                "nothing was written",
                field=name,
            ) from None
    if arr.dtype.kind not in "biuf":
        raise ValidationError(
            f"field {name!r} has dtype {arr.dtype}, expected {target}; nothing was written",
            field=name,
        )
    if target.kind in "iu" and arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.trunc(arr))
        if bad.any():
            _fail(name, bad, arr, f"expected whole numbers ({target})")
        if name in ("ts_event", "ts_recv"):
            raise ValidationError(
                f"field {name!r} is floating point; pass int64 nanoseconds or datetime64 so no "
                "precision is lost; nothing was written",
                field=name,
            )
    if target.kind in "iu" and arr.dtype != target:
        info = np.iinfo(target)
        wide = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
        bad = (wide < info.min) | (wide > info.max)
        if bad.any():
            _fail(name, bad, arr, f"out of range for {target}")
    return np.ascontiguousarray(arr.astype(target, copy=False))


def _raw_columns(trades: Any) -> dict[str, Any]:
    if isinstance(trades, TradeBatch):
        return trades.columns()
    if isinstance(trades, Mapping):  # a dict of columns
        unknown = [k for k in trades if k not in TRADE_FIELDS]
        if unknown:
            raise ValidationError(
                f"unknown columns {unknown}; trade columns are {list(TRADE_FIELDS)}",
                field=str(unknown[0]),
            )
        return dict(trades)
    if isinstance(trades, pd.DataFrame):
        cols: dict[str, Any] = {c: trades[c] for c in trades.columns if c in TRADE_FIELDS}
        unknown = [c for c in trades.columns if c not in TRADE_FIELDS]
        if unknown:
            raise ValidationError(
                f"unknown columns {unknown}; trade columns are {list(TRADE_FIELDS)}",
                field=str(unknown[0]),
            )
        if "ts_event" not in cols and trades.index.name == "ts_event":
            cols["ts_event"] = trades.index
        return cols
    if isinstance(trades, np.ndarray):
        if trades.dtype.names is None:
            raise ValidationError(
                f"a numpy array of trades must be structured with fields {list(TRADE_FIELDS)}, "
                f"got dtype {trades.dtype}",
                field="trades",
            )
        unknown = [n for n in trades.dtype.names if n not in TRADE_FIELDS]
        if unknown:
            raise ValidationError(f"unknown fields {unknown}", field=unknown[0])
        return {n: trades[n] for n in trades.dtype.names}
    if isinstance(trades, Iterable) and not isinstance(trades, str | bytes):
        rows = [_row_dict(r, i) for i, r in enumerate(trades)]
        names = {k for r in rows for k in r}
        return {n: [r.get(n, _DEFAULTS.get(n)) for r in rows] for n in names}
    raise ValidationError(
        "trades must be a numpy structured array, a pandas DataFrame or an iterable of "
        f"Trade/dict records, got {type(trades).__name__}",
        field="trades",
    )


def _row_dict(record: Any, row: int) -> dict[str, Any]:
    if isinstance(record, Trade):
        return {k: v for k, v in asdict(record).items() if v is not None}
    if isinstance(record, Mapping):
        unknown = [k for k in record if k not in TRADE_FIELDS]
        if unknown:
            raise ValidationError(
                f"row {row}: unknown field {unknown[0]!r}", field=str(unknown[0]), row=row
            )
        return dict(record)
    raise ValidationError(
        f"row {row}: expected a Trade or a dict, got {type(record).__name__}", row=row
    )


def to_batch(
    trades: Any, *, default_ts_recv: int, tz: ZoneInfo, extra_flags: int = 0
) -> TradeBatch:
    """Coerce and validate ``trades``; naive datetimes are in ``tz`` (the exchange zone).
    ``extra_flags`` are OR-ed into every row."""
    raw = _raw_columns(trades)
    for name in _REQUIRED:
        if name not in raw:
            raise ValidationError(f"missing required field {name!r}", field=name)
    n = len(np.asarray(raw["ts_event"]))
    cols: dict[str, npt.NDArray[Any]] = {}
    for name in TRADE_FIELDS:
        if name in raw:
            cols[name] = _column(name, raw[name], tz)
            if cols[name].shape != (n,):
                raise ValidationError(
                    f"field {name!r} has {cols[name].shape[0]} rows, ts_event has {n}", field=name
                )
        elif name == "ts_recv":
            cols[name] = np.full(n, default_ts_recv, dtype=np.int64)
        else:
            cols[name] = np.full(n, _DEFAULTS[name], dtype=TRADE_DTYPE[name])
    batch = TradeBatch(**cols)
    validate(batch)
    if extra_flags:
        batch = TradeBatch(**{**batch.columns(), "flags": batch.flags | np.uint8(extra_flags)})
    return batch


def validate(batch: TradeBatch) -> None:
    """Check the values of a batch; raise ValidationError on the first bad field."""
    for name in ("ts_event", "ts_recv"):
        col = getattr(batch, name)
        bad = (col < MIN_SANE_NS) | (col > MAX_SANE_NS)
        if bad.any():
            _fail(
                name,
                bad,
                col,
                "not int64 nanoseconds between 1990 and 2100 "
                "(seconds or milliseconds passed as nanoseconds?)",
            )
    price = batch.price
    bad = ~np.isfinite(price) | (price <= 0)
    if bad.any():
        _fail("price", bad, price, "must be a finite number above 0")
    if (bad := batch.qty < 0).any():
        _fail("qty", bad, batch.qty, "must not be negative")
    vol = batch.volume
    if (bad := ~np.isfinite(vol) | (vol < 0)).any():
        _fail("volume", bad, vol, "must be a finite number, not negative")
    tid = batch.trade_id
    if (bad := (tid < 0) | (tid >= TRADE_ID_LIMIT)).any():
        _fail("trade_id", bad, tid, "must be in [0, 2**43)")
    if (bad := (batch.flags & ~np.uint8(_VALID_FLAGS)) != 0).any():
        _fail("flags", bad, batch.flags, "unknown flag bits (EDIT=1, CANCEL=2, HISTORY=4)")
    both = int(TradeFlag.EDIT | TradeFlag.CANCEL)
    if (bad := (batch.flags & both) == both).any():
        _fail("flags", bad, batch.flags, "a record cannot be both EDIT and CANCEL")


def validate_book(records: npt.NDArray[np.void]) -> None:
    """Raise ValidationError naming the first bad field of offer-book updates."""
    checks = (
        ("ts_event", (records["ts_event"] < MIN_SANE_NS) | (records["ts_event"] > MAX_SANE_NS),
         "not int64 ns between 1990 and 2100"),
        ("price", ~np.isfinite(records["price"]) | (records["price"] < 0),
         "must be a finite price, not negative (0: absent)"),
        ("side", records["side"] > ASK, "must be 0 (bid) or 1 (ask)"),
        ("action", records["action"] > 4, "must be 0 add, 1 edit, 2 delete, 3 delete from, 4 full"),
        ("position", records["position"] < 0, "must not be negative"),
    )  # fmt: skip
    for name, bad, why in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                f"book update {row}: {name} {records[name][row].item()!r} {why}",
                field=name,
                row=row,
            )


def validate_gaps(records: npt.NDArray[np.void]) -> None:
    """Raise ValidationError naming the first bad field of a feeder's GAP records
    (``records.events.GAP_DTYPE``): times in int64 ns between 1990 and 2100, and a span
    that does not end before it starts."""
    sane = "not int64 ns between 1990 and 2100"
    checks = [
        (name, (records[name] < MIN_SANE_NS) | (records[name] > MAX_SANE_NS), sane)
        for name in ("ts_event", "start_ns", "end_ns")
    ]
    checks.append(("end_ns", records["end_ns"] < records["start_ns"], "is before start_ns"))
    for name, bad, why in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                f"gap record {row}: {name} {records[name][row].item()!r} {why}",
                field=name,
                row=row,
            )
