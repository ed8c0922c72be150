"""Importing trade files into the store's historical stream.

Each file is read whole (streamed and converted in chunks), its cancels
applied, then stored per symbol with ``Vault.store_batch``. A file is
recognised by the sha256 of its bytes: importing the same file again (same
symbol filter) is skipped, so each trade is stored once; ``force`` stores it
again, and reads still show each trade once, since the store resolves repeats
by (trading date, trade_id). The registry (``storage.imports``) records what
each file stored and when; trimming that removes some of a file's trades
forgets the file, so it can be imported again. A file with an error stores
nothing; the files before it stay imported.

Reading a file (``files.load.read_file``, ``ImportOptions``) is the files package's job;
this module adds the store and the imports registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tickvault.files import reader
from tickvault.files.load import ImportOptions, read_file
from tickvault.files.reader import Source
from tickvault.records.validate import validate
from tickvault.storage import imports
from tickvault.timeutil import now_ns
from tickvault.vault import Vault

Progress = Callable[[str, int, int], None]
"""Called as ``progress("read", bytes_done, bytes_total)`` while the files are read and
``progress("store", records_done, records_total)`` while their records are stored.
Totals are over all files; the records total grows as each file is read, so an
import is done when both stages have reached their totals."""


@dataclass(slots=True)
class _Tracker:
    """Progress of both stages of an import, over all its files."""

    callback: Progress | None
    bytes_total: int
    records_total: int = 0
    records_done: int = 0

    def read(self, done: int) -> None:
        if self.callback is not None:
            self.callback("read", min(done, self.bytes_total), self.bytes_total)

    def to_store(self, records: int) -> None:
        self.records_total += records
        if self.callback is not None:
            self.callback("store", self.records_done, self.records_total)

    def stored(self, records_done: int) -> None:
        self.records_done = records_done
        if self.callback is not None:
            self.callback("store", self.records_done, self.records_total)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


@dataclass(slots=True)
class FileReport:
    name: str
    rows: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    """Records stored per symbol (trades plus CANCEL records)."""
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)
    """Where every bad row is: file lines (Parquet: row numbers); ``FileTrades.bad_lines``."""
    cancelled: int = 0
    unmatched_cancels: int = 0
    already_imported: bool = False
    imported_at_ns: int | None = None
    """When the file was imported before (for ``already_imported``)."""
    seconds: float = 0.0

    @property
    def total_stored(self) -> int:
        return sum(self.stored.values())


def import_files(
    vault: Vault,
    paths: Sequence[Path],
    options: ImportOptions = ImportOptions(),  # noqa: B008 (frozen)
    *,
    progress: Progress | None = None,
) -> list[FileReport]:
    """Import every file (plain, .gz or .zip) in order; returns one report per text file."""
    reports: list[FileReport] = []
    tracker = _Tracker(progress, sum(_size(p) for p in paths))
    done_bytes = 0
    for path in paths:
        size = _size(path)

        # A file counts as read only once its records are counted for storing, so the
        # two stages are never both complete while anything is left to store.
        def read_progress(n: int, base: int = done_bytes, last: int = max(size - 1, 0)) -> None:
            tracker.read(base + min(n, last))

        sources = reader.sources(path)
        digest = reader.digest(path)  # once per file, however many members a .zip has
        for src in sources:
            reports.append(_import_source(vault, src, digest, options, read_progress, tracker))
        done_bytes += size
        tracker.read(done_bytes)
    return reports


def _manifest_field(digest: str, src: Source, options: ImportOptions) -> str:
    scope = ",".join(sorted(options.symbols)) if options.symbols else "*"
    member = f"!{src.member}" if src.member else ""
    return f"{digest}{member}:{scope}"


def _import_source(
    vault: Vault,
    src: Source,
    digest: str,
    options: ImportOptions,
    read_progress: Callable[[int], None],
    tracker: _Tracker,
) -> FileReport:
    started = time.perf_counter()
    r = vault.client
    manifest_field = _manifest_field(digest, src, options)
    previous = None if options.force else imports.lookup(r, manifest_field)
    if previous is not None:
        return FileReport(
            src.name,
            rows=previous.get("rows", 0),
            stored=previous.get("stored", {}),
            already_imported=True,
            imported_at_ns=previous.get("at_ns"),
        )
    parsed = read_file(src, options, vault.settings.tz, read_progress)
    report = FileReport(
        src.name,
        rows=parsed.rows,
        bad_rows=parsed.bad_rows,
        bad_examples=parsed.bad_examples,
        bad_lines=parsed.bad_lines,
        cancelled=parsed.cancelled,
        unmatched_cancels=parsed.unmatched_cancels,
    )
    tracker.to_store(sum(len(b) for b in parsed.trades.values()))
    spans: dict[str, list[int]] = {}
    for symbol, batch in sorted(parsed.trades.items()):
        validate(batch)

        def store_progress(n: int, before: int = tracker.records_done) -> None:
            tracker.stored(before + n)

        report.stored[symbol] = vault.store_batch(
            symbol, batch, stream="historical", progress=store_progress
        )
        if len(batch):
            spans[symbol] = [int(batch.ts_event.min()), int(batch.ts_event.max())]
    report.seconds = time.perf_counter() - started
    summary = {k: v for k, v in asdict(report).items() if k in ("name", "rows", "stored")}
    if options.record:
        imports.register(r, manifest_field, {**summary, "at_ns": now_ns(), "spans": spans})
    return report


__all__ = ["FileReport", "ImportOptions", "Progress", "import_files", "read_file"]
