"""The file half of ``bench.fuzz``: malformed rows mixed with valid ones, per format (a
B3 trade file, a mapped CSV, a mapped Parquet file), imported with ``skip_bad_rows``.
Checked: the import does not fail, counts every bad row and lists its line (row), and
stores exactly the valid rows (count and checksum)."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickvault.bench.fuzz import FuzzRow, trades_checksum
from tickvault.bench.isolation import SYMBOL_PREFIX
from tickvault.errors import TickvaultError
from tickvault.feeds.sim.generator import generate_trades
from tickvault.files import b3
from tickvault.files.mapped import ColumnMap
from tickvault.ingest.files import ImportOptions, import_files
from tickvault.records.trades import TradeBatch
from tickvault.vault import Vault

B3_SYMBOL = f"{SYMBOL_PREFIX}FUZZB3"
CSV_SYMBOL = f"{SYMBOL_PREFIX}FUZZCSV"
PQ_SYMBOL = f"{SYMBOL_PREFIX}FUZZPQ"
VALID_PER_BAD = 3
"""Valid rows per malformed row."""
MAPPING = ColumnMap(ts_event="time", price="price", qty="qty", symbol="symbol",
                    trade_id="trade_id")  # fmt: skip

_B3_BAD: dict[str, tuple[str, ...]] = {
    "PrecoNegocio": ("abc", "", "1.2.3", "NaN", "inf", "-5,0", "0", "1e999", "12,5,5"),
    "QuantidadeNegociada": ("x", "-3", "", "1,5", "99999999999999999999999"),
    "HoraFechamento": ("ab", "", "256000000", "999999999999", "-1"),
    "DataNegocio": ("2025-13-45", "nope", "", "1800-01-01"),
    "CodigoIdentificadorNegocio": ("", "-1", "abc", "99999999999999999999"),
    "CodigoInstrumento": ("", "bad symbol!", "win z25"),
    "AcaoAtualizacao": ("7", "x", ""),
    "CodigoParticipanteComprador": ("zz", "1.5"),
}
"""Cells that make a B3 row bad, per column."""


def _valid(symbol: str, n: int, seed: int) -> TradeBatch:
    return generate_trades("WINZ25", n, seed=seed, trades_per_day=n)


def _b3_lines(batch: TradeBatch, symbol: str, vault: Vault) -> list[list[str]]:
    table = b3.to_b3_table({symbol: batch}, vault.settings.tz)
    cols = [table.column(c).to_pylist() for c in b3.B3_COLUMNS]
    return [list(row) for row in zip(*cols, strict=True)]


def _b3_bad(rng: random.Random, good: list[str]) -> bytes:
    row = list(good)
    roll = rng.random()
    if roll < 0.15:  # ragged
        row = row[: rng.randint(1, len(row) - 1)] if rng.random() < 0.5 else [*row, "extra"]
        return ";".join(row).encode()
    if roll < 0.22:  # not UTF-8, in a number or in the symbol
        i = b3.B3_COLUMNS.index(rng.choice(("PrecoNegocio", "CodigoInstrumento")))
        head, tail = ";".join(row[:i]) + ";", ";" + ";".join(row[i + 1 :])
        return head.encode() + rng.choice((b"\xff\xfe", b"WIN\xc3", b"\x80")) + tail.encode()
    column = rng.choice(sorted(_B3_BAD))
    row[b3.B3_COLUMNS.index(column)] = rng.choice(_B3_BAD[column])
    return ";".join(row).encode()


def _mixed(rng: random.Random, n_valid: int, n_bad: int) -> list[bool]:
    """Where the bad rows go: True for a bad row."""
    marks = [False] * n_valid + [True] * n_bad
    rng.shuffle(marks)
    return marks


def _import(vault: Vault, path: Path, **kw: Any) -> Any:
    options = ImportOptions(skip_bad_rows=True, record=False, **kw)
    return import_files(vault, [path], options)[0]


def _check(target: str, vault: Vault, symbol: str, sent: int, n_bad: int, valid: TradeBatch,
           bad_lines: list[int], run: Callable[[], Any]) -> FuzzRow:  # fmt: skip
    row = FuzzRow(target, sent, n_bad, 0, 0, len(valid), 0)
    try:
        report = run()
    except TickvaultError as exc:
        row.problems.append(f"the import failed: {exc}"[:400])
        return row
    except Exception as exc:  # a crash: what this run is for
        row.problems.append(f"the import crashed: {type(exc).__name__}: {exc}"[:400])
        return row
    row.rejected = report.bad_rows
    row.kept = len(set(report.bad_lines) & set(bad_lines))
    cols = vault.range_columns(symbol)
    row.stored = len(cols["trade_id"])
    if report.bad_rows != n_bad:
        row.problems.append(f"{report.bad_rows:,} bad rows counted of {n_bad:,}: e.g. "
                            f"{report.bad_examples[:3]}")  # fmt: skip
    if sorted(report.bad_lines) != sorted(bad_lines):
        wrong = sorted(set(report.bad_lines) ^ set(bad_lines))[:5]
        row.problems.append(f"the bad rows' lines differ from the bad rows sent (e.g. {wrong})")
    if row.stored != len(valid) or trades_checksum(cols) != trades_checksum(valid.to_structured()):
        row.problems.append(f"stored {row.stored:,} of {len(valid):,} valid rows, or others")
    return row


def fuzz_files(vault: Vault, rows: int, *, seed: int = 17) -> list[FuzzRow]:
    rng = random.Random(seed)
    n_valid = rows * VALID_PER_BAD
    tmp = Path(tempfile.mkdtemp(prefix="tickvault-fuzz-files-"))
    out = []
    try:
        # B3: a text file, line 1 the header
        valid = _valid(B3_SYMBOL, n_valid, seed)
        good = _b3_lines(valid, B3_SYMBOL, vault)
        lines, bad_lines, it = [";".join(b3.B3_COLUMNS).encode()], [], iter(good)
        for bad in _mixed(rng, n_valid, rows):
            if bad:
                lines.append(_b3_bad(rng, rng.choice(good)))
                bad_lines.append(len(lines))
            else:
                lines.append(";".join(next(it)).encode())
        path = tmp / "fuzz-b3.txt"
        path.write_bytes(b"\n".join(lines) + b"\n")
        out.append(_check("file B3", vault, B3_SYMBOL, n_valid + rows, rows, valid, bad_lines,
                          lambda: _import(vault, path)))  # fmt: skip
        # CSV, mapped
        valid = _valid(CSV_SYMBOL, n_valid, seed + 1)
        out.append(_fuzz_csv(vault, rng, tmp, valid, rows))
        valid = _valid(PQ_SYMBOL, n_valid, seed + 2)
        out.append(_fuzz_parquet(vault, rng, tmp, valid, rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_CSV_BAD: dict[int, tuple[str, ...]] = {
    0: ("yesterday", "", "5", "9" * 25, "-1", "1.5e9x"),
    1: ("abc", "", "nan", "inf", "-1", "0", "1e999"),
    2: ("x", "-1", "1.5", "", "1e30"),
    3: ("", "bad symbol!", "lo wer", "\u00e7"),
    4: ("-4", "abc", str(1 << 43), ""),
}
"""Cells that make a CSV row bad, per column (time, price, qty, symbol, trade_id)."""


def _csv_row(batch: TradeBatch, i: int, symbol: str) -> list[str]:
    return [str(int(batch.ts_event[i])), repr(float(batch.price[i])), str(int(batch.qty[i])),
            symbol, str(int(batch.trade_id[i]))]  # fmt: skip


def _fuzz_csv(vault: Vault, rng: random.Random, tmp: Path, valid: TradeBatch, rows: int
              ) -> FuzzRow:  # fmt: skip
    n_valid = len(valid)
    lines, bad_lines, i = ["time,price,qty,symbol,trade_id"], [], 0
    for bad in _mixed(rng, n_valid, rows):
        if bad:
            row = _csv_row(valid, rng.randrange(n_valid), CSV_SYMBOL)
            if rng.random() < 0.15:  # ragged
                row = row[:3] if rng.random() < 0.5 else [*row, "extra"]
            else:
                col = rng.choice(sorted(_CSV_BAD))
                row[col] = rng.choice(_CSV_BAD[col])
            lines.append(",".join(row))
            bad_lines.append(len(lines))
        else:
            lines.append(",".join(_csv_row(valid, i, CSV_SYMBOL)))
            i += 1
    path = tmp / "fuzz.csv"
    path.write_text("\n".join(lines) + "\n")
    return _check("file CSV", vault, CSV_SYMBOL, n_valid + rows, rows, valid, bad_lines,
                  lambda: _import(vault, path, mapping=MAPPING))  # fmt: skip


def _fuzz_parquet(vault: Vault, rng: random.Random, tmp: Path, valid: TradeBatch, rows: int
                  ) -> FuzzRow:  # fmt: skip
    n_valid = len(valid)
    marks = _mixed(rng, n_valid, rows)
    n = len(marks)
    src = np.zeros(n, np.int64)
    src[~np.array(marks)] = np.arange(n_valid)
    src[np.array(marks)] = [rng.randrange(n_valid) for _ in range(rows)]
    time_ = valid.ts_event[src].astype(object)
    price = valid.price[src].astype(object)
    qty = valid.qty[src].astype(object)
    symbol = np.array([PQ_SYMBOL] * n, dtype=object)
    trade_id = valid.trade_id[src].astype(object)
    bad_at = [j for j, m in enumerate(marks) if m]
    for j in bad_at:
        column, value = rng.choice((
            ("time", None), ("time", 5), ("time", 2**62), ("price", float("nan")),
            ("price", float("inf")), ("price", -1.0), ("price", 0.0), ("price", None),
            ("qty", -1), ("qty", None), ("symbol", ""), ("symbol", "bad!"), ("symbol", None),
            ("trade_id", -4), ("trade_id", 1 << 43), ("trade_id", None),
        ))  # fmt: skip
        {"time": time_, "price": price, "qty": qty, "symbol": symbol,
         "trade_id": trade_id}[column][j] = value  # fmt: skip
    table = pa.table({
        "time": pa.array(time_.tolist(), pa.int64()),
        "price": pa.array(price.tolist(), pa.float64()),
        "qty": pa.array(qty.tolist(), pa.int64()),
        "symbol": pa.array(symbol.tolist(), pa.string()),
        "trade_id": pa.array(trade_id.tolist(), pa.int64()),
    })  # fmt: skip
    path = tmp / "fuzz.parquet"
    pq.write_table(table, path)
    return _check("file Parquet", vault, PQ_SYMBOL, n, rows, valid, bad_at,
                  lambda: _import(vault, path, mapping=MAPPING))  # fmt: skip
