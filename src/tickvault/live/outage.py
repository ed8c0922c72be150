"""The bridge's writes while Valkey goes away and comes back (mixed into ``Bridge``):
retries with backoff, a restart seen by the server's run id, and a server back
without writes it had acknowledged (every topic then restarts from the stored
cursors, so no hole is written over).

A server that answers but refuses writes (``StoreRefused``: out of memory under
``noeviction``, or MISCONF when it cannot persist) is handled like one that is
unreachable: nothing of the refused call was written, so the cursors stay where they
were; the batch is retried with backoff, what arrives meanwhile is held up to
``bridge_max_held_mb`` (then reading pauses and the replay buffers supply the rest).
It is logged once per cause with what to do, and reported in the bridge's status
hash (``store``, ``store_error``) even while the server is over ``maxmemory``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tickvault.config import Settings
from tickvault.errors import ServerError, ServerUnreachable, StoreRefused
from tickvault.live.stats import BridgeStats
from tickvault.transport.subscriber import Subscriber
from tickvault.vault import Vault

log = logging.getLogger("tickvault.live.bridge")

_RUN_ID_EVERY_S = 0.02
_STOP_GRACE_S = 1.0
"""Stopped while Valkey is unreachable, the writer keeps trying this long at most."""


class OutageHandling:
    """Retries, restarts and rollbacks of the store under a ``Bridge``'s writer thread."""

    vault: Vault
    settings: Settings
    stats: BridgeStats
    subscriber: Subscriber
    _cond: threading.Condition
    _outage: bool
    _stop_requested: bool
    _stopping: bool
    _abandoned: bool
    _resyncing: bool
    _run_id: str
    _run_id_checked: float
    _stored: dict[tuple[str, str], int]
    _store_state: str
    """``ok``, ``refused`` (the server refuses writes) or ``unreachable``."""
    _store_error: str
    _status_at: float

    def _report_status(self) -> None:
        raise NotImplementedError

    def _retrying(self, action: Any) -> bool:
        """Run ``action`` until it succeeds (the server may be restarting), with backoff;
        False if a stop came while the server was unreachable and it stayed so."""
        delay, outage_start = 0.05, 0.0
        give_up_at = 0.0
        while True:
            try:
                restarted = self._server_restarted()
                if (outage_start or restarted) and self._rolled_back():
                    if outage_start:
                        self._reachable_again(outage_start, "asked the publishers again")
                    return True  # the batch is dropped: the publishers send it again
                action()
            except ServerError as exc:  # the store's errors, translated at its seam
                self.stats.write_errors += 1
                now = time.monotonic()
                refused = isinstance(exc, StoreRefused)
                if not outage_start:
                    outage_start = now
                    self._outage = True
                    self.stats.outages += 1
                cause = "refused" if refused else "unreachable"
                if cause != self._store_state or (refused and str(exc) != self._store_error):
                    self._log_outage(exc)  # once per cause, not per attempt
                self._store_state, self._store_error = cause, str(exc)
                if refused:
                    self.stats.refused_writes += 1
                    self._report_status()  # the server answers: say it where the dashboard looks
                if self._stop_requested or self._stopping:
                    give_up_at = give_up_at or now + min(_STOP_GRACE_S, delay)
                    if now >= give_up_at:
                        why = "refuses writes" if refused else "is unreachable"
                        log.error("bridge: stopping while Valkey %s: %s", why, exc)
                        self._abandoned = True
                        return False
                    delay = min(delay, _STOP_GRACE_S)
                with self._cond:
                    self._cond.wait(delay)  # a stop wakes it
                delay = min(delay * 2, self.settings.store_retry_max_s)
                continue
            if outage_start:
                self._reachable_again(outage_start, "stored what was held")
            return True

    def _log_outage(self, exc: ServerError) -> None:
        if isinstance(exc, StoreRefused):
            log.error(
                "bridge: %s. Nothing of the refused write was stored and the cursors stay "
                "where they are; holding what arrives in memory (up to bridge_max_held_mb = "
                "%g MiB; past it reading pauses and the publishers' replay buffers supply the "
                "rest), retrying with backoff (at most every %gs): it resumes by itself once "
                "the server accepts writes",
                exc, self.settings.bridge_max_held_mb, self.settings.store_retry_max_s,
            )  # fmt: skip
            return
        log.warning(
            "bridge: cannot write to Valkey (%s); holding what arrives in memory, "
            "still receiving, retrying with backoff (at most every %gs)",
            exc, self.settings.store_retry_max_s,
        )  # fmt: skip

    def _reachable_again(self, outage_start: float, what: str) -> None:
        self._outage = False
        refused, self._store_state, self._store_error = self._store_state == "refused", "ok", ""
        log.warning(
            "bridge: Valkey %s again after %.1fs; %s",
            "accepts writes" if refused else "reachable", time.monotonic() - outage_start, what,
        )  # fmt: skip
        self._status_at = 0.0  # say so now, not at the next report
        self._report_status()

    def _server_restarted(self) -> bool:
        """Whether the server restarted since the last look (its run id changed). valkey-py
        reconnects an idle connection without an error, so a restart between two writes
        shows nowhere else. Looked at before a write unless the last look is under
        ``_RUN_ID_EVERY_S`` old: no server dies, restarts and loads its AOF that fast, so
        a write never lands on a restarted server unseen."""
        now = time.monotonic()
        if not self._stored or now - self._run_id_checked < _RUN_ID_EVERY_S:
            return False
        run_id = self.vault.server_run_id()
        self._run_id_checked = time.monotonic()
        restarted = bool(self._run_id) and run_id != self._run_id
        self._run_id = run_id
        return restarted

    def _rolled_back(self) -> bool:
        """After an outage, before writing: did Valkey come back without writes it had
        acknowledged? Then every topic restarts from the stored cursors (what this
        bridge holds is dropped and asked for again), so no hole is written over."""
        behind = {}
        for (symbol, name), seq in self._stored.items():
            actual = self.vault.bridge_cursor(symbol, name) or 0
            if actual < seq:
                behind[name] = (actual, seq)
        if not behind:
            return False
        self.stats.rollbacks += 1
        log.warning(
            "bridge: Valkey came back without writes it had acknowledged (%s); asking the "
            "publishers again from the stored cursors",
            ", ".join(f"{n.partition(':')[2]} stored up to {b}, now {a}"
                      for n, (a, b) in sorted(behind.items())),
        )  # fmt: skip
        self._outage = False  # the cursors can be read again
        self._resyncing = True  # a subscriber paused for room must not wait for us
        try:
            resynced = self.subscriber.resync(60.0)
        finally:
            self._resyncing = False
        if not resynced:
            raise ServerUnreachable("the bridge could not resume from the stored cursors")
        for key in list(self._stored):
            self._stored[key] = self.vault.bridge_cursor(*key) or 0
        return True
