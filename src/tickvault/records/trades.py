"""The trade record: field names, dtypes, flags and a columnar batch type.

The names of ``TRADE_FIELDS`` are the columns users see. Times are int64
nanoseconds since the Unix epoch, UTC. Pure logic only: no I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt


class TradeFlag(enum.IntFlag):
    """Per-record flags. A correction carries the trade_id and ts_event of the trade it corrects."""

    NONE = 0
    EDIT = 1
    """Replaces the earlier trade with the same (trading date, trade_id)."""
    CANCEL = 2
    """Removes the trade with the same (trading date, trade_id)."""
    HISTORY = 4
    """Came from a history request or a file import, not from the live feed."""


class TradeType(enum.IntEnum):
    """ProfitDLL ``tradeType`` codes."""

    CROSS = 1
    AGGRESSOR_BUY = 2
    AGGRESSOR_SELL = 3
    AUCTION = 4
    SURVEILLANCE = 5
    EXPIT = 6
    OPTIONS_EXERCISE = 7
    OVER_THE_COUNTER = 8
    DERIVATIVE_TERM = 9
    INDEX = 10
    BTC = 11
    ON_BEHALF = 12
    RLP = 13
    UNKNOWN = 32


TRADE_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("trade_id", "<i8"),
        ("price", "<f8"),
        ("qty", "<i8"),
        ("volume", "<f8"),
        ("buy_agent", "<i4"),
        ("sell_agent", "<i4"),
        ("trade_type", "u1"),
        ("flags", "u1"),
    ]
)
"""numpy structured dtype of one trade record (the public row layout)."""

TRADE_FIELDS: tuple[str, ...] = tuple(TRADE_DTYPE.names or ())


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade, for callers who build records one at a time."""

    ts_event: int
    trade_id: int
    price: float
    qty: int
    volume: float = 0.0
    buy_agent: int = 0
    sell_agent: int = 0
    trade_type: int = TradeType.UNKNOWN
    flags: int = TradeFlag.NONE
    ts_recv: int | None = None
    """None means 'now' at write time."""


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Trades as one numpy array per field, all of the same length (a column batch)."""

    ts_event: npt.NDArray[np.int64]
    ts_recv: npt.NDArray[np.int64]
    trade_id: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    qty: npt.NDArray[np.int64]
    volume: npt.NDArray[np.float64]
    buy_agent: npt.NDArray[np.int32]
    sell_agent: npt.NDArray[np.int32]
    trade_type: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def items(self) -> Iterator[tuple[str, npt.NDArray[Any]]]:
        return iter(self.columns().items())

    def take(self, index: npt.NDArray[np.intp] | slice) -> TradeBatch:
        """Rows selected by an index array, a boolean mask or a slice."""
        return TradeBatch(**{name: col[index] for name, col in self.items()})

    def to_structured(self) -> npt.NDArray[np.void]:
        out = np.empty(len(self), dtype=TRADE_DTYPE)
        for name, col in self.items():
            out[name] = col
        return out

    @classmethod
    def empty(cls) -> TradeBatch:
        return cls(**{name: np.empty(0, TRADE_DTYPE[name]) for name in TRADE_FIELDS})

    @classmethod
    def concat(cls, batches: list[TradeBatch]) -> TradeBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            **{name: np.concatenate([getattr(b, name) for b in batches]) for name in TRADE_FIELDS}
        )

    @classmethod
    def from_structured(cls, arr: npt.NDArray[np.void]) -> TradeBatch:
        return cls(**{name: np.ascontiguousarray(arr[name]) for name in TRADE_FIELDS})
