"""``Sequencer``: the subscriber's sequencing per (publisher, topic), as a pure state machine.

No sockets and no clock: the ``Subscriber`` (the I/O shell) decodes what arrives,
hands it over with the time (monotonic nanoseconds, ``now``), and executes the
actions each call returns, in order: ``Deliver`` a message to the handler, report a
``Lost`` gap, ``Reject`` a message, send a replay ``Request``, ``Ack`` an ending
publisher. What the shell reads from disk (a publisher's journal) it reads when the
sequencer says so (``due``, ``silent``) and hands back as an answer.

Per topic the rules are: messages are delivered in seq order, each once; a
duplicate is dropped; a message after a hole is held while the hole is asked of the
publisher (one request outstanding per topic, a repeated range waits with
exponential backoff); a hole nobody can fill (evicted, unknown to the publisher, no
answer in ``timeout_s`` and no journal) is reported as a ``Gap`` once and delivery
moves past it. A publisher's own statement of its last seq (a replay answer, an END
notice) confirms seqs: a held message beyond it that arrived before the request was
sent is dropped as never published, and without any answer a message more than
``max_jump`` beyond what was confirmed is not trusted. A new run of a publisher has a
new publisher id, so it starts a new track. With ``since_ns`` (and no recovery from
the start), the first message of a publisher starts a look-back through its replay
buffer for what it sent at or after that time (a few messages first, more each
step), until it meets one sent before it, and delivers the rest in order.

Messages that break the wire format leave their seq missing, so the original is
fetched again; a message the handler's ``check`` rejects for its values is asked for
again too, and if the publisher's own copy is rejected as well, its seq becomes a
one-message ``Gap``.

Longer than the usual ~400 lines on purpose: it is one state machine whose rules
share one track's state (a held message, a confirmation, a request outstanding and
its deadline all decide each other), so they read best side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tickvault.errors import TickvaultError
from tickvault.logutil import RateLimitedLog
from tickvault.records.events import Gap, publisher_name
from tickvault.transport import wire
from tickvault.transport.wire import Kind, Message, WireError

log = logging.getLogger("tickvault.transport.subscriber")

Key = tuple[int, str]
"""(publisher, topic)."""
CheckFn = Callable[[Message], WireError | None]
"""A handler may also have ``check(msg)``: a reason to reject a well-formed message for
its values (called on arrival, before sequencing), or None."""
ResumeFn = Callable[[int, str], int | None]
"""The last seq already handled for (publisher, topic) in an earlier life, or None; may
raise a TickvaultError (the message is then dropped untracked, fetched again later)."""

_MIN_BACKOFF_NS = 50_000_000
_LOOK_BACK_FIRST = 8
"""Messages asked for in the first look-back step; each further step asks for 4x more."""
_LOOK_BACK_MAX = 512


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``msg`` to the handler (the next in order of its topic)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Lost:
    """Report ``gap`` to the handler: messages nobody can supply."""

    gap: Gap


@dataclass(frozen=True, slots=True)
class Reject:
    """Hand a rejected message to the handler's ``on_invalid``."""

    frames: list[bytes]
    error: WireError


@dataclass(frozen=True, slots=True)
class Request:
    """Ask publisher ``publisher`` (over link ``link``) for ``first..last`` of ``topic``."""

    link: int
    publisher: int
    topic: str
    first: int
    last: int
    tag: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Tell ending publisher ``publisher`` (over link ``link``) it may exit."""

    link: int
    publisher: int


Action = Deliver | Lost | Reject | Request | Ack


@dataclass(slots=True)
class SubscriberStats:
    messages: int = 0
    records: int = 0
    duplicates: int = 0
    invalid: int = 0
    gaps_detected: int = 0
    recovered_messages: int = 0
    lost_messages: int = 0
    replay_requests: int = 0
    journal_messages: int = 0
    """Messages recovered by reading a publisher's journal on this host."""
    bogus_seq: int = 0
    """Messages and announcements dropped for a sequence number the publisher never sent."""
    ends: int = 0
    """Topics whose END was received."""


@dataclass(slots=True)
class Track:
    """The sequencing state of one (publisher, topic). Times are monotonic ns."""

    publisher: int
    topic: str
    link: int
    next: int
    held: dict[int, Message] = field(default_factory=dict)
    arrived: dict[int, int] = field(default_factory=dict)
    """Held seq -> when it arrived."""
    bad: dict[int, tuple[WireError, int, int]] = field(default_factory=dict)
    """Seqs whose publisher's own copy was rejected: error, first and last ts_event."""
    asked_last: int = 0
    """Last seq of the outstanding replay request (0: none)."""
    asked_tag: int = 0
    """When the outstanding request was sent, echoed by the answer."""
    deadline: int = 0
    last_range: tuple[int, int] = (0, 0)
    retry_at: int = 0
    backoff: int = 0
    last_ts: int = 0
    known_last: int = 0
    """Highest seq announced by a heartbeat or END (within reach), or by the publisher."""
    known_last_ts: int = 0
    known_at: int = 0
    claim: int = 0
    """An announced seq too far beyond what was confirmed: asked about, not trusted."""
    claim_at: int = 0
    confirmed: int = 0
    """Highest seq the publisher itself stated it published (replay answer, END notice)."""
    end_seq: int = 0
    """The topic's final seq (0: not ended)."""
    journal: bool = False
    """The publisher does not answer: read its journal on this host instead."""
    heard: int = 0
    """When a live message or heartbeat of the topic last arrived (0: never)."""
    probe_lo: int = 0
    """While looking back for what was sent since ``since_ns``: the first seq of the
    outstanding look-back request (0: not looking back)."""


def _no_position(publisher: int, topic: str) -> int | None:
    return None


def _no_journal(publisher: int) -> bool:
    return False


class Sequencer:
    """In-order delivery, gap repair and end of stream for every (publisher, topic)."""

    def __init__(
        self,
        *,
        max_jump: int,
        timeout_s: float,
        max_bytes: int,
        prefixes: Iterable[str] = ("",),
        recover_from_start: bool = True,
        since_ns: int | None = None,
        check: CheckFn | None = None,
        resume: ResumeFn = _no_position,
        has_journal: Callable[[int], bool] = _no_journal,
    ):
        """``since_ns`` only applies without ``recover_from_start``. ``resume`` and
        ``has_journal`` are the two questions the sequencer asks the shell: the stored
        position of a new topic, and whether a publisher has a journal on this host."""
        self.stats = SubscriberStats()
        self._max_jump = max_jump
        self._timeout_ns = int(timeout_s * 1e9)
        self._max_bytes = max_bytes
        self._prefixes = tuple(prefixes)
        self._recover_from_start = recover_from_start
        self._since = None if recover_from_start else since_ns
        self._check = check
        self._resume = resume
        self._has_journal = has_journal
        self._rate_log = RateLimitedLog(log)
        self._tracks: dict[Key, Track] = {}
        self._by_publisher: dict[int, list[Track]] = {}
        self._due: set[Key] = set()
        """Tracks with a paced request or a journal read to do."""
        self._silent: set[int] = set()
        """Publishers whose replay service let a request time out (and has not answered
        since): their later requests wait a tenth of the timeout, so a dead publisher's
        many holes are settled quickly instead of one timeout each."""
        self._ending: dict[int, int] = {}
        """Publishers that announced their end -> link, until acknowledged."""
        self._last_tag = 0
        self._out: list[Action] = []

    # ------------------------------------------------------------------ queries
    def track(self, publisher: int, topic: str) -> Track | None:
        return self._tracks.get((publisher, topic))

    def tracks(self) -> list[Track]:
        return list(self._tracks.values())

    def next_wakeup(self) -> int | None:
        """When the next deadline or paced request is due (None: nothing pending)."""
        times = [t.deadline for t in self._tracks.values() if t.asked_last]
        for key in self._due:
            track = self._tracks.get(key)
            if track is not None:
                times.append(0 if track.journal else track.retry_at)
        return min(times) if times else None

    def overdue_links(self, now: int) -> set[int]:
        """Links with a replay request past its deadline (their answers should be read
        before ``expire``: the handler may have kept the shell from them)."""
        return {
            t.link
            for t in self._tracks.values()
            if t.asked_last and now >= t.deadline and not t.probe_lo
        }

    def silent(self, now: int, silent_ns: int) -> list[Track]:
        """Live topics not heard of for ``silent_ns``, not ended and with nothing asked:
        their publisher may have published more than arrived (see ``journal_has``)."""
        return [
            t
            for t in self._tracks.values()
            if not (t.asked_last or t.journal or t.end_seq or not t.heard)
            and now - t.heard >= silent_ns
        ]

    # ------------------------------------------------------------------ inputs
    def accept(self, link: int, msg: Message, now: int, *, replayed: bool = False) -> list[Action]:
        """A message received live on ``link`` (or replayed)."""
        self._accept(link, msg, now, replayed=replayed)
        return self._take()

    def reject(self, frames: list[bytes], error: WireError) -> list[Action]:
        """A message the shell could not decode: its seq stays missing."""
        self._reject(frames, error)
        return self._take()

    def adopt(self, publisher: int, topic: str, done: int, journal_last: int) -> bool:
        """Resume ``topic`` of an exited publisher after ``done`` from its journal, which
        holds up to ``journal_last``. True if that is more than ``done``."""
        if not topic.startswith(self._prefixes) or (publisher, topic) in self._tracks:
            return False
        if journal_last <= done:
            return False
        track = self._new_track(publisher, topic, link=0, first=done + 1)
        track.journal, track.known_last = True, journal_last
        self._due.add((publisher, topic))
        return True

    def journal_has(self, track: Track, last: int) -> None:
        """A silent topic's journal holds up to ``last``: read what is missing from it."""
        track.known_last, track.journal = max(track.known_last, last), True
        self._due.add((track.publisher, track.topic))

    def resync(self, done: dict[Key, int | None], now: int) -> list[Action]:
        """Restart every topic from its stored position ``done[key]`` (the store lost
        writes it had acknowledged), asking for what follows."""
        for key, position in done.items():
            track = self._tracks[key]
            first = (position or 0) + 1 if position is not None or self._recover_from_start else 0
            if first and first < track.next:
                track.known_last = max(track.known_last, track.next - 1)
                track.next = first
                track.asked_last = 0
                track.bad = {s: b for s, b in track.bad.items() if s >= first}
            self._ask(track, now)
        return self._take()

    def replay_answer(self, link: int, frames: list[bytes], now: int) -> list[Action]:
        """``REPLAY_MAGIC | topic | publisher | status | body...`` on link ``link``."""
        if (
            len(frames) < 4
            or frames[0] != wire.REPLAY_MAGIC
            or len(frames[3]) != wire.REPLAY_STATUS.size
        ):
            log.warning("subscriber: malformed replay answer ignored")
            return []
        topic_raw, pub_raw, status = frames[1], frames[2], frames[3]
        track = self._tracks.get(
            (int.from_bytes(pub_raw, "little"), topic_raw.decode("ascii", "replace"))
        )
        if track is None:
            return []
        self._silent.discard(track.publisher)
        first_held, _, first_ts, last_seq, last_ts, ended, tag = wire.REPLAY_STATUS.unpack(status)
        if track.probe_lo:
            self._on_look_back(track, first_held, tag, self._decode(topic_raw, frames[4:]), now)
        else:
            self._answered(track, link, first_held, first_ts, (last_seq, last_ts), bool(ended),
                           tag, [[topic_raw, body] for body in frames[4:]], now)  # fmt: skip
        return self._take()

    def end_notice(self, link: int, frames: list[bytes], now: int) -> list[Action]:
        """``END_MAGIC | topic | END body | ...``: the publisher's final seq per topic."""
        publishers: set[int] = set()
        for i in range(1, len(frames) - 1, 2):
            if not frames[i].decode("ascii", "replace").startswith(self._prefixes):
                continue
            try:
                msg = wire.decode(frames[i : i + 2], max_bytes=self._max_bytes)
            except WireError as exc:
                self._reject(frames[i : i + 2], exc)
                continue
            if msg.kind is not Kind.END:
                continue
            publishers.add(msg.publisher)
            self._accept(link, msg, now, replayed=True, authoritative=True)
        if not publishers and len(frames) >= 3:
            try:  # nothing of interest to us: we are done with this publisher
                publishers.add(wire.decode(frames[1:3], max_bytes=self._max_bytes).publisher)
            except WireError:
                return self._take()
        for publisher in publishers:
            self._ending[publisher] = link
            self._maybe_ack(publisher)
        return self._take()

    def expire(self, now: int) -> list[Action]:
        """Settle requests past their deadline."""
        for track in list(self._tracks.values()):
            if not track.asked_last or now < track.deadline:
                continue
            track.asked_last = 0
            if track.probe_lo:
                # No answer to a look-back: deliver from where it had got to.
                track.probe_lo = 0
                self._release(track, now)
                continue
            self._silent.add(track.publisher)
            if self._has_journal(track.publisher):
                track.journal = True
                self._due.add((track.publisher, track.topic))
            else:
                self._unanswered(track, "no replay answer", now)
        return self._take()

    def due(self, now: int) -> tuple[list[Action], list[Track]]:
        """Paced requests now due (as actions), and the topics whose journal to read."""
        journals = []
        for key in list(self._due):
            track = self._tracks.get(key)
            if track is None:
                self._due.discard(key)
            elif track.journal:
                self._due.discard(key)
                journals.append(track)
            elif now >= track.retry_at:
                self._due.discard(key)
                self._ask(track, now)
        return self._take(), journals

    # ------------------------------------------------------------------ journal reads
    def journal_missing(self, track: Track, now: int) -> list[Action]:
        """The journal to read is not there (any more): what is missing is lost."""
        track.journal = False
        self._unanswered(track, "no replay answer", now)
        return self._take()

    def journal_request(self, track: Track, now: int) -> tuple[int, int, int] | None:
        """The range to read from the journal next (first, last, tag), or None."""
        last = self._wanted_last(track)
        if last < track.next:
            return None
        tag = self._tag(now)
        track.asked_last, track.asked_tag = last, tag
        return track.next, max(last, track.next), tag

    def journal_answer(
        self,
        track: Track,
        first_held: int,
        first_ts: int,
        last: tuple[int, int],
        ended: bool,
        tag: int,
        bodies: list[bytes],
        now: int,
    ) -> tuple[list[Action], bool]:
        """What the journal returned for ``journal_request``; also whether it moved
        delivery on (and reading further is worth it)."""
        before = track.next
        topic_raw = track.topic.encode("ascii")
        self._answered(track, track.link, first_held, first_ts, last, ended, tag,
                       [[topic_raw, b] for b in bodies], now, source="journal")  # fmt: skip
        return self._take(), track.next != before and track.journal

    def mark_due(self, track: Track) -> None:
        self._due.add((track.publisher, track.topic))

    # ------------------------------------------------------------------ internals
    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _tag(self, now: int) -> int:
        """A request tag: ``now``, kept strictly increasing so answers tell requests apart."""
        self._last_tag = max(now, self._last_tag + 1)
        return self._last_tag

    def _reject(self, frames: list[bytes], error: WireError) -> None:
        self.stats.invalid += 1
        self._out.append(Reject(frames, error))

    def _decode(self, topic_raw: bytes, bodies: list[bytes]) -> list[Message]:
        out = []
        for body in bodies:
            try:
                out.append(wire.decode([topic_raw, body], max_bytes=self._max_bytes))
            except WireError as exc:
                self._reject([topic_raw, body], exc)
        return out

    def _new_track(self, publisher: int, topic: str, *, link: int, first: int) -> Track:
        track = self._tracks[(publisher, topic)] = Track(publisher, topic, link=link, next=first)
        track.confirmed = first - 1
        self._by_publisher.setdefault(publisher, []).append(track)
        return track

    def _track(self, link: int, msg: Message, now: int) -> Track | None:
        track = self._tracks.get((msg.publisher, msg.topic))
        if track is not None:
            return track
        try:
            done = self._resume(msg.publisher, msg.topic)
        except TickvaultError as exc:
            self._rate_log.warning(
                "resume", "subscriber: cannot read the position of %s (%s); its messages "
                "wait for the replay buffer or journal", msg.topic, exc,
            )  # fmt: skip
            return None
        if done is not None:
            first = done + 1
        elif self._recover_from_start:
            first = 1
        else:
            first = msg.seq + (1 if msg.kind in (Kind.HEARTBEAT, Kind.END) else 0)
        track = self._new_track(msg.publisher, msg.topic, link=link, first=first)
        if done is None and self._since is not None and first > 1:
            self._look_back(track, first - 1, _LOOK_BACK_FIRST, now)
        return track

    def _look_back(self, track: Track, last: int, count: int, now: int) -> None:
        """Ask for the ``count`` messages up to ``last``: were they sent since ``_since``?
        Delivery waits (``asked_last`` blocks other requests) until the answer says."""
        track.probe_lo = max(1, last - count + 1)
        tag = self._tag(now)
        track.asked_last, track.asked_tag = last, tag
        track.deadline = now + self._timeout_ns
        self.stats.replay_requests += 1
        self._out.append(Request(track.link, track.publisher, track.topic, track.probe_lo,
                                 last, tag))  # fmt: skip

    def _on_look_back(
        self, track: Track, first_held: int, tag: int, msgs: list[Message], now: int
    ) -> None:
        """A look-back answer: keep what was sent since ``_since``; stop at the first
        message sent before it, or where the publisher's buffer ends; else look further."""
        assert self._since is not None
        if tag != track.asked_tag:
            return  # a stale answer
        lo, last = track.probe_lo, track.asked_last
        older = [m.seq for m in msgs if m.ts_send < self._since]
        for m in msgs:
            if m.ts_send >= self._since and m.seq < track.next and m.seq not in track.held:
                track.held[m.seq] = m
                track.arrived[m.seq] = now
        if older:
            track.next = max(older) + 1
        elif first_held <= last:
            track.next = max(lo, first_held)  # all of it is wanted
            if first_held <= lo and lo > 1 and msgs:
                count = min((last - lo + 1) * 4, _LOOK_BACK_MAX)
                self._look_back(track, lo - 1, count, now)
                return
        track.probe_lo = track.asked_last = 0
        self._release(track, now)

    def _bound(self, track: Track) -> int:
        """The highest seq believed without the publisher's confirmation."""
        return max(track.confirmed, track.next - 1) + self._max_jump

    def _accept(
        self, link: int, msg: Message, now: int, *, replayed: bool, authoritative: bool = False
    ) -> None:
        track = self._track(link, msg, now)
        if track is None:
            return
        if not replayed:
            track.heard = now
        if msg.kind in (Kind.HEARTBEAT, Kind.END):
            self._announced(track, msg, now, authoritative=authoritative)
            self._ask(track, now)
            return
        if not replayed:
            track.journal = False  # the publisher is alive
        if msg.seq < track.next or msg.seq in track.held or msg.seq in track.bad:
            self.stats.duplicates += 1
            return
        error = self._check(msg) if self._check is not None else None
        if error is not None:
            self._reject([msg.topic.encode("ascii"), msg.body], error)
            if replayed:  # the publisher's own copy: it cannot be had
                track.bad[msg.seq] = (error, msg.first_ts, msg.last_ts)
                self._release(track, now)
            else:  # leave it missing: the original is asked for again
                if msg.seq > track.known_last and msg.seq <= self._bound(track):
                    track.known_last, track.known_last_ts = msg.seq, msg.last_ts
                    track.known_at = now
                self._ask(track, now)
            return
        if replayed:
            self.stats.recovered_messages += 1
        if msg.seq > track.next or track.probe_lo:
            track.held[msg.seq] = msg
            track.arrived[msg.seq] = now
            self._ask(track, now)
            return
        self._deliver(track, msg)
        self._release(track, now)

    def _announced(self, track: Track, msg: Message, now: int, *, authoritative: bool) -> None:
        """A heartbeat or END: the topic's last seq, as far as the publisher says."""
        if msg.kind is Kind.END and (authoritative or msg.seq <= self._bound(track)):
            if not track.end_seq:
                self.stats.ends += 1
            track.end_seq = max(track.end_seq, msg.seq)
        if authoritative:
            self._confirm(track, msg.seq, final=msg.kind is Kind.END, tag=now,
                          last_ts=msg.last_ts)  # fmt: skip
        elif msg.seq <= self._bound(track):
            if msg.seq >= track.known_last:
                track.known_last, track.known_last_ts = msg.seq, msg.last_ts
                track.known_at = now
        elif msg.seq > track.claim:
            track.claim, track.claim_at = msg.seq, now

    def _confirm(self, track: Track, last_seq: int, *, final: bool, tag: int, last_ts: int) -> None:
        """The publisher says ``last_seq`` is the last seq it had published when it read
        a request sent at ``tag``: anything claimed beyond it before then is bogus."""
        track.confirmed = max(track.confirmed, last_seq)
        for seq in [s for s in track.held if s > last_seq and track.arrived[s] < tag]:
            self._drop_bogus(track, seq, f"was never published (the publisher's last is "
                                         f"{last_seq})")  # fmt: skip
        if track.claim and track.claim > last_seq and track.claim_at < tag:
            self.stats.bogus_seq += 1
            track.claim = 0
        if (track.known_last > last_seq and track.known_at < tag) or last_seq >= track.known_last:
            track.known_last, track.known_last_ts, track.known_at = last_seq, last_ts, tag
        if final:
            track.end_seq = max(track.end_seq, last_seq)

    def _drop_bogus(self, track: Track, seq: int, why: str) -> None:
        """A held message whose seq the publisher cannot have sent: quarantined, never
        delivered (so the cursor never jumps)."""
        msg = track.held.pop(seq)
        track.arrived.pop(seq)
        self.stats.bogus_seq += 1
        self._reject([msg.topic.encode("ascii"), msg.body],
                     WireError("seq", f"seq {seq} of {msg.topic} {why}"))  # fmt: skip

    def _deliver(self, track: Track, msg: Message) -> None:
        track.next = msg.seq + 1
        track.last_ts = msg.last_ts
        if self._since is not None and msg.ts_send < self._since:
            return  # sent before this subscriber wanted anything
        self.stats.messages += 1
        self.stats.records += msg.count
        self._out.append(Deliver(msg))

    def _release(self, track: Track, now: int) -> None:
        """Deliver held messages that are now in order (and report rejected ones); ask for
        the next gap, if any."""
        while True:
            seq = track.next
            if seq in track.held:
                track.arrived.pop(seq, None)
                self._deliver(track, track.held.pop(seq))
            elif seq in track.bad:
                error, first_ts, last_ts = track.bad.pop(seq)
                self._report(track, seq, seq, f"rejected ({error.reason}): {error.detail}",
                             first_ts, last_ts)  # fmt: skip
            else:
                break
        if track.asked_last and track.next > track.asked_last:
            track.asked_last = 0  # the request is satisfied
        self._ask(track, now)
        if track.publisher in self._ending:
            self._maybe_ack(track.publisher)

    def _wanted_last(self, track: Track) -> int:
        return (min(track.held) - 1) if track.held else max(track.known_last, track.claim)

    def _ask(self, track: Track, now: int) -> None:
        """Ask for everything missing before the first held message (or up to the last
        announced), unless a request is outstanding; a repeated range waits (backoff)."""
        if track.asked_last:
            return
        last = self._wanted_last(track)
        if last < track.next:
            return
        key = (track.publisher, track.topic)
        if track.journal:
            self._due.add(key)
            return
        wanted = (track.next, last)
        if wanted == track.last_range:
            if now < track.retry_at:
                self._due.add(key)
                return
            track.backoff = min(max(track.backoff * 2, _MIN_BACKOFF_NS), self._timeout_ns)
        else:
            track.backoff = 0
            if track.next != track.last_range[0]:
                self.stats.gaps_detected += 1
        track.last_range = wanted
        track.retry_at = now + track.backoff
        tag = self._tag(now)
        self.stats.replay_requests += 1
        track.asked_last, track.asked_tag = last, tag
        silent = track.publisher in self._silent
        track.deadline = now + (self._timeout_ns // 10 if silent else self._timeout_ns)
        self._out.append(Request(track.link, track.publisher, track.topic, track.next, last, tag))

    def _answered(
        self,
        track: Track,
        link: int,
        first_held: int,
        first_ts: int,
        last: tuple[int, int],
        ended: bool,
        tag: int,
        messages: list[list[bytes]],
        now: int,
        *,
        source: str = "replay",
    ) -> None:
        """Process a replay answer (or a journal read); ``last`` is the topic's last seq
        and the ts_event of its last record."""
        current = tag == track.asked_tag
        asked = track.asked_last
        before = track.next
        if first_held != wire.NOTHING_HELD:
            self._confirm(track, last[0], final=ended, tag=tag, last_ts=last[1])
        for frames in messages:
            try:
                msg = wire.decode(frames, max_bytes=self._max_bytes)
            except WireError as exc:
                self._reject(frames, exc)
                continue
            if source == "journal":
                self.stats.journal_messages += 1
            self._accept(link, msg, now, replayed=True)
        if source == "replay" and (not current or not asked or track.asked_last != asked):
            return  # a stale answer, or satisfied (and the next gap asked for)
        track.asked_last = 0
        if first_held > track.next:
            # Gone from the publisher's buffer and journal (or unknown to it).
            if source == "replay" and self._has_journal(track.publisher):
                track.journal = True
                self._due.add((track.publisher, track.topic))
                return
            what = "evicted" if first_held != wire.NOTHING_HELD else "unknown to the publisher"
            if source == "journal":
                what = "no replay answer; not in the journal"
            self._unanswered(track, what, now, first_held - 1, first_ts)
        elif track.next > before:
            self._ask(track, now)  # progress: ask for the rest at once
        elif source == "journal":
            self._unanswered(track, "no replay answer; not in the journal", now)
        else:
            self._ask(track, now)  # nothing new now (paced: a repeated range backs off)

    def _maybe_ack(self, publisher: int) -> None:
        """Tell an ending publisher once every topic is held up to its final seq."""
        for track in self._by_publisher.get(publisher, []):
            if track.end_seq and (track.next <= track.end_seq or track.asked_last):
                return
        self._out.append(Ack(self._ending.pop(publisher), publisher))

    def _unanswered(
        self, track: Track, reason: str, now: int, last: int | None = None, first_ts: int = 0
    ) -> None:
        """Nobody can supply ``track.next..``: drop claims beyond reach, report the rest."""
        bound = self._bound(track)
        for seq in [s for s in track.held if s > bound]:
            self._drop_bogus(track, seq, f"is more than zmq_max_seq_jump beyond the last "
                                         f"confirmed ({bound - self._max_jump})")  # fmt: skip
        if track.claim:
            self.stats.bogus_seq += 1
            track.claim = 0
        wanted = self._wanted_last(track)
        self._lose(track, wanted if last is None else min(last, wanted), reason, now, first_ts)

    def _lose(self, track: Track, last: int, reason: str, now: int, first_ts: int = 0) -> None:
        """Declare ``track.next..last`` lost and move delivery past it."""
        first = track.next
        if last >= first:
            after = track.held.get(last + 1)
            end = after.first_ts if after is not None else (track.known_last_ts or track.last_ts)
            self._report(track, first, last, reason, track.last_ts or first_ts or end, end)
        self._release(track, now)

    def _report(
        self, track: Track, first: int, last: int, reason: str, start_ns: int, end_ns: int
    ) -> None:
        self.stats.lost_messages += last - first + 1
        track.next = last + 1
        gap = Gap(
            symbol=track.topic.partition(".")[2], stream="", start_ns=start_ns, end_ns=end_ns,
            publisher=publisher_name(track.publisher), topic=track.topic, seq_first=first,
            seq_last=last, reason=reason,
        )  # fmt: skip
        self._out.append(Lost(gap))
