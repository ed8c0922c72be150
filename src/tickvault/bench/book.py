"""``tickvault bench book``: the offer book at random past times of a simulated day.

A day of simulated WIN book activity (the simulator's full book after each price
move, quantity edits after each aggression) is stored under the benchmark's own
symbol (see ``bench.isolation``) through ``Vault.write_book``
in batches, as the bridge stores them under load. Then ``Vault.book(at=t,
depth=10)`` is timed at random times of the session. The original design kept no
book history; the nearest equivalent, replaying every update of the day up to t,
is timed at a few of the same times for the ratio.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.feeds.base import NullEvents
from tickvault.feeds.sim import SimulatedFeeder
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ

BENCH_SYMBOL = f"{SYMBOL_PREFIX}BOOK"
SIM_SYMBOL = "WINZ25"
"""The simulated contract; its updates are stored under ``BENCH_SYMBOL``."""
BENCH_DAY = dt.datetime(2025, 11, 3, 9, 0, tzinfo=B3_TZ)
WRITE_BATCH = 512
TARGET_MS = 50.0


class _Collect(NullEvents):
    def __init__(self) -> None:
        self.updates: list[npt.NDArray[np.void]] = []
        self.trades = 0

    def on_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.trades += len(trades)

    def on_book(self, symbol: str, updates: npt.NDArray[np.void]) -> None:
        self.updates.append(updates)


def run_book_bench(
    vault: Vault,
    *,
    trades_per_day: int | None = None,
    queries: int = 200,
    seed_queries: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    say("simulating a day of WIN trades and book updates")
    collect = _Collect()
    feeder = SimulatedFeeder([SIM_SYMBOL], speed=None, start=BENCH_DAY,
                             trades_per_day=trades_per_day)  # fmt: skip
    feeder.run(collect, threading.Event())
    updates = np.concatenate(collect.updates)
    r = vault.client
    clear_keys(vault, *symbol_keys(BENCH_SYMBOL))
    say(f"storing {len(updates):,} book updates in batches of {WRITE_BATCH}")
    t0 = time.perf_counter()
    for lo in range(0, len(updates), WRITE_BATCH):
        vault.write_book(BENCH_SYMBOL, updates[lo : lo + WRITE_BATCH])
    write_s = time.perf_counter() - t0
    rng = np.random.default_rng(42)
    first, last = int(updates["ts_event"][0]), int(updates["ts_event"][-1])
    times = rng.integers(first, last, queries)
    say(f"querying the book at {queries} random times")
    latencies, replayed = [], []
    for t in times.tolist():
        t0 = time.perf_counter()
        view = vault.book(BENCH_SYMBOL, at=t, depth=10)
        latencies.append((time.perf_counter() - t0) * 1e3)
        replayed.append(view.updates_applied)
    say(f"original design: replaying the day's updates at {seed_queries} of those times")
    seed = []
    for t in times[:seed_queries].tolist():
        t0 = time.perf_counter()
        vault.books.at(BENCH_SYMBOL, t, 10, use_snapshots=False)
        seed.append((time.perf_counter() - t0) * 1e3)
    lat = np.array(latencies)
    snapshots = int(r.xlen(f"book:{{{BENCH_SYMBOL}}}:snapshots"))
    clear_keys(vault, *symbol_keys(BENCH_SYMBOL))
    return {
        "trades": collect.trades,
        "book_updates": len(updates),
        "snapshots": snapshots,
        "write_updates_per_s": round(len(updates) / write_s),
        "queries": queries,
        "book_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
        },
        "updates_replayed_median": int(statistics.median(replayed)),
        "original_design_ms_median": round(statistics.median(seed), 1),
        "ratio": round(statistics.median(seed) / float(np.percentile(lat, 50)), 1),
        "target_ms": TARGET_MS,
    }
