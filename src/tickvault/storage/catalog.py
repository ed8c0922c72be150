"""The catalogue: which symbols are stored, per-stream counts, spans and memory, and the
server's own status."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tickvault.storage import codec
from tickvault.storage.cluster import ClusterClient
from tickvault.storage.keys import (
    STORED_STREAMS,
    StoredStream,
    late_key,
    meta_key,
    parse_trades_key,
    trades_key,
)
from tickvault.storage.reads import TradeReads, split_member
from tickvault.timeutil import NS_PER_MS


@dataclasses.dataclass(frozen=True, slots=True)
class StreamStats:
    symbol: str
    stream: StoredStream
    trades: int
    """Records stored (repeats and corrections included)."""
    blocks: int
    memory_bytes: int
    first_ns: int | None
    last_ns: int | None

    @property
    def bytes_per_trade(self) -> float:
        return self.memory_bytes / self.trades if self.trades else math.nan


def symbols(r: Any) -> list[str]:
    """Symbols with stored trades, sorted."""
    found = set()
    for key in r.scan_iter(match="ticks:{*}:*", count=1000):
        parsed = parse_trades_key(key.decode())
        if parsed:
            found.add(parsed[0])
    return sorted(found)


def stats(r: Any, reads: TradeReads, symbol: str) -> list[StreamStats]:
    """Per-stream counts, time span and memory of ``symbol`` (``compacted``: the realtime
    blocks compaction rewrote)."""
    out = []
    for stream in STORED_STREAMS:
        key = trades_key(symbol, stream)
        if not r.exists(key):
            continue
        trades = int(r.hget(meta_key(symbol, stream), "trades") or 0)
        first = r.xrange(key, "-", "+", count=1)
        last = reads.in_order_entry_before(key, "+")
        late_first_ms = [split_member(m)[1] for m in r.zrange(late_key(symbol, stream), 0, -1)]
        memory = sum(
            r.memory_usage(k, samples=0) or 0
            for k in (key, late_key(symbol, stream), meta_key(symbol, stream))
        )
        out.append(
            StreamStats(
                symbol=symbol,
                stream=stream,
                trades=trades,
                blocks=r.xlen(key),
                memory_bytes=memory,
                first_ns=min(
                    [codec.read_header(first[0][1][b"b"]).ts_first]
                    + [ms * NS_PER_MS for ms in late_first_ms]
                )
                if first
                else None,
                last_ns=codec.read_header(last[1]).ts_last if last else None,
            )
        )
    return out


def server_status(r: Any, url: str, embedded: bool) -> dict[str, Any]:
    """Address, version and persistence mode of the server, and why it refuses writes
    (``writes_refused``: what is wrong and what to do, or None). On a cluster: the same
    gathered from every primary (memory summed, the first refusal found), and ``nodes``,
    per primary its address, memory and replicas."""
    if isinstance(r, ClusterClient):
        return _cluster_status(r, url)
    info = r.info("server")
    persistence = r.info("persistence")
    memory = r.info("memory")
    conf = r.config_get("appendfsync")
    policy = r.config_get("maxmemory-policy")
    return {
        "url": url,
        "embedded": embedded,
        "version": info.get("valkey_version", info.get("redis_version")),
        "aof": bool(persistence.get("aof_enabled")),
        "appendfsync": conf.get("appendfsync"),
        "maxmemory_policy": policy.get("maxmemory-policy"),
        "used_memory": memory.get("used_memory"),
        "maxmemory": memory.get("maxmemory"),
        "writes_refused": writes_refused(r, persistence, memory),
    }


def writes_refused(r: Any, persistence: dict[str, Any], memory: dict[str, Any]) -> str | None:
    """Why the server refuses writes now, from its INFO (what is wrong and what to do), or
    None. A bridge says the same in its status hash, but a server that cannot persist
    (MISCONF) refuses that write too: this is where it shows then."""
    from tickvault.storage.connection import MISCONF_HINT, OOM_HINT

    if persistence.get("aof_last_write_status") == "err":
        return MISCONF_HINT
    if persistence.get("rdb_last_bgsave_status") == "err":
        conf = r.config_get("stop-writes-on-bgsave-error")
        save = r.config_get("save")
        if conf.get("stop-writes-on-bgsave-error") == "yes" and save.get("save"):
            return MISCONF_HINT
    limit = int(memory.get("maxmemory") or 0)
    if limit and int(memory.get("used_memory") or 0) >= limit:
        policy = r.config_get("maxmemory-policy").get("maxmemory-policy")
        if policy == "noeviction":
            return OOM_HINT
    return None


def server_run_id(r: Any) -> str:
    """The server's run id: it changes whenever the server process restarts. On a
    cluster, the run ids of every primary: it changes when one restarts or a failover
    promotes a replica (the bridge then checks that no acknowledged write was lost)."""
    if isinstance(r, ClusterClient):
        infos = r.primaries_info("server")
        return ",".join(str(infos[name].get("run_id", "")) for name in sorted(infos))
    return str(r.info("server").get("run_id", ""))


def _cluster_status(r: Any, url: str) -> dict[str, Any]:
    server = r.primaries_info("server")
    persistence = r.primaries_info("persistence")
    memory = r.primaries_info("memory")
    replication = r.primaries_info("replication")
    names = sorted(server)
    refused = None
    nodes = []
    for name in names:
        node = r.get_node(node_name=name)
        conn: Any = r.get_valkey_connection(node)
        why = writes_refused(conn, persistence.get(name, {}), memory.get(name, {}))
        refused = refused or why
        nodes.append({
            "node": name,
            "used_memory": memory.get(name, {}).get("used_memory"),
            "replicas": int(replication.get(name, {}).get("connected_slaves", 0)),
            "writes_refused": why,
        })  # fmt: skip
    conf: Any = r.get_valkey_connection(r.get_node(node_name=names[0])) if names else None
    first = server[names[0]] if names else {}
    return {
        "url": url,
        "embedded": False,
        "cluster": True,
        "version": first.get("valkey_version", first.get("redis_version")),
        "aof": all(bool(persistence[n].get("aof_enabled")) for n in names),
        "appendfsync": conf.config_get("appendfsync").get("appendfsync") if conf else None,
        "maxmemory_policy": conf.config_get("maxmemory-policy").get("maxmemory-policy")
        if conf
        else None,
        "used_memory": sum(int(memory[n].get("used_memory", 0)) for n in names),
        "maxmemory": sum(int(memory[n].get("maxmemory", 0)) for n in names),
        "writes_refused": refused,
        "nodes": nodes,
    }
