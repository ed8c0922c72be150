"""The live path with real ZeroMQ sockets and the real embedded Valkey.

Waits poll for a condition with a generous guard so a broken pipeline fails
instead of hanging; no test asserts on elapsed time.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from tests.conftest import sim_trades
from tickvault import TradeFlag, Vault, attach
from tickvault.live.bridge import Bridge
from tickvault.transport import wire
from tickvault.transport.endpoints import SOCKET_NAMES, Endpoints, free_tcp_ports
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message

GUARD_S = 60.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def free_ports() -> dict[str, int]:
    """A free TCP port per publisher socket name."""
    return dict(zip(SOCKET_NAMES, free_tcp_ports(len(SOCKET_NAMES)), strict=True))


def port_env(ports: dict[str, int]) -> dict[str, str]:
    """The TICKVAULT_ZMQ_*_PORT variables that select ``ports``."""
    return {f"TICKVAULT_ZMQ_{name.upper()}_PORT": str(port) for name, port in ports.items()}


def stored_records(vault: Vault, symbol: str) -> int:
    return sum(s.trades for s in vault.stats(symbol))


# ---------------------------------------------------------------------- attach
class _Asset:
    def __init__(self, ticker: str):
        self.ticker = ticker
        self.exchange = "F"


class _Callbacks:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def newTradeCallback(self, *args: Any) -> int:  # noqa: N802 - the user's own name
        self.seen.append(args)
        return len(self.seen)

    def newHistoryCallback(self, *args: Any) -> str:  # noqa: N802
        if args[3] < 0:
            raise ValueError("the user's own check")
        self.seen.append(args)
        return "history-ok"


class _UserFeeder:
    """A user's system: callbacks with ProfitDLL's legacy argument lists."""

    def __init__(self) -> None:
        self.callback = _Callbacks()


class _Collect:
    def __init__(self) -> None:
        self.ticks: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []

    def add_tick_data(self, tick: dict[str, Any]) -> None:
        self.ticks.append(tick)

    def add_historical_tick(self, tick: dict[str, Any]) -> None:
        self.history.append(tick)


def test_attach_publishes_without_changing_the_callbacks(
    vault: Vault, endpoints: Endpoints
) -> None:
    feeder = _UserFeeder()
    original_trade = feeder.callback.newTradeCallback
    original_history = feeder.callback.newHistoryCallback
    sink = _Collect()
    with (
        Publisher(vault.settings, endpoints=endpoints) as pub,
        Subscriber(vault.settings, sink=sink, endpoints=[endpoints]).start() as sub,
    ):
        att = attach(feeder, pub)
        asset = _Asset("winz25")
        args = (asset, "03/11/2025 10:15:30.125", 77, 128_005.0, 25_601.0, 1, 3, 8, 2, "\x00")
        assert feeder.callback.newTradeCallback(*args) == 1
        assert feeder.callback.seen[-1] == args  # same objects, untouched
        edit = (asset, "03/11/2025 10:15:30.125", 77, 128_010.0, 25_602.0, 1, 3, 8, 2, "\x01")
        assert feeder.callback.newTradeCallback(*edit) == 2
        hist = (asset, "31/10/2025 17:59:59.999", 5, 127_000.0, 50_800.0, 2, 40, 72, 3)
        assert feeder.callback.newHistoryCallback(*hist) == "history-ok"
        # A publish failure (unparseable date) never reaches the caller ...
        bad = (asset, "not a date", 78, 1.0, 1.0, 1, 1, 1, 1, "\x00")
        assert feeder.callback.newTradeCallback(*bad) == 4  # its 4th call
        assert att.failures == 1
        # ... and the original's own exception propagates unchanged, nothing published.
        with pytest.raises(ValueError, match="the user's own check"):
            feeder.callback.newHistoryCallback(
                asset, "31/10/2025 18:00:00.000", 6, -1.0, 0, 0, 0, 0, 0
            )
        pub.flush()
        wait_for(lambda: len(sink.ticks) == 2 and len(sink.history) == 1, "attached trades")
        att.detach()
        assert feeder.callback.newTradeCallback == original_trade
        assert feeder.callback.newHistoryCallback == original_history
        assert "newTradeCallback" not in vars(feeder.callback)
        feeder.callback.newTradeCallback(*args)
        assert att.published == 3
        assert sub.stats.records == 3

    first, second = sink.ticks
    # 10:15:30.125 in São Paulo (UTC-3) is 13:15:30.125 UTC
    assert first["ts_event"] == 1_762_175_730_125_000_000
    assert (first["symbol"], first["trade_id"], first["price"], first["qty"]) == (
        "WINZ25",
        77,
        128_005.0,
        1,
    )
    assert (first["buy_agent"], first["sell_agent"], first["trade_type"], first["flags"]) == (
        3,
        8,
        2,
        0,
    )
    assert second["flags"] == TradeFlag.EDIT and second["price"] == 128_010.0
    (h,) = sink.history
    assert h["flags"] & TradeFlag.HISTORY and h["trade_id"] == 5 and h["volume"] == 50_800.0


# ---------------------------------------------------------------------- slow subscriber
class _GatedBridge(Bridge):
    """A bridge that handles nothing until ``gate`` opens: its subscriber thread waits in
    the first ``on_message``, so it reads nothing more and its queue overflows whatever
    the machine's load."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def on_message(self, msg: Message) -> None:
        self.gate.wait(GUARD_S)
        super().on_message(msg)


def _kernel_buffer_bytes() -> int:
    """The most loopback TCP can hold between a publisher and a subscriber that stopped
    reading: the largest receive buffer plus the largest send buffer."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            total += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            total += 64 * 2**20
    return total


PER_MESSAGE = 2000
"""Trades per message (under zmq_max_batch, so each publish_trades + flush is one)."""


def _overflowing_batch(symbol: str) -> Any:
    """More trades than ZeroMQ's queues (high-water mark 2) and the kernel's buffers can
    hold: a subscriber that reads nothing until all is sent must miss some."""
    message_bytes = wire.HEADER_SIZE + PER_MESSAGE * wire.TRADE_RECORD.size
    messages = _kernel_buffer_bytes() // message_bytes + 16
    return sim_trades(messages * PER_MESSAGE, symbol=symbol, days=1)


def _publish_in_messages(pub: Publisher, symbol: str, batch: Any, per_message: int) -> None:
    arr = batch.to_structured()
    for i in range(0, len(arr), per_message):
        pub.publish_trades(symbol, arr[i : i + per_message])
        pub.flush()  # one message each


def test_slow_subscriber_past_its_high_water_mark_loses_nothing(
    vault: Vault, endpoints: Endpoints
) -> None:
    v = vault.with_settings(zmq_hwm=2)
    batch = _overflowing_batch("WINZ25")
    with Publisher(v.settings, endpoints=endpoints) as pub:
        bridge = _GatedBridge(v, endpoints=[endpoints]).start()
        try:
            _publish_in_messages(pub, "WINZ25", batch, PER_MESSAGE)
            bridge.gate.set()  # everything sent (or dropped): the bridge reads again
            wait_for(lambda: bridge.stats.trades_stored >= len(batch), "all trades stored")
            sub = bridge.subscriber.stats
        finally:
            bridge.gate.set()
            bridge.close()
    assert sub.gaps_detected > 0 and sub.recovered_messages > 0  # the queue did overflow
    assert sub.lost_messages == 0
    stored = vault.range_columns("WINZ25")
    assert len(stored["trade_id"]) == len(batch)
    assert np.array_equal(np.sort(stored["trade_id"]), np.sort(batch.trade_id))
    assert stored_records(vault, "WINZ25") == len(batch)  # nothing stored twice
    assert vault.gaps("WINZ25") == []


def test_unrecoverable_range_becomes_a_gap_marker(vault: Vault, endpoints: Endpoints) -> None:
    # A replay buffer of ~20 kB holds less than one message, and there is no journal.
    v = vault.with_settings(
        zmq_hwm=2, zmq_replay_buffer_mb=0.02, zmq_replay_timeout_s=1.0, journal=False
    )
    batch = _overflowing_batch("WDOZ25")
    with Publisher(v.settings, endpoints=endpoints) as pub:
        bridge = _GatedBridge(v, endpoints=[endpoints]).start()
        try:
            _publish_in_messages(pub, "WDOZ25", batch, PER_MESSAGE)
            bridge.gate.set()
            sub = bridge.subscriber.stats
            wait_for(lambda: sub.records + sub.lost_messages * PER_MESSAGE >= len(batch),
                     "the end")  # fmt: skip
            wait_for(bridge.idle, "the bridge to write")
        finally:
            bridge.gate.set()
            bridge.close()
    assert sub.lost_messages > 0
    gaps = vault.gaps("WDOZ25")
    assert gaps and all(g.stream == "realtime" and g.reason == "evicted" for g in gaps)
    assert sum(g.seq_last - g.seq_first + 1 for g in gaps) == sub.lost_messages
    stored = vault.range_columns("WDOZ25")
    assert len(stored["trade_id"]) == len(batch) - PER_MESSAGE * sub.lost_messages
    # Every missing trade lies inside a marked gap; nothing outside the gaps is missing.
    missing = np.setdiff1d(batch.ts_event, stored["ts_event"])
    inside = np.zeros(missing.shape, dtype=bool)
    for g in gaps:
        inside |= (missing >= g.start_ns) & (missing <= g.end_ns)
    assert inside.all()
    assert vault.gaps("WDOZ25", end=int(batch.ts_event[0])) == []


# ---------------------------------------------------------------------- SIGKILL and restart
def _bridge_process(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir), **port_env(ports)}
    return subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "bridge"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_bridge_killed_and_restarted_loses_nothing_and_stores_nothing_twice(
    own_data_dir: Path,
) -> None:
    ports = free_ports()
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    batch = sim_trades(40_000, symbol="WINZ25", days=1)
    arr = batch.to_structured()
    with Vault.open(data_dir=own_data_dir, **overrides) as vault, Publisher(vault.settings) as pub:
        first = _bridge_process(own_data_dir, ports)
        try:
            for i in range(0, 20_000, 100):
                pub.publish_trades("WINZ25", arr[i : i + 100])
                pub.flush()
            wait_for(lambda: stored_records(vault, "WINZ25") > 5_000, "the first bridge to store")
            first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-write
            first.wait()
            for i in range(20_000, len(arr), 100):
                pub.publish_trades("WINZ25", arr[i : i + 100])
                pub.flush()
        finally:
            first.kill()
        second = _bridge_process(own_data_dir, ports)
        try:
            wait_for(
                lambda: len(vault.range_columns("WINZ25")["trade_id"]) == len(arr),
                "the restarted bridge to catch up",
            )
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=GUARD_S)
        finally:
            second.kill()
        assert second.returncode == 0, err.decode()
        assert b"bridge stopped" in err
        assert stored_records(vault, "WINZ25") == len(arr)  # nothing twice
        assert vault.gaps("WINZ25") == []


# ---------------------------------------------------------------------- malformed input
def test_malformed_messages_are_quarantined_and_the_valid_ones_stored(
    vault: Vault, endpoints: Endpoints
) -> None:
    v = vault.with_settings(zmq_max_message_bytes=4096, zmq_replay_timeout_s=1.0)
    ctx = zmq.Context.instance()
    raw: zmq.Socket[bytes] = ctx.socket(zmq.PUB)
    raw.bind(endpoints.ticks)
    publisher_id = 42
    trades = sim_trades(12, symbol="WINZ25", days=1).to_structured()
    topic = b"trade.WINZ25"

    def body(seq: int, records: Any, on: bytes = topic) -> bytes:
        return wire.encode_body(
            on, Kind.TRADE, publisher_id, seq, time.time_ns(), records.tobytes(), len(records)
        )

    bridge = Bridge(v, endpoints=[endpoints]).start()
    try:
        # The first message is repeated until the bridge is surely subscribed.
        wait_for(lambda: (raw.send_multipart([topic, body(1, trades[0:1])]) or
                          bridge.stats.trades_stored >= 1), "the bridge to subscribe")  # fmt: skip
        nan_price = trades[3:4].copy()
        nan_price["price"] = math.nan
        negative = trades[4:5].copy()
        negative["price"] = -5.0
        good = body(2, trades[1:3])
        bad_version = bytearray(body(9, trades[5:6]))
        bad_version[2] = 99
        sequence: list[list[bytes]] = [
            [topic, b"\x00garbage\xff" * 10],  # garbage
            [topic, good[:-7]],  # truncated payload: fails the checksum
            [topic, good[:20]],  # truncated header
            [topic, bytes(bad_version)],  # wrong version
            [topic, body(9, np.repeat(trades[5:6], 80))],  # oversized (> 4096 bytes)
            [b"trade.bad{symbol}", body(1, trades[5:6], b"trade.bad{symbol}")],  # bad symbol
            [topic],  # a frame missing
            [topic, good],  # valid, seq 2
            [topic, body(3, nan_price)],  # NaN price: seq 3 stays missing
            [topic, body(4, negative)],  # negative price (seq 4)
            [topic, body(5, trades[5:12])],  # valid
        ]
        for frames in sequence:
            raw.send_multipart(frames)
        wait_for(lambda: bridge.stats.trades_stored >= 1 + 2 + 7, "the valid messages")
        wait_for(lambda: sum(bridge.stats.rejected.values()) >= 9, "the rejections")
        wait_for(bridge.idle, "the bridge to write")
        rejected = dict(bridge.stats.rejected)
    finally:
        bridge.close()
        raw.close(linger=0)
    stored = vault.range_columns("WINZ25")
    expected_ids = np.concatenate([trades["trade_id"][0:3], trades["trade_id"][5:12]])
    assert sorted(stored["trade_id"].tolist()) == sorted(expected_ids.tolist())
    assert rejected == {"magic": 1, "truncated": 1, "checksum": 1, "version": 1, "oversized": 1,
                        "symbol": 1, "frames": 1, "price": 2}  # fmt: skip
    kept = vault.quarantined()
    assert len(kept) == 9
    assert {k["reason"] for k in kept} == set(rejected)
    garbage = next(k for k in kept if k["reason"] == "magic")
    assert garbage["f1"] == b"\x00garbage\xff" * 10  # kept raw
    assert all("price" in k["detail"] for k in kept if k["reason"] == "price")
    # Rejected for their values, seqs 3 and 4 were asked for again; with no replay service
    # to supply them they are a recorded gap, never skipped in silence.
    (gap,) = vault.gaps("WINZ25")
    assert (gap.seq_first, gap.seq_last, gap.reason) == (3, 4, "no replay answer")


# ---------------------------------------------------------------------- CLI
def test_demo_runs_the_live_pipeline_and_leaves_the_data_queryable(own_data_dir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tickvault.storage.server import read_state

    env = {**os.environ, "TICKVAULT_DATA_DIR": str(own_data_dir), "COLUMNS": "200",
           **port_env(free_ports())}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "demo", "--speed", "max",
         "--symbols", "WINZ25,WDOZ25"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def both_stored() -> bool:
        state = read_state(own_data_dir.resolve())
        if state is None:
            return False
        with Vault.open(state.url) as peek:
            return all(peek.stats(s) for s in ("WINZ25", "WDOZ25"))

    try:  # stopped with Ctrl-C, as a user would, once it has stored both symbols
        wait_for(lambda: proc.poll() is not None or both_stored(), "the demo to store")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=GUARD_S)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "lost 0)" in text and "read back from Valkey" in text, text
    assert read_state(own_data_dir.resolve()) is None  # the demo stopped its server
    with Vault.open(data_dir=own_data_dir) as vault:
        assert set(vault.symbols()) == {"WINZ25", "WDOZ25"}, text
        stored = vault.range_columns("WINZ25")
        assert len(stored["trade_id"]) > 0
        assert np.unique(stored["trade_id"]).size == len(stored["trade_id"])


def test_two_bridges_on_different_symbols_split_the_work(
    vault: Vault, endpoints: Endpoints
) -> None:
    win = sim_trades(3_000, symbol="WINZ25", days=1)
    wdo = sim_trades(2_000, symbol="WDOZ25", days=1)
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        b1 = Bridge(vault, symbols=["winz25"], endpoints=[endpoints]).start()
        b2 = Bridge(vault, symbols=["WDOZ25"], endpoints=[endpoints]).start()
        try:
            _publish_in_messages(pub, "WINZ25", win, 500)
            _publish_in_messages(pub, "WDOZ25", wdo, 500)
            wait_for(
                lambda: b1.stats.trades_stored == len(win) and b2.stats.trades_stored == len(wdo),
                "both bridges",
            )
        finally:
            b1.close()
            b2.close()
    assert set(b1.stats.stored_by_symbol) == {"WINZ25"}
    assert set(b2.stats.stored_by_symbol) == {"WDOZ25"}
    assert stored_records(vault, "WINZ25") == len(win)
    assert stored_records(vault, "WDOZ25") == len(wdo)


def test_publisher_and_subscriber_without_settings_use_the_defaults_not_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickvault.config import Settings

    (tmp_path / "tickvault.toml").write_text("zmq_hwm = 5\nzmq_replay_timeout_s = 9.0\n")
    monkeypatch.chdir(tmp_path)
    defaults = Settings.model_validate({})
    eps = Endpoints.ipc(str(tmp_path))
    with Publisher(endpoints=eps) as pub:
        assert pub.settings.zmq_hwm == defaults.zmq_hwm != 5
        sub = Subscriber(sink=_Collect(), endpoints=[eps])
        try:
            assert sub.settings.zmq_replay_timeout_s == defaults.zmq_replay_timeout_s != 9.0
        finally:
            sub.close()
