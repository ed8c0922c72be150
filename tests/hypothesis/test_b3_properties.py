"""B3 trade files: writing trades and reading them back is exact, whatever the chunking
and whatever rows are cancelled (pure, no store)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.records.trades import TradeBatch, TradeFlag

SP = ZoneInfo("America/Sao_Paulo")


def _key(batch: TradeBatch) -> list[tuple[int, int, float, int, int, int]]:
    return sorted(
        zip(
            batch.ts_event.tolist(),
            batch.trade_id.tolist(),
            batch.price.tolist(),
            batch.qty.tolist(),
            batch.buy_agent.tolist(),
            batch.sell_agent.tolist(),
            strict=True,
        )
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 3000),
    seed=st.integers(0, 1000),
    day=st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)),
    block=st.sampled_from([300, 4096, 1 << 20]),
    cancel_fraction=st.floats(0, 0.3),
    data=st.data(),
)
def test_file_round_trip_with_cancels(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    n: int,
    seed: int,
    day: dt.date,
    block: int,
    cancel_fraction: float,
    data: st.DataObject,
) -> None:
    monkeypatch.setattr(reader, "BLOCK_BYTES", block)
    trades = generate_day("WINZ25", day, n, seed=seed)
    rng = np.random.default_rng(seed)
    victims = np.flatnonzero(rng.random(n) < cancel_fraction)
    cancels = trades.take(victims)
    cancels = TradeBatch(**{**cancels.columns(), "flags": np.full(len(cancels), TradeFlag.CANCEL,
                                                                   np.uint8)})  # fmt: skip
    path = tmp_path / f"t{data.draw(st.integers(0, 10**9))}.txt"
    both = {"WINZ25": TradeBatch.concat([trades, cancels])}
    reader.write_b3(path, b3.to_b3_table(both, SP))
    got = reader.read_b3(reader.Source(str(path), path), SP, ts_recv=time.time_ns())
    kept = np.ones(n, dtype=bool)
    kept[victims] = False
    out = got.trades["WINZ25"]
    is_cancel = (out.flags & np.uint8(TradeFlag.CANCEL)) != 0
    assert _key(out.take(~is_cancel)) == _key(trades.take(kept))
    # each cancel record carries the time of the trade it cancels
    assert _key(out.take(is_cancel)) == _key(trades.take(victims))
    assert got.cancelled == victims.size and got.unmatched_cancels == 0
    assert got.rows == n + victims.size and got.bad_rows == 0
