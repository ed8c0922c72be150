"""The ArcticDB side of ``tickvault bench compare``, run as a script by another Python.

ArcticDB 6.28.2 requires pandas < 3 and tickvault pins pandas 3, so the two cannot share
one environment: ``bench.compare`` runs this file with the interpreter of an environment
that has ArcticDB (``make compare-env`` makes ``.venv-compare``). It imports nothing of
tickvault (only numpy, pandas and arcticdb), reads the benchmark's trades from an
``.npz`` file of columns and prints one JSON object of figures on stdout.

    python arcticdb_side.py TRADES.npz WORK_DIR PARAMS_JSON
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SYMBOL = "trades"
ASOF_SYMBOL = "trades_asof"


def _median_s(
    repeats: int, fn: Callable[[], Any], before: Callable[[], Any] | None = None
) -> float:
    """Median wall time of ``repeats`` runs of ``fn`` after one warm-up run (``before``
    runs untimed ahead of each)."""
    times = []
    for i in range(repeats + 1):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _disk_bytes(path: Path) -> int:
    """Bytes allocated on disk by the files under ``path`` (LMDB's data file is sparse)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).stat().st_blocks * 512
    return total


def _frame(cols: Any) -> pd.DataFrame:
    index = pd.DatetimeIndex(cols["ts_event"].view("M8[ns]"), name="ts_event")
    data = {k: cols[k] for k in cols.files if k != "ts_event"}
    return pd.DataFrame(data, index=index)


def main(argv: list[str]) -> dict[str, Any]:
    import arcticdb  # type: ignore[import-not-found,unused-ignore]

    trades_path, work, params_json = Path(argv[0]), Path(argv[1]), argv[2]
    params = json.loads(params_json)
    repeats = int(params["repeats"])
    df = _frame(np.load(trades_path))
    n = len(df)
    ac = arcticdb.Arctic(f"lmdb://{work / 'timed'}")
    lib = ac.get_library("bench", create_if_missing=True)

    write_s = _median_s(repeats, lambda: lib.write(SYMBOL, df), before=lambda: lib.delete(SYMBOL))
    read_s = _median_s(repeats, lambda: lib.read(SYMBOL).data)
    got = len(lib.read(SYMBOL).data)
    if got != n:
        raise SystemExit(f"ArcticDB read back {got} trades, wrote {n}")

    slice_ms = []
    slice_rows = []
    for start_ns, end_ns in params["slices"]:
        rng = (pd.Timestamp(start_ns), pd.Timestamp(end_ns - 1))  # date_range is inclusive
        lib.read(SYMBOL, date_range=rng)
        t0 = time.perf_counter()
        part = lib.read(SYMBOL, date_range=rng).data
        slice_ms.append((time.perf_counter() - t0) * 1000)
        slice_rows.append(len(part))

    half = int(params["asof_rows"])
    lib.write(ASOF_SYMBOL, df.iloc[:half])
    lib.append(ASOF_SYMBOL, df.iloc[half:])
    asof_s = _median_s(repeats, lambda: lib.read(ASOF_SYMBOL, as_of=0).data)
    asof_rows = len(lib.read(ASOF_SYMBOL, as_of=0).data)

    # Bytes: a fresh LMDB library holding the one version of the trades.
    ac_size = arcticdb.Arctic(f"lmdb://{work / 'size'}")
    ac_size.get_library("bench", create_if_missing=True).write(SYMBOL, df)
    size = _disk_bytes(work / "size")
    return {
        "version": arcticdb.__version__,
        "pandas": pd.__version__,
        "write_trades_per_s": n / write_s,
        "read_trades_per_s": n / read_s,
        "slice_ms": slice_ms,
        "slice_rows": slice_rows,
        "asof_ms": asof_s * 1000,
        "asof_rows": asof_rows,
        "disk_bytes": size,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
