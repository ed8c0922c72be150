"""The live model worker with real ZeroMQ, the real embedded Valkey, real models and real
processes: signals stored and published in sequence, replay, the latency budget, kill -9
and restart with no signal lost or doubled, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_features_live import DAY, PER_DAY, _feeder
from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.engine import FeatureEngine
from tickvault.engine.parity import live_trades
from tickvault.engine.rows import FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.engine.training import load_promoted, metadata, train
from tickvault.errors import QueryError
from tickvault.live.features import FeatureWorker
from tickvault.live.models import ModelWorker, frame_rows
from tickvault.live.pipeline import Pipeline
from tickvault.live.seed import seed_sessions
from tickvault.models.registry import Registry
from tickvault.records.events import Gap
from tickvault.records.signals import SIGNAL_DTYPE, Mode, Side, Signal
from tickvault.signals.coordinator import CoordinatorParams, Decider
from tickvault.signals.policy import PolicyParams
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError
from tickvault.venue.b3 import session

SYMBOL = "WINZ25"
POLICY = PolicyParams(enter=0.01, exit=0.0, min_confidence=0.0, cooldown_ns=0)
"""Eager: the models trained on a random walk are rarely sure of anything."""
POLICY_ENV = {"TICKVAULT_SIGNAL_ENTER": "0.01", "TICKVAULT_SIGNAL_EXIT": "0",
              "TICKVAULT_SIGNAL_MIN_CONFIDENCE": "0",
              "TICKVAULT_SIGNAL_COOLDOWN_S": "0"}  # fmt: skip
GENEROUS = CoordinatorParams(deadline_ns=3_600 * 10**9)


def _train_and_promote(vault: Vault, data_dir: Path) -> dict[str, str]:
    """A full and a fast model trained on the seeded sessions, both promoted."""
    reg = Registry.of_data_dir(data_dir)
    out = {}
    for kind in ("full", "fast"):
        result = train(vault, SYMBOL, "2025-11-20", "2025-12-01", every="5min", folds=2,
                       estimator="sklearn.linear_model.LogisticRegression",
                       features=kind)  # fmt: skip
        out[kind] = reg.save(SYMBOL, result.model, metadata(result))
        reg.promote(out[kind])
    return out


def _expected(vault: Vault, data_dir: Path, params: CoordinatorParams) -> list[Signal]:
    """The Decider over every stored row, without a clock (a backtest of the rows)."""
    models = load_promoted(Registry.of_data_dir(data_dir), SYMBOL, FeatureEngine(vault))
    d = Decider(SYMBOL, models, params, POLICY)
    rows = frame_rows(FeatureRows(vault).range(SYMBOL, versions=True))
    return [x.signal for x in d.on_rows((r[0], r[1], r[3]) for r in rows) if x.signal]


def _stored(vault: Vault) -> list[Signal]:
    return SignalStore(vault).signals(SYMBOL, 0, 2**62)


def _last_row(vault: Vault) -> tuple[int, int]:
    """(T, last_trade_id) of the last row stored ((-1, -1): none yet)."""
    last = FeatureRows(vault).last(SYMBOL)
    if last is None:
        return (-1, -1)
    return int(last.name), int(last["last_trade_id"])  # type: ignore[call-overload]


class _Collect:
    def __init__(self) -> None:
        self.got: list[tuple[int, Signal]] = []
        self.gaps: list[Gap] = []
        self.lock = threading.Lock()

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        recs = np.frombuffer(msg.payload, dtype=SIGNAL_DTYPE, count=msg.count)
        with self.lock:
            self.got += [(msg.seq, Signal.from_record(msg.symbol, r)) for r in recs]

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        raise AssertionError(f"invalid message: {error}")


def test_model_worker_on_a_simulated_session_stores_and_publishes_the_backtest_signals(
    vault: Vault, endpoints: Endpoints, tmp_path: Path
) -> None:
    seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
    versions = _train_and_promote(vault, vault.settings.data_dir)
    feat_ep = f"ipc://{tmp_path}/features.sock"
    sig_eps = Endpoints.ipc(str(tmp_path / "sig"))
    (tmp_path / "sig").mkdir()
    live = _Collect()
    features = FeatureWorker(vault, [SYMBOL], endpoints=[endpoints], publish_endpoint=feat_ep)
    models = ModelWorker(vault, [SYMBOL], features_endpoint=feat_ep, endpoints=sig_eps,
                         params=GENEROUS, policy=POLICY)  # fmt: skip
    sub = Subscriber(vault.settings, handler=live, endpoints=[sig_eps], kinds=(Kind.SIGNAL,),
                     symbols=[SYMBOL])  # fmt: skip
    try:
        features.start()
        models.start()
        sub.start()
        wait_for(lambda: features.ready.is_set() and models.ready.is_set(), "the workers")
        pipe = Pipeline(vault, _feeder(), endpoints=endpoints)
        # the feed is short: start it once the feature worker is connected
        wait_for(lambda: pipe.publisher.subscribers() >= 1, "the feature worker to connect")
        pipe.start()
        wait_for(lambda: not pipe.feed.running, "the feed to end")
        assert pipe.stop()
        s = session(SYMBOL, DAY)
        last_t = int(live_trades(vault, SYMBOL, s.open_ns, s.close_ns + 1).ts_event[-1]) + 1
        wait_for(lambda: _last_row(vault)[0] == last_t, "the feature worker's last row")
        wait_for(lambda: models.position(SYMBOL) == _last_row(vault), "the model worker")
        stored = _stored(vault)
        wait_for(lambda: len(live.got) >= len(stored), "the published signals")
    finally:
        sub.close()
        models.close()
        features.close()
    stats = models.stats(SYMBOL)
    rows = FeatureRows(vault).range(SYMBOL, versions=True)
    assert stats["rows"] == len(rows) > 500
    assert stats["misses"] == 0 and stats["skipped"] == 0
    # the rows carry their last trade's ts_recv
    trades = live_trades(vault, SYMBOL, s.open_ns, s.close_ns + 1)
    recv = dict(zip(trades.trade_id.tolist(), trades.ts_recv.tolist(), strict=True))
    assert [recv[t] for t in rows["last_trade_id"]] == rows["ts_recv"].tolist()
    # what was stored is what a backtest of the stored rows says, and it was published
    expected = _expected(vault, vault.settings.data_dir, GENEROUS)
    assert len(expected) > 10
    assert stored == expected
    assert [sig for _, sig in live.got] == stored and not live.gaps
    seqs = [seq for seq, _ in live.got]
    assert seqs == sorted(seqs) and seqs[0] == 1
    # a generous budget: HISTORY wherever the history numbers are ready, else FAST
    modes = {sig.mode for sig in stored}
    assert modes == {Mode.HISTORY, Mode.FAST}
    assert {sig.model_version for sig in stored} == set(versions.values())
    assert all(sig.ts_event == sig.t_features for sig in stored)
    assert stats["history"] > 0 and stats["fast"] > 0
    cursor = SignalStore(vault).cursor(SYMBOL)
    assert int(cursor["T"]) == last_t and int(cursor["rows"]) == len(rows)
    assert int(cursor["signals"]) == len(stored)
    assert json.loads(cursor["models"]) == {"all": versions["full"], "all/fast": versions["fast"]}
    # a subscriber that comes late gets the missed range from the replay service... of a
    # new worker run; and a run with deadline 0 over the same rows: FAST and all misses
    SignalStore(vault).delete(SYMBOL)
    late = _Collect()
    zero = ModelWorker(vault, [SYMBOL], features_endpoint=f"ipc://{tmp_path}/none.sock",
                       endpoints=sig_eps, params=CoordinatorParams(deadline_ns=0),
                       policy=POLICY)  # fmt: skip
    try:
        zero.start()
        wait_for(lambda: zero.position(SYMBOL) == _last_row(vault), "the deadline-0 run")
        with Subscriber(vault.settings, handler=late, endpoints=[sig_eps], kinds=(Kind.SIGNAL,),
                        symbols=[SYMBOL], recover_from_start=True).start():  # fmt: skip
            wait_for(lambda: len(late.got) >= len(_stored(vault)), "the replayed signals")
    finally:
        zero.close()
    z = zero.stats(SYMBOL)
    assert z["predictions"] == z["fast"] == z["misses"] > 0 and z["history"] == 0
    zero_stored = _stored(vault)
    assert zero_stored and all(sig.mode == Mode.FAST for sig in zero_stored)
    assert [sig for _, sig in late.got] == zero_stored  # replayed in sequence, none missing
    assert int(SignalStore(vault).cursor(SYMBOL)["misses"]) == z["misses"]


# ---------------------------------------------------------------------- real processes
def _process(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir), **env}
    return subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", *args], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=GUARD_S)
    return proc.returncode, (out + err).decode()


def _publish(pub: Any, chunk: np.ndarray) -> None:
    """Publish trades as received now (their deadline counts from ts_recv)."""
    chunk = chunk.copy()
    chunk["ts_recv"] = time.time_ns()
    pub.publish_trades(SYMBOL, chunk)


def test_model_worker_killed_and_restarted_loses_no_signal_and_stores_none_twice(
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
    with Vault.open(data_dir=own_data_dir, **overrides) as vault, Publisher(vault.settings) as pub:
        seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
        _train_and_promote(vault, own_data_dir)
        bridge = _process(own_data_dir, env, "bridge")
        feats = _process(own_data_dir, env, "features", "run", "--symbols", SYMBOL)
        first = _process(own_data_dir, env, "ml", "run", "--symbols", SYMBOL)
        second = None
        store = SignalStore(vault)
        try:
            half = len(day) // 2
            for i in range(0, half, 100):
                _publish(pub, day[i : i + 100])
            pub.flush()
            wait_for(lambda: int(store.cursor(SYMBOL).get("rows") or 0) > 1_000,
                     "the first model worker's decisions")  # fmt: skip
            first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-batch
            first.wait()
            for i in range(half, len(day), 100):
                _publish(pub, day[i : i + 100])
            pub.flush()
            last_t = int(day["ts_event"][-1]) + 1
            wait_for(lambda: (r := FeatureRows(vault).last(SYMBOL)) is not None
                     and r.name == last_t, "the feature worker")  # fmt: skip
            second = _process(own_data_dir, env, "ml", "run", "--symbols", SYMBOL)
            wait_for(lambda: store.cursor(SYMBOL).get("T") == str(last_t),
                     "the restarted model worker to catch up")  # fmt: skip
            code, text = _stop(second)
            assert code == 0, text
            assert "models stopped: WINZ25:" in text and "0 deadline misses" in text, text
        finally:
            first.kill()
            if second is not None:
                second.kill()
            _stop(feats)
            _stop(bridge)
        stored = _stored(vault)
        expected = _expected(vault, own_data_dir, GENEROUS)
        assert len(expected) > 10
        assert stored == expected  # none lost, none twice
        cursor = store.cursor(SYMBOL)
        assert int(cursor["rows"]) == len(FeatureRows(vault).range(SYMBOL, versions=True))
        assert int(cursor["signals"]) == len(stored)


# ---------------------------------------------------------------------- errors
@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    ports = free_ports()
    monkeypatch.setenv("TICKVAULT_ZMQ_FEATURES_PORT", str(ports["ticks"]))
    monkeypatch.setenv("TICKVAULT_ZMQ_SIGNALS_PORT", str(ports["book"]))
    monkeypatch.setenv("TICKVAULT_ZMQ_SIGNALS_REPLAY_PORT", str(ports["history"]))
    return CliRunner()


def _run_error(runner: CliRunner) -> str:
    result = runner.invoke(cli_main(), ["ml", "run", "--symbols", SYMBOL])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    return result.stderr.replace("\n", " ")


def cli_main() -> object:
    from tickvault.cli.main import cli

    return cli


def test_ml_run_without_a_promoted_model_names_train_and_promote(runner: CliRunner) -> None:
    err = _run_error(runner)
    assert "no promoted model for WINZ25" in err and "tickvault ml train" in err
    assert "tickvault ml promote" in err


def test_ml_run_refuses_an_unknown_or_damaged_promoted_model(
    runner: CliRunner, own_data_dir: Path
) -> None:
    with Vault.open(data_dir=own_data_dir) as vault:
        seed_sessions(vault, SYMBOL, 8, before=DAY, trades_per_day=PER_DAY)
        versions = _train_and_promote(vault, own_data_dir)
    promoted = own_data_dir / "models" / SYMBOL / "promoted.json"
    good = promoted.read_text()
    promoted.write_text(json.dumps({"all": ["0123456789abcdef"]}))
    assert "unknown model version '0123456789abcdef'" in _run_error(runner)
    promoted.write_text(good)
    (own_data_dir / "models" / SYMBOL / versions["fast"] / "model.pkl").write_bytes(b"broken")
    err = _run_error(runner)
    assert f"model version {versions['fast']}" in err and "SHA-256" in err


def test_signals_and_cursor_are_stored_together_and_the_cursor_moves_without_signals(
    vault: Vault,
) -> None:
    store = SignalStore(vault)
    t0 = 1_764_000_000 * 10**9
    sig = Signal(SYMBOL, t0, t0, Side.LONG, 0.5, 0.6, 60 * 10**9, "cafe01", Mode.HISTORY)
    assert store.cursor(SYMBOL) == {}
    store.append_decided(SYMBOL, [sig], {"T": t0, "side": 1, "changed": t0, "rows": 1})
    assert store.signals(SYMBOL, 0, 2**62) == [sig]
    assert store.cursor(SYMBOL) == {"T": str(t0), "side": "1", "changed": str(t0), "rows": "1"}
    store.append_decided(SYMBOL, [], {"T": t0 + 5, "rows": 2, "changed": None})
    assert store.signals(SYMBOL, 0, 2**62) == [sig]
    assert store.cursor(SYMBOL) == {"T": str(t0 + 5), "side": "1", "changed": "", "rows": "2"}
    with pytest.raises(QueryError, match="another symbol"):
        store.append_decided("WDOZ25", [sig], {"T": 1})
    assert store.delete(SYMBOL) == 2
    assert store.cursor(SYMBOL) == {} and store.signals(SYMBOL, 0, 2**62) == []
