"""``tickvault bench features``: the feature engine on a simulated multi-session WIN history,
beside the original design's approach measured in the same run.

The history: ``--sessions`` B3 sessions (default 31) of simulated WIN trades
(``feeds.sim.generator.generate_day``: chained prices, activity varying by day),
stored under the benchmark's own symbol as imported history (historical stream),
as a backfill would store it. Measured:

- live incremental update of the default intraday set, per trade (the pure core's
  measurement, ``bench.features_core.update_latencies_ns``); the original design:
  per request, a time-travel query of the last 120 minutes into a DataFrame plus
  pandas calculations of the same quantities;
- the three history features at random T of the last session, ``FeatureEngine.history``:
  warm (every session's aggregates materialised, the engine's cache filled: one
  round trip for the per-day counters) and cold (the first call of a session: its
  aggregates are not materialised yet and are built from its raw records; the others
  in the process cache, and again with a fresh process cache, read from Valkey; and
  with nothing materialised at all); the original design: per request, a range query over the
  30 previous sessions and today into a DataFrame plus pandas;
- a training frame of 30 sessions at 1-minute steps, ``FeatureEngine.frame``; the
  original design: per row, the same per-request work as above (intraday and
  history), timed on a sample of rows and extrapolated to the frame's rows;
- sustained trades/s through the live worker: the worker's own benchmark
  (``bench.features_worker``) run from here, on a second temporary server.

The original design's code here is plain ``Vault.range`` + pandas, written for the
comparison only (``_original_*``); it is not how tickvault computes features.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tickvault.bench.features_core import update_latencies_ns
from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.config import Settings
from tickvault.engine import FeatureEngine
from tickvault.feeds.sim.generator import simulate_sessions
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.storage import aggregates as agg_store
from tickvault.timeutil import now_ns
from tickvault.vault import Vault
from tickvault.venue import b3

BENCH_SYMBOL = f"{SYMBOL_PREFIX}WIN"
SIM_SYMBOL = "WINZ25"
"""The simulated contract; its trades are stored under ``BENCH_SYMBOL``."""
LAST_SESSION = dt.date(2025, 11, 25)
HOURS = b3.default_hours(SIM_SYMBOL)
MIN_NS = 60_000_000_000
TARGETS = {"live_update_p99_us": 50.0, "history_warm_p99_ms": 1.0, "history_cold_ms": 50.0}


def _history(sessions: int, trades_per_session: int, seed: int = 0) -> dict[dt.date, TradeBatch]:
    """The simulated WIN history: ``sessions`` B3 sessions up to LAST_SESSION, from the
    multi-day simulator (intraday seasonality, regimes lasting days, chained prices)."""
    return simulate_sessions(
        SIM_SYMBOL, sessions, end=LAST_SESSION, trades_per_day=trades_per_session, seed=seed
    )


def live_worker_throughput(trades: int, settings: Settings) -> dict[str, Any] | None:
    """The row "sustained trades/s through the live worker" (target >= 100k/s): the
    worker's own benchmark (``bench.features_worker``: the worker as a process of its
    own on a second temporary server, fed one simulated session over ZeroMQ). None
    when ``trades`` is 0 (not measured)."""
    if trades <= 0:
        return None
    from tickvault.bench.features_worker import bench_features_worker

    return bench_features_worker(settings, n_trades=trades)


def _pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _stats_ms(ns: list[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(ns, dtype=np.float64) / 1e6
    return {"p50": round(_pct(arr, 50), 4), "p99": round(_pct(arr, 99), 4), "n": int(arr.size)}


# ---------------------------------------------------------------------- the original design
def _original_intraday(vault: Vault, symbol: str, t_ns: int) -> dict[str, float]:
    """ORIGINAL DESIGN, for comparison: a time-travel query of the last 120 minutes into
    a DataFrame, then pandas calculations of the intraday quantities."""
    df = vault.range(
        symbol, t_ns - 120 * MIN_NS, t_ns
    )  # every trade stored up to T, as the original query
    if df.empty:
        return {}
    t = pd.Timestamp(t_ns, tz="UTC")
    out: dict[str, float] = {}
    price = df["price"]
    last = float(price.iloc[-1])
    for label, w in (("1s", "1s"), ("1min", "1min"), ("5min", "5min")):
        before = price[df.index < t - pd.Timedelta(w)]
        out[f"ret_{label}"] = math.log(last / before.iloc[-1]) if len(before) else math.nan
    r = np.log(price).diff()
    for label, w in (("1min", "1min"), ("5min", "5min")):
        out[f"rv_{label}"] = float(np.sqrt((r[df.index >= t - pd.Timedelta(w)] ** 2).sum()))
    local = pd.DatetimeIndex(df.index).tz_convert("America/Sao_Paulo")
    day = df[local.date == t.tz_convert("America/Sao_Paulo").date()]
    vwap = float((day["price"] * day["qty"]).sum() / day["qty"].sum()) if len(day) else math.nan
    out["vwap"], out["vwap_dist_bps"] = vwap, 1e4 * (last - vwap) / vwap
    win = df[df.index >= t - pd.Timedelta("1min")]
    buy = win.loc[win["trade_type"] == 2, "qty"].sum()
    sell = win.loc[win["trade_type"] == 3, "qty"].sum()
    out["aggr_imbalance_1min"] = (buy - sell) / (buy + sell) if buy + sell else math.nan
    out["trade_intensity_1min"] = len(win) / 60
    out["avg_trade_size_1min"] = float(win["qty"].mean()) if len(win) else math.nan
    out["large_trade_share_1min"] = (
        float(win.loc[win["qty"] >= 20, "qty"].sum() / win["qty"].sum()) if len(win) else math.nan
    )
    return out


def _original_history(vault: Vault, symbol: str, t_ns: int, lookback: int = 30) -> dict[str, Any]:
    """ORIGINAL DESIGN, for comparison: one range query over the previous ``lookback``
    sessions and today into a DataFrame, then pandas calculations of the three history
    features (volume buckets by groupby, prices by resampling, per session)."""
    day = dt.datetime.fromtimestamp(t_ns / 1e9, b3.B3_TZ).date()
    prev = b3.previous_sessions(SIM_SYMBOL, day, lookback)
    start = b3.session(SIM_SYMBOL, prev[0], HOURS).open_ns if prev else t_ns
    df = vault.range(symbol, start, t_ns)  # every trade stored up to T, as the original query
    if df.empty:
        return {}
    local = pd.DatetimeIndex(df.index).tz_convert("America/Sao_Paulo")
    df = df.assign(day=local.date, clock=local.hour * 60 + local.minute)
    t_local = pd.Timestamp(t_ns, tz="UTC").tz_convert("America/Sao_Paulo")
    now_clock = t_local.hour * 60 + t_local.minute
    groups = dict(tuple(df.groupby("day")))
    today = groups.get(day)
    out: dict[str, Any] = {}
    lo = max(540, now_clock - 180)

    def buckets(g: pd.DataFrame) -> pd.Series:
        w = g[(g["clock"] >= lo) & (g["clock"] < now_clock)]
        return w.groupby(w["clock"] // 5)["qty"].sum().reindex(range(lo // 5, now_clock // 5),
                                                                fill_value=0)  # fmt: skip

    if today is not None and prev and prev[-1] in groups:
        x, y = buckets(today), buckets(groups[prev[-1]])
        out["volume_pattern_similarity"] = float(x.corr(y)) if len(x) >= 3 else math.nan
        out["volume_ratio_prev_session"] = float(x.sum() / y.sum()) if y.sum() else math.nan

    def grid_prices(g: pd.DataFrame, minutes: int) -> pd.Series:
        p = g["price"].resample("1min").last().ffill()
        clock = pd.DatetimeIndex(p.index).tz_convert("America/Sao_Paulo")
        p.index = clock.hour * 60 + clock.minute
        return p.reindex(range(now_clock - minutes, now_clock + 1), method="ffill")

    moms, rvs = [], []
    for d in prev:
        g = groups.get(d)
        if g is None:
            continue
        p = grid_prices(g, 30)
        moms.append(math.log(p.iloc[-1] / p.iloc[0]))
        rvs.append(float(np.sqrt((np.log(p).diff() ** 2).sum())))
    if today is not None:
        p = grid_prices(today, 30)
        m = math.log(p.iloc[-1] / p.iloc[0])
        rv = float(np.sqrt((np.log(p).diff() ** 2).sum()))
        hm = pd.Series(moms)
        out["historical_momentum_percentile"] = (
            100 * ((hm < m).sum() + 0.5 * (hm == m).sum()) / len(hm)
        )
        lr = np.log(pd.Series([v for v in rvs if v > 0]))
        out["volatility_regime_score"] = (
            float((math.log(rv) - lr.mean()) / lr.std()) if rv > 0 else math.nan
        )
    return out


# ---------------------------------------------------------------------- the run
def run_features_bench(
    vault: Vault,
    *,
    sessions: int = 31,
    trades_per_session: int = 100_000,
    queries: int = 300,
    original_queries: int = 5,
    worker_trades: int = 300_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    sessions = max(sessions, 2)
    symbol = BENCH_SYMBOL
    clear_keys(vault, *symbol_keys(symbol))
    say(f"simulating {sessions} WIN sessions of about {trades_per_session:,} trades")
    history = _history(sessions, trades_per_session)
    recv = now_ns()
    for batch in history.values():  # imported history: HISTORY flag, ts_recv = now
        cols = batch.columns()
        cols["flags"] = cols["flags"] | np.uint8(TradeFlag.HISTORY)
        cols["ts_recv"] = np.full(len(batch), recv, np.int64)
        vault.store_batch(symbol, TradeBatch(**cols), stream="historical")
    days = sorted(history)
    last = days[-1]
    total = sum(len(b) for b in history.values())
    result: dict[str, Any] = {"sessions": sessions, "trades": total,
                              "trades_per_session": trades_per_session}  # fmt: skip
    s = b3.session(SIM_SYMBOL, last, HOURS)
    rng = random.Random(7)
    times = [rng.randrange(s.open_ns + 31 * MIN_NS, s.close_ns) for _ in range(queries)]

    # live per-trade update (the pure core), against the original per-request query
    say("live update of the default set, per trade")
    lat = update_latencies_ns(history[last])
    result["live_update_us"] = {
        "p50": round(_pct(lat, 50) / 1e3, 3),
        "p99": round(_pct(lat, 99) / 1e3, 3),
        "p999": round(_pct(lat, 99.9) / 1e3, 3),
    }
    orig_live = []
    for t in times[:original_queries]:
        t0 = time.perf_counter_ns()
        _original_intraday(vault, symbol, t)
        orig_live.append(time.perf_counter_ns() - t0)

    # history features: cold (first call of a session) then warm
    fe = FeatureEngine(vault, hours=HOURS)
    say("history features: cold calls (the session's aggregates built from its raw records)")
    fe.history(symbol, times[0])  # fills every session (the all-cold call, timed below)
    cold, cold_process = [], []
    for d in days[-min(5, len(days) - 1) :]:
        sd = b3.session(SIM_SYMBOL, d, HOURS)
        t = sd.open_ns + (sd.close_ns - sd.open_ns) // 2
        fe.history(symbol, t)  # the other sessions cached, as in a running process
        vault.client.delete(agg_store.aggregate_key(symbol, d))
        fe.aggregates.forget(symbol, d)
        t0 = time.perf_counter_ns()
        fe.history(symbol, t)
        cold.append(time.perf_counter_ns() - t0)
        vault.client.delete(agg_store.aggregate_key(symbol, d))
        fe.aggregates.clear_cache()  # and a fresh process: the others read from Valkey
        t0 = time.perf_counter_ns()
        fe.history(symbol, t)
        cold_process.append(time.perf_counter_ns() - t0)
    clear_keys(vault, f"agg:{{{symbol}}}:*")
    all_cold_fe = FeatureEngine(vault, hours=HOURS)
    t0 = time.perf_counter_ns()
    all_cold_fe.history(symbol, times[0])
    all_cold = time.perf_counter_ns() - t0
    say(f"history features: {queries} warm calls at random T")
    fe.history(symbol, times[0])
    warm = []
    gc.collect()
    for t in times:
        t0 = time.perf_counter_ns()
        fe.history(symbol, t)
        warm.append(time.perf_counter_ns() - t0)
    say("history features, original design: a range query over 31 sessions + pandas")
    orig_hist = []
    for t in times[:original_queries]:
        t0 = time.perf_counter_ns()
        _original_history(vault, symbol, t)
        orig_hist.append(time.perf_counter_ns() - t0)
    result["history_warm_ms"] = _stats_ms(warm)
    result["history_cold_ms"] = {
        "median": round(statistics.median(cold) / 1e6, 3),
        "max": round(max(cold) / 1e6, 3),
        "n": len(cold),
    }
    result["history_cold_process_ms"] = {
        "median": round(statistics.median(cold_process) / 1e6, 3),
        "max": round(max(cold_process) / 1e6, 3),
    }
    result["history_all_cold_ms"] = round(all_cold / 1e6, 3)

    # a training frame of the last 30 sessions (or all but the first) at 1-minute steps
    frame_days = days[-min(30, len(days) - 1) :]
    say(f"training frame: {len(frame_days)} sessions at 1-minute steps")
    start = b3.session(SIM_SYMBOL, frame_days[0], HOURS).open_ns
    end = b3.session(SIM_SYMBOL, frame_days[-1], HOURS).close_ns + 1
    t_start = time.perf_counter()
    frame = fe.frame(symbol, start, end, every="1min", labels=("1min", "5min"))
    seconds = time.perf_counter() - t_start
    rows = len(frame)
    result["frame"] = {"sessions": len(frame_days), "rows": rows, "seconds": round(seconds, 3),
                       "rows_per_s": round(rows / seconds, 1)}  # fmt: skip
    per_row_ns = statistics.median(orig_live) + statistics.median(orig_hist)

    warm_p99 = result["history_warm_ms"]["p99"]
    orig: dict[str, Any] = {
        "live_request_ms": _stats_ms(orig_live),
        "history_request_ms": _stats_ms(orig_hist),
        "frame_seconds_extrapolated": round(per_row_ns * rows / 1e9, 1),
        "frame_rows_per_s": round(1e9 / per_row_ns, 2),
        "note": "plain Vault.range + pandas per request; the frame: median per-row cost "
        f"of {original_queries} rows times the frame's rows",
    }
    result["original_design"] = orig

    def times_faster(original_ms: float, ours_ms: float) -> float:
        return round(original_ms / max(ours_ms, 1e-9), 1)

    result["ratio"] = {
        "live_update_p50": times_faster(
            orig["live_request_ms"]["p50"], result["live_update_us"]["p50"] / 1e3
        ),
        "history_warm_p50": times_faster(
            orig["history_request_ms"]["p50"], result["history_warm_ms"]["p50"]
        ),
        "history_cold_median": times_faster(
            orig["history_request_ms"]["p50"], result["history_cold_ms"]["median"]
        ),
        "frame": times_faster(orig["frame_seconds_extrapolated"], seconds),
    }
    result["targets"] = TARGETS
    result["met"] = {
        "live_update_p99": result["live_update_us"]["p99"] <= TARGETS["live_update_p99_us"],
        "history_warm_p99": warm_p99 <= TARGETS["history_warm_p99_ms"],
        "history_cold": result["history_cold_ms"]["max"] <= TARGETS["history_cold_ms"],
    }
    clear_keys(vault, *symbol_keys(symbol))
    say(f"live worker: one simulated session of {worker_trades:,} trades through the process")
    result["live_worker"] = live_worker_throughput(worker_trades, vault.settings)
    return result
