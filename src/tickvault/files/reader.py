"""Reading trade files from disk: plain, .gz or .zip, streamed in chunks (I/O).

``read_b3`` streams a B3 trade file through Arrow's CSV reader (all columns as
text, so no row can fail the parse itself), converts each chunk with
``files.b3.convert`` and applies the file's cancels at the end. Errors name
the file, the line and the column; with ``skip_bad_rows`` bad rows are counted
and the rest is kept.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from tickvault.errors import FileFormatError
from tickvault.files import b3
from tickvault.files.columns import BadCell
from tickvault.records.trades import TradeBatch

BAD_LINES_KEPT = 1_000_000
"""At most this many bad rows' lines are listed (all are counted)."""
BLOCK_BYTES = 8 << 20
"""Bytes of text per parsed chunk."""
_READ_ERRORS = (EOFError, OSError, zipfile.BadZipFile, zlib.error, pa.ArrowException)


@dataclass(frozen=True, slots=True)
class Source:
    """One text stream to read: a plain file, a .gz, or one member of a .zip."""

    name: str
    path: Path
    member: str | None = None

    @property
    def compressed(self) -> bool:
        return self.member is not None or self.path.suffix.lower() == ".gz"


def sources(path: Path) -> list[Source]:
    """The text streams in ``path``: itself, or each file inside a .zip."""
    if path.is_dir():
        raise FileFormatError(
            "is a directory: pass the files in it (for example dir/*.zip)", path=str(path)
        )
    if not path.is_file():
        raise FileFormatError("no such file (check the path)", path=str(path))
    if path.suffix.lower() != ".zip":
        return [Source(str(path), path)]
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileFormatError(
            f"not a readable zip archive ({exc}); the download may be truncated, fetch it again",
            path=str(path),
        ) from exc
    if not members:
        raise FileFormatError("the zip archive holds no file", path=str(path))
    return [Source(f"{path}!{m}", path, m) for m in members]


@contextmanager
def open_source(src: Source) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
    """The decompressed byte stream of ``src`` and a function giving raw bytes consumed."""
    with src.path.open("rb") as raw:
        stream: IO[bytes]
        if src.member is not None:
            zf = zipfile.ZipFile(raw)
            stream = zf.open(src.member)
        elif src.path.suffix.lower() == ".gz":
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        else:
            stream = raw
        try:
            yield stream, raw.tell
        finally:
            stream.close()


def digest(path: Path) -> str:
    """sha256 of the file's bytes: how an import recognises a file it has seen."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def first_line(src: Source) -> list[str]:
    """The header of ``src``, split on ``;``."""
    try:
        with open_source(src) as (stream, _):
            line = stream.readline(1 << 16)
    except _READ_ERRORS as exc:
        raise FileFormatError(f"cannot read the file: {exc}", path=src.name, line=1) from exc
    text = line.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
    return [name.strip().strip('"') for name in text.split(";")]


def write_b3(path: Path, table: pa.Table) -> None:
    """Write ``files.b3.to_b3_table`` rows as a B3 trade file (.txt, or gzip for .gz)."""
    header = (";".join(table.column_names) + "\n").encode()
    with gzip.open(path, "wb") if path.suffix.lower() == ".gz" else path.open("wb") as f:
        f.write(header)
        pv.write_csv(
            table,
            f,
            write_options=pv.WriteOptions(
                include_header=False, delimiter=";", quoting_style="none"
            ),
        )


@dataclass(slots=True)
class FileTrades:
    """What one file holds, ready to store."""

    name: str
    trades: dict[str, TradeBatch] = field(default_factory=dict)
    rows: int = 0
    """Data rows read (bad ones included)."""
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)
    """Where every bad row is (up to ``BAD_LINES_KEPT``), sorted: its file line (the
    header is line 1), or for a Parquet file its row number (from 0)."""
    cancelled: int = 0
    unmatched_cancels: int = 0


class _LineMap:
    """Data-row index to file line, knowing which lines were skipped as ragged."""

    def __init__(self) -> None:
        self.skipped: list[int] = []

    def line_of(self, row: int) -> int:
        line = row + 2  # line 1 is the header
        seen = 0
        while True:
            below = bisect.bisect_right(self.skipped, line)
            if below == seen:
                return line
            line += below - seen
            seen = below


def read_b3(
    src: Source,
    tz: ZoneInfo,
    *,
    ts_recv: int,
    symbols: frozenset[str] | None = None,
    skip_bad_rows: bool = False,
    progress: Callable[[int], None] | None = None,
    header: list[str] | None = None,
) -> FileTrades:
    """Read a B3 trade file into per-symbol trade batches (cancels applied). ``header``:
    the file's first line when the caller has read it already.

    Parsing (Arrow, one thread, so rejected lines keep their line numbers) and
    conversion (a worker thread) overlap: chunk k is converted while chunk k+1 is
    parsed. Both release the GIL for most of their work.
    """
    header = first_line(src) if header is None else header
    b3.check_header(header, src.name)
    n_columns = len(header)
    out = FileTrades(src.name)
    lines = _LineMap()
    ragged: list[tuple[int, str, int]] = []

    def on_ragged(row: Any) -> str:
        lines.skipped.append(int(row.number))
        ragged.append((int(row.number), str(row.text)[:120], int(row.actual_columns)))
        return "skip"

    parts: dict[str, list[TradeBatch]] = {}

    def collect(pending: tuple[Future[b3.Chunk], int]) -> None:
        future, first_row = pending
        chunk = future.result()
        if chunk.cells or chunk.bad_rows.any():
            _fail_or_count_bad(src, chunk.cells, int(chunk.bad_rows.sum()), first_row, lines,
                               out, skip_bad_rows)  # fmt: skip
            room = BAD_LINES_KEPT - len(out.bad_lines)
            for row in np.flatnonzero(chunk.bad_rows)[: max(room, 0)].tolist():
                out.bad_lines.append(lines.line_of(first_row + row))
        for symbol, trades in chunk.trades.items():
            parts.setdefault(symbol, []).append(trades)

    with open_source(src) as (stream, position), ThreadPoolExecutor(1) as converter:
        pending: tuple[Future[b3.Chunk], int] | None = None
        try:
            reader = pv.open_csv(
                stream,
                read_options=pv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
                parse_options=pv.ParseOptions(delimiter=";", invalid_row_handler=on_ragged),
                convert_options=pv.ConvertOptions(
                    column_types=dict.fromkeys(b3.B3_USED_COLUMNS, pa.string()),
                    include_columns=list(b3.B3_USED_COLUMNS),
                    strings_can_be_null=True,
                    check_utf8=False,
                ),
            )
            for batch in reader:
                if ragged and not skip_bad_rows:
                    # Report whichever bad line comes first: a bad cell before the
                    # ragged line wins.
                    if pending is not None:
                        collect(pending)
                    pending = (converter.submit(b3.convert, batch, tz, ts_recv=ts_recv,
                                                symbols=symbols), out.rows)  # fmt: skip
                    cells = pending[0].result().cells
                    if cells and lines.line_of(out.rows + min(c.row for c in cells)) < ragged[0][0]:
                        collect(pending)
                if ragged:
                    _fail_or_count_ragged(src, ragged, n_columns, out, skip_bad_rows)
                    ragged.clear()
                job = converter.submit(b3.convert, batch, tz, ts_recv=ts_recv, symbols=symbols)
                if pending is not None:
                    collect(pending)
                pending = (job, out.rows)
                out.rows += batch.num_rows
                if progress is not None:
                    progress(position())
        except FileFormatError:
            raise
        except _READ_ERRORS as exc:
            if ragged and not skip_bad_rows:
                _fail_or_count_ragged(src, ragged, n_columns, out, skip_bad_rows)
            raise FileFormatError(
                f"the file ends early or is corrupt after {out.rows} data rows ({exc}); "
                "an archive may be truncated: fetch it again",
                path=src.name,
                line=lines.line_of(out.rows),
            ) from exc
        if ragged:
            _fail_or_count_ragged(src, ragged, n_columns, out, skip_bad_rows)
        if pending is not None:
            collect(pending)
    out.rows += len(lines.skipped)
    out.bad_examples.sort(key=lambda text: int(text.split(" ", 2)[1].rstrip(":,")))
    out.bad_lines.sort()
    for symbol, pieces in parts.items():
        resolved = b3.resolve_cancels(TradeBatch.concat(pieces), tz)
        out.trades[symbol] = resolved.trades
        out.cancelled += resolved.cancelled
        out.unmatched_cancels += resolved.unmatched_cancels
    return out


_SKIP_HINT = "fix the row, or pass --skip-bad-rows to count bad rows and import the rest"


def _fail_or_count_ragged(
    src: Source, ragged: list[tuple[int, str, int]], expected: int, out: FileTrades, skip: bool
) -> None:
    line, text, got = ragged[0]
    if not skip:
        raise FileFormatError(
            f"expected {expected} fields separated by ';', found {got} in {text!r}; {_SKIP_HINT}",
            path=src.name,
            line=line,
            column=str(min(got, expected) + 1) if got < expected else str(expected + 1),
        )
    out.bad_rows += len(ragged)
    room = max(BAD_LINES_KEPT - len(out.bad_lines), 0)
    out.bad_lines.extend(line for line, _, _ in ragged[:room])
    for line, text, got in ragged:
        if len(out.bad_examples) < b3.BAD_CELL_DETAIL:
            out.bad_examples.append(f"line {line}: {got} fields instead of {expected}: {text!r}")


def _fail_or_count_bad(
    src: Source,
    cells: list[BadCell],
    n_bad_rows: int,
    first_row: int,
    lines: _LineMap,
    out: FileTrades,
    skip: bool,
) -> None:
    cells = sorted(cells, key=lambda c: c.row)
    if not skip:
        c = cells[0]
        raise FileFormatError(
            f"bad value {c.value!r}: {c.why}; {_SKIP_HINT}",
            path=src.name,
            line=lines.line_of(first_row + c.row),
            column=f"{b3.B3_COLUMNS.index(c.column) + 1} ({c.column})",
        )
    out.bad_rows += n_bad_rows
    for c in cells:
        if len(out.bad_examples) < b3.BAD_CELL_DETAIL:
            line = lines.line_of(first_row + c.row)
            out.bad_examples.append(f"line {line}, column {c.column}: {c.value!r} ({c.why})")
