"""The live feature rows of ``features:{SYMBOL}``, typed: what the columns are, and the
bitemporal reads (``FeatureRows(vault)``).

A row describes a time ``T`` and carries when it was computed:

- ``T`` (int64): the time the row describes (ns UTC). After the last trade of event
  time e that the worker has seen, T = e + 1 ns: the row covers every trade with
  ts_event < T;
- ``computed_ns`` (int64): wall time when the worker computed it (its write cycle);
- ``last_trade_id`` (int64): the trade id of the last trade the row includes;
- ``ts_recv`` (int64): when that last trade was received (its ``ts_recv``, ns UTC):
  the model worker's deadline for the row counts from it (docs/ml.md);
- the intraday set's features (float64), ``FeatureSet().names`` in order;
- the history features' numbers (float64), ``volume_pattern_similarity`` ...
  ``volatility_regime_score``;
- ``volatility_regime`` (int8 code: -1 none (score NaN), 0 ``low``, 1 ``normal``,
  2 ``high``); reads give the label.

Rows for one T computed twice (a write cycle ended in the middle of one nanosecond's
trades, so a first row covered only part of them; or a restart) are both kept: the
later one supersedes. ``range(..., known_at=K)`` reads the rows with computed_ns <= K
and, per T, the latest of those; without ``known_at`` the latest of all.

The schema hash covers the column names and dtypes, each feature's version and the
history parameters, so a reader knows what the columns are and a worker with another
feature set is refused (``FeatureSchemaError``) instead of mixing rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from tickvault.errors import QueryError
from tickvault.features import FeatureSet, HistoryParams
from tickvault.features.stream import HISTORY_NUMBERS, REGIME_CODES
from tickvault.records.validate import check_symbol
from tickvault.storage.connection import translate
from tickvault.storage.featurerows import FeatureRowStore, FeatureSchemaError
from tickvault.timeutil import TimeLike, to_ns
from tickvault.vault import Vault

REGIME_LABELS = {code: label for label, code in REGIME_CODES.items()}
META_COLUMNS = (("T", "int64"), ("computed_ns", "int64"), ("last_trade_id", "int64"),
                ("ts_recv", "int64"))  # fmt: skip

__all__ = ["HISTORY_NUMBERS", "REGIME_CODES", "FeatureRows", "FeatureSchemaError", "RowSchema"]


@dataclasses.dataclass(frozen=True)
class RowSchema:
    """The columns of the rows of one feature set and history parameters, and their hash."""

    columns: tuple[tuple[str, str], ...]
    feature_names: tuple[str, ...]
    """Every feature column (intraday, history numbers, then ``volatility_regime``)."""
    hash: str

    @classmethod
    def of(cls, feature_set: FeatureSet, params: HistoryParams | None = None) -> RowSchema:
        p = params or HistoryParams()
        intraday = tuple((f.name, "float64") for f in feature_set.features)
        history = tuple((n, "float64") for n in HISTORY_NUMBERS)
        columns = (*META_COLUMNS, *intraday, *history, ("volatility_regime", "int8"))
        described = {
            "columns": columns,
            "versions": {f.name: f.version for f in feature_set.features},
            "windows": {f.name: list(f.windows_ns) for f in feature_set.features},
            "large_min_qty": feature_set.large_min_qty,
            "history": dataclasses.asdict(p),
            "history_version": 1,
        }
        digest = hashlib.sha256(orjson.dumps(described, option=orjson.OPT_SORT_KEYS))
        names = tuple(c[0] for c in columns[len(META_COLUMNS) :])
        return cls(columns, names, digest.hexdigest()[:16])


class FeatureRows:
    """Typed access to the live feature rows of a Vault (see the module docstring)."""

    def __init__(
        self,
        vault: Vault,
        feature_set: FeatureSet | None = None,
        params: HistoryParams | None = None,
    ) -> None:
        self.vault = vault
        self.feature_set = feature_set or FeatureSet()
        self.schema = RowSchema.of(self.feature_set, params)
        self._store = FeatureRowStore(vault.client)

    # ------------------------------------------------------------------ writes
    @translate
    def check_schema(self, symbol: str) -> None:
        """FeatureSchemaError when ``symbol``'s stored rows are of another schema."""
        stored = self._store.schema(check_symbol(symbol))
        if stored is not None and stored[0] != self.schema.hash:
            raise FeatureSchemaError(
                f"features:{{{symbol}}} holds rows of feature schema {stored[0]} "
                f"(columns {', '.join(c for c, _ in stored[1][len(META_COLUMNS) :])}), this "
                f"worker's is {self.schema.hash}: another feature set, versions or history "
                "parameters. Run with the feature set those rows were computed with, or "
                "delete them (tickvault features run --reset) to start over"
            )

    @translate
    def append(
        self, symbol: str, values: Mapping[str, npt.NDArray[Any]], cursor: Mapping[str, Any]
    ) -> str:
        """Append one block of rows (the arrays of every column) and move the cursor."""
        return self._store.append(check_symbol(symbol), self.schema.hash, self.schema.columns,
                                  values, t_column="T", cursor=cursor)  # fmt: skip

    def append_queued(
        self,
        pipe: Any,
        symbol: str,
        values: Mapping[str, npt.NDArray[Any]],
        cursor: Mapping[str, Any],
    ) -> Callable[[Any], str]:
        """``append`` queued on the valkey-py pipeline ``pipe`` (one round trip with the
        other writes queued there); returns the check of its reply (the entry id, or
        FeatureSchemaError as ``append`` raises it)."""
        symbol = check_symbol(symbol)
        schema = self.schema.hash
        self._store.append(symbol, schema, self.schema.columns, values, t_column="T",
                           cursor=cursor, client=pipe)  # fmt: skip
        return lambda reply: self._store.check_reply(symbol, schema, reply)

    @translate
    def cursor(self, symbol: str) -> dict[str, str]:
        """The worker's stored position for ``symbol`` (empty when it never wrote)."""
        return self._store.cursor(check_symbol(symbol))

    @translate
    def delete(self, symbol: str) -> int:
        """Delete ``symbol``'s rows, schema and worker cursor."""
        return self._store.delete(check_symbol(symbol))

    # ------------------------------------------------------------------ reads
    @translate
    def range(
        self,
        symbol: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        known_at: TimeLike | None = None,
        versions: bool = False,
    ) -> pd.DataFrame:
        """Rows with start <= T < end, one per T: the latest computed by ``known_at``
        (computed_ns <= known_at; default: all). ``versions=True``: every stored row,
        superseded ones included, in write order. Index ``T`` (int ns); an unknown
        symbol gives an empty frame."""
        symbol = check_symbol(symbol)
        tz = self.vault.settings.tz
        s = -(2**62) if start is None else to_ns(start, tz, name="start")
        e = 2**62 if end is None else to_ns(end, tz, name="end")
        if s > e:
            raise QueryError(f"start {start} is after end {end}")
        columns, blocks = self._store.read(symbol, s, e)
        if not columns:
            columns = list(self.schema.columns)
        if blocks:
            cols = {n: np.concatenate([b[n] for b in blocks]) for n, _ in columns}
        else:
            cols = {n: np.zeros(0, d) for n, d in columns}
        t = cols["T"]
        keep = (t >= s) & (t < e)
        if known_at is not None:
            keep &= cols["computed_ns"] <= to_ns(known_at, tz, name="known_at")
        idx = np.flatnonzero(keep)
        if not versions and idx.size:
            # per T the latest computed (stable: on a tie the later written)
            order = idx[np.lexsort((np.arange(idx.size), cols["computed_ns"][idx], t[idx]))]
            last = np.ones(order.size, dtype=bool)
            last[:-1] = t[order][1:] != t[order][:-1]
            idx = order[last]
        return self._frame(cols, idx)

    @translate
    def last(self, symbol: str) -> pd.Series | None:
        """The latest row written for ``symbol`` (None: no row)."""
        _columns, block = self._store.last_block(check_symbol(symbol))
        if block is None:
            return None
        frame = self._frame(block, np.array([len(block["T"]) - 1]))
        return frame.iloc[-1]

    @staticmethod
    def _frame(cols: Mapping[str, npt.NDArray[Any]], idx: npt.NDArray[np.intp]) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for name, col in cols.items():
            if name == "T":
                continue
            if name == "volatility_regime":
                labels = np.empty(idx.size, dtype=object)
                labels[:] = [REGIME_LABELS.get(int(c)) for c in col[idx]]
                data[name] = labels
            else:
                data[name] = col[idx]
        return pd.DataFrame(data, index=pd.Index(cols["T"][idx], name="T"))
