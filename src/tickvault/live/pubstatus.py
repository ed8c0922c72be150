"""``PublisherStatus``: a publisher's replay-buffer fill reported to the store.

The transport knows nothing of the store, so the publisher only answers
``Publisher.replay_fill()``; this reporter, on a thread of the publisher's process,
writes it twice a second as the hash ``status:publisher:<host>:<pid>`` (like the
bridge's ``status:bridge:...``), which the dashboard's Pipeline page and ``/metrics``
read. The hash expires ``STATUS_TTL_S`` after the last report, so a publisher that died
drops out; one that stops cleanly deletes nothing and expires the same way.

Fields: ``updated_ns``, ``pid``, ``host``, ``publisher_id`` (hex), ``replay_bytes``,
``replay_max_bytes`` (``zmq_replay_buffer_mb``), ``replay_messages``,
``replay_evicted`` (messages dropped to stay within the bound, since the start),
``oldest_topic`` and ``oldest_seq`` (the oldest message held, the next to go),
``topics`` (JSON: topic -> messages, bytes, first_seq held, last_seq published),
``records`` and ``messages`` published, ``queued``.

A publisher reports only to a store that is there: the configured ``valkey_url``, or
the embedded server of the data directory when it already runs (``tickvault up``
starts it first). It never starts a server, and a store that is away (or comes later)
never disturbs publishing: the reporter tries again every ``CONNECT_EVERY_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from tickvault.config import Settings
from tickvault.errors import TickvaultError
from tickvault.transport.publisher import Publisher
from tickvault.vault import Vault

log = logging.getLogger(__name__)

STATUS_PREFIX = "publisher:"
REPORT_EVERY_S = 0.5
STATUS_TTL_S = 30.0
"""A report expires this long after it was written (the dashboard shows one older than
10 s as silent)."""
CONNECT_EVERY_S = 5.0


def status_fields(publisher: Publisher) -> dict[str, Any]:
    """The status hash of ``publisher`` (module docstring)."""
    fill = publisher.replay_fill()
    stats = publisher.stats()
    topics = {
        name: {"messages": t.messages, "bytes": t.bytes, "first_seq": t.first_seq,
               "last_seq": t.last_seq}
        for name, t in sorted(fill.topics.items())
    }  # fmt: skip
    return {
        "updated_ns": time.time_ns(), "pid": os.getpid(), "host": socket.gethostname(),
        "publisher_id": f"{publisher.id:016x}", "replay_bytes": fill.bytes,
        "replay_max_bytes": fill.max_bytes, "replay_messages": fill.messages,
        "replay_evicted": fill.evicted, "oldest_topic": fill.oldest_topic,
        "oldest_seq": fill.oldest_seq, "topics": json.dumps(topics),
        "records": stats.records, "messages": stats.messages, "queued": stats.queued,
    }  # fmt: skip


def store_if_running(settings: Settings) -> Vault | None:
    """The store to report to, if one is there (module docstring); None otherwise."""
    if settings.valkey_url is None:
        from tickvault.storage.server import read_state

        if read_state(settings.data_dir.resolve()) is None:
            return None
    try:
        return Vault.open(settings=settings)
    except TickvaultError as exc:
        log.debug("publisher status: no store (%s)", exc)
        return None


class StatusReporter:
    """Writes ``fields()`` as the hash ``status:<name>`` every ``every_s`` until
    ``close()``, to the store if one is there (module docstring); the publisher's and
    the proxy's reporters."""

    def __init__(
        self,
        fields: Callable[[], dict[str, Any]],
        settings: Settings,
        name: str,
        *,
        vault: Vault | None = None,
        every_s: float = REPORT_EVERY_S,
        ttl_s: float = STATUS_TTL_S,
    ) -> None:
        self.fields = fields
        self.settings = settings
        self.every_s = every_s
        self.ttl_s = ttl_s
        self.name = name
        self.reports = 0
        self._vault = vault
        self._own_vault = vault is None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tickvault-status",
                                        daemon=True)  # fmt: skip

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        tried = -CONNECT_EVERY_S
        while not self._stop.wait(self.every_s):
            if self._vault is None:
                now = time.monotonic()
                if now - tried < CONNECT_EVERY_S:
                    continue
                tried = now
                try:
                    self._vault = store_if_running(self.settings)
                except Exception:  # a reporter must never die: try again later
                    log.exception("status %s: cannot open the store", self.name)
                    self._vault = None
                if self._vault is None:
                    continue
            self.report()

    def report(self) -> None:
        """One report now (a store error is logged at debug level, never raised)."""
        if self._vault is None:
            return
        try:
            self._vault.put_status(self.name, self.fields(), ttl_s=self.ttl_s)
            self.reports += 1
        except TickvaultError as exc:  # a report is never worth disturbing the work
            log.debug("status %s: not reported: %s", self.name, exc)
        except Exception:  # nor worth the reporter thread: logged, tried again
            log.exception("status %s: not reported", self.name)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._vault is not None and self._own_vault:
            with contextlib.suppress(TickvaultError):
                self._vault.close()
        self._vault = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PublisherStatus(StatusReporter):
    """Reports ``publisher``'s fill to the store twice a second until ``close()``."""

    def __init__(
        self,
        publisher: Publisher,
        settings: Settings,
        *,
        vault: Vault | None = None,
        every_s: float = REPORT_EVERY_S,
        ttl_s: float = STATUS_TTL_S,
    ) -> None:
        self.publisher = publisher
        super().__init__(
            lambda: status_fields(publisher), settings,
            f"{STATUS_PREFIX}{socket.gethostname()}:{os.getpid()}",
            vault=vault, every_s=every_s, ttl_s=ttl_s,
        )  # fmt: skip


__all__ = [
    "STATUS_PREFIX",
    "PublisherStatus",
    "StatusReporter",
    "status_fields",
    "store_if_running",
]
