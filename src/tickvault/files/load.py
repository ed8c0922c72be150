"""One trade file's trades, whichever its format (B3 "negócios" or a mapped CSV/Parquet).

Used by ``tickvault import`` (``ingest.files``) and by the file feeder
(``feeds.files``), so a replayed file is parsed exactly as an imported one. Pure
file reading: nothing here touches the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tickvault.errors import FileFormatError
from tickvault.files import b3, reader
from tickvault.files.mapped import ColumnMap, read_mapped
from tickvault.files.reader import FileTrades, Source
from tickvault.timeutil import now_ns


@dataclass(frozen=True, slots=True)
class ImportOptions:
    symbols: frozenset[str] | None = None
    skip_bad_rows: bool = False
    force: bool = False
    mapping: ColumnMap | None = None
    """For CSV/Parquet files that are not B3 trade files."""
    symbol: str | None = None
    """The symbol of every row, for mapped files without a symbol column."""
    delimiter: str = ","
    record: bool = True
    """Record the file in the imports registry (benchmarks do not: they leave it alone)."""


def read_file(
    src: Source,
    options: ImportOptions,
    tz: ZoneInfo,
    progress: Callable[[int], None] | None = None,
) -> FileTrades:
    """The trades of one text file: B3 format when its header says so, else mapped."""
    if options.mapping is None and src.path.suffix.lower() in (".parquet", ".pq"):
        raise FileFormatError(
            "a Parquet file needs a column mapping: --map ts_event=...,price=...,qty=...",
            path=src.name,
        )
    header = reader.first_line(src) if src.path.suffix.lower() not in (".parquet", ".pq") else []
    if b3.is_b3_header(header) or options.mapping is None:
        return reader.read_b3(
            src,
            tz,
            ts_recv=now_ns(),
            symbols=options.symbols,
            skip_bad_rows=options.skip_bad_rows,
            progress=progress,
            header=header,
        )
    if src.compressed:
        raise FileFormatError(
            "mapped CSV/Parquet files must be uncompressed; unpack it first", path=src.name
        )
    return read_mapped(
        src.path,
        options.mapping,
        tz,
        ts_recv=now_ns(),
        symbol=options.symbol,
        symbols=options.symbols,
        delimiter=options.delimiter,
        skip_bad_rows=options.skip_bad_rows,
    )
