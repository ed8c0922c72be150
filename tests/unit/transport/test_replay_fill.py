"""``ReplayBuffer.fill``: what the publisher reports of its replay buffer (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.transport.replay import ReplayBuffer

TOPICS = ("trade.A", "trade.B", "book.A")


@settings(max_examples=200, deadline=None)
@given(
    max_bytes=st.integers(1, 400),
    adds=st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(1, 60)), max_size=80),
)
def test_fill_adds_up_and_names_the_oldest_message_held(
    max_bytes: int, adds: list[tuple[str, int]]
) -> None:
    buf = ReplayBuffer(max_bytes)
    seqs: dict[str, int] = {}
    kept: list[tuple[str, int, int]] = []  # what a plain model of the buffer holds
    for topic, size in adds:
        seqs[topic] = seqs.get(topic, 0) + 1
        buf.add(topic, seqs[topic], bytes(size), 1)
        kept.append((topic, seqs[topic], size))
        while sum(s for *_, s in kept) > max_bytes:
            kept.pop(0)
    fill = buf.fill()
    assert fill.max_bytes == max_bytes
    assert fill.bytes == sum(s for *_, s in kept) <= max_bytes
    assert fill.messages == len(kept)
    assert fill.evicted == len(adds) - len(kept)
    assert (fill.oldest_topic, fill.oldest_seq) == (kept[0][:2] if kept else ("", 0))
    assert set(fill.topics) == set(seqs)
    for topic, t in fill.topics.items():
        mine = [(seq, s) for name, seq, s in kept if name == topic]
        assert t.last_seq == seqs[topic]
        assert (t.messages, t.bytes) == (len(mine), sum(s for _, s in mine))
        assert t.first_seq == (mine[0][0] if mine else 0)
    assert sum(t.bytes for t in fill.topics.values()) == fill.bytes
