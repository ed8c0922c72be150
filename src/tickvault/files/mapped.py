"""Generic trade files: any CSV or Parquet, with a mapping from its columns to trade fields.

``ColumnMap.parse("ts_event=time,price=preco,qty=quantidade,symbol=ticker")`` says
which column holds which field. ``ts_event`` may be integers (in ``time_unit``),
a Parquet timestamp, or text such as ``2025-11-03 10:30:00.123`` (naive times
are exchange time). Without a ``trade_id`` column, trades are numbered 1, 2, ...
per symbol in file order, so importing the same file again gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from tickvault.errors import ConfigError, FileFormatError, ValidationError
from tickvault.files.b3 import BAD_CELL_DETAIL
from tickvault.files.columns import Mask, to_float, to_int
from tickvault.files.reader import BAD_LINES_KEPT, FileTrades, _LineMap
from tickvault.records.trades import TradeBatch, TradeFlag, TradeType
from tickvault.records.validate import TRADE_ID_LIMIT, check_symbol
from tickvault.timeutil import MAX_SANE_NS, MIN_SANE_NS, NS_PER_MS, NS_PER_S, NS_PER_US

_UNITS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": NS_PER_S}


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which column of the file holds each trade field (None: not in the file)."""

    ts_event: str
    price: str
    qty: str
    symbol: str | None = None
    trade_id: str | None = None
    volume: str | None = None
    buy_agent: str | None = None
    sell_agent: str | None = None
    trade_type: str | None = None
    time_unit: str = "ns"

    @classmethod
    def parse(cls, spec: str, *, time_unit: str = "ns") -> ColumnMap:
        """From ``field=column,field=column``; ts_event, price and qty are required."""
        known = {f.name for f in fields(cls)} - {"time_unit"}
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, column = item.partition("=")
            if not sep or name.strip() not in known or not column.strip():
                raise ConfigError(
                    f"--map: cannot read {item!r}; write field=column with a field among "
                    f"{', '.join(sorted(known))}"
                )
            pairs[name.strip()] = column.strip()
        missing = [n for n in ("ts_event", "price", "qty") if n not in pairs]
        if missing:
            raise ConfigError(f"--map: the mapping must name a column for {', '.join(missing)}")
        if time_unit not in _UNITS:
            raise ConfigError(f"--time-unit must be one of {', '.join(_UNITS)}, got {time_unit!r}")
        return cls(**pairs, time_unit=time_unit)

    def columns(self) -> dict[str, str]:
        """Trade field -> file column, for the mapped fields."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "time_unit" and getattr(self, f.name) is not None
        }


def read_mapped(
    path: Path,
    mapping: ColumnMap,
    tz: ZoneInfo,
    *,
    ts_recv: int,
    symbol: str | None = None,
    symbols: frozenset[str] | None = None,
    delimiter: str = ",",
    skip_bad_rows: bool = False,
) -> FileTrades:
    """Read a CSV or Parquet file (by suffix) through ``mapping`` into trade batches."""
    name = str(path)
    if mapping.symbol is None and symbol is None:
        raise ConfigError(f"{name}: map a symbol column (symbol=...) or pass --symbol")
    wanted = list(dict.fromkeys(mapping.columns().values()))
    parquet = path.suffix.lower() in (".parquet", ".pq")
    lines = _LineMap()
    ragged: list[tuple[int, str]] = []

    def on_ragged(row: Any) -> str:
        """With ``skip_bad_rows``, a line with too few or too many fields is a bad row."""
        lines.skipped.append(int(row.number))
        ragged.append((int(row.number), str(row.text)[:120]))
        return "skip"

    try:
        if parquet:
            table = pq.read_table(path)
        else:
            table = pv.read_csv(
                path,
                read_options=pv.ReadOptions(use_threads=False),
                parse_options=pv.ParseOptions(
                    delimiter=delimiter, invalid_row_handler=on_ragged if skip_bad_rows else None
                ),
                convert_options=pv.ConvertOptions(
                    column_types=dict.fromkeys(wanted, pa.string()), strings_can_be_null=True
                ),
            )
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"cannot read the file: {exc}", path=name) from exc
    absent = [c for c in wanted if c not in table.column_names]
    if absent:
        raise FileFormatError(
            f"no column {absent[0]!r}; the file has {', '.join(table.column_names)}",
            path=name,
            line=None if parquet else 1,
        )
    cols = {f: table.column(c).combine_chunks() for f, c in mapping.columns().items()}
    n = table.num_rows
    out = FileTrades(name, rows=n + len(ragged))
    for line, text in ragged[:BAD_CELL_DETAIL]:
        out.bad_examples.append(f"line {line}: not {len(table.column_names)} fields: {text!r}")
    bad = np.zeros(n, dtype=bool)

    def note(field: str, mask: Mask, why: str) -> None:
        nonlocal bad
        if not mask.any():
            return
        row = int(np.flatnonzero(mask)[0])
        value = cols[field][row].as_py()
        where = {"line": None if parquet else lines.line_of(row)}
        message = f"bad value {value!r} for {field}: {why}"
        if parquet:
            message = f"row {row}: {message}"
        if not skip_bad_rows:
            raise FileFormatError(
                message + "; fix it or pass --skip-bad-rows", path=name,
                column=mapping.columns()[field], **where,
            )  # fmt: skip
        out.bad_examples.append(message if parquet else f"line {lines.line_of(row)}: {message}")
        bad |= mask

    ts_event, m = _times(cols["ts_event"], mapping.time_unit, tz)
    note("ts_event", m, f"must be a time (ISO text, timestamp, or integer {mapping.time_unit})")
    insane = ~m & ((ts_event < MIN_SANE_NS) | (ts_event > MAX_SANE_NS))
    note("ts_event", insane, f"must be between 1990 and 2100 (--time-unit {mapping.time_unit}?)")
    price, m = to_float(cols["price"])
    note("price", m | ~np.isfinite(price) | (price <= 0), "must be a finite number above 0")
    qty, m = to_int(cols["qty"])
    note("qty", m | (qty < 0), "must be a whole number, not negative")
    volume = price * qty
    if "volume" in cols:
        volume, m = to_float(cols["volume"])
        note("volume", m | ~np.isfinite(volume) | (volume < 0),
             "must be a finite number, not negative")  # fmt: skip
    agents = {}
    for side in ("buy_agent", "sell_agent"):
        agents[side] = np.zeros(n, np.int32)
        if side in cols:
            agents[side], m = to_int(cols[side], np.int32)
            note(side, m, "must be a whole number")
    trade_type = np.full(n, TradeType.UNKNOWN, np.uint8)
    if "trade_type" in cols:
        trade_type, m = to_int(cols["trade_type"], np.uint8)
        note("trade_type", m, "must be a ProfitDLL trade type 1..32")
    names = _symbols(cols.get("symbol"), symbol, n, note)
    trade_id: npt.NDArray[np.int64] | None = None
    if "trade_id" in cols:
        trade_id, m = to_int(cols["trade_id"])
        note("trade_id", m | (trade_id < 0) | (trade_id >= TRADE_ID_LIMIT),
             "must be a whole number in [0, 2**43)")  # fmt: skip
    out.bad_rows = int(bad.sum()) + len(ragged)
    at = np.flatnonzero(bad)[:BAD_LINES_KEPT].tolist()
    found = at if parquet else [lines.line_of(r) for r in at]
    out.bad_lines = sorted([*found, *(line for line, _ in ragged)])[:BAD_LINES_KEPT]
    for sym in sorted(set(names[~bad].tolist())):
        if symbols is not None and sym not in symbols:
            continue
        rows = np.flatnonzero((names == sym) & ~bad)
        ids = trade_id[rows] if trade_id is not None else np.arange(1, rows.size + 1)
        out.trades[sym] = TradeBatch(
            ts_event=ts_event[rows],
            ts_recv=np.full(rows.size, ts_recv, np.int64),
            trade_id=ids.astype(np.int64),
            price=price[rows],
            qty=qty[rows],
            volume=volume[rows],
            buy_agent=agents["buy_agent"][rows],
            sell_agent=agents["sell_agent"][rows],
            trade_type=trade_type[rows],
            flags=np.full(rows.size, TradeFlag.HISTORY, np.uint8),
        )
    return out


def _times(col: pa.Array, unit: str, tz: ZoneInfo) -> tuple[npt.NDArray[np.int64], Mask]:
    """A time column as int64 ns UTC, from integers, timestamps or text."""
    if pa.types.is_timestamp(col.type):
        naive = col.type.tz is None
        ns = pc.cast(col, pa.timestamp("ns", col.type.tz))
        values = pd.Series(ns.to_pandas())
        if naive:
            values = values.dt.tz_localize(tz)
        mask = values.isna().to_numpy().copy()
        return _as_ns(values, mask), mask
    if pa.types.is_string(col.type):
        # Integer text in most rows: an integer column, whose other rows are bad (one bad
        # cell must not turn every integer into unparseable text).
        digits = pc.fill_null(pc.match_substring_regex(col, r"^\s*-?\d+\s*$"), False)
        n_digits = int(pc.sum(digits).as_py() or 0)
        if n_digits and n_digits * 2 >= len(col) - col.null_count:
            col = pc.if_else(digits, col, pa.scalar(None, pa.string()))
    if pa.types.is_integer(col.type) or (
        pa.types.is_string(col.type)
        and pc.all(pc.fill_null(pc.match_substring_regex(col, r"^\s*-?\d+\s*$"), True)).as_py()
    ):
        ints, mask = to_int(col)
        factor = _UNITS[unit]
        mask = mask | (np.abs(ints) > np.iinfo(np.int64).max // factor)
        return np.where(mask, 0, ints) * factor, mask
    text = pd.Series(col.cast(pa.string()).to_pandas())
    # only what can be a date of this era: pandas raises, not coerces, on a year like -1
    text = text.where(text.str.match(r"^\s*\d{4}-\d{2}-\d{2}", na=False))
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    mask = parsed.isna().to_numpy()
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        mask = mask | parsed.isna().to_numpy()
    return _as_ns(parsed, mask), mask


def _as_ns(values: pd.Series[Any], mask: Mask) -> npt.NDArray[np.int64]:
    utc = values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    ns = np.asarray(utc.to_numpy().view(np.int64), dtype=np.int64).copy()
    ns[mask] = 0
    return ns


def _symbols(col: pa.Array | None, fixed: str | None, n: int, note: Any) -> npt.NDArray[Any]:
    if col is None:
        assert fixed is not None
        return np.full(n, check_symbol(fixed), dtype=object)
    encoded = pc.dictionary_encode(col.cast(pa.string()))
    canonical: list[str] = []
    for raw in encoded.dictionary.to_pylist():
        try:
            canonical.append(check_symbol(raw))
        except ValidationError:
            canonical.append("")
    lookup = np.array([*canonical, ""], dtype=object)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    names = lookup[codes]
    note("symbol", names == "", "must be an instrument code such as WINZ25")
    return names
