"""The publisher's journal on disk: what is written is read back, bounds hold (real files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import sim_trades
from tickvault.transport import wire
from tickvault.transport.journal import JournalReader, JournalWriter, prune
from tickvault.transport.wire import NOTHING_HELD, Kind


def _message(topic: bytes, seq: int, n: int) -> bytes:
    records = sim_trades(n, days=1).to_structured()
    kind = wire.parse_topic(topic.decode())[0]
    return wire.encode_body(topic, kind, 5, seq, 1, records.tobytes(), n)


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=60), data=st.data())
def test_what_is_journaled_is_read_back_in_order_and_verifies(
    counts: list[int], data: st.DataObject
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _round_trip(Path(tmp), counts, data)


def _round_trip(directory: Path, counts: list[int], data: st.DataObject) -> None:
    writer = JournalWriter(directory, 5, max_bytes=1 << 30, keep_s=3600)
    topics = [b"trade.WINZ25", b"history.WINZ25"]
    sent: dict[str, list[bytes]] = {t.decode(): [] for t in topics}
    for n in counts:
        topic = data.draw(st.sampled_from(topics))
        body = _message(topic, len(sent[topic.decode()]) + 1, n)
        writer.append(topic, body)
        sent[topic.decode()].append(body)
    writer.append(
        b"trade.WINZ25", wire.encode_end(b"trade.WINZ25", 5, len(sent["trade.WINZ25"]), 1, 0)
    )
    writer.flush()
    reader = JournalReader(directory, 5)
    for topic, bodies in sent.items():
        got: list[bytes] = []
        while len(got) < len(bodies):
            answer = reader.get(topic, len(got) + 1, 2**62)
            if not bodies:
                break
            assert answer.first_held == 1 and answer.last_seq == len(bodies)
            got += answer.bodies
        assert got == bodies
        for body in got:  # each record verifies against its topic
            wire.decode([topic.encode(), body], max_bytes=2**24)
    assert reader.get("trade.WINZ25", 1, 1).ended == bool(sent["trade.WINZ25"])
    assert reader.get("trade.NONE", 1, 5).first_held == NOTHING_HELD
    reader.close()
    writer.close()


def test_a_reader_picks_up_what_the_writer_appends_and_ignores_a_torn_tail(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, 9, max_bytes=1 << 30, keep_s=3600)
    topic = b"trade.WINZ25"
    writer.append(topic, _message(topic, 1, 3))
    writer.flush()
    reader = JournalReader(tmp_path, 9)
    assert len(reader.get("trade.WINZ25", 1, 5).bodies) == 1
    writer.append(topic, _message(topic, 2, 3))
    writer.flush()
    assert len(reader.get("trade.WINZ25", 1, 5).bodies) == 2
    segment = next((tmp_path / f"{9:016x}").glob("*.tvj"))
    with segment.open("ab") as fh:  # a crash in the middle of a record
        fh.write(b"\x0c\x00\xff\xff")
    assert reader.get("trade.WINZ25", 1, 5).last_seq == 2
    writer.close()


def test_the_journal_directory_is_kept_under_its_size_and_age_bounds(tmp_path: Path) -> None:
    topic = b"trade.WINZ25"
    records = sim_trades(2000, days=1).to_structured().tobytes()  # about 116 kB a message
    writer = JournalWriter(tmp_path, 1, max_bytes=8 << 20, keep_s=3600)  # 1 MiB segments
    for seq in range(1, 200):  # about 23 MB written
        writer.append(topic, wire.encode_body(topic, Kind.TRADE, 1, seq, 1, records, 2000))
    writer.close()
    total = sum(p.stat().st_size for p in tmp_path.rglob("*.tvj"))
    assert total <= (8 << 20) + (2 << 20)  # the bound, plus the segment being written
    reader = JournalReader(tmp_path, 1)
    assert reader.get("trade.WINZ25", 1, 1).first_held > 1  # the oldest went first
    reader.close()
    old = next(tmp_path.rglob("*.tvj"))
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert prune(tmp_path, 1 << 30, keep_s=3600) == 1 and not old.exists()
