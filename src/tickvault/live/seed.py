"""Seed a store with simulated past sessions, as imported history (``--seed-sessions N``).

Each session comes from the multi-day simulator (``feeds.sim.simulate_session``) and is
stored the way the B3-file import stores a file: in the historical stream, flagged
HISTORY, with ``ts_recv`` = the time of the seeding, so its knowledge time is
``ts_event`` + the feed latency (``features.known``). A session that already holds
trades of the symbol (either stream) is skipped, so seeding again is a no-op.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from tickvault.feeds.sim.generator import simulate_session
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.timeutil import now_ns
from tickvault.vault import Vault
from tickvault.venue.b3 import previous_sessions, session


@dataclass
class SeedReport:
    stored: list[dt.date] = field(default_factory=list)
    skipped: list[dt.date] = field(default_factory=list)
    trades: int = 0


def seed_sessions(
    vault: Vault,
    symbol: str,
    n: int,
    *,
    before: dt.date,
    trades_per_day: int | None = None,
    seed: int = 0,
) -> SeedReport:
    """Store the ``n`` B3 sessions of ``symbol`` before ``before`` that are not stored yet."""
    report = SeedReport()
    for day in previous_sessions(symbol, before, n):
        s = session(symbol, day)
        held = vault.range_columns(symbol, s.open_ns, s.close_ns + 1)
        if len(held["ts_event"]):
            report.skipped.append(day)
            continue
        b = simulate_session(symbol, day, trades_per_day=trades_per_day, seed=seed)
        batch = TradeBatch(
            **{
                **b.columns(),
                "ts_recv": np.full(len(b), now_ns(), dtype=np.int64),
                "flags": b.flags | np.uint8(TradeFlag.HISTORY),
            }
        )
        report.trades += vault.store_batch(symbol, batch, stream="historical")
        report.stored.append(day)
    return report
