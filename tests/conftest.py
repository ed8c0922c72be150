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


STORE_BACKENDS = ("single", "cluster")
"""What the store suites run against: the embedded server, and a local Valkey Cluster."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "store_backends: run the test's ``vault`` on every store backend (a single server and "
        "a local Valkey Cluster)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``store_backends`` (a module's ``pytestmark``) that use ``vault`` run
    once per backend: ``[single]`` and ``[cluster]``."""
    if "store_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "store_backends"
    ):
        metafunc.parametrize("store_backend", STORE_BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Valkey Cluster of 3 primaries (``tickvault cluster up``) for the session;
    its URL."""
    from tickvault.storage import localcluster

    with localcluster.running(tmp_path_factory.mktemp("cluster"), 3, 0) as state:
        yield state.url


@pytest.fixture(scope="session")
def session_cluster_vault(
    session_cluster: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Vault]:
    vault = Vault.open(session_cluster, data_dir=tmp_path_factory.mktemp("cluster-client"))
    try:
        yield vault
    finally:
        vault.close()


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """``single`` unless the test is marked ``store_backends`` (then each in turn)."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def vault(store_backend: str, request: pytest.FixtureRequest) -> Vault:
    """The session's store, emptied: the embedded server, or the local cluster for the
    ``[cluster]`` run of a test marked ``store_backends``."""
    name = "session_cluster_vault" if store_backend == "cluster" else "session_vault"
    v: Vault = request.getfixturevalue(name)
    v.client.flushdb()
    return v


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
