"""Decoded trade columns as a pandas DataFrame or an Arrow table, sharing memory where
the types allow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from tickvault.records.trades import TRADE_FIELDS
from tickvault.storage.resolve import Columns

if TYPE_CHECKING:
    import pyarrow as pa

_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def to_frame(cols: Columns) -> pd.DataFrame:
    """Columns as a DataFrame indexed by ts_event (tz-aware UTC)."""
    index = pd.DatetimeIndex(
        cols["ts_event"].view("M8[ns]"), dtype=_UTC_NS, name="ts_event", copy=False
    )
    data: dict[str, Any] = {}
    for name in TRADE_FIELDS[1:]:
        col = cols[name]
        if name == "ts_recv":
            data[name] = pd.DatetimeIndex(col.view("M8[ns]"), dtype=_UTC_NS, copy=False)
        else:
            data[name] = col
    return pd.DataFrame(data, index=index, copy=False)


def to_arrow(cols: Columns) -> pa.Table:
    import pyarrow as pa

    arrays = []
    for name in TRADE_FIELDS:
        col = cols[name]
        if name in ("ts_event", "ts_recv"):
            arrays.append(pa.array(col.view("M8[ns]"), type=pa.timestamp("ns", tz="UTC")))
        else:
            arrays.append(pa.array(col))
    return pa.Table.from_arrays(arrays, names=list(TRADE_FIELDS))
