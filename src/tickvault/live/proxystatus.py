"""``ProxyStatus``: a ``tickvault proxy``'s figures reported to the store.

Like the publisher's (``live.pubstatus``): the hash ``status:proxy:<host>:<pid>``,
written twice a second to a store that is there (never started for it), expiring
``STATUS_TTL_S`` after the last report. ``/metrics`` exports it (``tickvault_proxy_*``).

Fields: ``updated_ns``, ``pid``, ``host``, ``upstream`` and ``downstream`` (the ticks
endpoints), ``subscribers`` (heard from on the replay socket recently), ``messages`` and
``bytes`` (forwarded down, all data sockets), ``messages_by_socket`` (JSON: socket ->
messages), ``subscriptions`` (subscription changes forwarded up), ``replay_requests``,
``replay_answers``, ``replayed_messages``, ``end_notices``, ``dropped``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from tickvault.config import Settings
from tickvault.live.pubstatus import REPORT_EVERY_S, STATUS_TTL_S, StatusReporter
from tickvault.transport.proxy import Proxy
from tickvault.vault import Vault

STATUS_PREFIX = "proxy:"


def proxy_fields(proxy: Proxy) -> dict[str, Any]:
    """The status hash of ``proxy`` (module docstring)."""
    s = proxy.stats()
    return {
        "updated_ns": time.time_ns(), "pid": os.getpid(), "host": socket.gethostname(),
        "upstream": proxy.upstream.ticks, "downstream": proxy.downstream.ticks,
        "subscribers": s.subscribers, "messages": sum(s.messages.values()),
        "bytes": sum(s.bytes.values()), "messages_by_socket": json.dumps(s.messages),
        "subscriptions": sum(s.subscriptions.values()), "replay_requests": s.replay_requests,
        "replay_answers": s.replay_answers, "replayed_messages": s.replayed_messages,
        "end_notices": s.end_notices, "dropped": s.dropped,
    }  # fmt: skip


class ProxyStatus(StatusReporter):
    """Reports ``proxy``'s figures to the store twice a second until ``close()``."""

    def __init__(
        self,
        proxy: Proxy,
        settings: Settings,
        *,
        vault: Vault | None = None,
        every_s: float = REPORT_EVERY_S,
        ttl_s: float = STATUS_TTL_S,
    ) -> None:
        self.proxy = proxy
        super().__init__(
            lambda: proxy_fields(proxy), settings,
            f"{STATUS_PREFIX}{socket.gethostname()}:{os.getpid()}",
            vault=vault, every_s=every_s, ttl_s=ttl_s,
        )  # fmt: skip


__all__ = ["STATUS_PREFIX", "ProxyStatus", "proxy_fields"]
