"""``tickvault tail`` and the subscriber's look-back: a viewer that says it waits, and
sees the first trades of a feed that started after it (the PUB/SUB slow joiner).
Plus option checks of ``backfill`` and ``query`` that name the option."""

from __future__ import annotations

import datetime as dt
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault.cli.main import cli
from tickvault.config import load_settings
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE, TradeBatch
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError
from tickvault.venue.b3 import B3_TZ


def read_until(stream: IO[bytes], wanted: str, seen: list[str]) -> None:
    """Read ``stream`` (unbuffered, by its descriptor) into ``seen``, one entry per line,
    until a line contains ``wanted``."""
    deadline = time.monotonic() + GUARD_S
    partial = b""
    while not any(wanted in line for line in seen):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        chunk = os.read(stream.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"gave up waiting for {wanted!r}; got {seen}")
        *lines, partial = (partial + chunk).split(b"\n")
        seen += [line.decode(errors="replace") for line in lines]


def tail_process(env: dict[str, str], symbol: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "tail", symbol],
        env={**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_tail_says_on_stderr_that_it_waits_while_no_publisher_runs() -> None:
    env = {**os.environ, **port_env(free_ports())}
    proc = tail_process(env, "winz25")
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        read_until(proc.stderr, "waiting for WINZ25 trades", lines)
        assert "tcp://127.0.0.1:" in lines[-1] and "Ctrl-C stops" in lines[-1]
    finally:
        assert stop(proc) == 0


def test_tail_prints_the_first_trade_of_a_replay_started_after_it(tmp_path: Path) -> None:
    # Five PETR4 trades one second apart: a replay at real-time pace sends the first at
    # once, before tail's subscription can have reached the new publisher.
    day = dt.date(2025, 11, 3)
    batch = generate_day("PETR4", day, 5, seed=2)
    opening = int(dt.datetime.combine(day, dt.time(10, 0), tzinfo=B3_TZ).timestamp() * 1e9)
    cols = batch.columns()
    cols["ts_event"] = opening + np.arange(5, dtype=np.int64) * 1_000_000_000
    cols["trade_id"] = np.arange(101, 106, dtype=np.int64)
    path = tmp_path / "TradeIntraday_20251103_1.txt"
    reader.write_b3(path, b3.to_b3_table({"PETR4": TradeBatch(**cols)}, B3_TZ))
    env = {**os.environ, **port_env(free_ports())}
    tail = tail_process(env, "PETR4")
    try:
        assert tail.stderr is not None and tail.stdout is not None
        read_until(tail.stderr, "waiting for PETR4", [])
        replay = subprocess.run(
            [sys.executable, "-m", "tickvault.cli.main", "replay", str(path), "--speed", "1"],
            env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr.decode()
        lines: list[str] = []
        read_until(tail.stdout, "#105", lines)
    finally:
        assert stop(tail) == 0
    printed = [int(word[1:]) for line in lines for word in line.split() if word[:1] == "#"]
    assert printed == [101, 102, 103, 104, 105]


class _Keep:
    """A subscriber handler that keeps what it is given."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.gaps: list[Gap] = []

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        self.ids += [int(t) for t in msg.records()["trade_id"]]

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        raise AssertionError(error)


def _trade(trade_id: int) -> Any:
    rec = np.zeros(1, dtype=TRADE_DTYPE)
    rec["ts_event"] = rec["ts_recv"] = 1_762_171_200_000_000_000 + trade_id
    rec["trade_id"], rec["price"], rec["qty"] = trade_id, 10.0, 1
    return rec


@pytest.mark.parametrize("before", [1, 3000])
def test_a_late_subscriber_gets_what_was_sent_since_it_started_and_nothing_older(
    endpoints: Endpoints, before: int
) -> None:
    settings = load_settings(zmq_heartbeat_s=0.05)
    with Publisher(settings, endpoints=endpoints) as pub:
        for i in range(before):  # a publisher running long before the viewer
            pub.publish_records(Kind.TRADE, "PETR4", _trade(i))
            pub.flush()
        since = time.time_ns()
        for i in (10_001, 10_002, 10_003):  # sent before any subscription exists
            pub.publish_records(Kind.TRADE, "PETR4", _trade(i))
            pub.flush()
        keep = _Keep()
        sub = Subscriber(settings, handler=keep, endpoints=[endpoints], kinds=[Kind.TRADE],
                         recover_from_start=False, recover_since_ns=since).start()  # fmt: skip
        try:
            wait_for(lambda: keep.ids == [10_001, 10_002, 10_003], "the look-back")
            pub.publish_records(Kind.TRADE, "PETR4", _trade(10_004))
            wait_for(lambda: len(keep.ids) == 4, "the next live trade")
        finally:
            sub.close()
        replayed = pub.stats().replayed_messages
    assert keep.ids == [10_001, 10_002, 10_003, 10_004] and keep.gaps == []
    # It looked back step by step, not through the whole buffer.
    assert replayed <= 3 + 8 + 32


def test_backfill_rejects_days_that_are_not_above_zero(
    own_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    for days in ("-1", "0"):
        result = CliRunner().invoke(cli, ["backfill", "WINZ25", "--days", days])
        assert result.exit_code == 2
        assert "Invalid value for '--days'" in result.output and "x>0" in result.output
    assert not own_data_dir.exists()  # refused before opening the store


def test_query_last_below_zero_names_the_option(
    own_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    result = CliRunner().invoke(cli, ["query", "WINZ25", "--last", "-3"])
    assert result.exit_code == 2
    assert "Invalid value for '--last': -3 is not in the range x>=0" in result.output
    assert "n must be" not in result.output
