"""``tickvault bench live``: publish-to-stored over real ZeroMQ, two processes per design.

For each design a publisher process sends one message per trade, as a
ProfitDLL callback would, and a bridge process stores them in the same Valkey
(the benchmark's server, whose URL the processes get in ``TICKVAULT_VALKEY_URL``),
under the benchmark's own symbol (see ``bench.isolation``):

- tickvault: ``Publisher.publish_trade`` per trade (batched on the wire under
  load, sequence numbers, replay) and a ``Bridge`` (blocks, cursors).
- original (the original design): ``orjson.dumps`` of a dict per trade on
  ``send_multipart``; the bridge does one ``XADD`` of a field dict per trade
  (with ``<ms>-*`` ids, so same-millisecond trades are not dropped by the id).

Throughput runs at the highest rate the publisher can send; lag (publish call to
stored and readable) at a fixed rate. Lost and duplicated trades are counted from
what was stored against what was sent.

``fsync`` (``--fsync everysec,always``): the tickvault design again under each AOF
fsync mode of the server (``CONFIG SET appendfsync``, restored after), in the same run:
what ``valkey_appendfsync = "always"`` costs in ingest rate and lag.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tickvault.bench.isolation import SYMBOL_PREFIX, clear_keys, symbol_keys
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_trades
from tickvault.live.stats import percentiles
from tickvault.transport.endpoints import free_tcp_ports
from tickvault.vault import Vault

SYMBOL = f"{SYMBOL_PREFIX}LIVE"
SIM_PROFILE = "WINZ25"
"""The simulator's contract: WIN-like trades, published as ``SYMBOL``."""
SEED_KEY = f"tvbench:original:live:{{{SYMBOL}}}"
DESIGNS = (("tickvault", "tickvault"), ("original", "original_design"))
"""(worker --design, result key) of each design."""
_IDLE_END_S = 3.0
_JOIN_S = 0.5
"""Publishers wait this long after binding so subscriptions arrive (both designs)."""


def _rows(n: int) -> list[tuple[Any, ...]]:
    b = generate_trades(SIM_PROFILE, n, seed=7)
    return list(zip(b.ts_event.tolist(), b.trade_id.tolist(), b.price.tolist(), b.qty.tolist(),
                    b.volume.tolist(), b.buy_agent.tolist(), b.sell_agent.tolist(),
                    b.trade_type.tolist(), strict=True))  # fmt: skip


def _paced(rows: list[tuple[Any, ...]], rate: float, send: Any) -> None:
    """Call ``send(row)`` per row, at ``rate`` rows/s (0: as fast as possible), in 1 ms steps."""
    if rate <= 0:
        for row in rows:
            send(row)
        return
    per_ms = max(1, round(rate / 1000))
    t0 = time.perf_counter()
    for i in range(0, len(rows), per_ms):
        due = t0 + (i / rate)
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for row in rows[i : i + per_ms]:
            send(row)


# ---------------------------------------------------------------------- worker processes
def _publisher_worker(a: argparse.Namespace) -> None:
    rows = _rows(a.trades)
    if a.design == "tickvault":
        from tickvault.config import load_settings
        from tickvault.transport.endpoints import Endpoints
        from tickvault.transport.publisher import Publisher

        pub = Publisher(load_settings(), endpoints=Endpoints(*a.endpoints.split(",")))
        publish = pub.publish_trade

        def send(row: tuple[Any, ...]) -> None:
            publish(SYMBOL, *row)

        time.sleep(_JOIN_S)
        t0 = time.time_ns()
        _paced(rows, a.rate, send)
        pub.flush()
    else:
        import orjson
        import zmq

        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        sock.bind(a.endpoints.split(",")[0])
        topic = f"trade.{SYMBOL}".encode()
        dumps = orjson.dumps
        send_multipart = sock.send_multipart

        def send(row: tuple[Any, ...]) -> None:
            te, tid, price, qty, vol, ba, sa, tt = row
            tick = {"symbol": SYMBOL, "ts_event": te, "trade_id": tid, "price": price,
                    "qty": qty, "volume": vol, "buy_agent": ba, "sell_agent": sa,
                    "trade_type": tt, "ts_recv": time.time_ns()}  # fmt: skip
            send_multipart([topic, dumps(tick)])

        time.sleep(_JOIN_S)
        t0 = time.time_ns()
        _paced(rows, a.rate, send)
    print(json.dumps({"t_start": t0, "t_sent": time.time_ns()}), flush=True)
    sys.stdin.read()  # keep serving replay requests until the parent is done


def _bridge_worker(a: argparse.Namespace) -> None:
    from tickvault.live.bridge import tune_for_latency

    tune_for_latency()  # both designs: a dedicated bridge process
    vault = Vault.open()  # TICKVAULT_VALKEY_URL: the benchmark's server
    if a.design == "tickvault":
        from tickvault.live.bridge import Bridge
        from tickvault.live.stats import LagTrace, lag_stages
        from tickvault.transport.endpoints import Endpoints

        trace = LagTrace() if a.stages else None
        bridge = Bridge(vault, endpoints=[Endpoints(*a.endpoints.split(","))], report_status=False,
                        trace=trace)  # fmt: skip
        bridge.start()
        print("READY", flush=True)
        stored, last_change = 0, time.monotonic()
        while stored < a.trades and time.monotonic() - last_change < _IDLE_END_S + _JOIN_S * 4:
            time.sleep(0.05)  # a slow poll: the monitor must not compete with the bridge
            if bridge.stats.trades_stored != stored:
                stored, last_change = bridge.stats.trades_stored, time.monotonic()
        t_done = bridge.stats.last_write_ns
        lags = bridge.stats.lag_percentiles(50, 99)
        bridge.close()
        out = {"t_done": t_done, "lags": lags,
               "recovered": bridge.subscriber.stats.recovered_messages,
               "replica_wait_short": bridge.stats.replica_wait_short,
               "writes": bridge.stats.writes}  # fmt: skip
        if trace is not None:
            out["stages"] = lag_stages(trace)
    else:
        import orjson
        import zmq

        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sock.connect(a.endpoints.split(",")[0])
        sock.setsockopt(zmq.SUBSCRIBE, b"trade.")
        r = vault.client
        print("READY", flush=True)
        lags, ids, stored = [], set(), 0
        t_done = time.time_ns()
        poll_ms = int((_IDLE_END_S + _JOIN_S * 4) * 1000)
        while stored < a.trades and sock.poll(poll_ms):
            _, body = sock.recv_multipart()
            tick = orjson.loads(body)
            r.xadd(SEED_KEY, tick, id=f"{tick['ts_event'] // 1_000_000}-*")
            t_done = time.time_ns()
            lags.append((t_done - tick["ts_recv"]) / 1e6)
            ids.add(tick["trade_id"])
            stored += 1
        out = {"t_done": t_done, "lags": percentiles(lags, 50, 99), "stored": stored,
               "distinct": len(ids)}  # fmt: skip
    vault.close()
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------- orchestration
def _spawn(vault: Vault, role: str, design: str, extra_env: dict[str, str] | None = None,
           **kw: Any) -> subprocess.Popen[str]:  # fmt: skip
    args = [sys.executable, "-m", "tickvault.bench.live", role, "--design", design]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    # The benchmark's server, never the user's: the URL overrides any configured one.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TICKVAULT_VALKEY_URL": vault.connection_url,
           **(extra_env or {})}  # fmt: skip
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def _clear(vault: Vault) -> None:
    clear_keys(vault, *symbol_keys(SYMBOL), SEED_KEY)


def _one_run(
    vault: Vault,
    design: str,
    trades: int,
    rate: float,
    bridge_env: dict[str, str] | None = None,
    *,
    stages: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    _clear(vault)
    ports = free_tcp_ports(5)
    endpoints = ",".join(f"tcp://127.0.0.1:{p}" for p in ports)
    procs: list[subprocess.Popen[str]] = []
    try:
        extra = {"stages": 1} if stages else {}
        bridge = _spawn(vault, "bridge", design, bridge_env, endpoints=endpoints, trades=trades,
                        **extra)  # fmt: skip
        procs.append(bridge)
        assert bridge.stdout is not None
        if bridge.stdout.readline().strip() != "READY":
            raise BenchmarkError("the benchmark bridge process did not start")
        pub = _spawn(vault, "publisher", design, endpoints=endpoints, trades=trades, rate=rate)
        procs.append(pub)
        assert pub.stdout is not None
        pub_out = json.loads(pub.stdout.readline())
        bridge_out = json.loads(bridge.stdout.readline())
        bridge.wait(60)
        pub.communicate("", timeout=30)
    finally:
        for proc in procs:  # an error or Ctrl-C: no process of the benchmark is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return pub_out, bridge_out


def capture(vault: Vault, trades: int, rate: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store ``trades`` simulated trades under ``SYMBOL`` through the live path (a publisher
    process at ``rate`` trades/s, 0: as fast as it can, and a bridge process), as
    ``tickvault bench compact`` captures a day: (publisher's and bridge's figures)."""
    return _one_run(vault, "tickvault", trades, rate)


def _figures(vault: Vault, design: str, trades: int, pub: dict[str, Any],
             bridge: dict[str, Any]) -> tuple[int, int, float]:  # fmt: skip
    """(lost, duplicated, trades/s) of a run, from what was stored."""
    if design == "tickvault":
        records = sum(s.trades for s in vault.stats(SYMBOL))
        distinct = len(vault.range_columns(SYMBOL)["trade_id"])
    else:
        records, distinct = int(bridge["stored"]), int(bridge["distinct"])
    seconds = max(bridge["t_done"] - pub["t_start"], 1) / 1e9
    return trades - distinct, records - distinct, distinct / seconds


def run_live_bench(
    vault: Vault,
    trades: int,
    rate: float,
    lag_trades: int | None = None,
    progress: Callable[[str], None] | None = None,
    fsync: Sequence[str] = (),
    wait_replicas: Sequence[int] = (),
    stages: bool = False,
) -> dict[str, Any]:
    """``stages``: the tickvault lag run also splits every trade's lag into its stages
    (``live.stats.lag_stages``: publisher queue, send and receive, handoff, wait for the
    writer, write) and counts the bridge's garbage collections."""
    say = progress or (lambda _msg: None)
    lag_n = lag_trades or min(trades, int(rate * 4))
    out: dict[str, Any] = {"trades": trades, "rate": rate}
    for design, name in DESIGNS:
        label = "tickvault" if design == "tickvault" else "original design"
        say(f"{label}: {trades:,} trades as fast as the publisher can send")
        pub, bridge = _one_run(vault, design, trades, 0)
        lost, dup, tps = _figures(vault, design, trades, pub, bridge)
        say(f"{label}: lag of {lag_n:,} trades at {rate:,.0f} trades/s")
        traced = stages and design == "tickvault"
        with _server_latency(vault, traced) as events:
            _, lag_bridge = _one_run(vault, design, lag_n, rate, stages=traced)
        p50, p99 = lag_bridge["lags"]
        out[name] = {"trades_per_s": round(tps), "lost": lost, "duplicated": dup,
                     "lag_ms": {"p50": round(p50, 3), "p99": round(p99, 3)}}  # fmt: skip
        if "stages" in lag_bridge:
            out[name]["lag_stages"] = {**lag_bridge["stages"], "server_latency_ms": events}
    if fsync:
        out["fsync"] = _fsync_rows(vault, trades, rate, lag_n, fsync, say)
    if wait_replicas:
        out["wait"] = _wait_rows(vault, trades, rate, lag_n, wait_replicas, say)
    _clear(vault)
    seed_tps = out["original_design"]["trades_per_s"]
    out["ratio"] = {"throughput": round(out["tickvault"]["trades_per_s"] / seed_tps, 1)
                    if seed_tps else None}  # fmt: skip
    return out


@contextlib.contextmanager
def _server_latency(vault: Vault, on: bool) -> Iterator[dict[str, float]]:
    """With ``on``: the server's own latency events of 1 ms or more while the block runs
    (Valkey's latency monitor: event name -> its longest, in ms; e.g. ``command``,
    ``fast-command``, ``aof-write``, ``aof-fsync-always``), the monitor's threshold
    restored after. Empty when the server does not allow it (a cluster, CONFIG refused)."""
    events: dict[str, float] = {}
    r = vault.client
    before: Any = None
    if on:
        with contextlib.suppress(Exception):
            before = r.config_get("latency-monitor-threshold").get("latency-monitor-threshold")
            r.config_set("latency-monitor-threshold", 1)
            r.execute_command("LATENCY", "RESET")
    try:
        yield events
    finally:
        if before is not None:
            with contextlib.suppress(Exception):
                for name, _at, _latest, longest, *_ in r.execute_command("LATENCY", "LATEST"):
                    key = name.decode() if isinstance(name, bytes) else str(name)
                    events[key] = float(longest)
            with contextlib.suppress(Exception):
                r.config_set("latency-monitor-threshold", before)


def _fsync_rows(vault: Vault, trades: int, rate: float, lag_n: int, modes: Sequence[str],
                say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """The tickvault design under each AOF fsync mode (the server's own restored after)."""
    r = vault.client
    aof = r.info("persistence").get("aof_enabled")
    before = r.config_get("appendfsync").get("appendfsync")
    rows = []
    try:
        for mode in modes:
            if mode not in ("everysec", "always", "no"):
                raise BenchmarkError(f"unknown fsync mode {mode!r}: use everysec, always or no")
            r.config_set("appendfsync", mode)
            say(f"tickvault, appendfsync {mode}: {trades:,} trades as fast as possible")
            pub, bridge = _one_run(vault, "tickvault", trades, 0)
            lost, dup, tps = _figures(vault, "tickvault", trades, pub, bridge)
            say(f"tickvault, appendfsync {mode}: lag of {lag_n:,} trades at {rate:,.0f} trades/s")
            _, lag_bridge = _one_run(vault, "tickvault", lag_n, rate)
            p50, p99 = lag_bridge["lags"]
            rows.append({"appendfsync": mode, "aof": bool(aof), "trades_per_s": round(tps),
                         "lost": lost, "duplicated": dup,
                         "lag_ms": {"p50": round(p50, 3), "p99": round(p99, 3)}})  # fmt: skip
    finally:
        r.config_set("appendfsync", before)
    return rows


def _wait_rows(vault: Vault, trades: int, rate: float, lag_n: int, counts: Sequence[int],
               say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """The tickvault design with its bridge set to ``valkey_wait_replicas = n``, per n (the
    cost of waiting for replicas after each write cycle)."""
    rows = []
    for n in counts:
        env = {"TICKVAULT_VALKEY_WAIT_REPLICAS": str(n)}
        say(f"tickvault, valkey_wait_replicas {n}: {trades:,} trades as fast as possible")
        pub, bridge = _one_run(vault, "tickvault", trades, 0, env)
        lost, dup, tps = _figures(vault, "tickvault", trades, pub, bridge)
        say(f"tickvault, valkey_wait_replicas {n}: lag of {lag_n:,} trades at {rate:,.0f} "
            "trades/s")  # fmt: skip
        _, lag_bridge = _one_run(vault, "tickvault", lag_n, rate, env)
        p50, p99 = lag_bridge["lags"]
        rows.append({"wait_replicas": n, "trades_per_s": round(tps), "lost": lost,
                     "duplicated": dup, "writes": bridge["writes"],
                     "wait_short": bridge["replica_wait_short"] + lag_bridge["replica_wait_short"],
                     "lag_ms": {"p50": round(p50, 3), "p99": round(p99, 3)}})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="tickvault.bench.live")
    p.add_argument("role", choices=["publisher", "bridge"])
    p.add_argument("--design", choices=[d for d, _ in DESIGNS], required=True)
    p.add_argument("--endpoints", required=True)
    p.add_argument("--trades", type=int, required=True)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--stages", type=int, default=0)
    a = p.parse_args()
    (_publisher_worker if a.role == "publisher" else _bridge_worker)(a)


if __name__ == "__main__":
    main()
