"""The inline model worker (``tickvault features run --models``): the feature worker's
compute thread decides each cycle's rows and stores them with the decisions in one
transaction. Real ZeroMQ, the real embedded Valkey, real models and real processes:
the signals are those of a backtest of the stored rows, and a kill -9 of the one
process loses no signal and stores none twice."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.integration.test_features_live import DAY, PER_DAY, _feeder
from tests.integration.test_live import free_ports, port_env, wait_for
from tests.integration.test_models_live import (
    GENEROUS,
    POLICY,
    POLICY_ENV,
    SYMBOL,
    _Collect,
    _expected,
    _last_row,
    _process,
    _publish,
    _stop,
    _stored,
    _train_and_promote,
)
from tickvault import Vault
from tickvault.engine.rows import FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.live.features import FeatureWorker
from tickvault.live.models import ModelWorker
from tickvault.live.pipeline import Pipeline
from tickvault.live.seed import seed_sessions
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind


def test_inline_worker_stores_rows_with_their_decisions_and_publishes_the_backtest_signals(
    vault: Vault, endpoints: Endpoints, tmp_path: Path
) -> None:
    seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
    _train_and_promote(vault, vault.settings.data_dir)
    sig_eps = Endpoints.ipc(str(tmp_path / "sig"))
    (tmp_path / "sig").mkdir()
    live = _Collect()
    models = ModelWorker(vault, [SYMBOL], endpoints=sig_eps, params=GENEROUS, policy=POLICY,
                         inline=True)  # fmt: skip
    features = FeatureWorker(vault, [SYMBOL], endpoints=[endpoints],
                             publish_endpoint=f"ipc://{tmp_path}/features.sock",
                             on_rows=models.on_columns)  # fmt: skip
    sub = Subscriber(vault.settings, handler=live, endpoints=[sig_eps], kinds=(Kind.SIGNAL,),
                     symbols=[SYMBOL])  # fmt: skip
    try:
        models.start_inline()
        features.start()
        sub.start()
        wait_for(features.ready.is_set, "the feature worker")
        pipe = Pipeline(vault, _feeder(), endpoints=endpoints)
        wait_for(lambda: pipe.publisher.subscribers() >= 1, "the feature worker to connect")
        pipe.start()
        wait_for(lambda: not pipe.feed.running, "the feed to end")
        assert pipe.stop()
        wait_for(lambda: features.idle() and _last_row(vault)[0] > 0, "the last rows")
        wait_for(lambda: models.position(SYMBOL) == _last_row(vault), "the decisions")
        wait_for(lambda: len(live.got) >= len(_stored(vault)), "the published signals")
    finally:
        sub.close()
        features.close()
        models.close()
    rows = FeatureRows(vault).range(SYMBOL, versions=True)
    stats = models.stats(SYMBOL)
    assert stats["rows"] == len(rows) > 500 and stats["skipped"] == 0
    stored = _stored(vault)
    expected = _expected(vault, vault.settings.data_dir, GENEROUS)
    assert len(expected) > 10 and stored == expected
    assert [sig for _, sig in live.got] == stored and not live.gaps
    # the rows' cursor and the decisions' cursor were written together
    cursor = SignalStore(vault).cursor(SYMBOL)
    assert (int(cursor["T"]), int(cursor["tid"])) == _last_row(vault)
    assert int(cursor["rows"]) == len(rows)


def test_inline_worker_killed_and_restarted_loses_no_signal_and_stores_none_twice(
    own_data_dir: Path,
) -> None:
    from tickvault.transport.publisher import Publisher

    ports = free_ports()
    more = free_ports()
    env = {**port_env(ports), "TICKVAULT_ZMQ_FEATURES_PORT": str(more["ticks"]),
           "TICKVAULT_ZMQ_SIGNALS_PORT": str(more["book"]),
           "TICKVAULT_ZMQ_SIGNALS_REPLAY_PORT": str(more["history"]),
           "TICKVAULT_SIGNAL_DEADLINE_MS": str(3_600_000), **POLICY_ENV}  # fmt: skip
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    day = _feeder(per_day=12_000).day_trades(SYMBOL, DAY).to_structured()
    args = ("features", "run", "--symbols", SYMBOL, "--models")
    with Vault.open(data_dir=own_data_dir, **overrides) as vault, Publisher(vault.settings) as pub:
        seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
        _train_and_promote(vault, own_data_dir)
        bridge = _process(own_data_dir, env, "bridge")
        first = _process(own_data_dir, env, *args)
        second = None
        store = SignalStore(vault)
        try:
            half = len(day) // 2
            for i in range(0, half, 100):
                _publish(pub, day[i : i + 100])
            pub.flush()
            wait_for(lambda: int(store.cursor(SYMBOL).get("rows") or 0) > 1_000,
                     "the first run's decisions")  # fmt: skip
            first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-cycle
            first.wait()
            for i in range(half, len(day), 100):
                _publish(pub, day[i : i + 100])
            pub.flush()
            second = _process(own_data_dir, env, *args)
            last_t = int(day["ts_event"][-1]) + 1
            wait_for(lambda: store.cursor(SYMBOL).get("T") == str(last_t),
                     "the restarted worker to catch up")  # fmt: skip
            code, text = _stop(second)
            assert code == 0, text
            assert "models stopped: WINZ25:" in text and "0 deadline misses" in text, text
        finally:
            first.kill()
            if second is not None:
                second.kill()
            _stop(bridge)
        stored = _stored(vault)
        expected = _expected(vault, own_data_dir, GENEROUS)
        assert len(expected) > 10
        assert stored == expected  # none lost, none twice: rows and decisions stored together
        cursor = store.cursor(SYMBOL)
        assert int(cursor["rows"]) == len(FeatureRows(vault).range(SYMBOL, versions=True))
        assert int(cursor["signals"]) == len(stored)
