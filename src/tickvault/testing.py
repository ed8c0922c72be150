"""Hypothesis strategies for tickvault records (for tickvault's tests and for users').

Needs ``hypothesis`` (a dev dependency); importing this module without it fails.
"""

from __future__ import annotations

import numpy as np

from hypothesis import strategies as st
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.timeutil import NS_PER_MS, NS_PER_S

BASE_NS = 1_762_171_200 * NS_PER_S  # 2025-11-03 12:00 UTC, 09:00 in Sao Paulo


@st.composite
def trade_batches(
    draw: st.DrawFn,
    *,
    min_size: int = 1,
    max_size: int = 200,
    span_ns: int = 3 * 86_400 * NS_PER_S,
    unique_ids: bool = False,
    flags: bool = True,
) -> TradeBatch:
    """Valid batches: clustered times (many per ms), tick-grid or arbitrary prices,
    edits and cancels when ``flags``; repeated trade ids share their event time."""
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ms_resolution = draw(st.booleans())
    offsets = rng.integers(0, span_ns, size=n)
    if ms_resolution:
        offsets = offsets // NS_PER_MS * NS_PER_MS
    # Bursts: many trades at one instant.
    burst = rng.random(n) < 0.5
    offsets[burst] = offsets[0]
    ts_event = BASE_NS + offsets
    ts_recv = ts_event + rng.integers(0, 50 * NS_PER_MS, size=n)
    if unique_ids:
        trade_id = rng.permutation(n).astype(np.int64) + draw(st.integers(0, 10**9))
    else:
        trade_id = rng.integers(0, max(n // 2, 1) + 1, size=n).astype(np.int64)
        # Repeats, edits and cancels of a trade carry its event time (a trade keeps it).
        _, first, inverse = np.unique(trade_id, return_index=True, return_inverse=True)
        ts_event = ts_event[first[inverse]]
        ts_recv = np.maximum(ts_recv, ts_event)
    price_kind = draw(st.sampled_from(["tick5", "cents", "raw"]))
    if price_kind == "tick5":
        price = rng.integers(20_000, 30_000, size=n) * 5.0
    elif price_kind == "cents":
        price = rng.integers(1, 10**7, size=n) / 100.0
    else:
        price = rng.random(n) * 1000 + 1e-3
    qty = rng.integers(0, 10**6, size=n).astype(np.int64)
    vol_kind = draw(st.sampled_from(["derived", "zero", "cents", "raw"]))
    if vol_kind == "derived":
        volume = price * qty * 0.2
    elif vol_kind == "zero":
        volume = np.zeros(n)
    elif vol_kind == "cents":
        volume = rng.integers(0, 10**9, size=n) / 100.0
    else:
        volume = rng.random(n) * 1e6
    flag_values = np.zeros(n, dtype=np.uint8)
    if flags:
        choice = rng.choice(
            [0, int(TradeFlag.EDIT), int(TradeFlag.CANCEL)], size=n, p=[0.8, 0.1, 0.1]
        )
        flag_values = choice.astype(np.uint8)
    return TradeBatch(
        ts_event=ts_event.astype(np.int64),
        ts_recv=ts_recv.astype(np.int64),
        trade_id=trade_id,
        price=price.astype(np.float64),
        qty=qty,
        volume=volume.astype(np.float64),
        buy_agent=rng.integers(0, 5000, size=n).astype(np.int32),
        sell_agent=rng.integers(-5, 5000, size=n).astype(np.int32),
        trade_type=rng.choice([1, 2, 3, 4, 32], size=n).astype(np.uint8),
        flags=flag_values,
    )
