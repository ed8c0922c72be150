"""Store contents for the dashboard's tests and screenshot: simulated sessions of trades,
signals on them, paper fills, a quarantined message and a bridge's status report."""

from __future__ import annotations

import numpy as np

from tickvault import TradeBatch, Vault
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.signals import SignalStore
from tickvault.feeds.sim.generator import generate_trades
from tickvault.records.orders import Fill
from tickvault.records.signals import Mode, Side, Signal

SYMBOL = "WINZ25"


def seed(vault: Vault, symbol: str = SYMBOL, *, sessions: int = 6, per_day: int = 3000,
         signals: int = 8) -> TradeBatch:  # fmt: skip
    """``sessions`` simulated sessions of ``symbol`` (ts_recv just after each trade, as
    live), ``signals`` signals spread over the last session with a fill after each."""
    batch = generate_trades(symbol, sessions * per_day, trades_per_day=per_day, seed=3)
    vault.write_trades(symbol, batch.to_structured())
    last_day = batch.ts_event[-per_day:]
    picks = np.linspace(0, per_day - 2, signals).astype(int)
    sigs, fills = [], []
    for i, k in enumerate(picks.tolist()):
        t = int(last_day[k])
        side = Side.LONG if i % 2 == 0 else Side.SHORT
        sigs.append(Signal(symbol, t, t, side, 0.5 if side is Side.LONG else -0.5, 0.7,
                           60_000_000_000, "m1", Mode.FAST))  # fmt: skip
        j = len(batch) - per_day + k + 1
        qty = 1 if i == 0 else (2 if side is Side.LONG else -2)
        fills.append(Fill(i + 1, symbol, int(batch.ts_event[j]), int(batch.trade_id[j]),
                          float(batch.price[j]), qty, 0.25))  # fmt: skip
    SignalStore(vault).append(sigs)
    ExecutionStore(vault).append(fills)
    vault.quarantine("decode", "frame 1: bad magic (test)", [b"x", b"y"])
    return batch
