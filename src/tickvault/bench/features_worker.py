"""Sustained trades/s through the live feature worker (issue 14's benchmark row).

    python -m tickvault.bench.features_worker [--trades 300000] [--sessions 5]

On its own temporary embedded server (``bench.isolation``): seeds ``sessions``
simulated past sessions (so the history features are computed, from real
aggregates), starts the worker as a process of its own (``tickvault features
run``, as in production), publishes one trade and waits for its row (warm-up and the
previous sessions' aggregates are then done), then publishes the rest of one
simulated WIN session as fast as the publisher goes and times until the worker has
stored the row of the last trade. The figure covers everything a live trade costs
in the worker: ZeroMQ receive and sequencing, the intraday update, the session
aggregates, history refreshes, the columnar row blocks written to Valkey with the
cursor, and the rows published on ZeroMQ. Target: at least 100,000 trades/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from tickvault.bench.isolation import bench_vault
from tickvault.config import Settings
from tickvault.engine.rows import FeatureRows
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import simulate_session
from tickvault.live.seed import seed_sessions
from tickvault.transport.endpoints import SOCKET_NAMES, free_tcp_ports
from tickvault.transport.publisher import Publisher

SYMBOL = "WINZ25"
DAY = dt.date(2025, 12, 1)
TARGET_TRADES_PER_S = 100_000
_GUARD_S = 600.0


def _wait(cond: Any, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _GUARD_S
    while not cond():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise BenchmarkError(f"the feature worker exited while waiting for {what}: {err}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"gave up waiting for {what}")
        time.sleep(0.005)


def bench_features_worker(
    settings: Settings | None = None,
    *,
    n_trades: int = 300_000,
    sessions: int = 5,
    url: str | None = None,
) -> dict[str, Any]:
    """Sustained trades/s through the worker process; a dict of the figures."""
    if url is not None:
        raise BenchmarkError(
            "the feature-worker benchmark runs only on its own temporary server (its "
            "symbol needs B3 session hours, so it cannot use the TVBENCH_ names); leave out --url"
        )
    base = settings or Settings.model_validate({})
    ports = dict(zip(SOCKET_NAMES, free_tcp_ports(len(SOCKET_NAMES) + 1), strict=False))
    features_port = free_tcp_ports(1)[0]
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    settings = Settings(**{**base.model_dump(), **overrides, "zmq_features_port": features_port})
    trades = simulate_session(SYMBOL, DAY, trades_per_day=n_trades).to_structured()
    with bench_vault(settings) as vault:
        seed_sessions(vault, SYMBOL, sessions, before=DAY, trades_per_day=max(n_trades // 4, 1000))
        env = {
            **os.environ,
            "TICKVAULT_DATA_DIR": str(vault.settings.data_dir),
            "TICKVAULT_VALKEY_URL": vault.connection_url,
            "TICKVAULT_ZMQ_FEATURES_PORT": str(features_port),
            **{f"TICKVAULT_ZMQ_{k.upper()}_PORT": str(v) for k, v in ports.items()},
        }
        rows = FeatureRows(vault)
        with Publisher(vault.settings) as pub:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tickvault.cli.main", "features", "run",
                 "--symbols", SYMBOL],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )  # fmt: skip
            try:
                pub.publish_trades(SYMBOL, trades[:1])
                pub.flush()

                # the cursor moves with the rows in one atomic call: a cheap "stored" test
                def stored(i: int) -> bool:
                    c = rows.cursor(SYMBOL)
                    return c.get("tid") == str(int(trades["trade_id"][i])) and c.get("ts") == str(
                        int(trades["ts_event"][i])
                    )

                _wait(lambda: stored(0), "the first row (warm-up)", proc)
                t0 = time.perf_counter()
                pub.publish_trades(SYMBOL, trades[1:])
                _wait(lambda: stored(len(trades) - 1), "the last row", proc)
                seconds = time.perf_counter() - t0
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    _, err = proc.communicate(timeout=60)
                    worker_log = err.decode(errors="replace")
                except subprocess.TimeoutExpired:
                    proc.kill()
                    worker_log = ""
        n_rows = len(rows.range(SYMBOL))
    rate = (len(trades) - 1) / seconds
    return {
        "what": "sustained trades/s through the live feature worker (separate process)",
        "trades": len(trades) - 1,
        "rows": n_rows,
        "distinct_event_times": int(np.unique(trades["ts_event"]).size),
        "seconds": seconds,
        "trades_per_s": rate,
        "rows_per_s": n_rows / seconds,
        "previous_sessions": sessions,
        "target_trades_per_s": TARGET_TRADES_PER_S,
        "met": rate >= TARGET_TRADES_PER_S,
        "worker_summary": next(
            (ln for ln in worker_log.splitlines() if "features stopped" in ln), ""
        ),
        "worker_warnings": sum("WARNING" in ln for ln in worker_log.splitlines()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--sessions", type=int, default=5)
    args = parser.parse_args(argv)
    out = bench_features_worker(n_trades=args.trades, sessions=args.sessions)
    print(
        f"feature worker: {out['trades']:,} trades in {out['seconds']:.2f} s = "
        f"{out['trades_per_s']:,.0f} trades/s ({out['rows']:,} rows, "
        f"{out['rows_per_s']:,.0f} rows/s); target {out['target_trades_per_s']:,} trades/s: "
        f"{'met' if out['met'] else 'NOT met'}\n{out['worker_summary']}; "
        f"{out['worker_warnings']} warnings"
    )


if __name__ == "__main__":
    main()
