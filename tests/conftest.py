"""Shared fixtures: a real embedded Valkey server per test session, strategies, helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tickvault import TradeBatch, Vault
from tickvault.feeds.sim.generator import generate_trades
from tickvault.transport.endpoints import Endpoints

# Tests must not pick up the developer's own settings.
for _key in [k for k in os.environ if k.startswith("TICKVAULT_")]:
    del os.environ[_key]


@pytest.fixture(scope="session")
def session_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    data_dir = tmp_path_factory.mktemp("valkey")
    vault = Vault.open(data_dir=data_dir)
    try:
        yield vault
    finally:
        vault.close()
    # The session started the embedded server itself, so closing stopped it.
    assert not (data_dir / "tickvault-server.json").exists()


@pytest.fixture
def vault(session_vault: Vault) -> Vault:
    """The session's store, emptied."""
    session_vault.client.flushdb()
    return session_vault


@pytest.fixture
def endpoints(tmp_path: Path) -> Endpoints:
    """ipc endpoints of a publisher private to the test."""
    return Endpoints.ipc(str(tmp_path))


@pytest.fixture
def own_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose embedded server is stopped after the test whatever happens."""
    from tickvault.storage.server import stop_server

    data_dir = tmp_path / "valkey"
    try:
        yield data_dir
    finally:
        stop_server(data_dir)


def sim_trades(n: int, symbol: str = "WINZ25", seed: int = 1, days: int = 2) -> TradeBatch:
    """``n`` simulated trades over ``days`` sessions (trade ids restart each session)."""
    return generate_trades(symbol, n, seed=seed, trades_per_day=max(-(-n // days), 1))


def frame_equals_batch(frame: object, batch: TradeBatch) -> None:
    """Assert a range() frame holds exactly ``batch`` (sorted by ts_event, trade_id)."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    order = np.lexsort((batch.trade_id, batch.ts_event))
    expected = batch.take(order)
    assert len(frame) == len(expected)
    np.testing.assert_array_equal(frame.index.asi8, expected.ts_event)
    np.testing.assert_array_equal(pd.DatetimeIndex(frame["ts_recv"]).asi8, expected.ts_recv)
    for name in (
        "trade_id",
        "price",
        "qty",
        "volume",
        "buy_agent",
        "sell_agent",
        "trade_type",
        "flags",
    ):
        np.testing.assert_array_equal(frame[name].to_numpy(), getattr(expected, name), name)
