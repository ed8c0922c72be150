"""History backfill on request: ``backfill`` asks a feeder's history API for a span
and stores the answer in the historical stream directly. The feeder enforces its own
rules (ProfitDLL: no start older than 30 days, WIN/WDO one day per request, one request
at a time per symbol).

The gap filler that backfills after a feed reconnects is ``feeds.gapfill.GapFiller``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickvault.errors import FeedError
from tickvault.feeds.base import Feeder, NullEvents
from tickvault.vault import Vault


@dataclass(slots=True)
class BackfillReport:
    symbol: str
    start_ns: int
    end_ns: int
    stored: int = 0


class StoringEvents(NullEvents):
    """FeedEvents that store history trades into the historical stream (and report
    progress); everything else is ignored."""

    def __init__(self, vault: Vault, progress: Callable[[str, int], None] | None = None):
        self.vault = vault
        self.progress = progress
        self.stored = 0

    def on_history_trade(self, symbol: str, trades: npt.NDArray[np.void]) -> None:
        self.stored += self.vault.write_trades(symbol, trades, stream="historical")

    def on_progress(self, symbol: str, percent: int) -> None:
        if self.progress is not None:
            self.progress(symbol, percent)


def backfill(
    vault: Vault,
    feeder: Feeder,
    symbol: str,
    start_ns: int,
    end_ns: int,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> BackfillReport:
    """Fetch [start_ns, end_ns) of ``symbol`` from ``feeder``'s history API into the store."""
    events = StoringEvents(vault, progress)
    try:
        feeder.request_history(symbol, start_ns, end_ns, events)
    except NotImplementedError as exc:
        raise FeedError(f"{exc}; use --feed sim, profitdll or file") from exc
    return BackfillReport(symbol, start_ns, end_ns, events.stored)
