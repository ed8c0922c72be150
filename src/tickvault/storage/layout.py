"""The block layout (format version 1): constants, header structs, and the header of a
block read into named fields (``RawHeader``, ``ColumnHeader``; ``BlockHeader`` for
readers). Pure. The encoder is ``storage.codec``, the decoder ``storage.decode``; the
layout is documented in ``docs/storage-format.md``.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from tickvault.errors import FormatError
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS

MAGIC: Final = b"TVB"
FORMAT_VERSION: Final = 1

CODEC_NONE: Final = 0
CODEC_ZSTD: Final = 1
CODEC_LZ4: Final = 2
CODEC_ROWS: Final = 3
"""Not a codec of the columnar payload: the block is raw TRADE_DTYPE rows (small blocks)."""
CODECS: Final[dict[str, int]] = {"lz4": CODEC_LZ4, "zstd": CODEC_ZSTD}

PRICE_RAW: Final = -1
"""price_decimals value meaning: price stored as raw float64 bits."""

VOLUME_DERIVED: Final = 0
"""volume == price * qty * volume_multiplier for every row: no volume bytes stored."""
VOLUME_SCALED: Final = 1
VOLUME_RAW: Final = 2

_MAX_DECIMALS: Final = 8
_COMPRESS_MIN_BYTES: Final = 64
"""Payloads smaller than this are stored uncompressed (a lone trade)."""

# Column order inside the payload, and whether the column is delta coded.
_DELTA_COLUMNS: Final = frozenset({"ts_event", "ts_recv", "trade_id", "price"})

_FIXED = struct.Struct("<3sBBbBbBBIiqqqqdI")
# magic, version, codec, price_decimals, volume_mode, volume_decimals, flags_or,
# reserved, n, trading_day, ts_first, ts_last, recv_min, recv_max,
# volume_multiplier, payload_len (uncompressed)
_COLUMN = struct.Struct("<qqBB")
# first value (delta columns), frame base, width in bytes, unit exponent (values / 10**e)
HEADER_SIZE: Final = _FIXED.size + _COLUMN.size * len(TRADE_FIELDS)

_ROWS_HEADER = struct.Struct("<3sBBIi")  # magic, version, CODEC_ROWS, n, trading_day
_HEADER = struct.Struct("<" + _FIXED.format[1:] + _COLUMN.format[1:] * len(TRADE_FIELDS))
_UNIT_COLUMNS: Final = frozenset({"ts_event", "ts_recv"})
_UNIT_EXPONENTS: Final = (9, 6, 3)
_WIDTH_DTYPES: Final[dict[int, str]] = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_POW10: Final = [10.0**d for d in range(_MAX_DECIMALS + 1)]


class ColumnHeader(NamedTuple):
    """How one column is stored in a columnar block."""

    first: int
    """First value (delta columns)."""
    base: int
    """Frame of reference: added back to every stored value."""
    width: int
    """Bytes per stored value: 0 (every value is ``base``), 1, 2, 4 or 8."""
    unit: int
    """Values were divided by 10**unit before storing."""


class RawHeader(NamedTuple):
    """Every field of a block header, by name (a row block's are computed from its rows)."""

    magic: bytes
    version: int
    codec: int
    price_decimals: int
    volume_mode: int
    volume_decimals: int
    flags_or: int
    reserved: int
    n: int
    trading_day: int
    ts_first: int
    ts_last: int
    recv_min: int
    recv_max: int
    volume_multiplier: float
    payload_len: int
    """Uncompressed payload bytes."""
    column_fields: tuple[int, ...] = ()
    """The ``ColumnHeader`` fields of every ``TRADE_FIELDS`` column, flat (empty for a row
    block): kept flat so that reading a header builds no per-column objects."""

    def column(self, index: int) -> ColumnHeader:
        """How the ``index``-th ``TRADE_FIELDS`` column is stored."""
        k = 4 * index
        return ColumnHeader._make(self.column_fields[k : k + 4])


_N_FIXED: Final = len(RawHeader._fields) - 1


def _raw_header(fields: tuple[Any, ...]) -> RawHeader:
    return RawHeader._make((*fields[:_N_FIXED], fields[_N_FIXED:]))


@dataclasses.dataclass(frozen=True, slots=True)
class BlockHeader:
    """What a reader needs to know about a block without decompressing it."""

    n: int
    trading_day: int
    """Local trading date of every trade in the block, as days since 1970-01-01."""
    ts_first: int
    ts_last: int
    recv_min: int
    recv_max: int
    flags_or: int
    raw: RawHeader | None = dataclasses.field(repr=False, compare=False, default=None)
    """Every header field, for the decoder (so a block's header is parsed once)."""


_FLOAT_COLUMNS: Final = frozenset({"price", "volume"})
"""Columns stored as scaled integers or raw float bits."""


def _rows_size(n: int) -> int:
    return _ROWS_HEADER.size + n * TRADE_DTYPE.itemsize


def _rows_of(block: bytes | memoryview, n: int) -> npt.NDArray[np.void]:
    if len(block) != _rows_size(n):
        raise FormatError(f"row block of {len(block)} bytes, expected {_rows_size(n)} for {n} rows")
    return np.frombuffer(block, dtype=TRADE_DTYPE, count=n, offset=_ROWS_HEADER.size)


def _unpack(block: bytes | memoryview) -> RawHeader:
    """The header fields of a block (for a row block, the same fields computed from its rows)."""
    if len(block) < _ROWS_HEADER.size:
        raise FormatError(f"block of {len(block)} bytes is shorter than any block header")
    magic, version, codec, n, day = _ROWS_HEADER.unpack_from(block, 0)
    if magic != MAGIC:
        raise FormatError(f"not a tickvault block: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"block format version {version} is not supported (this tickvault reads "
            f"version {FORMAT_VERSION}); upgrade tickvault"
        )
    if codec == CODEC_ROWS:
        rows = _rows_of(block, n)
        flags_or = int(np.bitwise_or.reduce(rows["flags"])) if n else 0
        ts, recv = rows["ts_event"], rows["ts_recv"]
        return RawHeader(
            magic, version, codec, price_decimals=0, volume_mode=0, volume_decimals=0,
            flags_or=flags_or, reserved=0, n=n, trading_day=day, ts_first=int(ts.min()),
            ts_last=int(ts.max()), recv_min=int(recv.min()), recv_max=int(recv.max()),
            volume_multiplier=0.0, payload_len=0,
        )  # fmt: skip
    if len(block) < HEADER_SIZE:
        raise FormatError(
            f"block of {len(block)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    return _raw_header(_HEADER.unpack_from(block, 0))


def read_header(block: bytes | memoryview) -> BlockHeader:
    h = _unpack(block)
    return BlockHeader(
        n=h.n,
        trading_day=h.trading_day,
        ts_first=h.ts_first,
        ts_last=h.ts_last,
        recv_min=h.recv_min,
        recv_max=h.recv_max,
        flags_or=h.flags_or,
        raw=h,
    )
