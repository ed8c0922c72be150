"""``tickvault up`` and ``tickvault ps`` as real processes: the embedded Valkey, the
simulator's publisher, the bridge and the feature worker, over real ZeroMQ.

Waits poll a condition with a guard so a broken run fails instead of hanging; no test
asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.config import Settings
from tickvault.live import supervisor as sv
from tickvault.models.registry import Registry
from tickvault.transport import wire
from tickvault.transport.endpoints import free_tcp_ports
from tickvault.transport.journal import JournalReader

SYMBOL = "WINSIM"
COMPONENTS = ("server", "bridge", "compact", "features", "publisher")
EVERY = (*COMPONENTS, "model", "broker", "dashboard")
UP_GUARD_S = 600.0
"""Hang guard of the whole system's start: seeding and training a first model first."""


def _wait_long(condition: Callable[[], bool], what: str) -> None:
    import time

    deadline = time.monotonic() + UP_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


BAD = ("features", "run", "--symbols", "bad symbol!")
"""A component that fails at once (exit 2: a malformed symbol)."""


@pytest.fixture
def env(own_data_dir: Path) -> dict[str, str]:
    ports = free_ports()
    features, signals, orders, dashboard = free_tcp_ports(4)
    return {
        **os.environ,
        "TICKVAULT_DATA_DIR": str(own_data_dir),
        **port_env(ports),
        "TICKVAULT_ZMQ_FEATURES_PORT": str(features),
        "TICKVAULT_ZMQ_SIGNALS_PORT": str(signals),
        "TICKVAULT_ZMQ_ORDERS_PORT": str(orders),
        "TICKVAULT_DASHBOARD_PORT": str(dashboard),
        "TICKVAULT_UP_SEED_SESSIONS": "3",  # a first model quickly: 3 seeded sessions
    }


def _tickvault(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickvault.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=GUARD_S, check=False)  # fmt: skip


@pytest.fixture
def up(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts ``tickvault up ARGS`` (its output in tmp_path/up.out); killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        out = (tmp_path / "up.out").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "up", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(GUARD_S)
            except subprocess.TimeoutExpired:
                proc.kill()


def _state(data_dir: Path) -> dict[str, Any]:
    return sv.read_state(data_dir) or {"components": []}


def _component(data_dir: Path, name: str) -> dict[str, Any]:
    return next((c for c in _state(data_dir)["components"] if c["name"] == name), {})


def _all_ready(data_dir: Path, proc: subprocess.Popen[bytes],
               names: tuple[str, ...] = COMPONENTS) -> bool:  # fmt: skip
    assert proc.poll() is None, "tickvault up exited"
    states = {c["name"]: c["state"] for c in _state(data_dir)["components"]}
    return all(states.get(name) == "ready" for name in names)


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=GUARD_S) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip


def _stored(data_dir: Path) -> float:
    return float(_component(data_dir, "bridge").get("figures", {}).get("stored", 0))


def _published(journal: Path) -> np.ndarray[Any, Any]:
    """Trade ids of every trade message the publishers journaled (what was published)."""
    ids = []
    for session in sorted(p for p in journal.iterdir() if p.is_dir()):
        reader = JournalReader(journal, int(session.name, 16))
        try:
            for topic, last in reader.topics().items():
                if not topic.startswith("trade."):
                    continue
                seq = 1
                while seq <= last:
                    answer = reader.get(topic, seq, last)
                    assert answer.bodies, f"the journal lost {topic} seq {seq}"
                    for body in answer.bodies:
                        msg = wire.decode([topic.encode(), body], max_bytes=1 << 30)
                        if msg.kind is wire.Kind.TRADE:
                            ids.append(msg.records()["trade_id"])
                    seq += len(answer.bodies)
        finally:
            reader.close()
    return np.concatenate(ids) if ids else np.array([], dtype=np.int64)


def _check_nothing_lost(data_dir: Path, env: dict[str, str]) -> None:
    published = _published(data_dir / "journal")
    assert len(published) > 0
    ports = {k.removeprefix("TICKVAULT_").lower(): int(v) for k, v in env.items()
             if k.startswith("TICKVAULT_ZMQ_")}  # fmt: skip
    with Vault.open(data_dir=data_dir, **ports) as vault:  # the live ones: not the seeded
        stored = vault.range_columns(SYMBOL, streams=("realtime",))["trade_id"]
        # live records: still in the realtime stream, or rewritten by `up`'s compactor
        records = sum(s.trades for s in vault.stats(SYMBOL)
                      if s.stream in ("realtime", "compacted"))  # fmt: skip
        gaps = vault.gaps(SYMBOL)
    assert sorted(stored.tolist()) == sorted(published.tolist())  # every trade published
    assert records == len(published)  # none stored twice
    assert gaps == []


def _stop(proc: subprocess.Popen[bytes], tmp_path: Path, how: int = signal.SIGTERM) -> str:
    proc.send_signal(how)
    proc.wait(GUARD_S * 3)
    text = (tmp_path / "up.out").read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    return text


# ---------------------------------------------------------------------- the whole system
def test_up_starts_every_component_ps_lists_them_and_sigterm_stops_in_order_losing_nothing(
    up: Callable[..., subprocess.Popen[bytes]], own_data_dir: Path, env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    proc = up("--symbols", SYMBOL, "--speed", "20")
    _wait_long(lambda: _all_ready(own_data_dir, proc, EVERY), "every component to be ready")
    state = _state(own_data_dir)
    pids = [c["pid"] for c in state["components"]]
    url = f"http://127.0.0.1:{env['TICKVAULT_DASHBOARD_PORT']}/"
    assert (state["dashboard_url"], state["metrics_url"]) == (url, url + "metrics")
    assert Registry.of_data_dir(own_data_dir).promoted(SYMBOL, feature_set="fast")  # first one
    assert _component(own_data_dir, "server")["ports"]["valkey"] > 0
    ticks = int(env["TICKVAULT_ZMQ_TICKS_PORT"])
    assert _component(own_data_dir, "publisher")["ports"]["zmq_ticks_port"] == ticks
    listed = _tickvault(env, "ps")
    assert listed.returncode == 0, listed.stderr
    for name in EVERY:
        row = next(line for line in listed.stdout.splitlines() if f" {name} " in line)
        assert "ready" in row and str(_component(own_data_dir, name)["pid"]) in row
    assert "stored" in listed.stdout and "rows" in listed.stdout
    assert f"dashboard: {url}" in listed.stdout and f"metrics: {url}metrics" in listed.stdout
    wait_for(lambda: _stored(own_data_dir) > 2_000, "trades to be stored")
    scraped = _metrics(url + "metrics")
    assert scraped[("tickvault_process_up", (("name", "model"),))] == 1
    assert scraped[("tickvault_trades_stored_total", (("symbol", SYMBOL),))] > 0

    text = _stop(proc, tmp_path)  # mid-stream: the simulated session goes on for long

    log = (own_data_dir / "logs" / "up.log").read_text()
    steps = ["stopping publisher", "publisher stopped (exit 0)", "stopping bridge",
             "bridge stopped (exit 0)", "stopping features", "features stopped (exit 0)",
             "stopping compact", "compact stopped (exit 0)", "stopping server",
             "server stopped (exit 0)", "up stopped"]  # fmt: skip
    at = [log.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), log
    for name in ("model", "broker", "dashboard"):
        assert f"{name} stopped" in log and f"{name} ready" in log
    assert f"dashboard: {url} (metrics: {url}metrics)" in text
    assert "training first models on the 3 seeded simulated sessions before" in text
    assert "published" in (own_data_dir / "logs" / "publisher.log").read_text()
    assert "bridge stopped:" in (own_data_dir / "logs" / "bridge.log").read_text()
    assert "features stopped:" in (own_data_dir / "logs" / "features.log").read_text()
    assert not any(sv.pid_alive(pid) for pid in pids)  # no process left behind
    assert not sv.state_path(own_data_dir).exists()
    _check_nothing_lost(own_data_dir, env)


def test_up_restarts_a_bridge_killed_with_sigkill_and_loses_nothing(
    up: Callable[..., subprocess.Popen[bytes]], own_data_dir: Path, env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    proc = up("--symbols", SYMBOL, "--speed", "20", "--no-models", "--no-dashboard")
    wait_for(lambda: _all_ready(own_data_dir, proc), "every component to be ready")
    wait_for(lambda: _stored(own_data_dir) > 1_000, "trades to be stored")
    first = _component(own_data_dir, "bridge")["pid"]
    os.kill(first, signal.SIGKILL)  # mid-stream, maybe mid-write
    wait_for(
        lambda: (b := _component(own_data_dir, "bridge")).get("restarts") == 1
        and b["state"] == "ready" and b["pid"] != first,
        "the bridge to be restarted and ready",
    )  # fmt: skip
    listed = _tickvault(env, "ps").stdout
    row = next(line for line in listed.splitlines() if " bridge " in line)
    assert row.split("│")[5].strip() == "1", listed  # the restarts column
    stored_before = _stored(own_data_dir)
    wait_for(lambda: _stored(own_data_dir) > stored_before, "the new bridge to store")
    pids = [c["pid"] for c in _state(own_data_dir)["components"]]
    text = _stop(proc, tmp_path, signal.SIGINT)  # Ctrl-C
    assert not any(sv.pid_alive(pid) for pid in pids)  # no process left behind
    assert "bridge killed by SIGKILL" in text and "restart 1 in" in text
    assert "started bridge (restart 1)" in text
    _check_nothing_lost(own_data_dir, env)


def test_up_on_an_external_valkey_leaves_the_server_out_and_running(
    own_data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    from tickvault.storage.server import ensure_server, read_state

    info, _ = ensure_server(own_data_dir)  # "another" server, already running
    run_dir = tmp_path / "up-data"
    env = {**env, "TICKVAULT_VALKEY_URL": info.url, "TICKVAULT_DATA_DIR": str(run_dir)}
    out = (tmp_path / "up.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "up", "--symbols",
                             SYMBOL, "--speed", "20", "--no-models"], env=env, stdout=out,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "up.out").read_text()
            states = {c["name"]: c["state"] for c in _state(run_dir)["components"]}
            return all(states.get(n) == "ready" for n in ("bridge", "features", "publisher"))

        wait_for(ready, "the components on the external server to be ready")
        assert "valkey_url is set" in _state(run_dir)["left_out"]["server"]
    finally:
        text = _stop(proc, tmp_path)
    assert "stopping server" not in text
    assert read_state(own_data_dir.resolve()) is not None  # not ours to stop


# ---------------------------------------------------------------------- errors
def test_up_with_a_port_in_use_fails_naming_the_port_and_its_setting(
    own_data_dir: Path, env: dict[str, str]
) -> None:
    port = int(env["TICKVAULT_ZMQ_BOOK_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = _tickvault(env, "up", "--no-models")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "zmq_book_port" in result.stderr
    assert "TICKVAULT_ZMQ_BOOK_PORT" in result.stderr and "Traceback" not in result.stderr
    assert not sv.state_path(own_data_dir).exists()  # nothing was started


def test_a_needed_component_failing_at_once_stops_up_with_its_error_not_a_restart_loop(
    own_data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "TICKVAULT_UP_RESTART_INITIAL_S": "0.05", "TICKVAULT_UP_GIVE_UP_AFTER": "3"}
    missing = tmp_path / "no-such-trades.txt"
    result = subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "up", "--feed", "file", str(missing),
         "--no-models"], env=env, capture_output=True, text=True, timeout=GUARD_S * 3,
        check=False,
    )  # fmt: skip
    err = result.stderr
    assert result.returncode == 2, err
    assert err.count("started publisher") == 3  # three tries, then no more
    assert "restart 1 in 0.05 s" in err and "restart 2 in 0.1 s" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: publisher exited at once 3 times in a row (exit 2)"), err
    assert str(missing) in last and "no such file" in last and "publisher.log" in last
    assert "Traceback" not in err
    assert "left out: features" in err  # a file feed without --symbols: no symbols to compute
    assert err.index("server stopped (exit 0)") > err.index("stopping bridge")
    assert not sv.state_path(own_data_dir).exists()


def test_ps_without_up_says_so_in_one_line(own_data_dir: Path, env: dict[str, str]) -> None:
    result = _tickvault(env, "ps")
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        f"tickvault up is not running (data directory {own_data_dir.resolve()})"
    ]


def test_a_component_failing_at_once_backs_off_then_is_given_up_with_a_clear_message(
    own_data_dir: Path, env: dict[str, str]
) -> None:
    settings = Settings(data_dir=own_data_dir)
    table = [
        sv.Component("server", (), start_rank=0, stop_rank=100, critical=True, ready="ping"),
        sv.Component("features", BAD, start_rank=20, stop_rank=30),
    ]
    said: list[str] = []
    policy = sv.RestartPolicy(initial_s=0.1, max_s=1.0, quick_s=GUARD_S, give_up_after=4)
    supervisor = sv.Supervisor(settings, table, env=env, say=said.append, policy=policy)
    stop = threading.Event()
    runner = threading.Thread(target=supervisor.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: supervisor.entries["features"].state == "failed", "it to give up")
        state = json.loads(sv.state_path(own_data_dir).read_text())
        entry = supervisor.entries["server"]
        assert entry.state == "ready" and entry.restarts == 0  # the others run on
    finally:
        stop.set()
        runner.join(GUARD_S)
    features = supervisor.entries["features"]
    assert features.restarts == 3 and features.last_exit == 2  # 4 runs, then no more
    exits = [s for s in said if s.startswith("features exit")]
    assert [s.split(" in ")[1].split(" s")[0] for s in exits[:3]] == ["0.1", "0.2", "0.4"]
    assert "exited at once 4 times in a row (exit 2)" in exits[-1]
    assert "malformed symbol" in exits[-1] and "features.log" in exits[-1]
    assert sum(s.startswith("started features") for s in said) == 4
    assert any(c["name"] == "features" for c in state["components"])


# ---------------------------------------------------------------------- first models
SIGNAL_OFTEN = {"TICKVAULT_SIGNAL_ENTER": "0.01", "TICKVAULT_SIGNAL_EXIT": "0",
                "TICKVAULT_SIGNAL_MIN_CONFIDENCE": "0",
                "TICKVAULT_SIGNAL_COOLDOWN_S": "0"}  # fmt: skip
"""A policy that turns nearly every change of the model's lean into a signal."""


def _signals(data_dir: Path, env: dict[str, str]) -> list[Any]:
    from tickvault.engine.signals import SignalStore

    ports = {k.removeprefix("TICKVAULT_").lower(): int(v) for k, v in env.items()
             if k.startswith("TICKVAULT_ZMQ_")}  # fmt: skip
    with Vault.open(data_dir=data_dir, **ports) as vault:
        return SignalStore(vault).signals(SYMBOL, 0, 2**62)


def _history_row(data_dir: Path) -> bool:
    """The latest stored feature row carries history numbers."""
    from tickvault.engine.rows import FeatureRows
    from tickvault.models.manager import history_ready

    with Vault.open(data_dir=data_dir) as vault:
        row = FeatureRows(vault).last(SYMBOL)
    return row is not None and history_ready(row.to_dict())


def _cursor_models(data_dir: Path) -> dict[str, str]:
    from tickvault.engine.signals import SignalStore

    with Vault.open(data_dir=data_dir) as vault:
        raw = SignalStore(vault).cursor(SYMBOL).get("models")
    return json.loads(raw) if raw else {}


def test_up_on_an_empty_data_dir_trains_a_fast_then_a_full_model_while_signals_flow(
    up: Callable[..., subprocess.Popen[bytes]], own_data_dir: Path, env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    env.update(SIGNAL_OFTEN)
    proc = up("--symbols", SYMBOL, "--speed", "20", "--no-dashboard")

    def training_while_the_model_worker_waits() -> bool:
        assert proc.poll() is None, (tmp_path / "up.out").read_text()
        train, model = _component(own_data_dir, "train"), _component(own_data_dir, "model")
        waits = "waiting for the first models of WINSIM (see train)"
        return (train.get("state"), model.get("state"), model.get("message")) == (
            "running", "pending", waits)  # fmt: skip

    _wait_long(training_while_the_model_worker_waits, "the first models to train")
    _wait_long(lambda: _all_ready(own_data_dir, proc, (*COMPONENTS, "model")),
               "the model worker to start on the fast model")  # fmt: skip
    registry = Registry.of_data_dir(own_data_dir)
    fast = registry.promoted(SYMBOL, feature_set="fast")
    assert fast is not None
    _wait_long(lambda: any(s.mode.name == "FAST" for s in _signals(own_data_dir, env)),
               "signals of the fast model")  # fmt: skip

    _wait_long(lambda: _component(own_data_dir, "train").get("state") == "done",
               "the full model to be trained")  # fmt: skip
    full = registry.promoted(SYMBOL)
    assert full is not None and registry.promoted(SYMBOL, feature_set="fast") == fast
    _wait_long(lambda: _cursor_models(own_data_dir) == {"all": full, "all/fast": fast},
               "the model worker to load both models")  # fmt: skip
    after = len(_signals(own_data_dir, env))
    _wait_long(lambda: len(_signals(own_data_dir, env)) > after,
               "signals with both models loaded")  # fmt: skip
    assert _history_row(own_data_dir)  # the seeded sessions give the live rows history
    listed = _tickvault(env, "ps").stdout
    assert any(" train " in line and "done" in line for line in listed.splitlines()), listed

    text = _stop(proc, tmp_path)
    assert "training first models on the 3 seeded simulated sessions before" in text
    assert "model: newly promoted models: restarting it to load them" in text
    assert "train finished (exit 0)" in text
    log = (own_data_dir / "logs" / "train.log").read_text()
    order = [log.index(f"promoted the first {kind} model") for kind in ("fast", "full")]
    assert order == sorted(order), log
    assert text.index("started features") > text.index("WINSIM: seeded 3 simulated past")


def test_train_first_models_trains_fast_then_full_on_the_seeded_sessions_once(
    own_data_dir: Path,
) -> None:
    import datetime as dt

    from tickvault.live.firstmodels import FAST_SESSIONS, train_first_models

    settings = Settings(data_dir=own_data_dir)
    said: list[str] = []
    before = dt.date(2025, 11, 28)
    seeded = sv.seed_first_sessions(settings, ["WINSIM"], before=before, say=said.append,
                                    sessions=4, trades_per_day=4_000)  # fmt: skip
    assert seeded["WINSIM"] > 0 and "WINSIM: seeded 4 simulated past sessions" in said[0]
    assert sv.seed_first_sessions(
        settings, ["WINSIM"], before=before, say=said.append, sessions=4
    ) == {"WINSIM": 0}  # held already: none again
    with Vault.open(settings=settings) as vault:
        done = train_first_models(vault, ["WINSIM"], before=before, sessions=4,
                                  say=said.append)  # fmt: skip
        registry = Registry.of_data_dir(own_data_dir)
        assert done == {"WINSIM": {"fast": registry.promoted("WINSIM", feature_set="fast"),
                                   "full": registry.promoted("WINSIM")}}  # fmt: skip
        fast, full = (registry.show(done["WINSIM"][k]) for k in ("fast", "full"))
        assert fast["feature_set"] == "fast" and full["feature_set"] == "full"
        assert len(fast["training"]["sessions"]) == FAST_SESSIONS
        assert len(full["training"]["sessions"]) == 4
        assert fast["training"]["sessions"] == full["training"]["sessions"][-FAST_SESSIONS:]
        assert max(full["training"]["sessions"]) < before.isoformat()
        assert sv.untrained_symbols(settings, ["WINSIM", "WDOSIM"]) == ["WDOSIM"]
        again = train_first_models(vault, ["WINSIM"], before=before, sessions=4,
                                   say=said.append)  # fmt: skip
    assert again == {}  # both kinds promoted: nothing trained again
    trained = [line for line in said if "promoted the first" in line]
    assert [line.split()[4] for line in trained] == ["fast", "full"]


def test_first_session_is_the_one_the_simulator_plays() -> None:
    import datetime as dt

    from tickvault.venue.b3 import B3_TZ

    settings = Settings()
    opts = sv.UpOptions(speed="1")
    # Tuesday 2025-12-02 03:00 local, before the open: the latest session started (Monday)
    night = dt.datetime(2025, 12, 2, 3, 0, tzinfo=B3_TZ)
    assert sv.first_session(opts, settings, night) == dt.date(2025, 12, 1)
    noon = dt.datetime(2025, 12, 2, 12, 0, tzinfo=B3_TZ)  # in session: today's, from now
    assert sv.first_session(opts, settings, noon) == dt.date(2025, 12, 2)
    fast = sv.UpOptions(speed="20")  # faster than real time: the latest completed session
    assert sv.first_session(fast, settings, noon) == dt.date(2025, 12, 1)
    file_feed = sv.UpOptions(feed="file", files=(Path("t.txt"),))
    assert sv.first_session(file_feed, settings, noon) == dt.date(2025, 12, 2)
