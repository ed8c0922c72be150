"""A publisher killed (kill -9, no END) with messages only its journal holds, and a new
publisher taking its place on the same endpoints and journal directory: the subscriber
delivers the old publisher's tail, from the journal, before the new publisher's first
message, so a consumer that moves forward only (the feature worker skips trades older
than the last it handled) loses none of them. Regression test of the fix the chaos run
"kill -9 publisher" found (14,845 feature rows lost: the tail came after newer trades).

Real processes (the old publisher runs in its own and is killed), real ZeroMQ sockets,
real journal files, the real embedded Valkey. Between the publishers and the consumers
a ``FaultyLink`` passes the old publisher's first ``SEEN`` messages and drops what it
sends after them (data and heartbeats), as a consumer that was not reading would miss
them: only the journal on disk has them then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.integration.test_faults import FaultyLink
from tests.integration.test_live import GUARD_S, wait_for
from tickvault import Vault
from tickvault.bench.chaos import check_rows, expected_rows
from tickvault.engine.rows import FeatureRows
from tickvault.feeds.sim.generator import generate_trades
from tickvault.live.features import FeatureWorker, seq_field
from tickvault.records.events import Gap
from tickvault.transport import wire
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.subscriber import Subscriber
from tickvault.transport.wire import Kind, Message, WireError

SYMBOL, TOPIC = "WINZ25", "trade.WINZ25"
PER_MESSAGE = 10
OLD_MESSAGES, SEEN, NEW_MESSAGES = 300, 100, 100
"""The old publisher sends 300 messages; the consumers receive the first 100 only."""
TRADES = (OLD_MESSAGES + NEW_MESSAGES) * PER_MESSAGE
OLD_ID, NEW_ID = 0x0A0A0A0A0A0A0A0A, 0x0B0B0B0B0B0B0B0B

_OLD_PUBLISHER = """
import sys
from tickvault.config import Settings
from tickvault.feeds.sim.generator import generate_trades
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher

directory, journal, pub_id, n, seen, per = sys.argv[1:7]
n, seen, per = int(n), int(seen), int(per)
arr = generate_trades("WINZ25", int(sys.argv[7]), seed=1, trades_per_day=int(sys.argv[7]))
arr = arr.to_structured()
pub = Publisher(Settings(journal_dir=journal), endpoints=Endpoints.ipc(directory),
                publisher_id=int(pub_id, 16))
print("up", flush=True)
for start, stop in ((0, seen), (seen, n)):
    sys.stdin.readline()
    for i in range(start, stop):
        pub.publish_trades("WINZ25", arr[i * per : (i + 1) * per])
        pub.flush()
    print("sent", flush=True)  # and in the journal (written before it is sent)
sys.stdin.readline()  # killed here: never closed, no END
"""


@dataclass
class _Recorder:
    """A subscriber's handler that keeps what it is given, in order."""

    delivered: list[tuple[int, int, list[int]]] = field(default_factory=list)
    """(publisher, seq, trade ids) per message."""
    gaps: list[Gap] = field(default_factory=list)
    invalid: list[WireError] = field(default_factory=list)

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        if msg.kind is Kind.TRADE:
            ids = msg.records()["trade_id"].tolist()
            self.delivered.append((msg.publisher, msg.seq, ids))

    def on_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        self.invalid.append(error)

    def count(self, publisher: int) -> int:
        return sum(1 for p, _, _ in list(self.delivered) if p == publisher)


def _old_tail_dropped(frames: list[bytes]) -> list[list[bytes]]:
    """What the link passes on: everything but the old publisher's messages after SEEN."""
    try:
        msg = wire.decode(frames, max_bytes=2**24)
    except WireError:
        return [frames]
    if msg.publisher == OLD_ID and msg.seq > SEEN:
        return []
    return [frames]


def _tell(proc: subprocess.Popen[bytes], expect: bytes) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == expect


def test_a_new_publisher_after_a_killed_one_comes_after_the_killed_ones_journal_tail(
    vault: Vault, tmp_path: Path
) -> None:
    upstream, downstream = tmp_path / "up", tmp_path / "down"
    upstream.mkdir()
    downstream.mkdir()
    journal = tmp_path / "journal"
    # A killed publisher counts as silent (and its journal is read) after 10 heartbeats
    # without a word: 20 s here, so the new publisher's messages come well before that.
    v = vault.with_settings(journal_dir=journal, zmq_heartbeat_s=2.0)
    arr = generate_trades(SYMBOL, TRADES, seed=1, trades_per_day=TRADES).to_structured()
    up, down = Endpoints.ipc(str(upstream)), Endpoints.ipc(str(downstream))
    link = FaultyLink(up, down, _old_tail_dropped)
    recorder = _Recorder()
    sub = Subscriber(v.settings, handler=recorder, endpoints=[down], kinds=(Kind.TRADE,))
    worker = FeatureWorker(v, [SYMBOL], endpoints=[down], publish=False)
    old = subprocess.Popen(
        [sys.executable, "-c", _OLD_PUBLISHER, str(upstream), str(journal), f"{OLD_ID:016x}",
         str(OLD_MESSAGES), str(SEEN), str(PER_MESSAGE), str(TRADES)],
        env={**os.environ}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert old.stdout is not None
    sub.start()
    worker.start()
    try:
        assert old.stdout.readline() == b"up\n"
        wait_for(worker.ready.is_set, "the feature worker to warm up")
        _tell(old, b"sent\n")  # messages 1..SEEN reach both consumers
        wait_for(lambda: recorder.count(OLD_ID) == SEEN, "the subscriber to get the first part")
        wait_for(lambda: worker.subscriber.stats.messages >= SEEN, "the worker to get it")
        _tell(old, b"sent\n")  # SEEN+1..OLD_MESSAGES: in the journal, never received
        old.send_signal(signal.SIGKILL)
        old.wait(GUARD_S)
        with Publisher(v.with_settings(zmq_heartbeat_s=0.5).settings, endpoints=up,
                       publisher_id=NEW_ID) as new:  # fmt: skip
            for i in range(OLD_MESSAGES, OLD_MESSAGES + NEW_MESSAGES):
                new.publish_trades(SYMBOL, arr[i * PER_MESSAGE : (i + 1) * PER_MESSAGE])
                new.flush()
            # Everything of both, however late (without the fix the old tail comes once
            # the old publisher counts as silent, after the new publisher's messages).
            every = (OLD_MESSAGES, NEW_MESSAGES)
            wait_for(lambda: (recorder.count(OLD_ID), recorder.count(NEW_ID)) == every,
                     "the subscriber to deliver it all")  # fmt: skip
            rows = FeatureRows(v)
            done = {seq_field(OLD_ID, TOPIC): str(OLD_MESSAGES),
                    seq_field(NEW_ID, TOPIC): str(NEW_MESSAGES)}  # fmt: skip
            wait_for(lambda: done.items() <= rows.cursor(SYMBOL).items(),
                     "the worker to handle every message of both")  # fmt: skip
            stats = worker.stats
    finally:
        old.kill()
        worker.close()
        sub.close()
        link.close()
    # The old publisher's tail, from its journal, before the new publisher's first message:
    # every message once, in order, none lost.
    order = [(p, s) for p, s, _ in recorder.delivered]
    assert order == [(OLD_ID, s) for s in range(1, OLD_MESSAGES + 1)] + [
        (NEW_ID, s) for s in range(1, NEW_MESSAGES + 1)
    ]
    ids = [tid for _, _, message in recorder.delivered for tid in message]
    assert ids == arr["trade_id"].tolist()
    assert recorder.gaps == [] and recorder.invalid == []
    assert sub.stats.lost_messages == 0
    # End to end: a row for every event time, none skipped as late or lost.
    assert stats.skipped_late == 0 and stats.gaps == 0
    assert stats.trades == len(arr)
    exp_t, exp_tid = expected_rows(arr["ts_event"], arr["trade_id"])
    latest = FeatureRows(v).range(SYMBOL)
    check = check_rows(exp_t, exp_tid, latest.index.to_numpy(np.int64),
                       latest["last_trade_id"].to_numpy(np.int64))  # fmt: skip
    assert (check.lost, check.doubled, check.wrong) == (0, 0, 0), check
    assert check.stored == check.expected == len(exp_t)
    # each row counted once: computed (the streams), stored (the worker), in the store
    versions = FeatureRows(v).range(SYMBOL, versions=True)
    assert stats.rows == stats.rows_by_symbol[SYMBOL] == len(versions) >= len(exp_t)
