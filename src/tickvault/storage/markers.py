"""What the live path records beside the data: bridge cursors, gap markers (spans known
to be incomplete), the quarantine of rejected messages, and the processes' status
hashes (``status:<name>``, what a running bridge reports about itself)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from tickvault.records.events import Gap
from tickvault.storage.keys import QUARANTINE_KEY, STATUS_PREFIX, cursor_key, gaps_key
from tickvault.timeutil import NS_PER_MS, now_ns

GapMarker = Gap
"""The name the store's API has always used for a ``Gap`` record."""


def bridge_cursor(r: Any, symbol: str, name: str) -> int | None:
    """Last sequence number a bridge stored for ``name`` (``<publisher>:<topic>``)."""
    raw = r.hget(cursor_key(symbol), name)
    return None if raw is None else int(raw)


def gap_to_json(gap: Gap) -> bytes:
    """The stored form of a gap: a JSON object of its fields, keys sorted (so recording
    the same gap twice stores one member)."""
    return orjson.dumps(dataclasses.asdict(gap), option=orjson.OPT_SORT_KEYS)


def gap_from_json(raw: bytes) -> Gap:
    return Gap(**orjson.loads(raw))


def bridge_cursors(r: Any) -> dict[str, int]:
    """Every bridge cursor of every symbol: ``<publisher>:<topic>`` -> last seq stored."""
    out: dict[str, int] = {}
    for key in r.scan_iter(match="ticks:*:cursor", count=1000):
        for name, raw in r.hgetall(key).items():
            out[name.decode() if isinstance(name, bytes) else name] = int(raw)
    return out


def record_gap(r: Any, symbol: str, gap: Gap) -> None:
    """Mark [gap.start_ns, gap.end_ns] of ``symbol`` (canonical) as incomplete (idempotent)."""
    r.zadd(gaps_key(symbol), {gap_to_json(gap): gap.start_ns // NS_PER_MS})


def gaps(r: Any, symbol: str, start_ns: int, end_ns: int) -> list[Gap]:
    """Gap markers overlapping [start_ns, end_ns)."""
    raw = r.zrangebyscore(gaps_key(symbol), "-inf", f"({-(-end_ns // NS_PER_MS)}")
    found = [gap_from_json(m) for m in raw]
    return [g for g in found if g.end_ns >= start_ns and g.start_ns < end_ns]


def quarantine(r: Any, maxlen: int, reason: str, detail: str, frames: Sequence[bytes]) -> None:
    """Keep a rejected message, raw, in the ``quarantine`` stream (about ``maxlen`` kept)."""
    fields: dict[str, Any] = {"reason": reason, "detail": detail, "ts": now_ns()}
    fields.update({f"f{i}": frame for i, frame in enumerate(frames)})
    r.xadd(QUARANTINE_KEY, fields, maxlen=maxlen, approximate=True)


def quarantined(r: Any, count: int) -> list[dict[str, Any]]:
    """The latest quarantined messages, newest first: reason, detail, ts and raw frames."""
    out = []
    for _, fields in r.xrevrange(QUARANTINE_KEY, "+", "-", count=count):
        item: dict[str, Any] = {k.decode(): v for k, v in fields.items()}
        item["reason"] = item["reason"].decode()
        item["detail"] = item["detail"].decode()
        item["ts"] = int(item["ts"])
        out.append(item)
    return out


_PUT_STATUS = """#!lua flags=allow-oom
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
"""Replaces a status hash; ``allow-oom`` lets it run when the server is over
``maxmemory`` (a few hundred bytes), so a bridge can say that the store refuses its
writes in the very place the dashboard looks. A server that cannot persist (MISCONF)
refuses it all the same."""


def put_status(r: Any, name: str, fields: dict[str, Any], ttl_s: float) -> None:
    """Replace the status hash ``status:<name>`` with ``fields`` (expires after ``ttl_s``
    without a new report, so a process gone for good drops out). Written even when the
    server is out of memory (``_PUT_STATUS``)."""
    flat: list[str] = []
    for k, v in fields.items():
        flat += [k, str(v)]
    if not flat:
        r.delete(STATUS_PREFIX + name)
        return
    r.eval(_PUT_STATUS, 1, STATUS_PREFIX + name, max(int(ttl_s * 1000), 1), *flat)


def statuses(r: Any, prefix: str = "") -> dict[str, dict[str, str]]:
    """Every status hash whose name starts with ``prefix``: name -> fields."""
    out: dict[str, dict[str, str]] = {}
    for key in r.scan_iter(match=f"{STATUS_PREFIX}{prefix}*", count=1000):
        name = (key.decode() if isinstance(key, bytes) else key)[len(STATUS_PREFIX) :]
        fields = r.hgetall(key)
        if fields:
            out[name] = {k.decode(): v.decode() for k, v in fields.items()}
    return out
