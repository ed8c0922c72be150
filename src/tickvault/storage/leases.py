"""Leases of symbols for worker pools, and writes fenced by them.

A pool of workers of one role (``bridge``, ``features``) shares its symbols: each symbol
is owned by at most one worker at a time through the key ``lease:{SYMBOL}:<role>``
(hash-tagged like every key of the symbol, so it lives on the symbol's cluster slot),
whose value is the owner's token and which expires ``ttl_ms`` after its last renewal:

- acquire: ``SET key token NX PX ttl`` (only a free symbol can be taken);
- renew: a script that moves the expiry only if the value is still the token;
- release: a script that deletes the key only if the value is still the token.

The workers alive are the members of the sorted set ``pool:<role>:members`` (score: when
the member's heartbeat expires, ms); each worker adds itself on every renewal and drops
the expired ones, so a worker killed with -9 leaves within ``ttl_ms``.

Fencing: a worker that was stopped (SIGSTOP, a long pause) past its lease's expiry may
wake up with a write in hand while another worker owns the symbol. Every write of a
pool worker is therefore a transaction fenced by the lease: ``WATCH`` the symbols' lease
keys, check that each still holds the worker's token, then ``MULTI`` + the write's
script calls + ``EXEC``. Valkey aborts the ``EXEC`` when a watched key changed or
expired since the ``WATCH`` (a takeover, an expiry; also the owner's own renewal, after
which the check is simply made again), so a write lands only while its lease is held:
``LeaseLost`` otherwise, and nothing of it is stored.

On a Valkey Cluster the keys of one transaction must share a slot, and ``WATCH`` must
be sent on the connection that runs the ``EXEC``: a fenced write runs on a connection
of the primary of its slot (``ClusterClient.watch_pipeline``; a redirection after a
failover or a slot move: the slot map is read again and the write started again). A
fenced write of one symbol qualifies (its lease and data keys share the hash tag); a
bridge cycle over several symbols (``fenced_cycle``) is one fenced transaction per slot
there, in practice one per symbol, and one over the whole cycle on a single server.
Each transaction is all or nothing for its symbols: a lease lost refuses that
symbol's write only, the cycle's other symbols are stored (``LeaseLost.stored``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import valkey

from tickvault.errors import LeaseLost, ServerError
from tickvault.storage.books import BookStore
from tickvault.storage.cluster import ClusterClient, is_redirect
from tickvault.storage.connection import translate
from tickvault.storage.writes import StoreItem, TradeWrites

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_MAX_ATTEMPTS = 50
"""A fenced write retried this often (each abort: a renewal or a takeover since WATCH)
is given up as a lost lease."""
_MOVED_ATTEMPTS = 12
"""On a cluster, a fenced write redirected (its slot moved, a failover under way) or cut
off from its primary before its EXEC is started again this often, the slot map read again in between
(waits doubling from 20 ms to 0.5 s: about 4 s in all), then the error is raised."""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def lease_key(symbol: str, role: str) -> str:
    return f"lease:{{{symbol}}}:{role}"


def members_key(role: str) -> str:
    return f"pool:{role}:members"


@dataclass(frozen=True, slots=True)
class Fence:
    """A pool worker's claim: its role and token. Writes fenced by it land only for the
    symbols whose lease holds the token."""

    role: str
    token: str

    def key(self, symbol: str) -> str:
        return lease_key(symbol, self.role)


class Leases:
    """The leases and members of one pool role on a Valkey client."""

    def __init__(self, r: Any, role: str) -> None:
        self._r = r
        self.role = role
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)

    @translate
    def acquire(self, symbol: str, token: str, ttl_ms: int) -> bool:
        """Take ``symbol`` if nobody holds it."""
        return bool(self._r.set(lease_key(symbol, self.role), token, nx=True, px=ttl_ms))

    @translate
    def renew(self, symbols: Iterable[str], token: str, ttl_ms: int) -> set[str]:
        """Extend the leases of ``symbols`` still held by ``token``; the ones renewed."""
        wanted = list(symbols)
        if not wanted:
            return set()
        pipe = self._r.pipeline(transaction=False)
        for s in wanted:
            self._renew(keys=[lease_key(s, self.role)], args=[token, ttl_ms], client=pipe)
        return {s for s, ok in zip(wanted, pipe.execute(), strict=True) if int(ok)}

    @translate
    def release(self, symbols: Iterable[str], token: str) -> None:
        """Give up the leases of ``symbols`` that ``token`` still holds."""
        wanted = list(symbols)
        if not wanted:
            return
        pipe = self._r.pipeline(transaction=False)
        for s in wanted:
            self._release(keys=[lease_key(s, self.role)], args=[token], client=pipe)
        pipe.execute()

    @translate
    def owners(self, symbols: Sequence[str]) -> dict[str, str | None]:
        """symbol -> the token holding its lease (None: free)."""
        pipe = self._r.pipeline(transaction=False)
        for s in symbols:
            pipe.get(lease_key(s, self.role))
        return {s: _text(v) for s, v in zip(symbols, pipe.execute(), strict=True)}

    @translate
    def heartbeat(self, member: str, ttl_ms: int) -> int:
        """Say ``member`` is alive for ``ttl_ms`` more; the number of members alive."""
        now = int(time.time() * 1000)
        key = members_key(self.role)
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(key, {member: now + ttl_ms})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        pipe.pexpire(key, max(ttl_ms * 10, 60_000))
        return int(pipe.execute()[2])

    @translate
    def leave(self, member: str) -> None:
        self._r.zrem(members_key(self.role), member)

    @translate
    def members(self) -> list[str]:
        now = int(time.time() * 1000)
        raw = self._r.zrangebyscore(members_key(self.role), now, "+inf")
        return sorted(str(_text(m)) for m in raw)


@translate
def fenced(
    r: Any,
    fence: Fence,
    symbols: Iterable[str],
    queue: Callable[[Any], Callable[[list[Any]], None] | None],
) -> None:
    """Run the writes ``queue(pipe)`` puts on a transaction only while ``fence`` holds the
    lease of every one of ``symbols`` (module docstring); ``queue`` may return a check
    of the transaction's replies. ``LeaseLost`` (naming the symbols) when one is not
    held: nothing was written. On a cluster every key of the transaction (the leases
    and what ``queue`` writes) must share one slot."""
    keys = {s: fence.key(s) for s in sorted(set(symbols))}
    if not keys:
        raise ValueError("a fenced write needs at least one symbol")
    cluster = r if isinstance(r, ClusterClient) else None
    if cluster is not None and len({cluster.key_slot(k) for k in keys.values()}) > 1:
        raise ServerError(
            f"a fenced write over {', '.join(keys)}: their leases are on several cluster "
            "slots, and one transaction covers one slot; this is a tickvault bug, please "
            "report it (the bridge cuts its cycle into one transaction per slot)"
        )
    first = next(iter(keys.values()))
    delay = 0.02
    aborts = moves = 0
    while aborts < _MAX_ATTEMPTS:
        pipe = r.pipeline(transaction=True) if cluster is None else cluster.watch_pipeline(first)
        executing = False
        with pipe:
            try:
                pipe.watch(*keys.values())
                values = pipe.mget(list(keys.values()))  # one round trip
                lost = [s for s, held in zip(keys, values, strict=True)
                        if _text(held) != fence.token]  # fmt: skip
                if lost:
                    pipe.reset()
                    raise LeaseLost(lost, fence.role)
                pipe.multi()
                check = queue(pipe)
                executing = True
                replies = pipe.execute()
            except valkey.WatchError:
                aborts += 1
                continue  # changed since WATCH: our own renewal, or a takeover; check again
            except (valkey.ResponseError, valkey.ConnectionError, valkey.TimeoutError) as exc:
                # on a cluster: the slot moved (a redirection: nothing ran) or its primary
                # is gone before the EXEC was sent; a connection lost during the EXEC may
                # have run it, and is raised as on one server
                if cluster is None or moves >= _MOVED_ATTEMPTS - 1:
                    raise
                if isinstance(exc, valkey.ResponseError) and not is_redirect(exc):
                    raise
                if not isinstance(exc, valkey.ResponseError) and executing:
                    raise
                moves += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                cluster.refresh_slots()
                continue
        if check is not None:
            check(replies)
        return
    raise LeaseLost(sorted(keys), fence.role, why="its lease key kept changing under the write")


def fenced_cycle(
    r: Any, writes: TradeWrites, books: BookStore, items: Sequence[StoreItem], fence: Fence
) -> None:
    """``TradeWrites.store_cycle`` fenced by ``fence`` (``fenced``): on a single server one
    transaction over the whole cycle, on a cluster one per slot (module docstring). Each
    symbol's items land whole or not at all, and only while its lease is the fence's.
    ``LeaseLost`` naming the symbols whose lease was not held (nothing of theirs
    stored) once every other symbol's items are stored (``LeaseLost.stored``)."""
    if not items:
        return
    lost: list[str] = []
    with books.lock:  # a book write and its in-memory state move together
        for group in _slot_groups(r, items, fence):
            left = group
            while left:
                try:
                    fenced(r, fence, {i.symbol for i in left}, _cycle_queue(writes, books, left))
                    break
                except LeaseLost as exc:  # the others of the group: once more without it
                    lost += exc.symbols
                    left = [i for i in left if i.symbol not in exc.symbols]
    if lost:
        stored = sorted({i.symbol for i in items} - set(lost))
        raise LeaseLost(sorted(set(lost)), fence.role, stored=stored)


def _slot_groups(r: Any, items: Sequence[StoreItem], fence: Fence) -> list[list[StoreItem]]:
    """The items of a cycle by the slot of their symbol's lease (a cluster), in order;
    all in one on a single server."""
    if not isinstance(r, ClusterClient):
        return [list(items)]
    groups: dict[int, list[StoreItem]] = {}
    for item in items:
        groups.setdefault(r.key_slot(fence.key(item.symbol)), []).append(item)
    return list(groups.values())


def _cycle_queue(
    writes: TradeWrites, books: BookStore, items: Sequence[StoreItem]
) -> Callable[[Any], Callable[[list[Any]], None]]:
    def queue(pipe: Any) -> Callable[[list[Any]], None]:
        _, book_calls = writes.queue_cycle(pipe, items, books)

        def applied(replies: list[Any]) -> None:
            for index, item in book_calls:
                books.applied(item.symbol, item.records, replies[index])

        return applied

    return queue


__all__ = ["Fence", "Leases", "fenced", "fenced_cycle", "lease_key", "members_key"]
