"""Streams of rare records, one stream entry each: ``signals:{SYMBOL}``,
``orders:{SYMBOL}`` and ``fills:{SYMBOL}``.

Signals, orders and fills are rare (one signal per change of side: a few a minute
at most), so unlike trades they are not packed in blocks. Each entry holds:

- ``r``: the record (its fixed layout: ``records.signals.SIGNAL_DTYPE``,
  ``records.orders.ORDER_DTYPE`` / ``FILL_DTYPE``), raw bytes;
- ``k``: when the store received it (ns UTC; from the server's clock, taken in the
  script that appends it), so "what did the model say, as known at K" is
  ``k <= K``.

Entry ids are ``<ms>-*`` with ms the record's time field (``ts_event`` of a signal
or a fill, ``ts_placed`` of an order) in milliseconds, or the stream's top ms when
that is later (ids never go back; a late record keeps its own time). Reads page
with XRANGE from the start's ms and filter by the record's time field.

A writer that must not lose or double a record across a crash stores its position
with them: ``append_with_cursor`` adds the records and sets fields of the hash
``<stream key>:cursor`` (``signals:{SYMBOL}:cursor``: the model worker's cursor,
docs/ml.md) in one script call, so both or neither are stored.

Pure storage: this module takes the raw client and knows only bytes and the dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.errors import ValidationError
from tickvault.records.orders import FILL_DTYPE, ORDER_DTYPE
from tickvault.records.signals import SIGNAL_DTYPE

_PAGE = 1000
NS_PER_MS = 1_000_000

_APPEND = """
local key = KEYS[1]
local t = redis.call('TIME')
local now_ns = tostring(t[1]) .. string.format('%06d', tonumber(t[2])) .. '000'
local top = 0
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #last > 0 then
  top = tonumber(string.match(last[1][1], '^(%d+)-'))
end
for i = 1, #ARGV, 2 do
  local ms = math.max(tonumber(ARGV[i]), top)
  redis.call('XADD', key, tostring(ms) .. '-*', 'r', ARGV[i + 1], 'k', now_ns)
  top = ms
end
return now_ns
"""

_APPEND_WITH_CURSOR = """
local key, ckey = KEYS[1], KEYS[2]
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now_ns = tostring(t[1]) .. string.format('%06d', tonumber(t[2])) .. '000'
local top = 0
if n > 0 then
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last > 0 then
    top = tonumber(string.match(last[1][1], '^(%d+)-'))
  end
end
for i = 0, n - 1 do
  local ms = math.max(tonumber(ARGV[2 + 2 * i]), top)
  redis.call('XADD', key, tostring(ms) .. '-*', 'r', ARGV[3 + 2 * i], 'k', now_ns)
  top = ms
end
for j = 2 + 2 * n, #ARGV, 2 do
  redis.call('HSET', ckey, ARGV[j], ARGV[j + 1])
end
return now_ns
"""


def signals_key(symbol: str) -> str:
    return f"signals:{{{symbol}}}"


def orders_key(symbol: str) -> str:
    return f"orders:{{{symbol}}}"


def fills_key(symbol: str) -> str:
    return f"fills:{{{symbol}}}"


STREAMS: dict[str, tuple[Any, np.dtype[np.void], str]] = {
    "signals": (signals_key, SIGNAL_DTYPE, "ts_event"),
    "orders": (orders_key, ORDER_DTYPE, "ts_placed"),
    "fills": (fills_key, FILL_DTYPE, "ts_event"),
}
"""name -> (key of a symbol, record layout, time field)."""


class RecordStream:
    """Append and read one kind of record stream (raw client; errors translated by
    callers): ``RecordStream(client, "signals")``."""

    def __init__(self, r: Any, name: str) -> None:
        if name not in STREAMS:
            raise ValidationError(f"no record stream {name!r}: one of {sorted(STREAMS)}",
                                  field="stream")  # fmt: skip
        self._r = r
        self._key, self.dtype, self.time_field = STREAMS[name]
        self._append = r.register_script(_APPEND)
        self._append_cursor = r.register_script(_APPEND_WITH_CURSOR)

    def _args(self, records: npt.NDArray[np.void]) -> list[Any]:
        if records.dtype != self.dtype:
            raise ValidationError(
                f"records must have the layout {self.dtype}, got {records.dtype}", field="dtype"
            )
        args: list[Any] = []
        for rec in records:
            args += [int(rec[self.time_field]) // NS_PER_MS, rec.tobytes()]
        return args

    def append(self, symbol: str, records: npt.NDArray[np.void]) -> int:
        """Store ``records`` in one atomic call; the receive time (ns), 0 if none."""
        args = self._args(records)
        if not args:
            return 0
        return int(self._append(keys=[self._key(symbol)], args=args))

    def cursor_key(self, symbol: str) -> str:
        return f"{self._key(symbol)}:cursor"

    def append_with_cursor(
        self,
        symbol: str,
        records: npt.NDArray[np.void],
        cursor: Mapping[str, Any],
        client: Any = None,
    ) -> int:
        """Store ``records`` and set the ``cursor`` fields of ``cursor_key(symbol)`` in one
        atomic call (both or neither); the server time of the call (ns). With ``client``
        a valkey-py pipeline, the call is only queued on it (the reply comes with the
        pipeline's)."""
        args = self._args(records)
        fields: list[Any] = []
        for name, value in cursor.items():
            fields += [name, "" if value is None else value]
        keys = [self._key(symbol), self.cursor_key(symbol)]
        reply = self._append_cursor(keys=keys, args=[len(records), *args, *fields],
                                    client=client)  # fmt: skip
        return 0 if client is not None else int(reply)

    def cursor(self, symbol: str) -> dict[str, str]:
        """The fields of ``cursor_key(symbol)`` (empty: never set)."""
        raw = self._r.hgetall(self.cursor_key(symbol))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def read(
        self, symbol: str, start_ns: int, end_ns: int, known_at_ns: int | None = None
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int64]]:
        """(records with start <= time < end, their receive times), in stream order;
        with ``known_at_ns`` only those received at or before it."""
        recs: list[bytes] = []
        known: list[int] = []
        after = str(max(start_ns, 0) // NS_PER_MS)
        while True:
            page = self._r.xrange(self._key(symbol), after, "+", count=_PAGE)
            for _id, fields in page:
                recs.append(fields[b"r"])
                known.append(int(fields[b"k"]))
            if len(page) < _PAGE:
                break
            after = "(" + page[-1][0].decode()
        arr = np.frombuffer(b"".join(recs), dtype=self.dtype) if recs else np.zeros(0, self.dtype)
        k = np.asarray(known, dtype=np.int64)
        t = arr[self.time_field]
        keep = (t >= start_ns) & (t < end_ns)
        if known_at_ns is not None:
            keep &= k <= known_at_ns
        return arr[keep], k[keep]

    def delete(self, symbol: str) -> int:
        """Delete the stream and its cursor hash."""
        return int(self._r.delete(self._key(symbol), self.cursor_key(symbol)))


def broker_state_key(symbol: str) -> str:
    return f"broker:{{{symbol}}}:state"


def positions_key(symbol: str) -> str:
    return f"positions:{{{symbol}}}"


def commit_execution(
    r: Any,
    symbol: str,
    orders: npt.NDArray[np.void],
    fills: npt.NDArray[np.void],
    state: str,
    position: dict[str, str],
    routing_done: list[int] | None = None,
) -> None:
    """Store orders, fills, the broker's state (JSON, hash ``broker:{SYMBOL}:state``
    field ``state``) and its position summary (hash ``positions:{SYMBOL}``), and clear
    the write-ahead entries ``routing_done`` of ``broker:{SYMBOL}:routing``, in one
    MULTI/EXEC transaction: all or nothing, so a kill never splits them."""
    o, f = RecordStream(r, "orders"), RecordStream(r, "fills")
    pipe = r.pipeline(transaction=True)
    for stream, recs in ((o, orders), (f, fills)):
        args: list[Any] = []
        for rec in recs:
            args += [int(rec[stream.time_field]) // NS_PER_MS, rec.tobytes()]
        if args:
            stream._append(keys=[stream._key(symbol)], args=args, client=pipe)
    pipe.hset(broker_state_key(symbol), "state", state)
    if position:
        pipe.hset(positions_key(symbol), mapping=position)
    if routing_done:
        pipe.hdel(routing_key(symbol), *map(str, routing_done))
    pipe.execute()


def routing_key(symbol: str) -> str:
    return f"broker:{{{symbol}}}:routing"


def routing_put(r: Any, symbol: str, order_id: int, entry: str) -> None:
    """Write an order's routing entry ahead (field = the order id, value JSON)."""
    r.hset(routing_key(symbol), str(order_id), entry)


def routing_entries(r: Any, symbol: str) -> dict[int, str]:
    return {int(k): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in r.hgetall(routing_key(symbol)).items()}  # fmt: skip


def broker_state(r: Any, symbol: str) -> str | None:
    raw = r.hget(broker_state_key(symbol), "state")
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


def position_of(r: Any, symbol: str) -> dict[str, str]:
    raw = r.hgetall(positions_key(symbol))
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
            else v) for k, v in raw.items()}  # fmt: skip


def signals_cursor_t(r: Any, symbol: str) -> int | None:
    """The model worker's watermark W: field ``T`` of ``signals:{SYMBOL}:cursor``."""
    raw = r.hget(f"signals:{{{symbol}}}:cursor", "T")
    return None if raw in (None, b"", "") else int(raw)
