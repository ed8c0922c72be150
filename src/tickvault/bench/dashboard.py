"""``tickvault bench dashboard``: does a room of open dashboards slow the bridge?

The bridge path of ``bench live`` (a publisher process, a bridge process, tickvault's
design) runs in interleaved pairs on the benchmark's store: with no dashboard client, then with
``clients`` websocket clients connected to a ``tickvault dashboard`` process on the
same store (half on the benchmark symbol's Market page, half on the Pipeline page, each
reading every push). Each run measures the throughput (as fast as the publisher sends)
and the publish-to-stored lag p99 (at a fixed rate); the result has every run, the
medians and the ratios of the medians
(the goal of issue 16: within 5%), with the load average of the machine.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tickvault.bench.live import SYMBOL, _figures, _one_run
from tickvault.errors import BenchmarkError
from tickvault.transport.endpoints import free_tcp_ports
from tickvault.vault import Vault

_START_S = 60.0


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _dashboard(vault: Vault) -> Iterator[int]:
    """A ``tickvault dashboard`` process on the benchmark's store; yields its port."""
    (port,) = free_tcp_ports(1)
    with tempfile.TemporaryDirectory(prefix="tickvault-bench-dash-") as data_dir:
        env = {
            **os.environ,
            "TICKVAULT_VALKEY_URL": vault.connection_url,
            "TICKVAULT_DATA_DIR": data_dir,
            "TICKVAULT_DASHBOARD_PORT": str(port),
            "TICKVAULT_DASHBOARD_HOST": "127.0.0.1",
        }
        env.pop("TICKVAULT_DASHBOARD_TOKEN", None)
        proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "dashboard"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + _START_S
            while not _answers(f"http://127.0.0.1:{port}/api/symbols"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchmarkError("the benchmark's dashboard process did not start")
                time.sleep(0.1)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Clients:
    """``n`` websocket clients of the dashboard, each in a thread reading every push."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.messages = 0
        self.connected = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(n)]  # fmt: skip

    def _run(self, i: int) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        page = ({"subscribe": "market", "symbol": SYMBOL} if i % 2 == 0
                else {"subscribe": "pipeline"})  # fmt: skip
        while not self.stop.is_set():
            try:
                with connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=10) as ws:
                    ws.send(orjson.dumps(page).decode())
                    with self._lock:
                        self.connected += 1
                    while not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            ws.recv(timeout=0.2)
                            with self._lock:
                                self.messages += 1
            except (ConnectionClosed, OSError):
                time.sleep(0.05)  # dropped as too slow, or the dashboard restarted: reconnect

    def __enter__(self) -> _Clients:
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + _START_S
        while self.connected < self.n:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"only {self.connected} of {self.n} dashboard clients "
                                     "connected")  # fmt: skip
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(5)


def _bridge_figures(vault: Vault, trades: int, rate: float, lag_n: int) -> dict[str, Any]:
    pub, bridge = _one_run(vault, "tickvault", trades, 0)
    lost, dup, tps = _figures(vault, "tickvault", trades, pub, bridge)
    lag_pub, lag_bridge = _one_run(vault, "tickvault", lag_n, rate)
    lag_lost, _, _ = _figures(vault, "tickvault", lag_n, lag_pub, lag_bridge)
    p50, p99 = lag_bridge["lags"]
    return {"trades_per_s": round(tps), "lost": lost, "duplicated": dup,
            "lag_ms": {"p50": round(p50, 3), "p99": round(p99, 3)},
            "lag_run_lost": lag_lost}  # fmt: skip


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def run_dashboard_bench(
    vault: Vault,
    trades: int,
    rate: float,
    clients: int = 10,
    lag_trades: int | None = None,
    pairs: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``pairs`` interleaved pairs of runs (no client, then ``clients`` clients), so a
    drift of the machine's load falls on both sides alike; the ratios are of the medians."""
    say = progress or (lambda _msg: None)
    lag_n = lag_trades or min(trades, int(rate * 4))
    out: dict[str, Any] = {"trades": trades, "rate": rate, "clients": clients, "pairs": pairs}
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    pushes = 0
    with _dashboard(vault) as port:
        for i in range(pairs):
            say(f"pair {i + 1}/{pairs}, no dashboard client: {trades:,} trades, then the lag "
                f"of {lag_n:,} at {rate:,.0f}/s")  # fmt: skip
            runs["without"].append(_bridge_figures(vault, trades, rate, lag_n))
            say(f"pair {i + 1}/{pairs}, {clients} dashboard clients connected: the same runs")
            with _Clients(port, clients) as open_pages:
                runs["with"].append(_bridge_figures(vault, trades, rate, lag_n))
            pushes += open_pages.messages
    out["pushes_received"] = pushes
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    for side, rows in runs.items():
        out[side] = {
            "trades_per_s": round(_median([r["trades_per_s"] for r in rows])),
            "lost": sum(r["lost"] for r in rows),
            "duplicated": sum(r["duplicated"] for r in rows),
            "lag_ms": {
                q: round(_median([r["lag_ms"][q] for r in rows]), 3) for q in ("p50", "p99")
            },
            "lag_run_lost": sum(r["lag_run_lost"] for r in rows),
            "runs": rows,
        }
    base, loaded = out["without"], out["with"]
    out["ratio"] = {
        "throughput": round(loaded["trades_per_s"] / base["trades_per_s"], 3)
        if base["trades_per_s"]
        else None,
        "lag_p99": round(loaded["lag_ms"]["p99"] / base["lag_ms"]["p99"], 3)
        if base["lag_ms"]["p99"]
        else None,
    }
    return out
