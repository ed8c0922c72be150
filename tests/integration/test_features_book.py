"""Book features from the stored offer book: FeatureEngine against the book the store
rebuilds (``Vault.book``) at T, in ``at`` and in frames."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from tickvault import Vault
from tickvault.engine import FeatureEngine
from tickvault.feeds.sim.generator import generate_day
from tickvault.records.book import ADD, ASK, BID, BOOK_DTYPE, EDIT, FULL_BOOK
from tickvault.venue import b3

SYMBOL = "WINZ25"
DAY = dt.date(2025, 11, 25)
MIN = 60_000_000_000


def _updates(open_ns: int, n: int, seed: int) -> np.ndarray:
    """A full book per side at the open, then adds and edits of the last offer."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n + 10, dtype=BOOK_DTYPE)
    for i in range(5):  # full book runs: positions 4..0, one ts per side
        out[i] = (open_ns - MIN, open_ns - MIN, 100 + i, 125_000 - 5 * i, 10 + i, 1, 4 - i, BID,
                  FULL_BOOK)  # fmt: skip
        out[5 + i] = (open_ns - MIN + 1, open_ns - MIN + 1, 200 + i, 125_005 + 5 * i, 20 + i, 1,
                      4 - i, ASK, FULL_BOOK)  # fmt: skip
    ts = np.sort(rng.integers(open_ns, open_ns + 120 * MIN, size=n))
    for j in range(n):
        side = BID if rng.random() < 0.5 else ASK
        px = 125_000 + 5 * int(rng.integers(-6, 7)) + (5 if side == ASK else 0)
        action = ADD if rng.random() < 0.6 else EDIT
        out[10 + j] = (ts[j], ts[j], 1000 + j, px, int(rng.integers(0, 40)), 1, 0, side, action)
    return out


@pytest.fixture
def with_book(vault: Vault) -> tuple[Vault, np.ndarray]:
    s = b3.session(SYMBOL, DAY)
    vault.store_batch(SYMBOL, generate_day(SYMBOL, DAY, 2000, seed=5))
    updates = _updates(s.open_ns, 400, seed=9)
    vault.write_book(SYMBOL, updates)
    return vault, updates


def _reference(vault: Vault, t: int) -> dict[str, float]:
    """spread, imbalance, microprice from the book the store rebuilds at T - 1 ns
    (every update with ts_event < T; here ts_recv == ts_event)."""
    view = vault.book(SYMBOL, t - 1, depth=None)
    bids, asks = view.levels(depth=1)
    if bids.empty or asks.empty:
        return {"spread": math.nan, "book_imbalance": math.nan, "microprice": math.nan}
    bp, bq = float(bids["price"].iloc[0]), float(bids["qty"].iloc[0])
    ap, aq = float(asks["price"].iloc[0]), float(asks["qty"].iloc[0])
    return {
        "spread": ap - bp,
        "book_imbalance": (bq - aq) / (bq + aq),
        "microprice": (ap * bq + bp * aq) / (bq + aq),
    }


def test_book_features_at_t_equal_the_stored_book_rebuilt_at_t(
    with_book: tuple[Vault, np.ndarray],
) -> None:
    vault, updates = with_book
    fe = FeatureEngine(vault)
    s = b3.session(SYMBOL, DAY)
    mid = int(updates["ts_event"][60])
    times = [s.open_ns + 1, s.open_ns + 7 * MIN + 11, mid, mid + 1, s.open_ns + 119 * MIN,
             s.open_ns + 300 * MIN]  # fmt: skip
    seen = set()
    for t in times:
        row, ref = fe.at(SYMBOL, t), _reference(vault, t)
        for k, v in ref.items():
            assert row[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (t, k)
        seen.add(row["spread"])
    assert len(seen) > 1  # the book moved between the times


def test_book_features_in_a_frame_equal_those_at_each_step(
    with_book: tuple[Vault, np.ndarray],
) -> None:
    vault, _ = with_book
    fe = FeatureEngine(vault)
    s = b3.session(SYMBOL, DAY)
    frame = fe.frame(SYMBOL, s.open_ns, s.open_ns + 150 * MIN, every="13min", labels=())
    assert frame["spread"].notna().all()
    for t, row in zip(
        pd.DatetimeIndex(frame.index).asi8.tolist(), frame.to_dict("records"), strict=True
    ):
        ref = _reference(vault, t)
        for k in ("spread", "book_imbalance", "microprice"):
            assert row[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), (t, k)


def test_book_features_without_a_stored_book_are_nan(vault: Vault) -> None:
    vault.store_batch(SYMBOL, generate_day(SYMBOL, DAY, 500, seed=1))
    row = FeatureEngine(vault).at(SYMBOL, b3.session(SYMBOL, DAY).open_ns + 60 * MIN)
    assert all(math.isnan(float(row[k])) for k in ("spread", "book_imbalance", "microprice"))  # type: ignore[arg-type]
