"""The supervisor's pure part: the process table, the restart policy, the stop order,
the state file and ``ps`` rows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.config import Settings
from tickvault.errors import SupervisorError
from tickvault.live import supervisor as sv

OPTIONAL = (("ml", "run"), ("paper", "run"), ("dashboard",))


def _table(opts: sv.UpOptions, present: Sequence[tuple[str, ...]] = ()) -> list[sv.Component]:
    return sv.process_table(Settings(), opts, lambda path: tuple(path) in set(present))


@given(st.sets(st.sampled_from(OPTIONAL)), st.booleans(), st.booleans())
def test_stop_order_is_feeder_first_server_last_whatever_is_enabled(
    present: set[tuple[str, ...]], models: bool, dashboard: bool
) -> None:
    table = _table(sv.UpOptions(models=models, dashboard=dashboard), sorted(present))
    names = [c.name for c in sv.stop_order(table)]
    assert names[0] == "publisher" and names[-1] == "server"
    assert names.index("bridge") < names.index("features")
    for later in ("model", "broker", "dashboard"):
        if later in names:
            assert names.index("features") < names.index(later) < names.index("server")
    # started in the other order, except that the publisher comes last (subscribers first)
    started = [c.name for c in sv.start_order(table)]
    assert started[0] == "server" and started[-1] == "publisher"


@given(st.sets(st.sampled_from(OPTIONAL)))
def test_a_command_absent_from_the_build_is_left_out_and_says_why(
    present: set[tuple[str, ...]],
) -> None:
    table = {c.name: c for c in _table(sv.UpOptions(), sorted(present))}
    for name, command in zip(("model", "broker", "dashboard"), OPTIONAL, strict=True):
        c = table[name]
        assert c.enabled == (command in present)
        if not c.enabled:
            assert f"`tickvault {' '.join(command)}` does not exist" in c.left_out


def test_no_models_and_no_dashboard_leave_those_out_with_the_option_as_reason() -> None:
    table = {c.name: c for c in _table(sv.UpOptions(models=False, dashboard=False), OPTIONAL)}
    assert not table["model"].enabled and table["model"].left_out == "--no-models"
    assert not table["broker"].enabled and "--no-models" in table["broker"].left_out
    assert not table["dashboard"].enabled and table["dashboard"].left_out == "--no-dashboard"


def test_the_feed_option_picks_the_publisher_command() -> None:
    def argv(opts: sv.UpOptions) -> tuple[str, ...]:
        return next(c.argv for c in _table(opts) if c.name == "publisher")

    assert argv(sv.UpOptions(speed="10"))[:3] == ("publish", "--feed", "sim")
    assert "WINSIM,WDOSIM" in argv(sv.UpOptions())
    assert argv(sv.UpOptions(feed="file", files=(Path("a.txt"),)))[:2] == ("replay", "a.txt")
    prof = argv(sv.UpOptions(feed="profitdll", symbols=("WINZ25:F",)))
    assert prof == ("feed", "profitdll", "--symbols", "WINZ25:F")
    feats = next(c for c in _table(sv.UpOptions(feed="profitdll", symbols=("WINZ25:F",)))
                 if c.name == "features")  # fmt: skip
    assert feats.argv[-1] == "WINZ25"  # the workers take the ticker
    with pytest.raises(SupervisorError, match="needs a file"):
        _table(sv.UpOptions(feed="file"))
    with pytest.raises(SupervisorError, match="needs --symbols"):
        _table(sv.UpOptions(feed="profitdll"))


def test_an_external_valkey_url_leaves_the_embedded_server_out() -> None:
    table = sv.process_table(Settings(valkey_url="valkey://h:1/0"), sv.UpOptions(),
                             lambda _p: False)  # fmt: skip
    server = next(c for c in table if c.name == "server")
    assert not server.enabled and "valkey_url" in server.left_out


@given(st.floats(0.01, 5), st.floats(1, 120), st.integers(1, 40))
def test_backoff_doubles_and_never_passes_its_maximum(
    initial: float, maximum: float, failures: int
) -> None:
    p = sv.RestartPolicy(initial_s=initial, max_s=maximum)
    delays = [p.delay(n) for n in range(1, failures + 1)]
    assert delays[0] == min(initial, maximum)
    assert all(b == min(a * 2, maximum) for a, b in itertools.pairwise(delays))
    assert max(delays) <= maximum


@given(st.lists(st.floats(0, 100), min_size=1, max_size=30), st.integers(1, 6))
def test_only_exits_at_once_in_a_row_make_it_give_up(runs: list[float], give_up: int) -> None:
    """Whatever the run lengths, it gives up exactly when ``give_up`` exits in a row came
    within ``quick_s`` of their start; a longer run resets the count."""
    policy = sv.RestartPolicy(initial_s=0.5, max_s=30, quick_s=10, give_up_after=give_up)
    e = sv.Entry(sv.Component("bridge", ("bridge",), start_rank=10, stop_rank=20), log="b.log")
    in_a_row = 0
    for ran in runs:
        e.started_mono = 1000.0
        said = sv.on_exit(e, 1, 1000.0 + ran, policy, "error: boom")
        in_a_row = in_a_row + 1 if ran < 10 else 1
        if ran < 10 and in_a_row >= give_up:
            assert e.state == "failed" and "not restarted again" in said
            assert "error: boom" in said and "b.log" in said
            return
        assert e.state == "backoff"
        assert e.next_start == 1000.0 + ran + policy.delay(in_a_row)
        e.restarts += 1


def test_a_finite_feed_ending_cleanly_is_done_and_a_worker_exiting_0_is_restarted() -> None:
    policy = sv.RestartPolicy()
    feed = sv.Entry(sv.Component("publisher", (), start_rank=90, stop_rank=10,
                                 restart="on-failure"))  # fmt: skip
    assert "not restarted" in sv.on_exit(feed, 0, 50.0, policy) and feed.state == "done"
    worker = sv.Entry(sv.Component("bridge", (), start_rank=10, stop_rank=20))
    sv.on_exit(worker, 0, 50.0, policy)
    assert worker.state == "backoff"
    killed = sv.Entry(sv.Component("bridge", (), start_rank=10, stop_rank=20))
    assert "killed by SIGKILL" in sv.on_exit(killed, -9, 50.0, policy)


def test_untrained_symbols_get_a_train_job_stopped_first_and_the_model_worker_waits() -> None:
    import datetime as dt

    every = (("ml", "run"), ("paper", "run"), ("dashboard",), ("ml", "first-models"))
    day = dt.date(2025, 12, 1)
    table = sv.process_table(Settings(up_seed_sessions=6), sv.UpOptions(),
                             lambda path: tuple(path) in every, untrained=["WDOSIM"],
                             before=day)  # fmt: skip
    rows = {c.name: c for c in table}
    train = rows["train"]
    assert train.enabled and train.restart == "never" and train.ready == "exit"
    assert train.argv == ("ml", "first-models", "--symbols", "WDOSIM", "--sessions", "6",
                          "--before", "2025-12-01")  # fmt: skip
    assert (rows["features"].waits, train.waits, rows["model"].waits) == ("seed", "seed",
                                                                          "models")  # fmt: skip
    assert sv.stop_order(table)[0].name == "train"  # frees the CPU first
    started = [c.name for c in sv.start_order(table)]
    assert started.index("dashboard") < started.index("features") < started.index("train")
    assert started.index("train") < started.index("model") < started.index("publisher")
    trained = {c.name: c for c in sv.process_table(Settings(), sv.UpOptions(),
                                                   lambda path: tuple(path) in every)}  # fmt: skip
    assert not trained["train"].enabled
    assert trained["train"].left_out == "every symbol has a promoted fast and full model"


def test_a_job_run_once_is_done_at_exit_0_and_failed_otherwise_never_restarted() -> None:
    policy = sv.RestartPolicy()

    def job() -> sv.Entry:
        return sv.Entry(sv.Component("train", (), start_rank=25, stop_rank=5, restart="never",
                                     ready="exit"), log="train.log")  # fmt: skip

    ok = job()
    assert "not restarted" in sv.on_exit(ok, 0, 50.0, policy) and ok.state == "done"
    bad = job()
    said = sv.on_exit(bad, 1, 50.0, policy, "error: no labelled rows")
    assert bad.state == "failed" and bad.restarts == 0
    assert "failed (exit 1)" in said and "no labelled rows" in said and "train.log" in said


def test_ps_rows_show_uptime_restarts_figures_and_the_left_out(tmp_path: Path) -> None:
    c = sv.Component("bridge", ("bridge",), start_rank=10, stop_rank=20)
    e = sv.Entry(c, log="x.log", state="ready", pid=42, started_ns=1_000_000_000, restarts=2,
                 figures={"stored": 1234.0, "trades/s": 56.7})  # fmt: skip
    state = sv.state_dict(7, 0, [e], data_dir=tmp_path, left_out={"model": "why"}, phase="running")
    rows = sv.ps_rows(state, now_ns=1_000_000_000 + 75 * 10**9)
    assert rows[0] == {"name": "bridge", "state": "ready", "pid": "42", "uptime": "1m15s",
                       "restarts": "2", "last exit": "-", "figures": "stored 1,234, trades 57/s",
                       "log": "x.log", "message": ""}  # fmt: skip
    assert rows[1]["name"] == "model" and rows[1]["state"] == "left out"
    assert state["metrics_url"] is None and state["dashboard_url"] is None  # no dashboard


def test_state_with_a_dashboard_holds_its_url_and_the_metrics_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dashboard_port=18123)
    url = sv.dashboard_url(settings)
    state = sv.state_dict(7, 0, [], data_dir=tmp_path, left_out={}, phase="running",
                          dashboard=url)  # fmt: skip
    assert state["dashboard_url"] == "http://127.0.0.1:18123/"
    assert state["metrics_url"] == "http://127.0.0.1:18123/metrics"
    assert sv.dashboard_url(Settings(data_dir=tmp_path, dashboard_host="::1")).startswith(
        "http://[::1]:"
    )


def test_a_bounded_log_moves_to_dot_1_past_its_size(tmp_path: Path) -> None:
    log = sv.BoundedLog(tmp_path / "x.log", max_bytes=100)
    for i in range(30):
        log.write(f"line {i:03d}\n".encode())
    log.close()
    assert (tmp_path / "x.log").stat().st_size <= 100
    assert (tmp_path / "x.log.1").stat().st_size <= 100
    assert (tmp_path / "x.log").read_text().endswith("line 029\n")


def test_check_ports_with_the_dashboard_port_held_names_dashboard_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        settings = Settings(data_dir=tmp_path, dashboard_port=port)
        table = sv.process_table(settings, sv.UpOptions(), lambda path: True)
        with pytest.raises(SupervisorError, match="dashboard_port"):
            sv.check_ports(settings, [c for c in table if c.name == "dashboard"])


def test_http_answers_is_true_for_a_listening_http_server_and_false_for_none() -> None:
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # the base handler answers 501 to GET: an answer all the same
        assert sv.http_answers(f"http://127.0.0.1:{port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert not sv.http_answers(f"http://127.0.0.1:{port}/")
