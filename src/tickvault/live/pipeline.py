"""``Pipeline``: a feeder, a publisher and a bridge in one process (the demo, tests).

The pieces talk over real ZeroMQ sockets exactly as separate processes would
(``tickvault publish`` and ``tickvault bridge`` run them apart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from tickvault.errors import TickvaultError
from tickvault.feeds.base import Feeder, FeedEvents, PublishingEvents
from tickvault.feeds.gapfill import GapFiller
from tickvault.live.bridge import Bridge
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.vault import Vault

log = logging.getLogger(__name__)


class FeedRunner:
    """Runs a feeder into a publisher on a thread; ``stop()`` ends it early."""

    def __init__(self, feeder: Feeder, publisher: Publisher, *, gap_fill: bool = True):
        self.feeder = feeder
        self.publisher = publisher
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        events = PublishingEvents(publisher, source=feeder.name)
        self.gap_filler = GapFiller(events, feeder, publisher) if gap_fill else None
        self.events: FeedEvents = self.gap_filler or events
        self._thread = threading.Thread(target=self._run, name="tickvault-feed", daemon=True)

    def _run(self) -> None:
        try:
            self.feeder.run(self.events, self.stop_event)
        except TickvaultError as exc:  # reported by the caller
            self.error = exc
            log.error("feeder %s failed: %s", self.feeder.name, exc)
        except BaseException as exc:
            self.error = exc
            log.exception("feeder %s failed", self.feeder.name)
        finally:
            if self.gap_filler is not None:
                self.gap_filler.close()

    def start(self) -> FeedRunner:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout_s)


class Pipeline:
    """feeder -> Publisher -> (ZeroMQ) -> Bridge -> Valkey."""

    def __init__(
        self,
        vault: Vault,
        feeder: Feeder,
        *,
        endpoints: Endpoints | None = None,
        symbols: Sequence[str] | None = None,
    ):
        self.vault = vault
        self.endpoints = endpoints or Endpoints.from_settings(vault.settings)
        self.publisher = Publisher(vault.settings, endpoints=self.endpoints)
        try:
            self.bridge = Bridge(vault, endpoints=[self.endpoints], symbols=symbols)
        except BaseException:
            self.publisher.close()
            raise
        self.feed = FeedRunner(feeder, self.publisher)
        self.started_s = 0.0

    def start(self) -> Pipeline:
        self.bridge.start()
        self.feed.start()
        self.started_s = time.monotonic()
        return self

    def drain(self, timeout_s: float = 15.0) -> bool:
        """Wait until everything published so far is stored; False on timeout."""
        self.publisher.flush(timeout_s)
        deadline = time.monotonic() + timeout_s
        by_kind = self.publisher.stats().messages_by_kind
        target = sum(by_kind.get(kind, 0) for kind in ("TRADE", "HISTORY", "BOOK", "GAP"))
        while time.monotonic() < deadline:
            sub = self.bridge.subscriber.stats
            if sub.messages + sub.lost_messages >= target and self.bridge.idle():
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the feeder, store what was published, close everything. True if all of it
        was stored before the timeout."""
        self.feed.stop()
        complete = self.drain(timeout_s)
        self.bridge.close()
        self.publisher.close()
        return complete
