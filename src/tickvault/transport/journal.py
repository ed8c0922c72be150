"""The publisher's journal: every message it published, on disk (a kdb+ tickerplant log).

A publisher writes each message it sends (topic and body, as on the wire) to an
append-only file of its session, ``<journal_dir>/<publisher id hex>/<n>.tvj``,
and its END messages when it ends. So a replay request can still be answered
after the publisher's replay buffer evicted the messages, after the publisher
exited, or after it restarted: a new publisher answers requests naming an older
session's id from that session's files, and a subscriber on the same host reads
the files itself when no publisher answers.

File layout (little-endian): a header ``"TVJ2" | publisher u64 | started_ns i64``,
then records ``topic_len u16 | body_len u32 | topic | body``. Each body carries
its wire checksum, so a reader verifies what it reads; a record cut short by a
crash ends the readable part of the file.

Bounds: a session's file is cut into segments of about ``max_bytes / 8``; the
directory as a whole is kept under ``max_bytes`` (oldest segments of any
session removed first) and segments older than ``keep_s`` are removed (both
checked when a publisher starts and whenever it starts a new segment).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tickvault.transport.replay import ReplayAnswer
from tickvault.transport.wire import (
    HEADER,
    HEADER_SIZE,
    NOTHING_HELD,
    Kind,
    last_ts_of,
)

log = logging.getLogger(__name__)

FILE_MAGIC = b"TVJ2"
FILE_HEADER = struct.Struct("<4sQq")
RECORD = struct.Struct("<HI")
SUFFIX = ".tvj"
_MIN_SEGMENT = 1 << 20
_MAX_ANSWER_MESSAGES = 512
_MAX_ANSWER_BYTES = 8 * 2**20


def session_dir(directory: Path, publisher: int) -> Path:
    return directory / f"{publisher:016x}"


def _segments(directory: Path) -> Iterator[Path]:
    if not directory.is_dir():
        return
    for session in directory.iterdir():
        if session.is_dir():
            yield from session.glob(f"*{SUFFIX}")


def prune(directory: Path, max_bytes: int, keep_s: float, *, keep: Path | None = None) -> int:
    """Remove segments older than ``keep_s``, then the oldest ones while the directory is
    over ``max_bytes``; never ``keep``. Returns how many were removed."""
    now = time.time()
    found: list[tuple[float, int, Path]] = []
    for path in _segments(directory):
        try:
            st = path.stat()
        except OSError:
            continue
        found.append((st.st_mtime, st.st_size, path))
    found.sort()
    total = sum(size for _, size, _ in found)
    removed = 0
    for mtime, size, path in found:
        if path == keep:
            continue
        if now - mtime <= keep_s and total <= max_bytes:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
    return removed


class JournalWriter:
    """Appends a publisher's messages to its session's segments. One thread writes."""

    def __init__(self, directory: Path, publisher: int, *, max_bytes: int, keep_s: float):
        self.directory = directory
        self.publisher = publisher
        self.max_bytes = max_bytes
        self.keep_s = keep_s
        self.segment_bytes = max(_MIN_SEGMENT, max_bytes // 8)
        self.session = session_dir(directory, publisher)
        self.session.mkdir(parents=True, exist_ok=True)
        self._number = 0
        self._file: BinaryIO | None = None
        self._size = 0
        self._open_next()

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        self._number += 1
        path = self.session / f"{self._number:06d}{SUFFIX}"
        self._file = path.open("ab", buffering=1 << 20)
        self._file.write(FILE_HEADER.pack(FILE_MAGIC, self.publisher, time.time_ns()))
        self._size = FILE_HEADER.size
        prune(self.directory, self.max_bytes, self.keep_s, keep=path)

    def append(self, topic: bytes, body: bytes | memoryview) -> None:
        assert self._file is not None
        if self._size >= self.segment_bytes:
            self._open_next()
        self._file.write(RECORD.pack(len(topic), len(body)))
        self._file.write(topic)
        self._file.write(body)
        self._size += RECORD.size + len(topic) + len(body)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(slots=True)
class _TopicIndex:
    first_seq: int = 0
    where: array[int] = field(default_factory=lambda: array("Q"))
    """Per message from ``first_seq`` on: segment number << 40 | body offset."""
    sizes: array[int] = field(default_factory=lambda: array("I"))
    first_ts: int = 0
    last_ts: int = 0
    end_seq: int = 0

    @property
    def last_seq(self) -> int:
        return max(self.first_seq + len(self.where) - 1, self.end_seq) if self.first_seq else 0


class JournalReader:
    """Reads one session's journal; picks up what its writer appended since. Thread-safe."""

    def __init__(self, directory: Path, publisher: int):
        self.session = session_dir(directory, publisher)
        self.publisher = publisher
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._topics: dict[str, _TopicIndex] = {}
        self._scanned: dict[int, int] = {}
        """Segment number -> bytes of it indexed so far."""
        self._files: dict[int, BinaryIO] = {}

    def exists(self) -> bool:
        return self.session.is_dir()

    def _refresh(self) -> None:
        try:
            numbers = sorted(int(p.stem) for p in self.session.glob(f"*{SUFFIX}"))
        except (OSError, ValueError):
            numbers = []
        if any(n not in numbers for n in self._scanned):  # a segment was pruned
            self.close()
            self._reset()
        for number in numbers:
            self._scan(number)

    def _open(self, number: int) -> BinaryIO:
        fh = self._files.get(number)
        if fh is None:
            fh = self._files[number] = (self.session / f"{number:06d}{SUFFIX}").open("rb")
        return fh

    def _scan(self, number: int) -> None:
        try:
            fh = self._open(number)
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
        except OSError:
            return
        pos = self._scanned.get(number, 0)
        if pos == 0:
            if end < FILE_HEADER.size:
                return
            fh.seek(0)
            magic, publisher, _ = FILE_HEADER.unpack(fh.read(FILE_HEADER.size))
            if magic != FILE_MAGIC or publisher != self.publisher:
                self._scanned[number] = end  # not a journal of this session: skip it
                return
            pos = FILE_HEADER.size
        fh.seek(pos)
        data = fh.read(end - pos)
        view = memoryview(data)
        at = 0
        while at + RECORD.size <= len(view):
            topic_len, body_len = RECORD.unpack_from(view, at)
            start = at + RECORD.size + topic_len
            if start + body_len > len(view):
                break  # cut short (still being written, or a crash)
            if body_len < HEADER_SIZE:
                at = len(view)  # damaged: nothing after it can be trusted
                break
            topic = bytes(view[at + RECORD.size : start]).decode("ascii", "replace")
            fields = HEADER.unpack_from(view, start)
            kind, seq = fields[2], fields[6]
            t = self._topics.get(topic)
            if t is None:
                t = self._topics[topic] = _TopicIndex()
            if kind != Kind.HEARTBEAT:
                t.last_ts = last_ts_of(view[start : start + body_len])
            if kind == Kind.END:
                t.end_seq = seq
            elif kind != Kind.HEARTBEAT:
                if not t.first_seq:
                    t.first_seq = seq
                    t.first_ts = int.from_bytes(
                        view[start + HEADER_SIZE : start + HEADER_SIZE + 8], "little", signed=True
                    )
                if seq == t.first_seq + len(t.where):
                    t.where.append(number << 40 | (pos + start))
                    t.sizes.append(body_len)
            at = start + body_len
        self._scanned[number] = pos + at

    def get(self, topic: str, first: int, last: int) -> ReplayAnswer:
        """Messages ``first..last`` of ``topic`` that the journal holds (capped)."""
        with self._lock:
            t = self._topics.get(topic)
            if t is None or t.last_seq < last:
                self._refresh()
                t = self._topics.get(topic)
            if t is None or not t.first_seq:
                end = t.end_seq if t is not None else 0
                last_ts = t.last_ts if t is not None else 0
                return ReplayAnswer(NOTHING_HELD, [], 0, end, last_ts, bool(end))
            start = max(first, t.first_seq)
            stop = min(last, t.first_seq + len(t.where) - 1)
            bodies: list[bytes] = []
            size = 0
            for seq in range(start, stop + 1):
                i = seq - t.first_seq
                length = t.sizes[i]
                if bodies and (
                    len(bodies) >= _MAX_ANSWER_MESSAGES or size + length > _MAX_ANSWER_BYTES
                ):
                    break
                where = t.where[i]
                try:
                    fh = self._open(where >> 40)
                    fh.seek(where & ((1 << 40) - 1))
                    body = fh.read(length)
                except OSError:
                    break
                if len(body) != length:
                    break
                bodies.append(body)
                size += length
            return ReplayAnswer(
                t.first_seq, bodies, t.first_ts, t.last_seq, t.last_ts, bool(t.end_seq)
            )

    def topics(self) -> dict[str, int]:
        """Every topic of the session and its last sequence number."""
        with self._lock:
            self._refresh()
            return {name: t.last_seq for name, t in self._topics.items()}

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files = {}
