"""B3's public tick-by-tick trade files ("negócios"): columns, conversion, cancels (pure).

A file is semicolon-separated text with the header ``B3_COLUMNS`` (optionally a
trailing ``TipoDoCanal``). Prices use a decimal comma; ``HoraFechamento`` is
HHMMSSmmm São Paulo time, possibly without its leading zero;
``AcaoAtualizacao`` is 0 for a new trade and 2 for the cancel of the trade with
the same ``CodigoIdentificadorNegocio``.

Each row becomes a trade record: ``ts_event`` from ``DataNegocio`` +
``HoraFechamento``, ``trade_id`` from ``CodigoIdentificadorNegocio``, the
participants as ``buy_agent``/``sell_agent``, ``volume = price * qty`` (the file
carries no contract multiplier), ``trade_type`` unknown (the file says nothing
of the aggressor) and the HISTORY flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tickvault.errors import FileFormatError, ValidationError
from tickvault.files.columns import (
    BadCell,
    Mask,
    bad_cells,
    hhmmssmmm_to_ns,
    to_days,
    to_float,
    to_int,
)
from tickvault.records.trades import TradeBatch, TradeFlag, TradeType
from tickvault.records.validate import TRADE_ID_LIMIT, check_symbol
from tickvault.timeutil import (
    NS_PER_DAY,
    NS_PER_MS,
    local_to_utc_ns,
    trading_days,
    utc_offsets_ns,
)

B3_COLUMNS: tuple[str, ...] = (
    "DataReferencia",
    "CodigoInstrumento",
    "AcaoAtualizacao",
    "PrecoNegocio",
    "QuantidadeNegociada",
    "HoraFechamento",
    "CodigoIdentificadorNegocio",
    "TipoSessaoPregao",
    "DataNegocio",
    "CodigoParticipanteComprador",
    "CodigoParticipanteVendedor",
)
B3_OPTIONAL_COLUMN = "TipoDoCanal"
B3_USED_COLUMNS: tuple[str, ...] = tuple(
    c for c in B3_COLUMNS if c not in ("DataReferencia", "TipoSessaoPregao")
)
"""The columns a trade record is built from (the others are checked in the header only)."""
ACTION_NEW, ACTION_CANCEL = 0, 2
BAD_CELL_DETAIL = 20
"""How many bad cells per column and chunk are kept in detail (rows are all counted)."""


def is_b3_header(names: Sequence[str]) -> bool:
    return tuple(names[: len(B3_COLUMNS)]) == B3_COLUMNS


def check_header(names: Sequence[str], path: str) -> None:
    """Raise FileFormatError naming the first column that differs from B3's header."""
    expected = list(B3_COLUMNS)
    if len(names) == len(B3_COLUMNS) + 1:
        expected.append(B3_OPTIONAL_COLUMN)
    for i, want in enumerate(expected):
        got = names[i] if i < len(names) else None
        if got != want:
            raise FileFormatError(
                f"not a B3 trade file header: expected {want!r}, found "
                f"{'nothing' if got is None else repr(got)}. The header must be "
                f"{';'.join(B3_COLUMNS)}[;{B3_OPTIONAL_COLUMN}] (for another CSV or a "
                "Parquet file, pass --map field=column,...)",
                path=path,
                line=1,
                column=f"{i + 1} ({want})",
            )
    if len(names) > len(expected):
        raise FileFormatError(
            f"unexpected extra column {names[len(expected)]!r} in the header",
            path=path,
            line=1,
            column=str(len(expected) + 1),
        )


@dataclass(slots=True)
class Chunk:
    """Converted rows of one piece of a file: per-symbol trades and the bad cells found."""

    trades: dict[str, TradeBatch] = field(default_factory=dict)
    bad_rows: Mask = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """Per input row: True when the row was rejected."""
    cells: list[BadCell] = field(default_factory=list)


def convert(
    batch: pa.RecordBatch, tz: ZoneInfo, *, ts_recv: int, symbols: frozenset[str] | None = None
) -> Chunk:
    """Rows of a B3 file (all columns as strings) to trade records grouped by symbol.

    Rows of other symbols are dropped first when ``symbols`` is given. Rows with an
    unreadable cell are left out and reported in ``Chunk.cells`` by row index.
    """
    n = batch.num_rows
    chunk = Chunk(bad_rows=np.zeros(n, dtype=bool))
    sym = batch.column("CodigoInstrumento")
    rows: npt.NDArray[np.int64] = np.arange(n, dtype=np.int64)
    if symbols is not None:
        keep = pc.fill_null(pc.is_in(sym, value_set=pa.array(sorted(symbols), pa.string())), False)
        rows = np.flatnonzero(np.asarray(keep.to_numpy(zero_copy_only=False)))
        if rows.size == 0:
            return chunk
        if rows.size < n:
            batch = batch.take(pa.array(rows))
            sym = batch.column("CodigoInstrumento")
    bad = np.zeros(len(rows), dtype=bool)

    def note(column: str, mask: Mask, why: str) -> None:
        nonlocal bad
        if not mask.any():
            return
        cells = bad_cells(column, mask, batch.column(column), why, limit=BAD_CELL_DETAIL)
        chunk.cells.extend(BadCell(int(rows[c.row]), c.column, c.value, c.why) for c in cells)
        bad |= mask

    action, m = to_int(batch.column("AcaoAtualizacao"))
    note("AcaoAtualizacao", m | ((action != ACTION_NEW) & (action != ACTION_CANCEL)),
         "must be 0 (new trade) or 2 (cancel)")  # fmt: skip
    price, m = to_float(batch.column("PrecoNegocio"), decimal_comma=True)
    note("PrecoNegocio", m | (price <= 0), "must be a price above 0 such as 128910,000")
    qty, m = to_int(batch.column("QuantidadeNegociada"))
    note("QuantidadeNegociada", m | (qty <= 0), "must be a whole quantity above 0")
    tod, m = hhmmssmmm_to_ns(batch.column("HoraFechamento"))
    note("HoraFechamento", m, "must be a time HHMMSSmmm such as 090000007")
    trade_id, m = to_int(batch.column("CodigoIdentificadorNegocio"))
    note("CodigoIdentificadorNegocio", m | (trade_id < 0) | (trade_id >= TRADE_ID_LIMIT),
         "must be a whole number in [0, 2**43)")  # fmt: skip
    days, m = to_days(batch.column("DataNegocio"))
    note("DataNegocio", m, "must be a date YYYY-MM-DD")
    buyer, m = _agent(batch.column("CodigoParticipanteComprador"))
    note("CodigoParticipanteComprador", m, "must be a participant code (a whole number) or empty")
    seller, m = _agent(batch.column("CodigoParticipanteVendedor"))
    note("CodigoParticipanteVendedor", m, "must be a participant code (a whole number) or empty")

    # Group by symbol: one stable sort of the dictionary codes.
    encoded = pc.dictionary_encode(sym).combine_chunks() if isinstance(sym, pa.ChunkedArray) else (
        pc.dictionary_encode(sym)
    )  # fmt: skip
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    # read without a UTF-8 check: a name of other bytes is not a symbol (decoded with
    # replacement characters, it fails ``check_symbol``)
    names = [None if v is None else v.decode("utf-8", "replace")
             for v in encoded.dictionary.cast(pa.binary()).to_pylist()]  # fmt: skip
    valid_code = np.zeros(len(names) + 1, dtype=bool)  # last slot: null symbol
    canonical: list[str] = []
    for i, name in enumerate(names):
        try:
            canonical.append(check_symbol(name))
            valid_code[i] = True
        except ValidationError:
            canonical.append("")
    note("CodigoInstrumento", ~valid_code[codes], "must be an instrument code such as WINZ25")
    chunk.bad_rows[rows[bad]] = True

    good = np.flatnonzero(~bad)
    ts_event = np.zeros(len(rows), dtype=np.int64)
    ts_event[good] = local_to_utc_ns(days[good] * NS_PER_DAY + tod[good], tz)
    flags = np.where(action == ACTION_CANCEL, TradeFlag.CANCEL | TradeFlag.HISTORY,
                     TradeFlag.HISTORY).astype(np.uint8)  # fmt: skip
    order = good[np.argsort(codes[good], kind="stable")]
    sorted_codes = codes[order]
    cuts = np.flatnonzero(np.diff(sorted_codes)) + 1
    for part in np.split(order, cuts):
        if part.size == 0:
            continue
        p = part
        chunk.trades[canonical[int(codes[p[0]])]] = TradeBatch(
            ts_event=ts_event[p],
            ts_recv=np.full(p.size, ts_recv, dtype=np.int64),
            trade_id=trade_id[p],
            price=price[p],
            qty=qty[p],
            volume=price[p] * qty[p],
            buy_agent=buyer[p],
            sell_agent=seller[p],
            trade_type=np.full(p.size, TradeType.UNKNOWN, dtype=np.uint8),
            flags=flags[p],
        )
    return chunk


def _agent(col: pa.Array) -> tuple[npt.NDArray[np.int32], Mask]:
    """Participant codes; an empty cell (no participant disclosed) is agent 0."""
    empty = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values, bad = to_int(col, np.int32)
    return values, bad & ~empty


@dataclass(frozen=True, slots=True)
class Resolved:
    trades: TradeBatch
    cancelled: int
    """Trades of the file removed by a cancel row of the file."""
    unmatched_cancels: int
    """Cancel rows whose trade is not in the file (kept as CANCEL records)."""


def resolve_cancels(batch: TradeBatch, tz: ZoneInfo) -> Resolved:
    """Apply a file's cancel rows to its own trades.

    A cancelled trade is dropped. Every cancel row is kept as a CANCEL record, so a
    copy of the trade stored earlier (from the live feed) is removed at read time
    too; a matched cancel takes the ``ts_event`` of the trade it cancels, which is
    how the store finds the pair.
    """
    is_cancel = (batch.flags & np.uint8(TradeFlag.CANCEL)) != 0
    if not is_cancel.any():
        return Resolved(batch, 0, 0)
    key = (trading_days(batch.ts_event, tz) << 43) | batch.trade_id
    new_idx, cancel_idx = np.flatnonzero(~is_cancel), np.flatnonzero(is_cancel)
    cancel_keys = key[cancel_idx]
    dropped = np.isin(key[new_idx], cancel_keys)
    # ts_event of the first new trade with each cancelled key
    order = new_idx[np.argsort(key[new_idx], kind="stable")]
    sorted_keys = key[order]
    pos = np.searchsorted(sorted_keys, cancel_keys)
    pos_ok = np.minimum(pos, max(sorted_keys.size - 1, 0))
    matched = (pos < sorted_keys.size) & (sorted_keys[pos_ok] == cancel_keys) if order.size else (
        np.zeros(cancel_idx.size, dtype=bool)
    )  # fmt: skip
    cancels = batch.take(cancel_idx)
    if matched.any():
        ts = cancels.ts_event.copy()
        ts[matched] = batch.ts_event[order[pos_ok[matched]]]
        cancels = TradeBatch(**{**cancels.columns(), "ts_event": ts})
    kept = batch.take(new_idx[~dropped])
    return Resolved(
        TradeBatch.concat([kept, cancels]),
        cancelled=int(dropped.sum()),
        unmatched_cancels=int((~matched).sum()),
    )


def to_b3_table(trades: dict[str, TradeBatch], tz: ZoneInfo, *, channel: bool = False) -> pa.Table:
    """Trades as the rows of a B3 trade file (text columns), in symbol then time order.

    The inverse of ``convert`` for the fields the file has: used to write test and
    benchmark files. CANCEL records become rows with ``AcaoAtualizacao`` 2.
    """
    parts = []
    for symbol, batch in trades.items():
        n = len(batch)
        local = batch.ts_event + utc_offsets_ns(batch.ts_event, tz)
        days = local // NS_PER_DAY
        ms_of_day = (local - days * NS_PER_DAY) // NS_PER_MS
        hh, rest = np.divmod(ms_of_day, 3_600_000)
        mm, rest = np.divmod(rest, 60_000)
        ss, ms = np.divmod(rest, 1_000)
        hora = hh * 10_000_000 + mm * 100_000 + ss * 1_000 + ms
        date = pc.cast(pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32()), pa.string())
        price = pc.replace_substring(
            pc.cast(pa.array(np.round(batch.price, 3)), pa.string()), ".", ","
        )
        action = np.where((batch.flags & np.uint8(TradeFlag.CANCEL)) != 0, ACTION_CANCEL,
                          ACTION_NEW)  # fmt: skip
        columns = {
            "DataReferencia": date,
            "CodigoInstrumento": pa.array([symbol] * n, pa.string()),
            "AcaoAtualizacao": pc.cast(pa.array(action), pa.string()),
            "PrecoNegocio": price,
            "QuantidadeNegociada": pc.cast(pa.array(batch.qty), pa.string()),
            "HoraFechamento": pc.utf8_lpad(pc.cast(pa.array(hora), pa.string()), 9, "0"),
            "CodigoIdentificadorNegocio": pc.cast(pa.array(batch.trade_id), pa.string()),
            "TipoSessaoPregao": pa.array(["1"] * n, pa.string()),
            "DataNegocio": date,
            "CodigoParticipanteComprador": pc.cast(pa.array(batch.buy_agent), pa.string()),
            "CodigoParticipanteVendedor": pc.cast(pa.array(batch.sell_agent), pa.string()),
        }
        if channel:
            columns[B3_OPTIONAL_COLUMN] = pa.array(["1"] * n, pa.string())
        parts.append(pa.table(columns))
    return pa.concat_tables(parts)
