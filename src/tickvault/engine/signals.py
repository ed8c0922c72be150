"""The stored signals of ``signals:{SYMBOL}``, typed (``SignalStore(vault)``).

Bitemporal like trades: each signal carries the time it was made (``ts_event``),
the T of the features it used (``t_features``) and, from the store, when it was
received (``known_ns``). ``range(symbol, start, end, known_at=K)`` answers "what had
the model said by then, as known at K". See ``storage.recordstreams`` for the layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tickvault.errors import QueryError
from tickvault.records.signals import SIGNAL_DTYPE, Mode, Side, Signal
from tickvault.records.validate import check_symbol
from tickvault.storage.connection import translate
from tickvault.storage.recordstreams import RecordStream
from tickvault.timeutil import TimeLike, to_ns
from tickvault.vault import Vault

COLUMNS = ("ts_event", "t_features", "side", "strength", "confidence", "horizon_ns",
           "model_version", "mode", "known_ns")  # fmt: skip


class SignalStore:
    """Append and read signals (see the module docstring)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._rows = RecordStream(vault.client, "signals")

    @translate
    def append(self, signals: Sequence[Signal]) -> int:
        """Store ``signals`` (any symbols; one atomic call per symbol); how many."""
        by_symbol: dict[str, list[Signal]] = {}
        for s in signals:
            by_symbol.setdefault(check_symbol(s.symbol), []).append(s)
        for symbol, group in by_symbol.items():
            self._rows.append(symbol, np.array([s.to_record() for s in group], SIGNAL_DTYPE))
        return len(signals)

    @translate
    def append_decided(
        self, symbol: str, signals: Sequence[Signal], cursor: Mapping[str, Any]
    ) -> int:
        """Store ``symbol``'s ``signals`` and set the fields of its cursor hash
        ``signals:{SYMBOL}:cursor`` in one atomic call (the model worker, docs/ml.md);
        the server time of the call (ns)."""
        symbol = check_symbol(symbol)
        if any(s.symbol != symbol for s in signals):
            raise QueryError(f"append_decided({symbol!r}) got signals of another symbol")
        recs = np.array([s.to_record() for s in signals], SIGNAL_DTYPE)
        return self._rows.append_with_cursor(symbol, recs, cursor)

    def append_decided_queued(
        self, pipe: Any, symbol: str, signals: Sequence[Signal], cursor: Mapping[str, Any]
    ) -> None:
        """``append_decided`` queued on the valkey-py pipeline ``pipe`` (the inline model
        worker: in one transaction with the feature rows it decided)."""
        symbol = check_symbol(symbol)
        if any(s.symbol != symbol for s in signals):
            raise QueryError(f"append_decided({symbol!r}) got signals of another symbol")
        recs = np.array([s.to_record() for s in signals], SIGNAL_DTYPE)
        self._rows.append_with_cursor(symbol, recs, cursor, client=pipe)

    @translate
    def cursor(self, symbol: str) -> dict[str, str]:
        """The model worker's cursor hash of ``symbol`` (empty: it never decided a row)."""
        return self._rows.cursor(check_symbol(symbol))

    @translate
    def delete(self, symbol: str) -> int:
        """Delete ``symbol``'s signals and the model worker's cursor."""
        return self._rows.delete(check_symbol(symbol))

    @translate
    def signals(
        self,
        symbol: str,
        start: TimeLike,
        end: TimeLike,
        *,
        known_at: TimeLike | None = None,
    ) -> list[Signal]:
        """The signals made in [start, end) (by ``ts_event``), as known at ``known_at``."""
        recs, _ = read_window(self.vault, self._rows, symbol, start, end, known_at)
        return [Signal.from_record(symbol, r) for r in recs]

    def range(
        self,
        symbol: str,
        start: TimeLike,
        end: TimeLike,
        *,
        known_at: TimeLike | None = None,
    ) -> pd.DataFrame:
        """The same as a DataFrame (``COLUMNS``; times as int ns, side/mode as names)."""
        recs, known = read_window(self.vault, self._rows, symbol, start, end, known_at)
        return pd.DataFrame(
            {
                "ts_event": recs["ts_event"].astype(np.int64),
                "t_features": recs["t_features"].astype(np.int64),
                "side": [Side(int(v)).name for v in recs["side"]],
                "strength": recs["strength"].astype(np.float64),
                "confidence": recs["confidence"].astype(np.float64),
                "horizon_ns": recs["horizon_ns"].astype(np.int64),
                "model_version": [bytes(v).rstrip(b"\0").decode() for v in recs["model_version"]],
                "mode": [Mode(int(v)).name for v in recs["mode"]],
                "known_ns": known,
            },
            columns=list(COLUMNS),
        )


@translate
def read_window(
    vault: Vault,
    stream: RecordStream,
    symbol: str,
    start: TimeLike,
    end: TimeLike,
    known_at: TimeLike | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(records in [start, end) by their time field, receive times), as known at
    ``known_at``; times as anywhere in the API (naive = exchange time)."""
    tz = vault.settings.tz
    start_ns, end_ns = to_ns(start, tz, name="start"), to_ns(end, tz, name="end")
    if start_ns >= end_ns:
        raise QueryError(f"start ({start!r}) must be before end ({end!r})")
    k = None if known_at is None else to_ns(known_at, tz, name="known_at")
    return stream.read(check_symbol(symbol), start_ns, end_ns, k)
