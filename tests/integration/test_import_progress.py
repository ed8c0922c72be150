"""Import progress covers storing, not only reading: it reports complete only once
every record is in the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from tickvault import Vault
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.ingest.files import import_files

SP = ZoneInfo("America/Sao_Paulo")


def _file(path: Path, n: int, seed: int, day: dt.date) -> Path:
    trades = {
        "WINZ25": generate_day("WINZ25", day, n, seed=seed),
        "WDOZ25": generate_day("WDOZ25", day, n // 3, seed=seed + 1),
    }
    reader.write_b3(path, b3.to_b3_table(trades, SP))
    return path


def _records_in_store(vault: Vault) -> int:
    return sum(s.trades for sym in vault.symbols() for s in vault.stats(sym))


def test_import_progress_is_complete_only_when_every_record_is_stored(
    vault: Vault, tmp_path: Path
) -> None:
    small = vault.with_settings(block_max_trades=16)  # many script calls per symbol
    files = [_file(tmp_path / "a.txt", 3000, 1, dt.date(2025, 11, 3)),
             _file(tmp_path / "b.txt", 1500, 7, dt.date(2025, 11, 4))]  # fmt: skip
    events: list[tuple[str, int, int, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        events.append((stage, done, total, _records_in_store(vault)))

    reports = import_files(small, files, progress=progress)
    stored = sum(r.total_stored for r in reports)
    size = sum(f.stat().st_size for f in files)
    assert stored == _records_in_store(vault) > 0

    reads = [e for e in events if e[0] == "read"]
    stores = [e for e in events if e[0] == "store"]
    assert reads and all(total == size and 0 <= done <= size for _, done, total, _ in reads)
    assert [d for _, d, _, _ in reads] == sorted(d for _, d, _, _ in reads)
    assert reads[-1][1] == size
    # storing is reported as it happens, never ahead of the store, and ends at the total
    assert len(stores) > len(files) * 2
    assert all(done <= total and done <= in_store for _, done, total, in_store in stores)
    assert stores[-1][1:3] == (stored, stored)
    # the import is complete (both stages at their totals) only at the very end
    complete = []
    read_done = store_done = store_total = 0
    for i, (stage, done, total, _) in enumerate(events):
        if stage == "read":
            read_done = done
        else:
            store_done, store_total = done, total
        if read_done == size and store_done == store_total:
            complete.append(i)
    assert complete == [len(events) - 1]


def test_import_progress_of_an_already_imported_file_reads_and_stores_nothing(
    vault: Vault, tmp_path: Path
) -> None:
    path = _file(tmp_path / "a.txt", 500, 3, dt.date(2025, 11, 3))
    import_files(vault, [path])
    events: list[tuple[str, int, int]] = []
    [report] = import_files(vault, [path], progress=lambda *e: events.append(e))
    assert report.already_imported
    assert events == [("read", path.stat().st_size, path.stat().st_size)]
