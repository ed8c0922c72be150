"""``tickvault bench import``: a B3 trade file parsed and stored, against the original design.

The file is generated (WIN-like and WDO-like trades of one session) and every
row is imported. tickvault runs ``ingest.import_files``, the code behind
``tickvault import``, timed from opening the file to the last block stored,
on a clean store each run, under the benchmark's own symbols (see
``bench.isolation``) and without recording the file in the imports registry.
The original design reads the file with
``pandas.read_csv``, walks the rows in Python and sends one XADD per trade
(pipelined). It runs on the first ``seed_trades`` rows only, since its rate
does not depend on the file size.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.ingest.files import ImportOptions, import_files
from tickvault.records.trades import TradeBatch
from tickvault.storage.cluster import plain_client
from tickvault.vault import Vault

BENCH_DAY = dt.date(2025, 11, 3)
BENCH_SYMBOLS = (f"{SYMBOL_PREFIX}WIN", f"{SYMBOL_PREFIX}WDO")
SEED_KEY = "tvbench:original:import"
_SEED_PIPELINE = 10_000


def write_bench_file(path: Path, n_trades: int, tz: Any) -> None:
    per_symbol = n_trades // len(BENCH_SYMBOLS)
    trades: dict[str, TradeBatch] = {}
    for i, symbol in enumerate(BENCH_SYMBOLS):
        n = per_symbol + (n_trades - per_symbol * len(BENCH_SYMBOLS) if i == 0 else 0)
        kind = "WINZ25" if symbol.endswith("WIN") else "WDOZ25"
        trades[symbol] = generate_day(kind, BENCH_DAY, n, seed=11 + i)
    reader.write_b3(path, b3.to_b3_table(trades, tz))


def _clear(vault: Vault) -> None:
    clear_keys(vault, *(p for symbol in BENCH_SYMBOLS for p in symbol_keys(symbol)))


def _seed_import(r: Any, path: Path, limit: int) -> int:
    """The original design: pandas reads the file, a Python loop sends one XADD per trade."""
    r.delete(SEED_KEY)
    frame = pd.read_csv(path, sep=";", decimal=",", nrows=limit, dtype={"HoraFechamento": str})
    pipe = r.pipeline(transaction=False)
    row: Any
    for i, row in enumerate(frame.itertuples(index=False)):
        hora = str(row.HoraFechamento).zfill(9)
        stamp = pd.Timestamp(f"{row.DataNegocio} {hora[:2]}:{hora[2:4]}:{hora[4:6]}.{hora[6:]}")
        fields = {
            "ts_event": int(stamp.tz_localize("America/Sao_Paulo").value),
            "trade_id": int(row.CodigoIdentificadorNegocio),
            "price": float(row.PrecoNegocio),
            "qty": int(row.QuantidadeNegociada),
            "buy_agent": int(row.CodigoParticipanteComprador),
            "sell_agent": int(row.CodigoParticipanteVendedor),
            "symbol": str(row.CodigoInstrumento),
        }
        pipe.xadd(SEED_KEY, fields)
        if i % _SEED_PIPELINE == _SEED_PIPELINE - 1:
            pipe.execute()
    pipe.execute()
    stored = int(r.xlen(SEED_KEY))
    r.delete(SEED_KEY)
    return stored


def run_import_bench(
    vault: Vault,
    n_trades: int,
    *,
    seed_trades: int = 100_000,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="tickvault-bench-") as tmp:
        path = Path(tmp) / "TradeIntraday_20251103_1.txt"
        say(f"writing a B3 trade file of {n_trades:,} trades")
        write_bench_file(path, n_trades, vault.settings.tz)
        size = path.stat().st_size
        options = ImportOptions(force=True, record=False)
        times = []
        stored = 0
        for i in range(repeats):
            _clear(vault)
            say(f"tickvault: import run {i + 1}/{repeats}")
            t0 = time.perf_counter()
            reports = import_files(vault, [path], options)
            times.append(time.perf_counter() - t0)
            stored = sum(r.total_stored for r in reports)
        if stored != n_trades:
            raise BenchmarkError(f"tickvault stored {stored} trades of {n_trades}")
        read_back = sum(len(vault.range_numpy(s)) for s in BENCH_SYMBOLS)
        if read_back != n_trades:
            raise BenchmarkError(f"tickvault read back {read_back} trades of {n_trades}")
        _clear(vault)
        seed_n = min(seed_trades, n_trades)
        say(f"original design: importing {seed_n:,} rows, one XADD each")
        plain: Any = plain_client(vault.connection_url)
        t0 = time.perf_counter()
        seed_stored = _seed_import(plain, path, seed_n)
        seed_s = time.perf_counter() - t0
        plain.close()
    tv_rate = n_trades / statistics.median(times)
    seed_rate = seed_stored / seed_s
    return {
        "trades": n_trades,
        "trades_per_s": round(tv_rate),
        "file_mb": round(size / 1e6, 1),
        "mb_per_s": round(size / 1e6 / statistics.median(times), 1),
        "runs_s": [round(t, 3) for t in times],
        "original_design": {"trades": seed_stored, "trades_per_s": round(seed_rate)},
        "ratio": round(tv_rate / seed_rate, 1),
        "target_trades_per_s": 1_000_000,
    }
