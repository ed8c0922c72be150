"""Backfill from feeders' history APIs and replay of trade files through the live path."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_import import SP, _trades, assert_matches_file
from tests.integration.test_live import wait_for
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.errors import FeedError
from tickvault.feeds.base import Feeder, FeedEvents, NullEvents
from tickvault.feeds.files import FileFeeder
from tickvault.files import b3, reader
from tickvault.ingest.backfill import backfill
from tickvault.live.bridge import Bridge
from tickvault.live.pipeline import FeedRunner, Pipeline
from tickvault.records.trades import TradeFlag
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.venue.b3 import B3_TZ


@pytest.fixture
def b3_plain(tmp_path: Path) -> Path:
    path = tmp_path / "TradeIntraday_20251103_1.txt"
    reader.write_b3(path, b3.to_b3_table(_trades(2000), SP))
    return path


def test_file_replay_through_the_live_path(
    vault: Vault, b3_plain: Path, endpoints: Endpoints
) -> None:
    feeder = FileFeeder([b3_plain], SP, speed=None)
    pipe = Pipeline(vault, feeder, endpoints=endpoints).start()
    wait_for(lambda: not pipe.feed.running, "replay finished")
    assert pipe.stop()
    assert feeder.delivered == feeder.total == 3000
    for symbol in ("WINZ25", "WDOZ25"):
        assert_matches_file(vault, b3_plain, symbol)
    frame = vault.range("WINZ25", "2025-11-03", "2025-11-04", streams=["realtime"])
    assert not (frame["flags"] & int(TradeFlag.HISTORY)).any()  # replayed as live
    assert (frame["ts_recv"].astype("int64").to_numpy() > frame.index.asi8).all()


def test_replay_paces_by_event_time() -> None:
    """Paced replay delivers in event order across symbols, one burst per symbol and
    timestamp, and never before its event time scaled by the speed.

    The pacing check is a lower bound (a burst is held at least until it is due), so a
    loaded machine cannot fail it; a replay that ignored its speed would deliver the
    six bursts, 0.5 s of event time apart at 10x, within microseconds and fail it."""
    speed = 10.0
    feeder = FileFeeder.__new__(FileFeeder)
    t0 = int(dt.datetime(2025, 11, 3, 10, tzinfo=B3_TZ).timestamp()) * 10**9
    base = _trades(3)["WINZ25"].to_structured()[:3]
    base["ts_event"] = [t0, t0 + 2 * 10**9, t0 + 4 * 10**9]
    other = base.copy()
    other["ts_event"] += 10**9
    feeder.trades = {"A": base, "B": other}
    feeder.symbols = ("A", "B")
    feeder.pacer_speed = speed
    feeder.delivered = 0
    order: list[tuple[str, int, float]] = []

    class Events(NullEvents):
        def on_trade(self, symbol: str, trades: np.ndarray) -> None:
            order.append((symbol, int(trades["ts_event"][0]), time.monotonic()))

    started = time.monotonic()
    feeder.run(Events(), threading.Event())
    assert [ts for _, ts, _ in order] == sorted(ts for _, ts, _ in order)
    assert [s for s, _, _ in order] == ["A", "B", "A", "B", "A", "B"]
    first_ts = order[0][1]
    for _, ts, delivered_at in order:
        assert delivered_at - started >= (ts - first_ts) / 1e9 / speed


def test_backfill_from_the_simulator_and_from_files(vault: Vault, b3_plain: Path) -> None:
    from tickvault.feeds.sim import SimulatedFeeder

    sim = SimulatedFeeder(["WINZ25"], speed=None, trades_per_day=5000)
    start = int(dt.datetime(2025, 11, 3, 0, tzinfo=B3_TZ).timestamp()) * 10**9
    end = start + 3 * 86_400 * 10**9
    report = backfill(vault, sim, "WINZ25", start, end)
    expected = sum(len(sim.day_trades("WINZ25", d)) for d in (dt.date(2025, 11, 3),
                                                               dt.date(2025, 11, 4),
                                                               dt.date(2025, 11, 5)))  # fmt: skip
    assert report.stored == expected
    got = vault.range("WINZ25", start, end, streams=["historical"])
    assert len(got) == expected and (got["flags"] & int(TradeFlag.HISTORY)).all()

    vault.client.flushdb()
    files = FileFeeder([b3_plain], SP, speed=None)
    backfill(vault, files, "WDOZ25", start, end)
    assert_matches_file(vault, b3_plain, "WDOZ25")


class _NoHistory(Feeder):
    name = "nohistory"

    def run(self, events: FeedEvents, stop: threading.Event) -> None:
        stop.wait()


def test_backfill_needs_a_history_api(vault: Vault) -> None:
    with pytest.raises(FeedError, match="no history API"):
        backfill(vault, _NoHistory(), "WINZ25", 0, 1)


def test_a_reconnect_without_history_becomes_a_gap_marker(
    vault: Vault, endpoints: Endpoints
) -> None:
    t0 = int(dt.datetime(2025, 11, 3, 10, tzinfo=B3_TZ).timestamp()) * 10**9
    trades = _trades(10)["WINZ25"].to_structured()[:4]
    trades["ts_event"] = [t0, t0 + 1000, t0 + 10**9, t0 + 10**9 + 5]

    class Flaky(Feeder):
        name = "flaky"

        def run(self, events: FeedEvents, stop: threading.Event) -> None:
            events.on_state(2, 4)
            events.on_trade("WINZ25", trades[:2])
            events.on_state(2, 0)  # the link drops ...
            events.on_state(2, 4)  # ... and comes back
            events.on_trade("WINZ25", trades[2:])
            stop.wait()

    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        runner = FeedRunner(Flaky(), pub).start()
        try:
            wait_for(lambda: len(vault.gaps("WINZ25", t0, t0 + 2 * 10**9)) == 1, "gap marker")
        finally:
            runner.stop()
            bridge.close()
    [gap] = vault.gaps("WINZ25", t0, t0 + 2 * 10**9)
    assert (gap.start_ns, gap.end_ns) == (t0 + 1001, t0 + 10**9)
    assert "no history API" in gap.reason
    assert runner.gap_filler is not None and runner.gap_filler.stats.gaps == 1


def test_market_state_6_marks_its_span_for_a_history_check(
    vault: Vault, endpoints: Endpoints
) -> None:
    """State 6 (partially connected: callbacks may be lost) spans from the last trade
    before it, included, to the first trade once market data is connected again; trades
    received meanwhile do not end it."""
    t0 = int(dt.datetime(2025, 11, 3, 10, tzinfo=B3_TZ).timestamp()) * 10**9
    trades = _trades(10)["WINZ25"].to_structured()[:4]
    trades["ts_event"] = [t0, t0 + 1000, t0 + 2000, t0 + 10**9]

    class Partial(Feeder):
        name = "partial"

        def run(self, events: FeedEvents, stop: threading.Event) -> None:
            events.on_state(2, 4)
            events.on_trade("WINZ25", trades[:2])
            events.on_state(2, 6)  # callbacks not drained fast enough: some may be lost
            events.on_trade("WINZ25", trades[2:3])
            events.on_state(2, 4)
            events.on_trade("WINZ25", trades[3:])
            stop.wait()

    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        runner = FeedRunner(Partial(), pub).start()
        try:
            wait_for(lambda: len(vault.gaps("WINZ25", t0, t0 + 2 * 10**9)) == 1, "gap marker")
        finally:
            runner.stop()
            bridge.close()
    [gap] = vault.gaps("WINZ25", t0, t0 + 2 * 10**9)
    assert (gap.start_ns, gap.end_ns) == (t0 + 1000, t0 + 10**9)
    assert "partially connected" in gap.reason and "no history API" in gap.reason
    assert runner.gap_filler is not None and runner.gap_filler.stats.spans == [
        ("WINZ25", t0 + 1000, t0 + 10**9)
    ]


def test_replay_and_backfill_cli(
    own_data_dir: Path, b3_plain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_live import free_ports, port_env

    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    for name, value in port_env(free_ports()).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    result = runner.invoke(cli, ["replay", str(b3_plain), "--speed", "max", "--store"])
    assert result.exit_code == 0, result.output
    assert "stored 3,000" in result.output
    result = runner.invoke(cli, ["backfill", "WDOZ25", "--feed", "file", "--file", str(b3_plain),
                                 "--days", "2000"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stored 1,000 history trades" in result.output
    result = runner.invoke(cli, ["backfill", "WINZ25", "--feed", "file"])
    assert result.exit_code != 0 and "--file" in result.output
    result = runner.invoke(cli, ["backfill", "WINZ25", "--feed", "profitdll"])
    assert result.exit_code == 2 and "TICKVAULT_PROFITDLL_KEY" in result.output
    with Vault.open(data_dir=own_data_dir) as vault:
        assert_matches_file(vault, b3_plain, "WINZ25")
