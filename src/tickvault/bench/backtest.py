"""The backtest benchmark: replay speed of one simulated WIN session.

    python -m tickvault.bench.backtest [--trades 1200000] [--every 1s]

(``run_backtest_bench(vault)`` returns the figures as a dict, for a ``tickvault bench``
command; it needs a store of its own: it writes WINZ25 and a model registry.)

One session of about 1.2M trades (``feeds.sim.generator.simulate_session``, stored on
the realtime stream as a recorded day), a few seeded sessions before it (so the history
features are computed from real aggregates), a LightGBM model of each kind trained on
the seeded sessions, then ``engine.backtest.backtest`` over the session with a
prediction every second: trades/s of the replay (features, decisions, signals, paper
fills; the store read and the model loading are reported apart). Target: 500k trades/s
(docs/architecture.md).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from tickvault.engine.backtest import backtest
from tickvault.engine.training import metadata, train
from tickvault.feeds.sim.generator import simulate_session
from tickvault.live.seed import seed_sessions
from tickvault.models.registry import Registry
from tickvault.vault import Vault
from tickvault.venue.b3 import previous_sessions

SYMBOL = "WINZ25"
DAY = dt.date(2025, 12, 1)
TARGET_TRADES_PER_S = 500_000


def _loop_ns() -> float:
    """ns per iteration of a plain Python loop now (how busy the machine is)."""
    t = time.perf_counter()
    x = 0
    for i in range(1_000_000):
        x += i
    return (time.perf_counter() - t) * 1e3


def run_backtest_bench(
    vault: Vault,
    *,
    trades: int = 1_200_000,
    sessions: int = 5,
    every: str = "1s",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    say(f"storing {sessions} past sessions before {DAY} and one of {trades:,} trades")
    seed_sessions(vault, SYMBOL, sessions, before=DAY, trades_per_day=max(trades // 20, 2_000))
    day = simulate_session(SYMBOL, DAY, trades_per_day=trades)
    vault.store_batch(SYMBOL, day, stream="realtime")
    first = previous_sessions(SYMBOL, DAY, sessions)[0]
    reg = Registry.of_data_dir(vault.settings.data_dir)
    say("training a full and a fast model on the seeded sessions")
    full = train(vault, SYMBOL, first, DAY, folds=2)
    fast = train(vault, SYMBOL, first, DAY, folds=2, features="fast")
    v_full = reg.save(SYMBOL, full.model, metadata(full))
    v_fast = reg.save(SYMBOL, fast.model, metadata(fast))
    say(f"replaying {len(day):,} trades with a prediction every {every}")
    loop = _loop_ns()
    t0 = time.perf_counter()
    r = backtest(vault, SYMBOL, DAY, DAY + dt.timedelta(days=1), model=v_full,
                 fast_model=v_fast, predict_every=every)  # fmt: skip
    total = time.perf_counter() - t0
    m = r.metrics
    return {
        "trades": int(m["trades"]),
        "predictions": r.decider.get("predictions", 0),
        "signals": len(r.signals),
        "fills": len(r.fills),
        "replay_s": m["compute_s"],
        "read_s": m["read_s"],
        "total_s": total,
        "trades_per_s": m["trades_per_s"],
        "target_trades_per_s": TARGET_TRADES_PER_S,
        "python_loop_ns": loop,
        "pnl_brl": m["pnl_brl"],
        "original_design": "none: the original design has no backtest",
    }


def format_backtest_bench(out: dict[str, Any]) -> str:
    met = "met" if out["trades_per_s"] >= out["target_trades_per_s"] else "not met"
    return (
        f"backtest replay: {out['trades']:,} trades, {out['predictions']:,} predictions, "
        f"{out['signals']:,} signals, {out['fills']:,} fills in {out['replay_s']:.2f} s = "
        f"{out['trades_per_s']:,.0f} trades/s (target {out['target_trades_per_s']:,}: {met}); "
        f"store read {out['read_s']:.2f} s, whole call {out['total_s']:.2f} s; a plain Python "
        f"loop iteration took {out['python_loop_ns']:.0f} ns during the run"
    )


def main() -> None:
    import argparse

    from tickvault.bench.isolation import bench_vault
    from tickvault.config import Settings

    ap = argparse.ArgumentParser(description="backtest replay speed (one simulated session)")
    ap.add_argument("--trades", type=int, default=1_200_000)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--every", default="1s")
    args = ap.parse_args()
    with bench_vault(Settings.model_validate({})) as vault:
        out = run_backtest_bench(vault, trades=args.trades, sessions=args.sessions,
                                 every=args.every, progress=print)  # fmt: skip
    print(format_backtest_bench(out))


if __name__ == "__main__":
    main()
