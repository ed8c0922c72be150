"""``tickvault bench store``: tickvault's block store against the original per-trade layout.

Both run in the same process against the same Valkey server, on the same
generated trades (stored under the benchmark's own symbol, see
``bench.isolation``). The original design's layout is one stream entry per trade
with a field per column, written with pipelined XADD and read with XRANGE into
a DataFrame, as the original design did (but with collision-free ids, so that
it stores every trade and the comparison is fair).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_trades
from tickvault.records.trades import TradeBatch
from tickvault.vault import Vault

BENCH_SYMBOL = f"{SYMBOL_PREFIX}STORE"
SIM_PROFILE = "WINZ25"
"""The simulator's contract: WIN-like trades, stored under ``BENCH_SYMBOL``."""
SEED_KEY = f"tvbench:original:{{{BENCH_SYMBOL}}}"
_SEED_PIPELINE = 10_000
_SEED_READ_COUNT = 10_000


@dataclass(frozen=True, slots=True)
class LayoutFigures:
    ingest_trades_per_s: float
    read_trades_per_s: float
    bytes_per_trade: float


def _clear(vault: Vault) -> None:
    clear_keys(vault, *symbol_keys(BENCH_SYMBOL))


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Median wall time of ``repeats`` runs after one warm-up run, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _plain_client(vault: Vault) -> Any:
    """A default valkey-py client, as the original design used."""
    from tickvault.storage.cluster import plain_client

    return plain_client(vault.connection_url)


def _seed_write(r: Any, batch: TradeBatch) -> None:
    """The original design: one XADD per trade, a field per column, pipelined."""
    r.delete(SEED_KEY)
    ms = batch.ts_event // 1_000_000
    rows = zip(
        ms.tolist(),
        batch.ts_event.tolist(),
        batch.ts_recv.tolist(),
        batch.trade_id.tolist(),
        batch.price.tolist(),
        batch.qty.tolist(),
        batch.volume.tolist(),
        batch.buy_agent.tolist(),
        batch.sell_agent.tolist(),
        batch.trade_type.tolist(),
        strict=True,
    )
    pipe = r.pipeline(transaction=False)
    for i, (m, te, tr, tid, p, q, v, ba, sa, tt) in enumerate(rows):
        # ms-* keeps several trades of one millisecond (the original's "-0" dropped them).
        fields = {
            "ts_event": te,
            "ts_recv": tr,
            "trade_id": tid,
            "price": p,
            "qty": q,
            "volume": v,
            "buy_agent": ba,
            "sell_agent": sa,
            "trade_type": tt,
        }
        pipe.xadd(SEED_KEY, fields, id=f"{m}-*")
        if i % _SEED_PIPELINE == _SEED_PIPELINE - 1:
            pipe.execute()
    pipe.execute()


_SEED_DTYPES = {
    "ts_event": np.int64,
    "ts_recv": np.int64,
    "trade_id": np.int64,
    "price": np.float64,
    "qty": np.int64,
    "volume": np.float64,
    "buy_agent": np.int32,
    "sell_agent": np.int32,
    "trade_type": np.uint8,
}


def _seed_read(r: Any) -> pd.DataFrame:
    """The original design's read: XRANGE pages of field dicts into a DataFrame."""
    columns: dict[str, list[bytes]] = {name: [] for name in _SEED_DTYPES}
    cursor = "-"
    while page := r.xrange(SEED_KEY, cursor, "+", count=_SEED_READ_COUNT):
        for _, fields in page:
            for name, values in columns.items():
                values.append(fields[name.encode()])
        cursor = "(" + page[-1][0].decode()
    data = {name: np.array(values).astype(_SEED_DTYPES[name]) for name, values in columns.items()}
    index = pd.DatetimeIndex(data.pop("ts_event").view("M8[ns]"), tz="UTC", name="ts_event")
    return pd.DataFrame(data, index=index)


def run_store_bench(
    vault: Vault,
    n_trades: int,
    *,
    seed_trades: int | None = None,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run both layouts; the original design's on ``seed_trades`` (default: all) trades.

    Figures are per trade, so running the slow original layout on a subset keeps the
    benchmark short without changing its rates much (reported in the output).
    """
    say = progress or (lambda _msg: None)
    say(f"generating {n_trades:,} WIN-like trades")
    batch = generate_trades(SIM_PROFILE, n_trades, seed=7)
    r = vault.client

    def tv_write() -> None:
        _clear(vault)
        vault.write_trades(BENCH_SYMBOL, batch)

    say("tickvault: writing")
    write_s, _ = _best_of(repeats, tv_write)
    say("tickvault: reading")
    read_s, frame = _best_of(repeats, lambda: vault.range(BENCH_SYMBOL))
    if len(frame) != n_trades:
        raise BenchmarkError(f"tickvault read back {len(frame)} trades, wrote {n_trades}")
    tv_bytes = sum(s.memory_bytes for s in vault.stats(BENCH_SYMBOL))
    _clear(vault)

    seed_n = min(seed_trades or n_trades, n_trades)
    seed_batch = batch.take(slice(0, seed_n))
    plain = _plain_client(vault)
    say(f"original layout: writing {seed_n:,} trades one entry each")
    seed_write_s, _ = _timed(lambda: _seed_write(plain, seed_batch))
    say("original layout: reading")
    seed_read_s, seed_frame = _timed(lambda: _seed_read(plain))
    if len(seed_frame) != seed_n:
        raise BenchmarkError(f"original layout read back {len(seed_frame)} of {seed_n} trades")
    seed_bytes = int(r.memory_usage(SEED_KEY, samples=0) or 0)
    r.delete(SEED_KEY)
    plain.close()

    tv = LayoutFigures(n_trades / write_s, n_trades / read_s, tv_bytes / n_trades)
    seed = LayoutFigures(seed_n / seed_write_s, seed_n / seed_read_s, seed_bytes / seed_n)
    return {
        "trades": n_trades,
        "original_design_trades": seed_n,
        "tickvault": _rounded(tv),
        "original_design": _rounded(seed),
        "ratio": {
            "ingest": round(tv.ingest_trades_per_s / seed.ingest_trades_per_s, 1),
            "read": round(tv.read_trades_per_s / seed.read_trades_per_s, 1),
            "bytes": round(seed.bytes_per_trade / tv.bytes_per_trade, 1),
        },
        "settings": {
            "compression": vault.settings.compression,
            "block_max_trades": vault.settings.block_max_trades,
            "threads": vault.settings.threads,
            "repeats": repeats,
        },
    }


def _rounded(f: LayoutFigures) -> dict[str, float]:
    return {
        "ingest_trades_per_s": round(f.ingest_trades_per_s),
        "read_trades_per_s": round(f.read_trades_per_s),
        "bytes_per_trade": round(f.bytes_per_trade, 2),
    }


def run_format_sweep(
    vault: Vault,
    n_trades: int,
    *,
    block_sizes: tuple[int, ...] = (1, 256, 1024, 4096, 16_384, 65_536),
    codecs: tuple[str, ...] = ("lz4", "zstd"),
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bytes per trade and rates of block layouts: the figures behind the format choice.

    Block size 1 is one entry per trade in the block format (the per-trade case).
    """
    say = progress or (lambda _msg: None)
    say(f"generating {n_trades:,} WIN-like trades")
    batch = generate_trades(SIM_PROFILE, n_trades, seed=7)
    rows = []
    step, steps = 0, len(codecs) * len(block_sizes)
    for compression in codecs:
        for size in block_sizes:
            step += 1
            say(f"{step}/{steps}: {compression}, blocks of {size:,}: writing and reading")
            variant = vault.with_settings(block_max_trades=size, compression=compression)

            def write(v: Vault = variant) -> None:
                _clear(vault)
                v.write_trades(BENCH_SYMBOL, batch)

            write_s, _ = _best_of(repeats, write)

            def read(v: Vault = variant) -> pd.DataFrame:
                return v.range(BENCH_SYMBOL)

            read_s, frame = _best_of(repeats, read)
            memory = sum(s.memory_bytes for s in variant.stats(BENCH_SYMBOL))
            _clear(vault)
            rows.append(
                {
                    "compression": compression,
                    "block_max_trades": size,
                    "bytes_per_trade": round(memory / n_trades, 2),
                    "ingest_trades_per_s": round(n_trades / write_s),
                    "read_trades_per_s": round(len(frame) / read_s),
                }
            )
    return rows
