"""Order and fill records (pure): what the paper broker (or a live router) did.

``ORDER_DTYPE`` and ``FILL_DTYPE`` are the stored and published layouts; ``Order``
and ``Fill`` the typed forms. Quantities are signed contracts (> 0 buys, < 0 sells),
prices in the contract's points, fees in BRL, times int ns UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class OrderReason(enum.IntEnum):
    SIGNAL = 0
    KILL_SWITCH = 1
    """The daily-loss kill switch flattening the position."""


ORDER_DTYPE = np.dtype(
    [("ts_placed", "<i8"), ("order_id", "<i8"), ("qty", "<i8"), ("signal_ts", "<i8"),
     ("reason", "u1")]
)  # fmt: skip
"""One order: when it was placed, its id, signed qty, the ts_event of the signal it
came from (-1: none), the reason."""

FILL_DTYPE = np.dtype(
    [("ts_event", "<i8"), ("order_id", "<i8"), ("trade_id", "<i8"), ("price", "<f8"),
     ("qty", "<i8"), ("fee", "<f8")]
)  # fmt: skip
"""One fill: the ts_event and trade id of the trade that filled it, the order id, the
fill price (slippage included), signed qty, the fee (BRL)."""


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int
    symbol: str
    ts_placed: int
    """When the order was placed (the signal's publish time), ns UTC."""
    qty: int
    """Signed: > 0 buys, < 0 sells."""
    reason: OrderReason
    signal_ts: int | None

    def to_record(self) -> np.void:
        out = np.zeros(1, dtype=ORDER_DTYPE)
        sig = -1 if self.signal_ts is None else self.signal_ts
        out[0] = (self.ts_placed, self.order_id, self.qty, sig, int(self.reason))
        rec: np.void = out[0]
        return rec

    @classmethod
    def from_record(cls, symbol: str, rec: np.void) -> Order:
        sig = int(rec["signal_ts"])
        return cls(int(rec["order_id"]), symbol, int(rec["ts_placed"]), int(rec["qty"]),
                   OrderReason(int(rec["reason"])), None if sig < 0 else sig)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: int
    symbol: str
    ts_event: int
    """ts_event of the trade that filled it."""
    trade_id: int
    price: float
    """The trade's price moved slippage_ticks against the order."""
    qty: int
    fee: float

    def to_record(self) -> np.void:
        out = np.zeros(1, dtype=FILL_DTYPE)
        out[0] = (self.ts_event, self.order_id, self.trade_id, self.price, self.qty, self.fee)
        rec: np.void = out[0]
        return rec

    @classmethod
    def from_record(cls, symbol: str, rec: np.void) -> Fill:
        return cls(int(rec["order_id"]), symbol, int(rec["ts_event"]), int(rec["trade_id"]),
                   float(rec["price"]), int(rec["qty"]), float(rec["fee"]))  # fmt: skip
