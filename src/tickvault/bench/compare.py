"""``tickvault bench compare``: tickvault beside ArcticDB on the same simulated trades,
and a 1-minute slice of a symbol with a long history beside one with a single day.

ArcticDB 6.28.2 needs pandas < 3 and tickvault pins pandas 3, so ArcticDB runs in an
environment of its own (``make compare-env``: ``.venv-compare``): its side is
``bench/arcticdb_side.py``, run by that environment's Python on the same trades (an
``.npz`` file of columns) against a local LMDB library in a temporary directory. Each
side times itself in its own process, the same way (median of ``repeats`` runs after a
warm-up; slices: median of the same minutes). Without an ArcticDB environment the
tickvault side runs alone and the result says how to add ArcticDB.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tickvault.bench.isolation import SYMBOL_PREFIX, TEMP_PREFIX, clear_keys, symbol_keys
from tickvault.bench.store import SIM_PROFILE, _best_of
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_trades
from tickvault.records.trades import TradeBatch
from tickvault.vault import Vault

BENCH_SYMBOL = f"{SYMBOL_PREFIX}COMPARE"
HISTORY_SYMBOLS = {"one_day": f"{SYMBOL_PREFIX}HIST_1D", "long": f"{SYMBOL_PREFIX}HIST_LONG"}
ARCTICDB_PIN = "arcticdb==6.28.2"
ARCTICDB_ENV = Path(".venv-compare")
"""Where ``make compare-env`` puts ArcticDB's environment (relative to the checkout)."""
INSTALL_HINT = (
    f"ArcticDB needs pandas < 3 (tickvault pins pandas 3), so it lives in its own "
    f"environment: run `make compare-env` in the tickvault checkout (or `python3 -m venv "
    f".venv-compare && .venv-compare/bin/pip install {ARCTICDB_PIN}`), then rerun; "
    "or point --arcticdb-python at a Python that has ArcticDB"
)
SLICES = 20
"""1-minute slices timed per store (the same minutes for both), median reported."""
NS_PER_MIN = 60 * 1_000_000_000


def find_arcticdb_python(explicit: str | None) -> str | None:
    """The Python that has ArcticDB: ``explicit``, else ``.venv-compare`` here if it
    exists; None without either. A named one that does not exist is an error
    (BenchmarkError), not a silent fallback."""
    if explicit:
        if not Path(explicit).exists():
            raise BenchmarkError(f"--arcticdb-python {explicit}: no such file. {INSTALL_HINT}")
        return explicit
    default = ARCTICDB_ENV / "bin/python"
    return str(default) if default.exists() else None


def _minutes(ts_event: np.ndarray[Any, Any], count: int) -> list[tuple[int, int]]:
    """``count`` 1-minute windows [start, start + 1 min) at evenly spaced trades."""
    picks = np.linspace(0, len(ts_event) - 1, count + 2)[1:-1].astype(np.int64)
    starts = (ts_event[picks] // NS_PER_MIN) * NS_PER_MIN
    return [(int(s), int(s) + NS_PER_MIN) for s in starts]


def _slice_ms(vault: Vault, symbol: str, windows: list[tuple[int, int]]) -> tuple[float, int]:
    """Median ms of a range() of each window (each warmed once first), and rows in all."""
    times, rows = [], 0
    for start, end in windows:
        vault.range(symbol, start, end)
        t0 = time.perf_counter()
        frame = vault.range(symbol, start, end)
        times.append((time.perf_counter() - t0) * 1000)
        rows += len(frame)
    return statistics.median(times), rows


def _tickvault_side(
    vault: Vault,
    batch: TradeBatch,
    windows: list[tuple[int, int]],
    known_at: int,
    repeats: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    n = len(batch)

    def write() -> None:
        clear_keys(vault, *symbol_keys(BENCH_SYMBOL))
        vault.write_trades(BENCH_SYMBOL, batch)

    say("tickvault: bulk write")
    write_s, _ = _best_of(repeats, write)
    memory = sum(s.memory_bytes for s in vault.stats(BENCH_SYMBOL))
    say("tickvault: full-range read into a DataFrame")
    read_s, frame = _best_of(repeats, lambda: vault.range(BENCH_SYMBOL))
    if len(frame) != n:
        raise BenchmarkError(f"tickvault read back {len(frame)} trades, wrote {n}")
    say(f"tickvault: {len(windows)} 1-minute slices")
    slice_ms, slice_rows = _slice_ms(vault, BENCH_SYMBOL, windows)
    say("tickvault: full range as known at an earlier time")
    asof_s, asof = _best_of(repeats, lambda: vault.range(BENCH_SYMBOL, known_at=known_at))
    clear_keys(vault, *symbol_keys(BENCH_SYMBOL))
    return {
        "write_trades_per_s": n / write_s,
        "read_trades_per_s": n / read_s,
        "slice_ms": slice_ms,
        "slice_rows": slice_rows,
        "asof_ms": asof_s * 1000,
        "asof_rows": len(asof),
        "bytes_per_trade": memory / n,
        "bytes_measured_as": "MEMORY USAGE of the symbol's keys in Valkey",
    }


def _arcticdb_side(
    python: str,
    batch: TradeBatch,
    windows: list[tuple[int, int]],
    asof_rows: int,
    repeats: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    n = len(batch)
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "arcticdb-"))
    try:
        path = work / "trades.npz"
        columns: dict[str, Any] = batch.columns()
        np.savez(path, **columns)
        params = {"repeats": repeats, "slices": windows, "asof_rows": asof_rows}
        script = Path(__file__).with_name("arcticdb_side.py")
        say(f"ArcticDB ({python}): write, read, slices, as_of, size on disk")
        done = subprocess.run(
            [python, str(script), str(path), str(work), json.dumps(params)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchmarkError(
                f"the ArcticDB side ({python} {script.name}) failed with exit code "
                f"{done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        raw = json.loads(done.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "available": True,
        "version": raw["version"],
        "pandas": raw["pandas"],
        "write_trades_per_s": raw["write_trades_per_s"],
        "read_trades_per_s": raw["read_trades_per_s"],
        "slice_ms": statistics.median(raw["slice_ms"]),
        "slice_rows": sum(raw["slice_rows"]),
        "asof_ms": raw["asof_ms"],
        "asof_rows": raw["asof_rows"],
        "bytes_per_trade": raw["disk_bytes"] / n,
        "bytes_measured_as": "disk blocks of a fresh LMDB library holding one version",
    }


def _history(
    vault: Vault, days: int, per_day: int, repeats: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """A 1-minute slice of the last day: a symbol with only that day stored against one
    with ``days`` days (bulk-written simulated sessions, the last day the same)."""
    say(f"slice vs history: generating {days} days of {per_day:,} trades")
    batch = generate_trades(SIM_PROFILE, days * per_day, trades_per_day=per_day, seed=11)
    last_day = batch.take(slice(len(batch) - per_day, len(batch)))
    for symbol in HISTORY_SYMBOLS.values():
        clear_keys(vault, *symbol_keys(symbol))
    vault.write_trades(HISTORY_SYMBOLS["one_day"], last_day)
    say(f"slice vs history: writing {len(batch):,} trades")
    vault.write_trades(HISTORY_SYMBOLS["long"], batch)
    windows = _minutes(last_day.ts_event, SLICES)
    figures: dict[str, list[float]] = {name: [] for name in HISTORY_SYMBOLS}
    rows: dict[str, int] = {}
    say(f"slice vs history: {len(windows)} slices x {repeats} rounds each, interleaved")
    for _ in range(repeats):
        for name, symbol in HISTORY_SYMBOLS.items():
            ms, rows[name] = _slice_ms(vault, symbol, windows)
            figures[name].append(ms)
    if rows["one_day"] != rows["long"]:
        raise BenchmarkError(
            f"slice vs history: the slices gave {rows['one_day']} and {rows['long']} trades"
        )
    blocks = {
        name: sum(s.blocks for s in vault.stats(sym)) for name, sym in HISTORY_SYMBOLS.items()
    }
    for symbol in HISTORY_SYMBOLS.values():
        clear_keys(vault, *symbol_keys(symbol))
    one, long = statistics.median(figures["one_day"]), statistics.median(figures["long"])
    return {
        "days": days,
        "trades_per_day": per_day,
        "slice_rows": rows["one_day"],
        "one_day": {"trades": per_day, "blocks": blocks["one_day"], "slice_ms": round(one, 3)},
        "long": {"trades": len(batch), "blocks": blocks["long"], "slice_ms": round(long, 3)},
        "ratio": round(long / one, 2),
    }


def run_compare_bench(
    vault: Vault,
    *,
    trades: int,
    history_days: int = 30,
    history_trades_per_day: int = 100_000,
    repeats: int = 3,
    rounds: int = 3,
    arcticdb_python: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both stores on the same ``trades`` simulated trades, in ``rounds`` interleaved
    rounds (tickvault, then ArcticDB; each figure the median of the rounds, every round
    in ``rounds``: the machine's load moves between them), then slice vs history."""
    say = progress or (lambda _msg: None)
    load_start = [round(x, 2) for x in os.getloadavg()]
    python = find_arcticdb_python(arcticdb_python)
    say(f"generating {trades:,} WIN-like trades")
    batch = generate_trades(SIM_PROFILE, trades, seed=7)
    windows = _minutes(batch.ts_event, SLICES)
    half = len(batch) // 2
    known_at = int(batch.ts_recv[:half].max())
    tv_rounds: list[dict[str, Any]] = []
    ac_rounds: list[dict[str, Any]] = []
    for i in range(rounds):
        say(f"round {i + 1}/{rounds}")
        tv_rounds.append(_tickvault_side(vault, batch, windows, known_at, repeats, say))
        if python is not None:
            ac_rounds.append(_arcticdb_side(python, batch, windows, half, repeats, say))
    tv = _median_side(tv_rounds)
    ac: dict[str, Any] = (
        _median_side(ac_rounds) if ac_rounds else {"available": False, "note": INSTALL_HINT}
    )
    result: dict[str, Any] = {
        "trades": trades,
        "repeats": repeats,
        "rounds": [
            {"tickvault": _rounded(t), **({"arcticdb": _rounded(a)} if ac_rounds else {})}
            for t, a in zip(tv_rounds, ac_rounds or tv_rounds, strict=True)
        ],
        "slices": len(windows),
        "asof": {
            "tickvault": f"range(known_at=K), K the latest ts_recv of the first {half:,} trades",
            "arcticdb": f"read(as_of=0): version 0 = the first {half:,} trades, "
            "version 1 appended the rest",
        },
        "tickvault": _rounded(tv),
        "arcticdb": _rounded(ac),
        "load_average_start": load_start,
    }
    if ac["available"]:
        result["ratio"] = {
            "write": round(tv["write_trades_per_s"] / ac["write_trades_per_s"], 2),
            "read": round(tv["read_trades_per_s"] / ac["read_trades_per_s"], 2),
            "slice": round(ac["slice_ms"] / tv["slice_ms"], 2),
            "asof": round(ac["asof_ms"] / tv["asof_ms"], 2),
            "bytes": round(ac["bytes_per_trade"] / tv["bytes_per_trade"], 2),
        }
        if tv["slice_rows"] != ac["slice_rows"]:
            raise BenchmarkError(
                f"the slices gave {tv['slice_rows']} trades in tickvault and "
                f"{ac['slice_rows']} in ArcticDB: not the same query"
            )
    result["history"] = _history(vault, history_days, history_trades_per_day, repeats, say)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["python"] = sys.version.split()[0]
    return result


def _median_side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number the median over the rounds; the rest as in the first round."""
    return {
        key: statistics.median(r[key] for r in rounds)
        if isinstance(value, float) and key != "bytes_per_trade"
        else value
        for key, value in rounds[0].items()
    }


def _rounded(side: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in side.items():
        if key.endswith("_per_s"):
            out[key] = round(value)
        elif isinstance(value, float):
            out[key] = round(value, 3)
        else:
            out[key] = value
    return out
