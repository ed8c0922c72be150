"""The live feature worker with real ZeroMQ, the real embedded Valkey and real processes:
rows stored bitemporally, parity with the recomputation from the store, restarts."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.engine.parity import check_rows, live_trades
from tickvault.engine.rows import FeatureRows
from tickvault.errors import QueryError
from tickvault.features import FeatureSet
from tickvault.features.intraday import default_features
from tickvault.feeds.sim import SimulatedFeeder
from tickvault.live.features import FeatureWorker, decode_feature_message
from tickvault.live.pipeline import Pipeline
from tickvault.live.seed import seed_sessions
from tickvault.storage.featurerows import FeatureSchemaError
from tickvault.transport.endpoints import Endpoints
from tickvault.venue.b3 import B3_TZ, previous_sessions, session

DAY = dt.date(2025, 12, 1)
PER_DAY = 3_000
SYMBOLS = ("WINZ25", "WDOZ25")


def _feeder(per_day: int = PER_DAY, symbols: tuple[str, ...] = ("WINZ25",)) -> SimulatedFeeder:
    start = dt.datetime.combine(DAY, dt.time(9, 0), tzinfo=B3_TZ)
    return SimulatedFeeder(symbols, speed=None, start=start, days=1,
                           trades_per_day=per_day, chained=True)  # fmt: skip


def _last_stored_t(vault: Vault, symbol: str = "WINZ25") -> int:
    s = session(symbol, DAY)
    trades = live_trades(vault, symbol, s.open_ns, s.close_ns + 1)
    return int(trades.ts_event[-1]) + 1 if len(trades) else 0


def test_worker_rows_equal_the_recomputation_from_the_store(
    vault: Vault, endpoints: Endpoints, tmp_path: Path
) -> None:
    for symbol in SYMBOLS:
        seeded = seed_sessions(vault, symbol, 6, before=DAY, trades_per_day=PER_DAY)
        assert len(seeded.stored) == 6
    again = seed_sessions(vault, "WINZ25", 6, before=DAY, trades_per_day=PER_DAY)
    assert again.stored == [] and len(again.skipped) == 6  # idempotent
    ctx = zmq.Context.instance()
    model = ctx.socket(zmq.SUB)
    model.setsockopt(zmq.SUBSCRIBE, b"feature.")
    feat_ep = f"ipc://{tmp_path}/features.sock"
    model.connect(feat_ep)
    worker = FeatureWorker(vault, SYMBOLS, endpoints=[endpoints], publish_endpoint=feat_ep)
    worker.start()
    try:
        wait_for(worker.ready.is_set, "the worker to warm up")
        pipe = Pipeline(vault, _feeder(symbols=SYMBOLS), endpoints=endpoints)
        # the feed is short: start it once the feature worker is connected
        wait_for(lambda: pipe.publisher.subscribers() >= 1, "the feature worker to connect")
        pipe.start()
        wait_for(lambda: not pipe.feed.running, "the feed to end")
        assert pipe.stop()
        rows = FeatureRows(vault)
        last_t = {s: _last_stored_t(vault, s) for s in SYMBOLS}
        wait_for(lambda: all((r := rows.last(s)) is not None and r.name == last_t[s]
                             for s in SYMBOLS), "the worker's last rows")  # fmt: skip
    finally:
        worker.close()
    for symbol in SYMBOLS[1:]:  # each symbol's rows are its own, and match too
        s = session(symbol, DAY)
        other = check_rows(vault, symbol, s.open_ns, s.close_ns + 2)
        assert other.ok and other.rows > 200, (other.differences.head(), other.missing[:5])
    s = session("WINZ25", DAY)
    report = check_rows(vault, "WINZ25", s.open_ns, s.close_ns + 2)
    assert report.ok, (report.differences.head(20), report.missing[:5], report.extra[:5])
    live = FeatureRows(vault).range("WINZ25", s.open_ns, s.close_ns + 2)
    assert report.rows == len(live) > 500
    # the history features found something in the seeded history
    assert live["volume_pattern_similarity"].notna().mean() > 0.5
    assert live["volatility_regime"].notna().mean() > 0.5
    assert set(live["volatility_regime"].dropna()) <= {"low", "normal", "high"}
    # published rows: the same as the stored ones
    got = []
    while model.poll(200):
        symbol, header, cols = decode_feature_message(model.recv_multipart())
        assert header["schema"] == FeatureRows(vault).schema.hash
        if symbol == "WINZ25":
            got.append(cols["T"])
    model.close()
    assert got and np.isin(np.concatenate(got), live.index.to_numpy()).all()
    # a row that differs from the recomputation is reported, with its feature
    rows = FeatureRows(vault)
    t = int(live.index[len(live) // 2])
    one = {n: np.array([live.loc[t, n] if n in live.columns else 0], dtype=d)
           for n, d in rows.schema.columns if n not in ("T", "volatility_regime")}  # fmt: skip
    one["T"] = np.array([t], np.int64)
    one["computed_ns"] = np.array([2**62], np.int64)
    one["volatility_regime"] = np.array([1 if live.loc[t, "volatility_regime"] != "normal" else 0],
                                        np.int8)  # fmt: skip
    one["ret_1min"] = one["ret_1min"] + 1.0
    rows.append("WINZ25", one, {})
    bad = check_rows(vault, "WINZ25", s.open_ns, s.close_ns + 2)
    assert not bad.ok
    assert set(bad.differences["feature"]) == {"ret_1min", "volatility_regime"}
    assert bad.differences["T"].unique().tolist() == [t]


def test_rows_read_bitemporally_the_later_supersedes(vault: Vault) -> None:
    rows = FeatureRows(vault)
    names = [c for c, _ in rows.schema.columns]

    def block(ts: list[int], computed: int, value: float) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, dtype in rows.schema.columns:
            out[name] = np.full(len(ts), value, dtype=dtype)
        out["T"] = np.array(ts, np.int64)
        out["computed_ns"] = np.full(len(ts), computed, np.int64)
        out["volatility_regime"] = np.full(len(ts), 1, np.int8)
        return out

    rows.append("WINZ25", block([10_000_001, 10_000_002], 100, 1.0), {"ts": 10_000_001})
    rows.append("WINZ25", block([10_000_002, 10_000_003], 200, 2.0), {"ts": 10_000_002})
    assert names[0] == "T"
    latest = rows.range("WINZ25")
    assert latest.index.tolist() == [10_000_001, 10_000_002, 10_000_003]
    assert latest["ret_1s"].tolist() == [1.0, 2.0, 2.0]
    then = rows.range("WINZ25", known_at=150)
    assert then.index.tolist() == [10_000_001, 10_000_002]
    assert then["ret_1s"].tolist() == [1.0, 1.0]
    assert len(rows.range("WINZ25", versions=True)) == 4
    assert rows.range("WINZ25", 10_000_002, 10_000_003).index.tolist() == [10_000_002]
    assert rows.cursor("WINZ25") == {"ts": "10000002"}
    last = rows.last("WINZ25")
    assert last is not None and last.name == 10_000_003
    assert last["volatility_regime"] == "normal"
    assert rows.range("NOSUCH").empty


def test_a_worker_with_another_feature_set_is_refused(vault: Vault, endpoints: Endpoints) -> None:
    rows = FeatureRows(vault)
    empty = {n: np.zeros(0, d) for n, d in rows.schema.columns}
    rows.append("WINZ25", empty, {"ts": 1})
    other = FeatureSet(default_features()[:3])
    with pytest.raises(FeatureSchemaError, match="another feature set"):
        FeatureRows(vault, other).append("WINZ25", {n: np.zeros(0, d) for n, d in
                                                     FeatureRows(vault, other).schema.columns},
                                         {})  # fmt: skip
    with pytest.raises(FeatureSchemaError, match="feature schema"):
        FeatureWorker(vault, ["WINZ25"], endpoints=[endpoints], feature_set=other, publish=False)


def test_bad_input_gets_clear_errors(vault: Vault, endpoints: Endpoints) -> None:
    feat_ep = f"tcp://127.0.0.1:{free_ports()['ticks']}"
    with (
        FeatureWorker(vault, ["WINZ25"], endpoints=[endpoints], publish_endpoint=feat_ep),
        pytest.raises(QueryError, match="cannot publish feature rows on"),
    ):
        FeatureWorker(vault, ["WINZ25"], endpoints=[endpoints], publish_endpoint=feat_ep)
    with pytest.raises(QueryError, match="no default session hours"):
        FeatureWorker(vault, ["FOO"], endpoints=[endpoints], publish=False)
    with pytest.raises(QueryError, match="no feature rows of WINZ25"):
        check_rows(vault, "WINZ25", "2025-12-01 09:00", "2025-12-01 18:30")
    with pytest.raises(QueryError, match="before"):
        check_rows(vault, "WINZ25", "2025-12-01 18:00", "2025-12-01 09:00")


# ---------------------------------------------------------------------- real processes
def _process(data_dir: Path, env_ports: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir), **env_ports}
    return subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=GUARD_S)
    return proc.returncode, (out + err).decode()


def test_worker_killed_and_restarted_loses_no_row_and_writes_none_twice(
    own_data_dir: Path,
) -> None:
    from tickvault.transport.publisher import Publisher

    ports = free_ports()
    features_port = free_ports()["ticks"]
    env_ports = {**port_env(ports), "TICKVAULT_ZMQ_FEATURES_PORT": str(features_port)}
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    day = _feeder(per_day=20_000).day_trades("WINZ25", DAY).to_structured()
    with Vault.open(data_dir=own_data_dir, **overrides) as vault, Publisher(vault.settings) as pub:
        seed_sessions(vault, "WINZ25", 6, before=DAY, trades_per_day=PER_DAY)
        bridge = _process(own_data_dir, env_ports, "bridge")
        first = _process(own_data_dir, env_ports, "features", "run", "--symbols", "WINZ25")
        second = None
        rows = FeatureRows(vault)
        try:
            half = len(day) // 2
            for i in range(0, half, 100):  # chunks that split one nanosecond's trades too
                pub.publish_trades("WINZ25", day[i : i + 100])
            pub.flush()
            wait_for(lambda: len(rows.range("WINZ25", versions=True)) > 1_000,
                     "the first worker's rows")  # fmt: skip
            first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-cycle
            first.wait()
            for i in range(half, len(day), 100):
                pub.publish_trades("WINZ25", day[i : i + 100])
            pub.flush()
            second = _process(own_data_dir, env_ports, "features", "run", "--symbols",
                              "WINZ25")  # fmt: skip
            last_t = int(day["ts_event"][-1]) + 1
            wait_for(lambda: (r := rows.last("WINZ25")) is not None and r.name == last_t,
                     "the restarted worker to catch up")  # fmt: skip
            code, text = _stop(second)
            assert code == 0, text
            assert "features stopped" in text
        finally:
            first.kill()
            if second is not None:
                second.kill()
            _stop(bridge)
        versions = rows.range("WINZ25", versions=True)
        key = list(zip(versions.index, versions["last_trade_id"], strict=True))
        assert len(set(key)) == len(key)  # no row written twice
        s = session("WINZ25", DAY)
        report = check_rows(vault, "WINZ25", s.open_ns, s.close_ns + 2)
        assert report.ok, (report.differences.head(20), report.missing[:5], report.extra[:5])
        assert report.rows == len(np.unique(day["ts_event"]))  # a row for every event time
    check = subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "features", "check", "WINZ25",
         "--start", "2025-12-01 09:00", "--end", "2025-12-01 18:26"],
        env={**os.environ, "TICKVAULT_DATA_DIR": str(own_data_dir), **env_ports},
        capture_output=True, timeout=GUARD_S, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()
    assert b"0 differences, 0 missing rows, 0 extra rows" in check.stdout


def test_cli_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "TICKVAULT_VALKEY_URL": "valkey://127.0.0.1:1/0",
           "TICKVAULT_CONNECT_TIMEOUT_S": "1"}  # fmt: skip
    for args in (["run", "--symbols", "WINZ25"], ["check", "WINZ25", "--start", "2025-12-01",
                                                  "--end", "2025-12-02"]):  # fmt: skip
        cmd = [sys.executable, "-m", "tickvault.cli.main", "features", *args]
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=GUARD_S, check=False)
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert "error:" in err and "127.0.0.1:1" in err
        assert "Traceback" not in err
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(tmp_path / "valkey")}
    done = subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "features", "run", "--symbols", "FOO"],
        env=env, capture_output=True, timeout=GUARD_S, check=False,
    )  # fmt: skip
    try:
        assert done.returncode == 2
        assert "no default session hours for symbol 'FOO'" in done.stderr.decode()
    finally:
        from tickvault.storage.server import stop_server

        stop_server(tmp_path / "valkey")


def test_demo_and_worker_seed_past_sessions_once(own_data_dir: Path) -> None:
    features_port = str(free_ports()["ticks"])
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(own_data_dir), "COLUMNS": "200",
           **port_env(free_ports()), "TICKVAULT_ZMQ_FEATURES_PORT": features_port}  # fmt: skip
    demo = [sys.executable, "-m", "tickvault.cli.main", "demo", "--speed", "max",
            "--symbols", "WDOSIM", "--duration", "1", "--seed-sessions", "2"]  # fmt: skip
    for _ in range(2):  # the second run replaces the first run's data, seeds included
        done = subprocess.run(demo, env=env, capture_output=True, timeout=300, check=False)
        text = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, text
        assert "seeded WDOSIM: 2 past sessions stored as imported history" in text, text
    with Vault.open(data_dir=own_data_dir) as vault:
        hist = vault.range_columns("WDOSIM", streams=("historical",))
        live = vault.range_columns("WDOSIM", streams=("realtime",))
        assert len(hist["ts_event"]) and len(live["ts_event"])
        # the seeded sessions come before the live ones, and each is stored once
        assert hist["ts_event"].max() < live["ts_event"].min()
        days = {dt.datetime.fromtimestamp(t / 1e9, B3_TZ).date() for t in hist["ts_event"][::50]}
        assert len(days) == 2
        stored = {st.stream: st.trades for st in vault.stats("WDOSIM")}
        assert stored["historical"] == len(hist["ts_event"])  # every record once
        today = dt.datetime.now(B3_TZ).date()
        spans = [session("WDOSIM", d) for d in previous_sessions("WDOSIM", today, 3)]
        held = [len(vault.range_columns("WDOSIM", s.open_ns, s.close_ns + 1)["ts_event"])
                for s in spans]  # fmt: skip
        free = [s for s, n in zip(spans, held, strict=True) if n == 0]
    worker = _process(own_data_dir, {k: v for k, v in env.items() if k.startswith("TICKVAULT_Z")},
                      "features", "run", "--symbols", "WDOSIM", "--seed-sessions", "3",
                      "--seed-trades-per-day", "500")  # fmt: skip
    try:
        with Vault.open(data_dir=own_data_dir) as vault:
            wait_for(lambda: worker.poll() is not None or _seeded_days(vault) >= 2 + len(free),
                     "the worker to seed")  # fmt: skip
    finally:
        code, text = _stop(worker)
    assert code == 0, text
    # the 3 sessions before today: stored now, or already there (the demo's live days)
    found = re.search(
        r"seeded WDOSIM: (\d+) sessions stored \([\d,]+ trades\), (\d+) already", text
    )
    assert found is not None and (int(found[1]), int(found[2])) == (len(free), 3 - len(free)), text


def _seeded_days(vault: Vault) -> int:
    hist = vault.range_columns("WDOSIM", streams=("historical",))
    return len({dt.datetime.fromtimestamp(t / 1e9, B3_TZ).date() for t in hist["ts_event"][::10]})


@settings(max_examples=40, deadline=None)
@given(
    blocks=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.just(0)), min_size=0, max_size=6),
        min_size=1, max_size=6,
    ),
    known=st.integers(0, 8),
)  # fmt: skip
def test_a_bitemporal_read_gives_per_t_the_latest_version_known(
    session_vault: Vault, blocks: list[list[tuple[int, int]]], known: int
) -> None:
    """Blocks in non-decreasing T (as the worker writes them), versions computed later
    in later blocks; T collisions in one millisecond included."""
    rows = FeatureRows(session_vault)
    rows.delete("PROPX")
    t, expected_latest, expected_known = 1_700_000_000_000_000_000, {}, {}
    for computed, block in enumerate(blocks, start=1):
        ts = []
        for step, _ in block:
            t += step * 300_000  # many rows in one ms
            ts.append(t)
        ts = sorted(set(ts))
        values = {n: np.full(len(ts), computed, dtype=d) for n, d in rows.schema.columns}
        values["T"] = np.array(ts, np.int64)
        values["volatility_regime"] = np.full(len(ts), computed % 3, np.int8)
        rows.append("PROPX", values, {"ts": t})
        for x in ts:
            expected_latest[x] = computed
            if computed <= known:
                expected_known[x] = computed
    latest = rows.range("PROPX")
    assert dict(zip(latest.index, latest["computed_ns"], strict=True)) == expected_latest
    then = rows.range("PROPX", known_at=known)
    assert dict(zip(then.index, then["computed_ns"], strict=True)) == expected_known
    if len(expected_latest) > 1:
        lo, hi = min(expected_latest), max(expected_latest)
        mid = rows.range("PROPX", lo + 1, hi)
        assert set(mid.index) == {x for x in expected_latest if lo + 1 <= x < hi}
    rows.delete("PROPX")
