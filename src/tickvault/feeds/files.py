"""``FileFeeder``: trade files (B3 "negócios", mapped CSV/Parquet) replayed as a live feed.

The files are read once (``files.load.read_file``: same parser, same errors as
``tickvault import``), cancels applied, and the trades of all symbols merged in
event order. ``run`` delivers them at the chosen pace with their original
``ts_event`` and a fresh ``ts_recv``; ``request_history`` answers from the same
trades, so the file feeder can also backfill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from tickvault.feeds.base import Feeder, FeedEvents, Pacer, merged_bursts
from tickvault.files import reader
from tickvault.files.load import ImportOptions, read_file
from tickvault.records.trades import TradeBatch, TradeFlag

_HISTORY_CHUNK = 65_536


class FileFeeder(Feeder):
    name = "file"

    def __init__(
        self,
        paths: Sequence[Path],
        tz: ZoneInfo,
        *,
        speed: float | None = 1.0,
        options: ImportOptions | None = None,
    ):
        self.pacer_speed = speed
        Pacer(speed)  # checks it
        self.paths = list(paths)
        parts: dict[str, list[TradeBatch]] = {}
        self.bad_rows = 0
        for path in self.paths:
            for src in reader.sources(path):
                parsed = read_file(src, options or ImportOptions(), tz)
                self.bad_rows += parsed.bad_rows
                for symbol, batch in parsed.trades.items():
                    parts.setdefault(symbol, []).append(batch)
        self.trades: dict[str, npt.NDArray[np.void]] = {}
        for symbol, batches in sorted(parts.items()):
            arr = TradeBatch.concat(batches).to_structured()
            arr = arr[(arr["flags"] & np.uint8(TradeFlag.CANCEL)) == 0]
            arr["flags"] &= ~np.uint8(TradeFlag.HISTORY)  # replayed as live trades
            self.trades[symbol] = arr[np.lexsort((arr["trade_id"], arr["ts_event"]))]
        self.symbols = tuple(self.trades)
        self.delivered = 0

    @property
    def total(self) -> int:
        return sum(len(a) for a in self.trades.values())

    def run(self, events: FeedEvents, stop: threading.Event) -> None:
        events.on_state(0, 0)
        events.on_state(2, 4)
        pacer = Pacer(self.pacer_speed)
        for symbol, trades in merged_bursts(self.symbols, list(self.trades.values())):
            if not pacer.wait(int(trades["ts_event"][0]), stop):
                break
            out = trades.copy()
            out["ts_recv"] = time.time_ns()
            events.on_trade(symbol, out)
            self.delivered += len(out)
        events.on_state(2, 0)

    def request_history(self, symbol: str, start_ns: int, end_ns: int, events: FeedEvents) -> None:
        arr = self.trades.get(symbol.upper())
        if arr is not None:
            arr = arr[(arr["ts_event"] >= start_ns) & (arr["ts_event"] < end_ns)]
            for lo in range(0, len(arr), _HISTORY_CHUNK):
                part = arr[lo : lo + _HISTORY_CHUNK].copy()
                part["ts_recv"] = time.time_ns()
                events.on_history_trade(symbol.upper(), part)
                events.on_progress(symbol.upper(), min(100, (lo + len(part)) * 100 // len(arr)))
        events.on_progress(symbol.upper(), 100)
