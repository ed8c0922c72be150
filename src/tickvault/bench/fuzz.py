"""Fuzzing the wire and the file readers (issue 17 item 3)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

CHECKSUM_FIELDS = ("trade_id", "price", "qty")


def trades_checksum(trades: Mapping[str, Any] | Any) -> str:
    """An order-independent checksum over (trade_id, price, qty) of ``trades`` (a
    structured array or a mapping of columns, as ``Vault.range_columns`` returns): the
    SHA-256 of the sorted rows. Equal for the same multiset of trades."""
    cols = [np.asarray(trades[f]) for f in CHECKSUM_FIELDS]
    trade_id = cols[0].astype(np.int64)
    price = cols[1].astype(np.float64)
    qty = cols[2].astype(np.int64)
    order = np.lexsort((qty, price, trade_id))
    h = hashlib.sha256()
    for col in (trade_id[order], price[order], qty[order]):
        h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()
