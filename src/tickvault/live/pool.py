"""Worker pools: N bridge or feature-worker processes sharing many symbols, each symbol
owned by exactly one of them at a time through leases kept in Valkey.

Why leases and not a consumer group: the data does not come from a Valkey stream but
from ZeroMQ topics, which every worker could read; what must be shared is the right to
*write* a symbol (its trades, its feature rows, its cursor). A lease per symbol
(``storage.leases``: ``SET NX PX``, renewed, compared on release) says exactly that, its
expiry bounds how long a dead worker's symbols stay unowned (``pool_lease_ttl_ms``), and
its token fences every write (a transaction that only lands while the lease is held), so
a worker paused past its lease cannot write after its successor. A consumer group would
hand out entries, not symbols, and still need a per-symbol owner for the cursors.

``LeaseKeeper`` (a thread) every ``pool_lease_ttl_ms / 3``: says this worker is alive
(the pool's member set), renews the leases it holds (one it failed to renew is lost),
and balances: with M members alive and S symbols, each holds at most ceil(S / M); a
worker with fewer takes free symbols (``SET NX``: never one another holds), one with
more marks the extra ones to give away. A worker killed with -9 stops renewing: its
leases expire within the TTL and the others take its symbols at their next round.

``run_pool`` (the process's main loop) runs one worker instance (a ``Bridge`` or a
``FeatureWorker``) over the symbols held and not marked, on its own ``Vault``; whenever
that set changes it stops the instance (which stores what it holds, fenced), gives away
the marked symbols only then (so two workers never write one symbol), and starts a new
instance over the new set. The new instance resumes every symbol from its stored cursor
exactly as a restarted worker does: no row lost, none written twice.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

from tickvault.errors import TickvaultError
from tickvault.storage.leases import Fence
from tickvault.vault import Vault

log = logging.getLogger(__name__)


class Instance(Protocol):
    """A worker over a fixed set of symbols (``Bridge``, ``FeatureWorker``)."""

    def run(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


Factory = Callable[[Vault, list[str], Fence, Callable[[list[str]], None]], Instance]
"""(its own vault, symbols, fence, lease-lost callback) -> a worker instance."""


class LeaseKeeper:
    """The leases one pool worker holds, kept and balanced (module docstring)."""

    def __init__(
        self, vault: Vault, role: str, symbols: Sequence[str], worker_id: str | None = None
    ) -> None:
        self.vault = vault
        self.role = role
        self.symbols = sorted(set(symbols))
        if not self.symbols:
            raise TickvaultError(f"a {role} pool needs symbols (--symbols WINZ25,WDOZ25,...)")
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.token = f"{self.worker_id}:{secrets.token_hex(4)}"
        self.fence = Fence(role, self.token)
        self.ttl_ms = vault.settings.pool_lease_ttl_ms
        self.leases = vault.leases(role)
        self.changed = threading.Event()
        self.members = 0
        self.rounds = 0
        self._held: set[str] = set()
        self._give: set[str] = set()
        self._lock = threading.Lock()
        # each worker tries the free symbols in its own order, so two starting together
        # rarely race for the same one
        self._order = sorted(self.symbols, key=lambda s: zlib.crc32(f"{self.token}{s}".encode()))

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def wanted(self) -> list[str]:
        """The symbols the worker instance should serve: held and not being given away."""
        with self._lock:
            return sorted(self._held - self._give)

    def tick(self) -> None:
        """One round: heartbeat, renew, balance (a store error: tried again next round;
        the leases of a worker that cannot reach the store expire, as they should)."""
        try:
            self._tick()
        except TickvaultError as exc:
            log.warning("%s pool: lease round failed (%s); retrying", self.role, exc)

    def _tick(self) -> None:
        self.members = self.leases.heartbeat(self.token, self.ttl_ms)
        with self._lock:
            held = set(self._held)
        renewed = self.leases.renew(held, self.token, self.ttl_ms)
        lost = held - renewed
        target = math.ceil(len(self.symbols) / max(self.members, 1))
        taken: set[str] = set()
        with self._lock:
            if lost:
                log.warning("%s pool: leases lost: %s", self.role, ", ".join(sorted(lost)))
                self._held -= lost
                self._give -= lost
                self.changed.set()
            keep = self._held - self._give
            if len(keep) > target:
                extra = sorted(keep, key=self._order.index)[target:]
                self._give |= set(extra)
                self.changed.set()
            need = target - len(self._held)
        if need > 0:
            owners = self.leases.owners(self._order)
            for s in self._order:
                if need <= 0:
                    break
                if owners[s] is None and self.leases.acquire(s, self.token, self.ttl_ms):
                    taken.add(s)
                    need -= 1
        if taken:
            with self._lock:
                self._held |= taken
            self.changed.set()
        self.rounds += 1

    def lost(self, symbols: list[str]) -> None:
        """A fenced write found these leases gone (from the instance's writer thread)."""
        log.warning("%s pool: leases lost (a write was refused): %s", self.role,
                    ", ".join(sorted(symbols)))  # fmt: skip
        with self._lock:
            self._held -= set(symbols)
            self._give -= set(symbols)
        self.changed.set()

    def give_away(self) -> None:
        """Release the symbols marked to go (call once nothing writes them)."""
        with self._lock:
            gone, self._give = self._give, set()
            self._held -= gone
        if gone:
            self.leases.release(gone, self.token)
            log.info("%s pool: gave away %s", self.role, ", ".join(sorted(gone)))

    def close(self) -> None:
        """Release every lease held and leave the pool (a clean stop: the others take
        the symbols at their next round instead of after the TTL)."""
        with self._lock:
            held, self._held, self._give = self._held, set(), set()
        try:
            self.leases.release(held, self.token)
            self.leases.leave(self.token)
        except TickvaultError as exc:
            log.warning("%s pool: leases not released (%s); they expire", self.role, exc)


class _Running:
    """One instance and the thread running it."""

    def __init__(self, instance: Instance, vault: Vault, symbols: list[str]) -> None:
        self.instance = instance
        self.vault = vault
        self.symbols = symbols
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tickvault-pool-worker",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def _run(self) -> None:
        try:
            self.instance.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.instance.stop()
        self.thread.join()
        try:
            self.instance.close()
        finally:
            self.vault.close()


def run_pool(
    vault: Vault,
    keeper: LeaseKeeper,
    factory: Factory,
    stop: threading.Event,
    *,
    on_change: Callable[[list[str]], None] | None = None,
) -> None:
    """Serve the symbols ``keeper`` holds with instances from ``factory`` until ``stop``
    (module docstring); raises what an instance failed with."""
    every_s = keeper.ttl_ms / 3000
    ticker_stop = threading.Event()

    def rounds() -> None:
        while not ticker_stop.is_set():
            keeper.tick()
            ticker_stop.wait(every_s)

    ticker = threading.Thread(target=rounds, name="tickvault-pool-leases", daemon=True)
    ticker.start()
    running: _Running | None = None
    serving: list[str] | None = None
    try:
        while not stop.is_set():
            keeper.changed.wait(every_s)
            if stop.is_set():
                break
            keeper.changed.clear()
            if running is not None and not running.thread.is_alive():
                error = running.error
                running.stop()
                running, serving = None, None
                if error is not None:
                    raise error
            wanted = keeper.wanted()
            if wanted == serving:
                keeper.give_away()  # nothing marked is served: release at once
                continue
            serving = wanted
            if running is not None:
                running.stop()  # stores what it holds (fenced), then nothing writes them
                running = None
            keeper.give_away()
            if on_change is not None:
                on_change(wanted)
            if wanted:
                own = Vault.open(settings=vault.settings)
                try:
                    instance = factory(own, wanted, keeper.fence, keeper.lost)
                except BaseException:
                    own.close()
                    raise
                running = _Running(instance, own, wanted)
    finally:
        if running is not None:
            running.stop()
        ticker_stop.set()
        ticker.join()
        keeper.close()


__all__ = ["Factory", "Instance", "LeaseKeeper", "run_pool"]
