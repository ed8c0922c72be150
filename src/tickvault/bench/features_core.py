"""Cost of the pure feature core, measured on simulated WIN sessions (no server involved).

    python -m tickvault.bench.features_core [--trades 300000] [--sessions 31]

Prints, on one core of this machine:
- the live per-trade ``IntradayState.update`` cost of the default set (p50/p99/p99.9,
  timed one call at a time with ``perf_counter_ns``, so each figure includes about
  0.1 us of timer overhead) and the trades/s of the same loop untimed;
- the batch evaluation rate of the same set over the same trades;
- the three history features from prebuilt session aggregates at random T of the
  last session (warm), building one session's aggregates from its trades (what a
  cold call adds per missing session), and the reference path from raw records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import time

import numpy as np

from tickvault.features import (
    FeatureSet,
    build_session_aggregates,
    history_at,
    history_features,
)
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.trades import TradeBatch
from tickvault.venue import b3

SYMBOL = "WINZ25"


def _pct(values: list[int] | np.ndarray, *qs: float) -> str:
    arr = np.asarray(values, dtype=np.float64) / 1e3
    return "  ".join(f"p{q:g} {np.percentile(arr, q):8.2f} us" for q in qs)


def _rows(trades: TradeBatch) -> list[tuple[int, float, int, int]]:
    return list(
        zip(
            trades.ts_event.tolist(),
            trades.price.tolist(),
            trades.qty.tolist(),
            trades.trade_type.tolist(),
            strict=True,
        )
    )


def update_latencies_ns(
    trades: TradeBatch, fs: FeatureSet | None = None, *, gc_off: bool = False
) -> np.ndarray:
    """Per-trade ``IntradayState.update`` cost (ns, one ``perf_counter_ns`` pair per call)
    of ``fs`` (default set) over ``trades`` fed in order, gc on unless ``gc_off``:
    ``tickvault bench features`` reports these (gc on)."""
    fs = fs or FeatureSet()
    rows = _rows(trades)
    state = fs.new_state()
    clock = time.perf_counter_ns
    lat = np.empty(len(rows), dtype=np.int64)
    if gc_off:
        gc.disable()
    try:
        for i, (ts, price, qty, tt) in enumerate(rows):
            t0 = clock()
            state.update(ts, price, qty, tt)
            lat[i] = clock() - t0
    finally:
        if gc_off:
            gc.enable()
    return lat


def bench_live(n_trades: int) -> None:
    trades = generate_day(SYMBOL, dt.date(2025, 11, 19), n_trades, seed=7)
    fs = FeatureSet()
    lat = update_latencies_ns(trades, fs)
    print(f"live update, default set ({len(fs.names)} features), {len(lat):,} trades, gc on:")
    print(f"  {_pct(lat, 50, 99, 99.9)}  mean {lat.mean() / 1e3:.2f} us")
    print(f"  gc off: {_pct(update_latencies_ns(trades, fs, gc_off=True), 50, 99, 99.9)}")
    rows = _rows(trades)
    update = fs.new_state().update
    start = time.perf_counter()
    for ts, price, qty, tt in rows:
        update(ts, price, qty, tt)
    rate = len(rows) / (time.perf_counter() - start)
    print(f"  untimed loop: {rate:,.0f} trades/s")
    start = time.perf_counter()
    fs.batch(trades)
    print(f"batch rows, same set: {len(rows) / (time.perf_counter() - start):,.0f} trades/s")


def bench_history(n_sessions: int, per_session: int) -> None:
    last = dt.date(2025, 11, 25)
    days = [*b3.previous_sessions(SYMBOL, last, n_sessions - 1), last]
    batches: dict[dt.date, TradeBatch] = {}
    price: float | None = None
    for i, d in enumerate(days):
        batches[d] = generate_day(SYMBOL, d, per_session, seed=i, start_price=price)
        price = float(batches[d].price[-1])
    t0 = time.perf_counter_ns()
    aggs = {d: build_session_aggregates(SYMBOL, d, b) for d, b in batches.items()}
    build_each = (time.perf_counter_ns() - t0) / len(days)
    s = b3.session(SYMBOL, last)
    rng = random.Random(1)
    times = [rng.randrange(s.open_ns, s.close_ns) for _ in range(2000)]
    cur = aggs[last]
    history_features(SYMBOL, times[0], cur, aggs)  # calendar and caches warm
    lat = []
    for t in times:
        t0 = time.perf_counter_ns()
        history_features(SYMBOL, t, cur, aggs)
        lat.append(time.perf_counter_ns() - t0)
    print(f"history features from aggregates, {n_sessions} sessions, 2000 random T (warm):")
    print(f"  {_pct(lat, 50, 99)}")
    print(
        f"  building one session's aggregates from {per_session:,} trades: "
        f"{build_each / 1e6:.2f} ms (a cold call adds this per missing session)"
    )
    records = TradeBatch.concat(list(batches.values()))
    start = time.perf_counter()
    for t in times[:3]:
        history_at(SYMBOL, records, t)
    print(
        f"  reference path from raw records ({len(records):,}): "
        f"{(time.perf_counter() - start) / 3 * 1e3:.0f} ms per T"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=300_000, help="trades of the live run")
    parser.add_argument("--sessions", type=int, default=31, help="sessions of the history run")
    parser.add_argument("--per-session", type=int, default=100_000, help="trades per session")
    args = parser.parse_args()
    bench_live(args.trades)
    bench_history(args.sessions, args.per_session)


if __name__ == "__main__":
    main()
