"""The subscriber's sequencing as a pure state machine: deliveries in, actions out.

A simulated publisher (the real, pure ``ReplayBuffer``) answers the sequencer's replay
requests; the network duplicates, reorders and drops messages and answers at will.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from hypothesis import event, given, settings
from hypothesis import strategies as st
from tickvault.records.events import Gap
from tickvault.records.trades import TRADE_DTYPE
from tickvault.transport import wire
from tickvault.transport.replay import ReplayBuffer
from tickvault.transport.sequencer import (
    Ack,
    Action,
    Deliver,
    Lost,
    Reject,
    Request,
    Sequencer,
)
from tickvault.transport.wire import Kind, Message, WireError

TOPIC = "trade.WINZ25"
PUB = 0xFEED
S = 10**9
TIMEOUT_S = 1.0
MAX_BYTES = 2**24


def _body(seq: int, *, publisher: int = PUB, ts_send: int | None = None) -> bytes:
    rec = np.zeros(1, dtype=TRADE_DTYPE)
    rec["ts_event"] = seq * 1000
    rec["trade_id"] = seq
    send = seq * 1000 if ts_send is None else ts_send
    return wire.encode_body(TOPIC.encode(), Kind.TRADE, publisher, seq, send, rec.tobytes(), 1)


def _msg(seq: int, **kw: int) -> Message:
    return wire.decode([TOPIC.encode(), _body(seq, **kw)], max_bytes=MAX_BYTES)


def _heartbeat(seq: int) -> Message:
    body = wire.encode_heartbeat(TOPIC.encode(), PUB, seq, 0, seq * 1000)
    return wire.decode([TOPIC.encode(), body], max_bytes=MAX_BYTES)


def _end_notice(seq: int) -> list[bytes]:
    return [
        wire.END_MAGIC,
        TOPIC.encode(),
        wire.encode_end(TOPIC.encode(), PUB, seq, 0, seq * 1000),
    ]


def _answer(buffer: ReplayBuffer, req: Request) -> list[bytes]:
    """The publisher's replay service answering ``req`` from ``buffer``."""
    got = buffer.get(req.topic, req.first, req.last)
    status = wire.REPLAY_STATUS.pack(
        got.first_held, len(got.bodies), got.first_ts_event, got.last_seq, got.last_ts_event,
        int(got.ended), req.tag,
    )  # fmt: skip
    return [wire.REPLAY_MAGIC, req.topic.encode(), req.publisher.to_bytes(8, "little"), status,
            *got.bodies]  # fmt: skip


@dataclass
class Run:
    """What the shell would have done with the actions: the handler's view."""

    delivered: list[int] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rejected: list[WireError] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)

    def take(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Deliver):
                self.delivered.append(a.msg.seq)
            elif isinstance(a, Lost):
                self.gaps.append(a.gap)
            elif isinstance(a, Reject):
                self.rejected.append(a.error)
            elif isinstance(a, Request):
                self.requests.append(a)
            else:
                self.acks.append(a)

    def lost(self) -> list[int]:
        return [s for g in self.gaps for s in range(g.seq_first, g.seq_last + 1)]


def _sequencer(**kw: object) -> Sequencer:
    args: dict[object, object] = {"max_jump": 10**6, "timeout_s": TIMEOUT_S, "max_bytes": MAX_BYTES}
    args.update(kw)
    return Sequencer(**args)  # type: ignore[arg-type]


def _settle(seq: Sequencer, run: Run, buffer: ReplayBuffer, now: int) -> int:
    """Answer every request, and let time pass, until nothing is pending."""
    for _ in range(10_000):
        if run.requests:
            req = run.requests.pop(0)
            run.take(seq.replay_answer(0, _answer(buffer, req), now))
            continue
        wake = seq.next_wakeup()
        if wake is None:
            return now
        now = max(now, wake) + 1
        run.take(seq.expire(now))
        actions, journals = seq.due(now)
        assert journals == []
        run.take(actions)
    raise AssertionError("the sequencer never settled")


# ---------------------------------------------------------------------- examples
def test_sequencer_messages_in_order_are_delivered_at_once_without_requests() -> None:
    seq, run = _sequencer(), Run()
    for s in range(1, 6):
        run.take(seq.accept(0, _msg(s), now=s))
    assert run.delivered == [1, 2, 3, 4, 5] and run.requests == [] and run.gaps == []
    assert seq.stats.messages == 5 and seq.stats.duplicates == 0


def test_sequencer_duplicate_is_dropped_and_counted() -> None:
    seq, run = _sequencer(), Run()
    for s in (1, 2, 2, 1, 3):
        run.take(seq.accept(0, _msg(s), now=1))
    assert run.delivered == [1, 2, 3] and seq.stats.duplicates == 2


def test_sequencer_hole_holds_later_messages_and_asks_for_the_missing_range() -> None:
    seq, run = _sequencer(), Run()
    run.take(seq.accept(0, _msg(1), now=1))
    run.take(seq.accept(0, _msg(4), now=2))
    assert run.delivered == [1]
    assert [(r.first, r.last) for r in run.requests] == [(2, 3)]
    assert seq.stats.gaps_detected == 1
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 5):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    run.take(seq.replay_answer(0, _answer(buffer, run.requests.pop()), now=3))
    assert run.delivered == [1, 2, 3, 4] and run.gaps == []
    assert seq.stats.recovered_messages == 2


def test_sequencer_evicted_range_becomes_one_gap_and_delivery_moves_on() -> None:
    seq, run = _sequencer(), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(5, 9):  # 1..4 already evicted
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    run.take(seq.accept(0, _msg(7), now=1))
    assert [(r.first, r.last) for r in run.requests] == [(1, 6)]
    _settle(seq, run, buffer, 2)
    assert run.delivered == [5, 6, 7, 8]  # 8: the answer said it was published
    assert [(g.seq_first, g.seq_last, g.reason) for g in run.gaps] == [(1, 4, "evicted")]
    assert run.gaps[0].publisher == f"{PUB:016x}" and run.gaps[0].symbol == "WINZ25"


def test_sequencer_unanswered_request_is_reported_lost_after_the_timeout_only() -> None:
    seq, run = _sequencer(), Run()
    run.take(seq.accept(0, _msg(1), now=0))
    run.take(seq.accept(0, _msg(3), now=0))
    assert run.requests and seq.next_wakeup() == int(TIMEOUT_S * S)
    run.take(seq.expire(int(TIMEOUT_S * S) - 1))
    assert run.gaps == []
    run.take(seq.expire(int(TIMEOUT_S * S) + 1))
    assert run.lost() == [2] and run.gaps[0].reason == "no replay answer"
    assert run.delivered == [1, 3]


def test_sequencer_repeated_range_waits_with_backoff() -> None:
    """The publisher keeps announcing 2 (heartbeats after each request) but its answers
    do not hold it yet: the same range is asked again, each time later."""
    seq, run = _sequencer(), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    buffer.add(TOPIC, 1, _body(1), 1000, 1000)
    run.take(seq.accept(0, _msg(1), now=0))
    run.take(seq.accept(0, _heartbeat(2), now=0))
    now, sent_at = 0, []
    for _ in range(5):
        while not run.requests:
            wake = seq.next_wakeup()
            assert wake is not None
            now = max(now, wake)
            run.take(seq.due(now)[0])
        req = run.requests.pop()
        assert (req.first, req.last) == (2, 2)
        sent_at.append(now)
        now += 1
        run.take(seq.accept(0, _heartbeat(2), now=now))  # heard after the request
        now += 1
        run.take(seq.replay_answer(0, _answer(buffer, req), now=now))
    waits = [b - a for a, b in itertools.pairwise(sent_at)]
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert run.delivered == [1] and run.gaps == []


def test_sequencer_new_run_of_a_publisher_starts_its_own_track() -> None:
    seq, run = _sequencer(), Run()
    run.take(seq.accept(0, _msg(1), now=0))
    run.take(seq.accept(0, _msg(2), now=0))
    restarted = wire.decode([TOPIC.encode(), _body(1, publisher=PUB + 1)], max_bytes=MAX_BYTES)
    run.take(seq.accept(0, restarted, now=0))
    assert run.delivered == [1, 2, 1] and seq.stats.duplicates == 0
    assert seq.track(PUB + 1, TOPIC) is not None


def test_sequencer_end_of_stream_fetches_the_tail_then_acknowledges_once() -> None:
    seq, run = _sequencer(), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 6):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    buffer.end(TOPIC)
    run.take(seq.accept(0, _msg(1), now=0))
    run.take(seq.end_notice(0, _end_notice(5), now=1))
    assert run.acks == []  # 2..5 missing: not yet
    _settle(seq, run, buffer, 2)
    assert run.delivered == [1, 2, 3, 4, 5] and [a.publisher for a in run.acks] == [PUB]
    assert seq.stats.ends == 1


def test_sequencer_seq_beyond_max_jump_is_never_delivered() -> None:
    seq, run = _sequencer(max_jump=100), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 3):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    run.take(seq.accept(0, _msg(1), now=0))
    run.take(seq.accept(0, _msg(10_000), now=0))  # a corrupted seq, checksum intact
    _settle(seq, run, buffer, 1)
    assert 10_000 not in run.delivered and seq.stats.bogus_seq == 1
    assert [e.reason for e in run.rejected] == ["seq"]


def test_sequencer_look_back_delivers_what_was_sent_since_the_time_only() -> None:
    seq, run = _sequencer(recover_from_start=False, since_ns=4_000), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 11):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    run.take(seq.accept(0, _msg(10), now=0))  # the first message heard
    assert run.delivered == [] and [(r.first, r.last) for r in run.requests] == [(2, 9)]
    _settle(seq, run, buffer, 1)
    assert run.delivered == [4, 5, 6, 7, 8, 9, 10] and run.gaps == []


def test_sequencer_rejected_replay_copy_becomes_a_one_message_gap() -> None:
    def check(msg: Message) -> WireError | None:
        return WireError("price", "bad") if msg.seq == 2 else None

    seq, run = _sequencer(check=check), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 4):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    for s in (1, 2, 3):
        run.take(seq.accept(0, _msg(s), now=0))
    _settle(seq, run, buffer, 1)
    assert run.delivered == [1, 3] and run.lost() == [2]
    assert run.gaps[0].reason.startswith("rejected (price)")


def test_sequencer_resync_restarts_from_the_stored_position() -> None:
    seq, run = _sequencer(), Run()
    buffer = ReplayBuffer(MAX_BYTES)
    for s in range(1, 6):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    for s in range(1, 6):
        run.take(seq.accept(0, _msg(s), now=0))
    run.take(seq.resync({(PUB, TOPIC): 2}, now=1))
    _settle(seq, run, buffer, 2)
    assert run.delivered == [1, 2, 3, 4, 5, 3, 4, 5]


# ---------------------------------------------------------------------- properties
@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[int, int, list[int], list[bool], int]:
    n = draw(st.integers(1, 40))
    first_held = draw(st.integers(1, n + 1))
    copies = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    live = [s for s, c in zip(range(1, n + 1), copies, strict=True) for _ in range(c)]
    live = draw(st.permutations(live))
    answer_lost = draw(st.lists(st.booleans(), max_size=60))
    answer_cap = draw(st.integers(1, 8))
    return n, first_held, live, answer_lost, answer_cap


@settings(max_examples=300, deadline=None)
@given(scenario=_scenarios(), data=st.data())
def test_sequencer_any_interleaving_delivers_each_seq_once_in_order_and_reports_the_rest_once(
    scenario: tuple[int, int, list[int], list[bool], int], data: st.DataObject
) -> None:
    """Live copies duplicated, reordered and dropped; replay answers interleaved with them,
    some lost; the publisher holds ``first_held..n``. Then its END: every seq 1..n ends
    up delivered exactly once, in order, or inside exactly one reported gap."""
    n, first_held, live, answer_lost, cap = scenario
    buffer = ReplayBuffer(MAX_BYTES, max_answer_messages=cap)
    for s in range(first_held, n + 1):
        buffer.add(TOPIC, s, _body(s), s * 1000, s * 1000)
    if first_held > 1 and first_held <= n:
        buffer._topics[TOPIC].first_ts_event = 1000  # the topic's first record, evicted since
    buffer.end(TOPIC)
    seq, run = _sequencer(), Run()
    lost_answers = iter(answer_lost)
    late = False  # an answer lost, or given once a (shortened) deadline may have passed
    now = 0
    pending = list(live)
    while pending or run.requests:
        now += data.draw(
            st.one_of(st.integers(0, S // 100), st.integers(0, S)), label="time passes"
        )
        run.take(seq.expire(now))
        run.take(seq.due(now)[0])
        if run.requests and (not pending or data.draw(st.booleans(), label="answer first")):
            req = run.requests.pop(data.draw(st.integers(0, len(run.requests) - 1), label="which"))
            late = late or now - req.tag >= int(TIMEOUT_S * S) // 10
            if next(lost_answers, False):
                late = True
            else:
                run.take(seq.replay_answer(0, _answer(buffer, req), now))
        elif pending:
            run.take(seq.accept(0, _msg(pending.pop(0)), now))
    run.take(seq.end_notice(0, _end_notice(n), now))
    _settle(seq, run, buffer, now + 1)

    event("an answer lost or late" if late else "every answer in time")
    assert run.delivered == sorted(set(run.delivered)), "in order, each once"
    lost = run.lost()
    assert len(lost) == len(set(lost)), "each lost seq reported once"
    assert sorted(run.delivered + lost) == list(range(1, n + 1)), "nothing missing"
    assert late or set(range(first_held, n + 1)) <= set(run.delivered), "held: recovered"
    assert set(range(1, first_held)) - set(live) <= set(lost), "evicted and not heard: lost"
    assert [a.publisher for a in run.acks] == [PUB], "acknowledged once, at the end"
    assert seq.stats.lost_messages == len(lost)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    dropped=st.sets(st.integers(1, 30)),
    order=st.randoms(use_true_random=False),
)
def test_sequencer_without_replay_every_dropped_seq_is_one_gap_once_the_end_is_known(
    n: int, dropped: set[int], order: object
) -> None:
    """A publisher whose replay never answers: every seq not received live is reported
    lost exactly once, after the timeout; every received one is delivered once, in order."""
    import random

    assert isinstance(order, random.Random)
    received = [s for s in range(1, n + 1) if s not in dropped]
    order.shuffle(received)
    seq, run = _sequencer(), Run()
    for s in received:
        run.take(seq.accept(0, _msg(s), now=0))
    run.take(seq.accept(0, _heartbeat(n), now=0))
    now = 0
    for _ in range(10_000):
        run.requests.clear()  # never answered
        wake = seq.next_wakeup()
        if wake is None:
            break
        now = max(now, wake) + 1
        run.take(seq.expire(now))
        run.take(seq.due(now)[0])
    assert run.delivered == sorted(received)
    assert sorted(run.lost()) == sorted(set(range(1, n + 1)) - set(received))
    assert len(run.lost()) == len(set(run.lost()))
