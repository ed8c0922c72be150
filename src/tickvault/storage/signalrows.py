"""``signals:{SYMBOL}``: the signals of a symbol, one stream entry each.

Signals are rare (one per change of side: a few a minute at most), so unlike
trades they are not packed in blocks. Each entry holds:

- ``r``: the signal record (``records.signals.SIGNAL_DTYPE``, its raw bytes);
- ``k``: when the store received it (ns UTC; from the server's clock, taken in the
  script that appends it), so "what did the model say, as known at K" is
  ``k <= K``.

Entry ids are ``<ms>-*`` with ms the signal's ``ts_event`` in milliseconds, or the
stream's top ms when that is later (ids never go back; a late signal keeps its own
ts_event in the record). Reads page with XRANGE from the start's ms and filter by
the record's ts_event.

Pure storage: this module takes the raw client and knows only bytes and the dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.errors import ValidationError
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


def signals_key(symbol: str) -> str:
    return f"signals:{{{symbol}}}"


class SignalRows:
    """Append and read ``signals:{SYMBOL}`` (raw client; errors translated by callers)."""

    def __init__(self, r: Any) -> None:
        self._r = r
        self._append = r.register_script(_APPEND)

    def append(self, symbol: str, records: npt.NDArray[np.void]) -> int:
        """Store ``records`` (SIGNAL_DTYPE) in one atomic call; the receive time (ns)."""
        if records.dtype != SIGNAL_DTYPE:
            raise ValidationError(
                f"signal records must have SIGNAL_DTYPE, got {records.dtype}", field="dtype"
            )
        args: list[Any] = []
        for rec in records:
            args += [int(rec["ts_event"]) // NS_PER_MS, rec.tobytes()]
        if not args:
            return 0
        return int(self._append(keys=[signals_key(symbol)], args=args))

    def read(
        self, symbol: str, start_ns: int, end_ns: int, known_at_ns: int | None = None
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int64]]:
        """(records with start <= ts_event < end, their receive times), in stream order;
        with ``known_at_ns`` only those received at or before it."""
        recs: list[bytes] = []
        known: list[int] = []
        after = str(max(start_ns, 0) // NS_PER_MS)
        while True:
            page = self._r.xrange(signals_key(symbol), after, "+", count=_PAGE)
            for _id, fields in page:
                recs.append(fields[b"r"])
                known.append(int(fields[b"k"]))
            if len(page) < _PAGE:
                break
            after = "(" + page[-1][0].decode()
        arr = (
            np.frombuffer(b"".join(recs), dtype=SIGNAL_DTYPE) if recs else np.zeros(0, SIGNAL_DTYPE)
        )
        k = np.asarray(known, dtype=np.int64)
        keep = (arr["ts_event"] >= start_ns) & (arr["ts_event"] < end_ns)
        if known_at_ns is not None:
            keep &= k <= known_at_ns
        return arr[keep], k[keep]

    def delete(self, symbol: str) -> int:
        return int(self._r.delete(signals_key(symbol)))
