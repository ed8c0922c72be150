"""``tickvault bench compact``: a day captured live, before and after compaction, in one run.

1. Capture: simulated WIN trades of one session go through the live write path (a
   publisher process at a fixed rate, ZeroMQ, a bridge process: ``bench.live.capture``),
   which stores the small blocks the bridge packs from what arrives while a write is
   in flight.
2. Before: bytes per trade (Valkey ``MEMORY USAGE`` of the symbol's trade keys over the
   records stored) and the full-day read into a DataFrame (median of ``repeats``).
3. Compaction (``Vault.compact``; the simulated session is over, so all of it is
   settled): its wall time, trades/s, swaps and the mean time one swap held the server
   (``INFO commandstats`` of the script calls, single server only).
4. After: the same figures; beside them the same records (as the bridge stored them,
   with its receive times) written in bulk (``store_batch``: the figures compaction
   aims at) and the original design's one-entry-per-trade layout (``bench.store``) on
   ``seed_trades`` of them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.bench.live import SYMBOL, capture
from tickvault.bench.store import SEED_KEY, _plain_client, _seed_read, _seed_write
from tickvault.errors import BenchmarkError
from tickvault.records.trades import TRADE_FIELDS, TradeBatch
from tickvault.vault import Vault

BULK_SYMBOL = f"{SYMBOL_PREFIX}BULK"


def _footprint(vault: Vault, symbol: str) -> dict[str, Any]:
    stats = vault.stats(symbol)
    trades = sum(s.trades for s in stats)
    memory = sum(s.memory_bytes for s in stats)
    blocks = sum(s.blocks for s in stats)
    return {"blocks": blocks, "records": trades, "bytes": memory,
            "bytes_per_trade": round(memory / trades, 2) if trades else None,
            "trades_per_block": round(trades / blocks, 1) if blocks else None}  # fmt: skip


def _read_rate(vault: Vault, symbol: str, repeats: int, expect: int) -> float:
    """Median trades/s of a full-day read into a DataFrame (after one warm-up)."""
    frame = vault.range(symbol)
    if len(frame) != expect:
        raise BenchmarkError(f"{symbol}: read back {len(frame):,} trades, {expect:,} were sent")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vault.range(symbol)
        times.append(time.perf_counter() - t0)
    return expect / statistics.median(times)


def _script_usec(vault: Vault) -> tuple[int, int] | None:
    """(calls, usec) of EVALSHA so far (single server), None when unavailable."""
    try:
        stats = vault.client.info("commandstats")
    except Exception:  # a restricted server (INFO refused): no figure
        return None
    row = stats.get("cmdstat_evalsha") if isinstance(stats, dict) else None
    if not isinstance(row, dict):
        return (0, 0)
    return int(row.get("calls", 0)), int(row.get("usec", 0))


def run_compact_bench(
    vault: Vault,
    trades: int = 1_000_000,
    rate: float = 50_000,
    repeats: int = 3,
    seed_trades: int = 100_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    say(f"capture: {trades:,} trades through publisher -> ZeroMQ -> bridge at {rate:,.0f}/s")
    capture(vault, trades, rate)
    captured = vault.range_columns(SYMBOL)
    distinct = len(captured["trade_id"])
    if distinct != trades:
        raise BenchmarkError(f"the bridge stored {distinct:,} distinct trades of {trades:,} sent")
    say("before compaction: bytes and full-day reads")
    before = {**_footprint(vault, SYMBOL),
              "read_trades_per_s": round(_read_rate(vault, SYMBOL, repeats, trades))}  # fmt: skip
    say("compacting")
    calls0 = _script_usec(vault)
    t0 = time.perf_counter()
    report = vault.compact([SYMBOL])
    seconds = time.perf_counter() - t0
    calls1 = _script_usec(vault)
    item = report.items[0]
    if item.trades_compacted != trades:
        raise BenchmarkError(f"compaction moved {item.trades_compacted:,} of {trades:,} trades")
    swap_ms = None
    if calls0 is not None and calls1 is not None and calls1[0] > calls0[0]:
        swap_ms = round((calls1[1] - calls0[1]) / (calls1[0] - calls0[0]) / 1000, 3)
    compaction = {"seconds": round(seconds, 3), "trades_per_s": round(trades / seconds),
                  "entries": item.entries_compacted, "blocks_written": item.blocks_written,
                  "swaps": item.swaps, "swaps_lost": item.swaps_lost,
                  "mean_swap_ms": swap_ms}  # fmt: skip
    say("after compaction: bytes and full-day reads")
    after = {**_footprint(vault, SYMBOL),
             "read_trades_per_s": round(_read_rate(vault, SYMBOL, repeats, trades))}  # fmt: skip
    clear_keys(vault, *symbol_keys(SYMBOL))

    say("the same records written in bulk")
    batch = TradeBatch(**{name: np.ascontiguousarray(captured[name]) for name in TRADE_FIELDS})
    clear_keys(vault, *symbol_keys(BULK_SYMBOL))
    vault.store_batch(BULK_SYMBOL, batch)
    bulk_rate = _read_rate(vault, BULK_SYMBOL, repeats, trades)
    bulk = {**_footprint(vault, BULK_SYMBOL), "read_trades_per_s": round(bulk_rate)}
    clear_keys(vault, *symbol_keys(BULK_SYMBOL))

    seed_n = min(seed_trades, trades)
    say(f"original layout: {seed_n:,} trades one entry each")
    plain = _plain_client(vault)
    try:
        _seed_write(plain, batch.take(slice(0, seed_n)))
        t0 = time.perf_counter()
        seed_frame = _seed_read(plain)
        seed_read_s = time.perf_counter() - t0
        seed_bytes = int(vault.client.memory_usage(SEED_KEY, samples=0) or 0)
        plain.delete(SEED_KEY)
    finally:
        plain.close()
    original = {"trades": seed_n, "bytes_per_trade": round(seed_bytes / seed_n, 2),
                "read_trades_per_s": round(len(seed_frame) / seed_read_s)}  # fmt: skip
    met = (after["bytes_per_trade"] is not None and after["bytes_per_trade"] <= 8
           and after["read_trades_per_s"] >= 20_000_000)  # fmt: skip
    settings = {"compression": vault.settings.compression,
                "block_max_trades": vault.settings.block_max_trades,
                "threads": vault.settings.threads, "repeats": repeats}  # fmt: skip
    return {
        "trades": trades,
        "rate": rate,
        "before": before,
        "compaction": compaction,
        "after": after,
        "bulk": bulk,
        "original_design": original,
        "targets": {
            "bytes_per_trade_max": 8,
            "read_trades_per_s_min": 20_000_000,
            "met": bool(met),
        },
        "settings": settings,
    }
