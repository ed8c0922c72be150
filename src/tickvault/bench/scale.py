"""``tickvault bench scale``: ingest and read throughput of one node against a 3-node
Valkey Cluster, with 1, 2, 4 pool bridges over many symbols, in one run.

Both stores are private to the benchmark: the single node is a temporary embedded server
(``bench.isolation``), the cluster a local one of 3 primaries and no replicas started
from the same binary (``storage.localcluster``, as ``tickvault cluster up``) in a
temporary directory and removed afterwards. Never a user's store: pool bridges join the
pool's member set (``pool:bridge:members``), which a user's own pool would share.

For each (store, bridges) cell, on a store emptied first:

- a publisher process (``python -m tickvault.bench.scale publisher``) generates the same
  simulated WIN trades for every symbol (``--trades`` in all, split evenly; symbols
  ``TVBENCH_S00``...) and, once told to go, publishes them one message per trade
  (``Publisher.publish_trade``, as a ProfitDLL callback would; the symbols in turn) as
  fast as it can;
- N pool bridges (``tickvault bridge --pool --symbols ... --worker-id bK``: real
  processes, as ``tests/integration/test_pool.py`` starts them) share the symbols
  through their leases; the publisher starts once every symbol is leased, the pool is
  balanced (each bridge at most ceil(S/N)) and the owners have stayed put for a second;
- ingest, end to end: from the first publish to the moment every trade is stored (the
  stored counters polled every 20 ms: the end is known to 20 ms);
- CPU seconds used meanwhile by the bridges, the publisher (``/proc``) and the Valkey
  nodes (``INFO cpu``): the trades per CPU-second of each, the basis of the cost model
  (a 2-core machine shared by all the processes shows no speed-up of separate machines);
- read: every symbol read back into a DataFrame (``Vault.range``) from one client,
  median of 3 after a warm-up, trades/s (and the Valkey CPU of it); the trades read are
  the check stored == sent (lost: sent - read; duplicated: records stored - read);
- bytes per trade (``MEMORY USAGE`` of the symbols' keys / trades: live blocks, as the
  bridges wrote them) and Valkey's ``used_memory`` (summed over the primaries).

Lag is not measured here: at the publisher's maximum rate it measures the queue, and a
paced run per cell would double the run; ``bench live`` measures it at a fixed rate.

A paced cell per store (``--live-rate`` trades/s in all, one bridge, ``--live-trades``)
gives the bytes per trade of live blocks at a real-time pace: the bridge stores what
arrived during its previous write, so at the maximum rate its blocks are large (near
the bulk figure) and at a real-time pace they hold a few trades each.

The original design (``bench.live``: one ``XADD`` of a dict per trade from a blocking
receive loop, one bridge, one symbol: it has no pools and nothing to share) runs once per
store with ``--original-trades`` trades for a row beside it (0: skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tickvault.bench.isolation import SYMBOL_PREFIX, TEMP_PREFIX, on_own_server
from tickvault.errors import BenchmarkError
from tickvault.feeds.sim.generator import generate_trades
from tickvault.storage.cluster import ClusterClient
from tickvault.storage.keys import meta_key
from tickvault.transport.endpoints import SOCKET_NAMES, free_tcp_ports
from tickvault.vault import Vault

SIM_PROFILE = "WINZ25"
"""The simulator's contract: WIN-like trades, published under the benchmark's symbols."""
LEASE_TTL_MS = 3000
POLL_S = 0.02
"""How often the stored counters are read while the bridges ingest."""
IDLE_END_S = 10.0
"""A cell ends without all trades stored when nothing more is stored for this long."""
SETTLE_S = 1.0
"""The pool's owners must stay put this long before the publisher starts."""
GUARD_S = 120.0
"""Guards against a hang (a pool that never balances, a process that never answers)."""
READ_REPEATS = 3


def bench_symbols(n: int) -> list[str]:
    return [f"{SYMBOL_PREFIX}S{i:02d}" for i in range(n)]


def _rows(symbol_index: int, n: int) -> list[tuple[Any, ...]]:
    b = generate_trades(SIM_PROFILE, n, seed=7 + symbol_index)
    return list(zip(b.ts_event.tolist(), b.trade_id.tolist(), b.price.tolist(), b.qty.tolist(),
                    b.volume.tolist(), b.buy_agent.tolist(), b.sell_agent.tolist(),
                    b.trade_type.tolist(), strict=True))  # fmt: skip


# ---------------------------------------------------------------------- the publisher process
def _publisher_worker(a: argparse.Namespace) -> None:
    from tickvault.config import load_settings
    from tickvault.transport.endpoints import Endpoints
    from tickvault.transport.publisher import Publisher

    symbols = bench_symbols(a.symbols)
    rows = [_rows(i, a.per_symbol) for i in range(a.symbols)]
    pub = Publisher(load_settings(), endpoints=Endpoints(*a.endpoints.split(",")))
    publish = pub.publish_trade
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "go":
        pub.close()
        return
    t0 = time.time_ns()
    if a.rate <= 0:
        for i in range(a.per_symbol):
            for symbol, trades in zip(symbols, rows, strict=True):
                publish(symbol, *trades[i])
    else:
        from tickvault.bench.live import _paced

        order = [(s, t[i]) for i in range(a.per_symbol) for s, t in zip(symbols, rows, strict=True)]
        _paced(order, a.rate, lambda item: publish(item[0], *item[1]))
    pub.flush()
    print(json.dumps({"t_start": t0, "t_sent": time.time_ns()}), flush=True)
    sys.stdin.read()  # keep serving replay requests until the parent is done
    pub.close()


# ---------------------------------------------------------------------- measurements
def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; else None)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _info(vault: Vault, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of the server, or of every primary of a cluster."""
    r = vault.client
    if isinstance(r, ClusterClient):
        return list(r.primaries_info(section).values())
    return [r.info(section)]


def _server_cpu_s(vault: Vault) -> float:
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in _info(vault, "cpu"))


def _used_memory(vault: Vault) -> int:
    return sum(int(i["used_memory"]) for i in _info(vault, "memory"))


def _records_stored(vault: Vault, symbols: Sequence[str]) -> int:
    """Records stored for ``symbols`` (repeats included), one pipelined round trip."""
    pipe = vault.client.pipeline(transaction=False)
    for s in symbols:
        pipe.hget(meta_key(s, "realtime"), "trades")
    return sum(int(v or 0) for v in pipe.execute())


def _per(count: float, seconds: float | None) -> int | None:
    return round(count / seconds) if seconds else None


# ---------------------------------------------------------------------- processes
def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def _stop(procs: Sequence[subprocess.Popen[str]]) -> list[int]:
    """SIGTERM each process still running (a pool bridge releases its leases and stores
    what it holds), wait, kill what does not end; their exit codes."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(GUARD_S))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


def _stderr_tail(p: subprocess.Popen[str]) -> str:
    if p.poll() is None or p.stderr is None:
        return ""
    return p.stderr.read()[-2000:]


def _wait_balanced(vault: Vault, symbols: Sequence[str], workers: Sequence[str],
                   procs: Sequence[subprocess.Popen[str]]) -> None:  # fmt: skip
    """Until every symbol is leased, each worker holds at most ceil(S/N) and the owners
    stayed put ``SETTLE_S``."""
    leases = vault.leases("bridge")
    cap = math.ceil(len(symbols) / len(workers))
    deadline = time.monotonic() + GUARD_S
    last: dict[str, str | None] | None = None
    since = time.monotonic()
    while True:
        for p in procs:
            if p.poll() is not None:
                raise BenchmarkError(f"a benchmark bridge ended (exit {p.returncode}) before "
                                     f"the pool balanced: {_stderr_tail(p)}")  # fmt: skip
        now = {s: (t.split(":")[0] if t else None) for s, t in leases.owners(symbols).items()}
        counts = [list(now.values()).count(w) for w in workers]
        if now != last:
            last, since = now, time.monotonic()
        elif (None not in now.values() and max(counts) <= cap and min(counts) > 0
              and time.monotonic() - since >= SETTLE_S):  # fmt: skip
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the pool of {len(workers)} bridges did not balance in "
                                 f"{GUARD_S:.0f} s: owners {counts}")  # fmt: skip
        time.sleep(0.05)


def _cell(vault: Vault, n_bridges: int, symbols: list[str], per_symbol: int, work: Path,
          say: Callable[[str], None], rate: float = 0) -> dict[str, Any]:  # fmt: skip
    """One (store, bridges) cell (module docstring); ``rate``: trades/s of the publisher
    in all (0: as fast as it can)."""
    vault.client.flushdb()  # the benchmark's private store
    total = per_symbol * len(symbols)
    ports = free_tcp_ports(len(SOCKET_NAMES))
    endpoints = ",".join(f"tcp://127.0.0.1:{p}" for p in ports)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TICKVAULT_VALKEY_URL": vault.connection_url,
           "TICKVAULT_DATA_DIR": str(work / "data"),
           "TICKVAULT_POOL_LEASE_TTL_MS": str(LEASE_TTL_MS),
           **{f"TICKVAULT_ZMQ_{n.upper()}_PORT": str(p)
              for n, p in zip(SOCKET_NAMES, ports, strict=True)}}  # fmt: skip
    memory0 = _used_memory(vault)
    workers = [f"b{k}" for k in range(n_bridges)]
    procs: list[subprocess.Popen[str]] = []
    try:
        pub = _spawn(
            [
                "tickvault.bench.scale",
                "publisher",
                "--endpoints",
                endpoints,
                "--symbols",
                str(len(symbols)),
                "--per-symbol",
                str(per_symbol),
                "--rate",
                str(rate),
            ],
            env,
        )
        procs.append(pub)
        assert pub.stdout is not None and pub.stdin is not None
        if pub.stdout.readline().strip() != "READY":
            raise BenchmarkError(f"the benchmark publisher did not start: {_stderr_tail(pub)}")
        bridges = [
            _spawn(
                [
                    "tickvault.cli.main",
                    "bridge",
                    "--pool",
                    "--symbols",
                    ",".join(symbols),
                    "--worker-id",
                    w,
                ],
                env,
            )
            for w in workers
        ]
        procs += bridges
        _wait_balanced(vault, symbols, workers, bridges)
        cpu0 = [_proc_cpu_s(p.pid) for p in procs]
        server0 = _server_cpu_s(vault)
        pub.stdin.write("go\n")
        pub.stdin.flush()
        stored, changed, t_done = 0, time.monotonic(), time.time_ns()
        while stored < total and time.monotonic() - changed < IDLE_END_S:
            time.sleep(POLL_S)
            now = _records_stored(vault, symbols)
            if now != stored:  # the end: when the last trade was seen stored
                stored, changed, t_done = now, time.monotonic(), time.time_ns()
        cpu1 = [_proc_cpu_s(p.pid) for p in procs]
        server1 = _server_cpu_s(vault)
        sent = json.loads(pub.stdout.readline())
        codes = _stop(bridges)
        pub.stdin.close()
        pub.wait(GUARD_S)
    finally:
        _stop(procs)
        for p in procs:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
    if any(c != 0 for c in codes):
        say(f"  a bridge ended with exit codes {codes}")
    seconds = max(t_done - sent["t_start"], 1) / 1e9
    deltas = [b - a if a is not None and b is not None else None
              for a, b in zip(cpu0, cpu1, strict=True)]  # fmt: skip
    bridge_cpu = None if None in deltas[1:] else sum(d or 0 for d in deltas[1:])
    server_cpu = server1 - server0
    read = _read(vault, symbols)
    records = _records_stored(vault, symbols)
    memory_bytes = sum(st.memory_bytes for s in symbols for st in vault.stats(s))
    return {
        "bridges": n_bridges,
        "trades": total,
        "rate": rate,
        "ingest_trades_per_s": round(read["trades"] / seconds),
        "ingest_s": round(seconds, 3),
        "publish_s": round((sent["t_sent"] - sent["t_start"]) / 1e9, 3),
        "lost": total - read["trades"],
        "duplicated": records - read["trades"],
        "bridge_exit_codes": codes,
        "cpu_s": {
            "bridges": None if bridge_cpu is None else round(bridge_cpu, 3),
            "publisher": None if deltas[0] is None else round(deltas[0], 3),
            "valkey": round(server_cpu, 3),
        },
        "ingest_trades_per_cpu_s": {
            "bridges": _per(read["trades"], bridge_cpu),
            "valkey": _per(read["trades"], server_cpu),
        },
        "read_trades_per_s": read["trades_per_s"],
        "read_trades_per_cpu_s": {
            "reader": read["per_reader_cpu_s"],
            "valkey": read["per_valkey_cpu_s"],
        },
        "bytes_per_trade": round(memory_bytes / read["trades"], 2) if read["trades"] else None,
        "used_memory": _used_memory(vault),
        "used_memory_delta": _used_memory(vault) - memory0,
    }


def _read(vault: Vault, symbols: Sequence[str]) -> dict[str, Any]:
    """Every symbol into a DataFrame: median of ``READ_REPEATS`` after a warm-up."""

    def once() -> int:
        return sum(len(vault.range(s)) for s in symbols)

    trades = once()
    walls, cpus, servers = [], [], []
    for _ in range(READ_REPEATS):
        s0, c0, t0 = _server_cpu_s(vault), time.process_time(), time.perf_counter()
        once()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        servers.append(_server_cpu_s(vault) - s0)
    wall, cpu, server = (statistics.median(x) for x in (walls, cpus, servers))
    return {
        "trades": trades,
        "trades_per_s": _per(trades, wall),
        "per_reader_cpu_s": _per(trades, cpu),
        "per_valkey_cpu_s": _per(trades, server),
    }


def _original(vault: Vault, trades: int) -> dict[str, Any]:
    """The original design's row (``bench.live``): one bridge, one symbol, XADD per trade."""
    from tickvault.bench import live

    pub, bridge = live._one_run(vault, "original", trades, 0)
    lost, dup, tps = live._figures(vault, "original", trades, pub, bridge)
    live._clear(vault)
    return {"trades": trades, "ingest_trades_per_s": round(tps), "lost": lost,
            "duplicated": dup}  # fmt: skip


@contextlib.contextmanager
def _private_cluster(vault: Vault, primaries: int) -> Iterator[Vault]:
    """A local cluster of ``primaries`` nodes in a temporary directory, removed after."""
    from tickvault.storage import localcluster

    directory = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        with localcluster.running(directory / "cluster", primaries, 0) as state:
            cluster = Vault.open(state.url, settings=vault.settings, data_dir=directory / "data")
            try:
                yield cluster
            finally:
                cluster.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run(
    vault: Vault,
    trades: int = 1_000_000,
    symbols: int = 50,
    bridges: Sequence[int] = (1, 2, 4),
    original_trades: int = 100_000,
    live_rate: float = 5_000,
    live_trades: int = 50_000,
    primaries: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    if symbols < 1 or symbols > 100:
        raise BenchmarkError(f"--symbols {symbols}: use 1 to 100")
    per_symbol = trades // symbols
    if per_symbol < 1:
        raise BenchmarkError(f"--trades {trades} gives no trade per symbol ({symbols} symbols)")
    if not bridges or any(n < 1 for n in bridges):
        raise BenchmarkError(f"--bridges {list(bridges)}: counts of 1 or more, e.g. 1,2,4")
    names = bench_symbols(symbols)
    out: dict[str, Any] = {"trades": per_symbol * symbols, "symbols": symbols,
                           "bridges": list(bridges), "primaries": primaries,
                           "cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
                           "stores": {}}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        stores: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Vault]]]] = [
            ("single", lambda: contextlib.nullcontext(vault)),
            ("cluster", lambda: _private_cluster(vault, primaries)),
        ]
        for name, store in stores:
            label = "1 node" if name == "single" else f"{primaries}-node cluster"
            with store() as v:
                cells = []
                for n in bridges:
                    say(f"{label}, {n} pool bridge(s): {per_symbol * symbols:,} trades over "
                        f"{symbols} symbols")  # fmt: skip
                    cells.append(_cell(v, n, names, per_symbol, work, say))
                row: dict[str, Any] = {"cells": cells}
                if live_rate and live_trades:
                    per = max(live_trades // symbols, 1)
                    say(f"{label}, 1 pool bridge at {live_rate:,.0f} trades/s: {per * symbols:,} "
                        "trades (bytes/trade of live blocks)")  # fmt: skip
                    row["paced"] = _cell(v, 1, names, per, work, say, live_rate)
                if original_trades:
                    say(f"{label}, original design: {original_trades:,} trades, one bridge")
                    v.client.flushdb()
                    row["original_design"] = _original(v, original_trades)
                out["stores"][name] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_after"] = os.getloadavg()[0]
    return out


run_scale_bench = on_own_server(_run)
"""``_run`` on a temporary server of its own whatever store it is given (pool bridges
join the pool's member set, which a user's own bridge pool would share)."""


def main() -> None:
    p = argparse.ArgumentParser(prog="tickvault.bench.scale")
    p.add_argument("role", choices=["publisher"])
    p.add_argument("--endpoints", required=True)
    p.add_argument("--symbols", type=int, required=True)
    p.add_argument("--per-symbol", type=int, required=True)
    p.add_argument("--rate", type=float, default=0)
    _publisher_worker(p.parse_args())


if __name__ == "__main__":
    main()
