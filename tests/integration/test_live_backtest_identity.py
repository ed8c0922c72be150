"""Live = backtest: a simulated session through the real processes (publisher, bridge,
feature worker, model worker with a generous deadline, paper broker), then
``backtest`` over the same stored session with the same models and settings: the same
signals, orders and fills, field for field (none has a wall-clock field); and
``lookahead`` finds none of the live signals changes when its data is cut at its T."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tests.integration.test_features_live import DAY, PER_DAY, _feeder
from tests.integration.test_live import free_ports, port_env
from tests.integration.test_models_live import (
    POLICY_ENV,
    _process,
    _publish,
    _stop,
    _train_and_promote,
)
from tickvault import Vault
from tickvault.engine.backtest import backtest
from tickvault.engine.lookahead import lookahead
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.rows import FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.live.seed import seed_sessions
from tickvault.records.signals import Mode
from tickvault.transport.publisher import Publisher
from tickvault.venue.b3 import session

SYMBOL = "WINZ25"
SETTINGS = {"signal_enter": 0.01, "signal_exit": 0.0, "signal_min_confidence": 0.0,
            "signal_cooldown_s": 0.0, "signal_deadline_ms": 3_600_000.0}  # fmt: skip
"""The model worker's settings (POLICY_ENV and a generous deadline), for the backtest."""


WAIT_S = 900.0
"""Only against a hang: five processes start (each imports numpy, pandas, LightGBM) and
work through a session, which on a loaded 2-core machine takes minutes."""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _chunks(day: np.ndarray, size: int) -> list[np.ndarray]:
    """About ``size`` trades per message, never splitting one nanosecond's trades (the
    store keeps no message boundaries, so a live row of part of a nanosecond cannot be
    replayed: see docs/ml.md, "Backtests")."""
    ts = day["ts_event"]
    cuts, at = [], size
    while at < len(day):
        while at < len(day) and ts[at] == ts[at - 1]:
            at += 1
        cuts.append(at)
        at += size
    return np.split(day, cuts)


def test_live_processes_and_the_backtest_give_the_same_signals_and_fills(
    own_data_dir: object,
) -> None:
    from pathlib import Path

    data_dir = Path(str(own_data_dir))
    ports = free_ports()
    more = free_ports()
    env = {**port_env(ports), "TICKVAULT_ZMQ_FEATURES_PORT": str(more["ticks"]),
           "TICKVAULT_ZMQ_SIGNALS_PORT": str(more["book"]),
           "TICKVAULT_ZMQ_SIGNALS_REPLAY_PORT": str(more["history"]),
           "TICKVAULT_SIGNAL_DEADLINE_MS": str(3_600_000),
           "TICKVAULT_ZMQ_ORDERS_PORT": str(free_ports()["ticks"]), **POLICY_ENV}  # fmt: skip
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    day = _feeder(per_day=12_000).day_trades(SYMBOL, DAY).to_structured()
    with (
        Vault.open(data_dir=data_dir, **overrides, **SETTINGS) as vault,
        Publisher(vault.settings) as pub,
    ):
        seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
        _train_and_promote(vault, data_dir)
        bridge = _process(data_dir, env, "bridge")
        feats = _process(data_dir, env, "features", "run", "--symbols", SYMBOL)
        models = _process(data_dir, env, "ml", "run", "--symbols", SYMBOL)
        broker = _process(data_dir, env, "paper", "run", "--symbols", SYMBOL)
        store = SignalStore(vault)
        execs = ExecutionStore(vault)
        try:
            for chunk in _chunks(day, 100):
                _publish(pub, chunk)  # received now: the deadline counts from then
            pub.flush()
            last_t = int(day["ts_event"][-1]) + 1
            wait_for(lambda: (r := FeatureRows(vault).last(SYMBOL)) is not None
                     and r.name == last_t, "the feature worker")  # fmt: skip
            wait_for(lambda: store.cursor(SYMBOL).get("T") == str(last_t), "the model worker")
            last_ts = str(int(day["ts_event"][-1]))
            wait_for(lambda: execs.position(SYMBOL).get("last_trade_ts") == last_ts,
                     "the broker to apply the last trade")  # fmt: skip
            code, text = _stop(models)
            assert code == 0 and "0 deadline misses" in text, text
            code, text = _stop(broker)
            assert code == 0, text
        finally:
            models.kill()
            broker.kill()
            _stop(feats)
            _stop(bridge)
        live = store.signals(SYMBOL, 0, 2**62)
        live_orders = execs.orders(SYMBOL, 0, 2**62)
        live_fills = execs.fills(SYMBOL, 0, 2**62)
        s = session(SYMBOL, DAY)
        r = backtest(vault, SYMBOL, s.open_ns, s.close_ns + 2)
        # and the live signals, recomputed from the data cut at their T (K: their rows'
        # ts_recv), do not change
        check = lookahead(vault, SYMBOL, s.open_ns, s.close_ns + 2)
    assert len(live) > 20
    assert {sig.mode for sig in live} == {Mode.FAST, Mode.HISTORY}  # both models were used
    assert r.signals == live
    assert check.source == "stored" and check.checked == len(live)
    assert check.ok, check.changes.head()
    assert len(live_fills) > 10
    assert r.orders == live_orders and r.fills == live_fills
