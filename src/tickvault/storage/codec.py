"""Columnar block codec (format version 1). Pure: bytes in, arrays out.

A block holds up to a few thousand trades of one symbol, one trading date and one
stream. Each column is turned into integers (scaled prices, deltas of times and
trade ids), reduced by frame of reference (minus the column minimum) to the
narrowest of 0/1/2/4/8 bytes, and the column bytes together are compressed with
lz4 (default) or zstd. The exact layout is documented in ``docs/storage-format.md``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import lz4.block
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import zstandard

from tickvault.errors import FormatError
from tickvault.model.trades import TRADE_DTYPE, TRADE_FIELDS, TradeBatch

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


@dataclass(frozen=True, slots=True)
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


_tls = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    key = f"c{level}"
    c = getattr(_tls, key, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level)
        setattr(_tls, key, c)
    return c


def _width_for(max_value: int) -> int:
    if max_value == 0:
        return 0
    if max_value < 1 << 8:
        return 1
    if max_value < 1 << 16:
        return 2
    if max_value < 1 << 32:
        return 4
    return 8


def _price_decimals(price: npt.NDArray[np.float64]) -> int:
    """Smallest number of decimals that reproduces every price exactly, or PRICE_RAW."""
    for d in range(_MAX_DECIMALS + 1):
        scaled = np.rint(price * _POW10[d])
        if np.abs(scaled).max(initial=0.0) >= 2.0**53:
            return PRICE_RAW
        if np.array_equal(scaled / _POW10[d], price):
            return d
    return PRICE_RAW


def _volume_mode(batch: TradeBatch) -> tuple[int, int, float]:
    """(mode, decimals, multiplier) for the volume column."""
    volume, notional = batch.volume, batch.price * batch.qty
    nz = np.flatnonzero(notional)
    if nz.size:
        ratio = float(volume[nz[0]] / notional[nz[0]])
        for mult in (round(ratio, 10), ratio):
            if np.array_equal(notional * mult, volume):
                return VOLUME_DERIVED, 0, mult
    elif not volume.any():
        return VOLUME_DERIVED, 0, 0.0
    d = _price_decimals(volume)
    if d != PRICE_RAW:
        return VOLUME_SCALED, d, 0.0
    return VOLUME_RAW, 0, 0.0


def _as_codes(
    batch: TradeBatch, price_decimals: int, volume_mode: int, volume_decimals: int
) -> dict[str, npt.NDArray[np.int64] | None]:
    """Every column as int64 values before delta and frame-of-reference coding."""
    if price_decimals == PRICE_RAW:
        price = batch.price.view(np.int64)
    else:
        price = np.rint(batch.price * _POW10[price_decimals]).astype(np.int64)
    volume: npt.NDArray[np.int64] | None
    if volume_mode == VOLUME_DERIVED:
        volume = None
    elif volume_mode == VOLUME_SCALED:
        volume = np.rint(batch.volume * _POW10[volume_decimals]).astype(np.int64)
    else:
        volume = batch.volume.view(np.int64)
    return {
        "ts_event": batch.ts_event,
        "ts_recv": batch.ts_recv,
        "trade_id": batch.trade_id,
        "price": price,
        "qty": batch.qty,
        "volume": volume,
        "buy_agent": batch.buy_agent.astype(np.int64),
        "sell_agent": batch.sell_agent.astype(np.int64),
        "trade_type": batch.trade_type.astype(np.int64),
        "flags": batch.flags.astype(np.int64),
    }


def encode_block(
    batch: TradeBatch, trading_day: int, *, compression: str = "lz4", level: int = 1
) -> bytes:
    """Encode one block. The caller guarantees one trading day and ts_event sorted."""
    n = len(batch)
    if n == 0:
        raise ValueError("cannot encode an empty block")
    price_decimals = _price_decimals(batch.price)
    volume_mode, volume_decimals, volume_mult = _volume_mode(batch)
    codes = _as_codes(batch, price_decimals, volume_mode, volume_decimals)

    column_headers: list[bytes] = []
    parts: list[bytes] = []
    for name in TRADE_FIELDS:
        values = codes[name]
        if values is None:
            column_headers.append(_COLUMN.pack(0, 0, 0, 0))
            continue
        first = int(values[0])
        if name in _DELTA_COLUMNS:
            deltas = np.empty_like(values)
            deltas[0] = 0
            np.subtract(values[1:], values[:-1], out=deltas[1:])
            values = deltas
        unit = 0
        if name in _UNIT_COLUMNS:
            for e in _UNIT_EXPONENTS:
                if not (values % 10**e).any():
                    unit, values = e, values // 10**e
                    break
        base = int(values.min())
        span = int(values.max()) - base
        width = _width_for(span)
        column_headers.append(_COLUMN.pack(first, base, width, unit))
        if width:
            shifted = (values - base) if base else values
            parts.append(shifted.astype(_WIDTH_DTYPES[width]).tobytes())
    payload = b"".join(parts)
    if _rows_size(n) < HEADER_SIZE + len(payload) // 4:
        return _encode_rows(batch, trading_day)  # even well compressed, rows are smaller
    codec = CODECS[compression] if len(payload) >= _COMPRESS_MIN_BYTES else CODEC_NONE
    if codec == CODEC_ZSTD:
        body = _compressor(level).compress(payload)
    elif codec == CODEC_LZ4:
        body = lz4.block.compress(payload, store_size=False)
    else:
        body = payload
    if codec != CODEC_NONE and _rows_size(n) < HEADER_SIZE + len(body):
        return _encode_rows(batch, trading_day)
    fixed = _FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        codec,
        price_decimals,
        volume_mode,
        volume_decimals,
        int(np.bitwise_or.reduce(batch.flags)),
        0,
        n,
        trading_day,
        int(batch.ts_event[0]),
        int(batch.ts_event[-1]),
        int(batch.ts_recv.min()),
        int(batch.ts_recv.max()),
        volume_mult,
        len(payload),
    )
    return b"".join([fixed, *column_headers, body])


def _rows_size(n: int) -> int:
    return _ROWS_HEADER.size + n * TRADE_DTYPE.itemsize


def _encode_rows(batch: TradeBatch, trading_day: int) -> bytes:
    """A small block as raw little-endian TRADE_DTYPE rows after a 13-byte header."""
    header = _ROWS_HEADER.pack(MAGIC, FORMAT_VERSION, CODEC_ROWS, len(batch), trading_day)
    return header + batch.to_structured().tobytes()


def _rows_of(block: bytes | memoryview, n: int) -> npt.NDArray[np.void]:
    if len(block) != _rows_size(n):
        raise FormatError(f"row block of {len(block)} bytes, expected {_rows_size(n)} for {n} rows")
    return np.frombuffer(block, dtype=TRADE_DTYPE, count=n, offset=_ROWS_HEADER.size)


def _unpack(block: bytes | memoryview) -> tuple[Any, ...]:
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
        return (magic, version, codec, 0, 0, 0, flags_or, 0, n, day,
                int(ts.min()), int(ts.max()), int(recv.min()), int(recv.max()), 0.0, 0)  # fmt: skip
    if len(block) < HEADER_SIZE:
        raise FormatError(
            f"block of {len(block)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    return _HEADER.unpack_from(block, 0)


def read_header(block: bytes | memoryview) -> BlockHeader:
    h = _unpack(block)
    return BlockHeader(
        n=h[8],
        trading_day=h[9],
        ts_first=h[10],
        ts_last=h[11],
        recv_min=h[12],
        recv_max=h[13],
        flags_or=h[6],
    )


def _payload(block: bytes | memoryview, h: tuple[Any, ...]) -> bytes:
    codec, payload_len = h[2], h[15]
    body = memoryview(block)[HEADER_SIZE:]
    if codec == CODEC_ZSTD:
        try:
            payload = zstandard.ZstdDecompressor().decompress(body, max_output_size=payload_len)
        except zstandard.ZstdError as exc:
            raise FormatError(f"corrupt block payload: {exc}") from exc
    elif codec == CODEC_LZ4:
        try:
            payload = lz4.block.decompress(body, uncompressed_size=payload_len)
        except lz4.block.LZ4BlockError as exc:
            raise FormatError(f"corrupt block payload: {exc}") from exc
    elif codec == CODEC_NONE:
        payload = bytes(body)
    else:
        raise FormatError(f"unknown codec {codec} in block header")
    if len(payload) != payload_len:
        raise FormatError(f"block payload is {len(payload)} bytes, header says {payload_len}")
    return payload


_N_FIXED: Final = 16
"""Number of fields in _FIXED; column fields follow in _HEADER."""

_FLOAT_COLUMNS: Final = frozenset({"price", "volume"})


def _decode_into(
    block: bytes | memoryview, h: tuple[Any, ...], out: dict[str, npt.NDArray[Any]], start: int
) -> None:
    """Decode one block into ``out[name][start:start + n]`` for every column."""
    if h[2] == CODEC_ROWS:
        rows = _rows_of(block, h[8])
        for name in TRADE_FIELDS:
            out[name][start : start + h[8]] = rows[name]
        return
    payload = _payload(block, h)
    price_decimals, volume_mode, volume_decimals = h[3], h[4], h[5]
    n, volume_mult = h[8], h[14]
    end = start + n
    pos = 0
    scratch = np.empty(n, dtype=np.int64)
    for ci, name in enumerate(TRADE_FIELDS):
        k = _N_FIXED + ci * 4
        first, base, width, unit = h[k], h[k + 1], h[k + 2], h[k + 3]
        target = out[name][start:end]
        if name == "volume" and volume_mode == VOLUME_DERIVED:
            continue
        integer_target = name not in _FLOAT_COLUMNS and name not in _DELTA_COLUMNS
        vals = target if integer_target else scratch
        if width == 0:
            vals[:] = base
        else:
            if pos + n * width > len(payload):
                raise FormatError(f"block payload too short for column {name}")
            vals[:] = np.frombuffer(payload, _WIDTH_DTYPES[width], n, pos)
            pos += n * width
            if base:
                vals += base
        if unit:
            vals *= 10**unit
        if name in _DELTA_COLUMNS:
            vals[0] = first
            np.cumsum(vals, out=vals)
        if name == "price":
            if price_decimals == PRICE_RAW:
                target[:] = vals.view(np.float64)
            else:
                np.divide(vals, _POW10[price_decimals], out=target)
        elif name == "volume":
            if volume_mode == VOLUME_RAW:
                target[:] = vals.view(np.float64)
            else:
                np.divide(vals, _POW10[volume_decimals], out=target)
        elif not integer_target:
            target[:] = vals
    if volume_mode == VOLUME_DERIVED:
        vol = out["volume"][start:end]
        np.multiply(out["price"][start:end], out["qty"][start:end], out=vol)
        vol *= volume_mult


def decode_blocks(
    blocks: Sequence[bytes | memoryview], *, threads: int = 1
) -> dict[str, npt.NDArray[Any]]:
    """Decode many blocks into one array per column, in block order.

    Every block decodes straight into its slice of the output columns, using
    a block-sized scratch array that stays in cache. With ``threads`` > 1 the
    blocks are spread over a thread pool (zstd and numpy release the GIL).
    """
    headers = [_unpack(b) for b in blocks]
    starts = [0] * len(blocks)
    total = 0
    for i, h in enumerate(headers):
        starts[i] = total
        total += h[8]
    out = allocate_columns(total)
    if threads > 1 and len(blocks) > 4:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(_decode_into, blocks, headers, [out] * len(blocks), starts):
                pass
    else:
        for b, h, s in zip(blocks, headers, starts, strict=True):
            _decode_into(b, h, out, s)
    return out


def decode_block(block: bytes | memoryview) -> TradeBatch:
    """Decode one block into a batch."""
    return TradeBatch(**decode_blocks([block]))


def allocate_columns(n: int) -> dict[str, npt.NDArray[Any]]:
    """Uninitialised output columns for ``n`` trades, in Arrow's memory pool.

    The pool (mimalloc or jemalloc) keeps freed pages for reuse, so repeated
    large reads do not pay the kernel's page faults again (with glibc malloc
    they cost as much as decoding); the arrays also convert to Arrow without
    a copy.
    """
    pool = pa.default_memory_pool()
    out: dict[str, npt.NDArray[Any]] = {}
    for name in TRADE_FIELDS:
        dtype = TRADE_DTYPE[name]
        buf = pa.allocate_buffer(max(n * dtype.itemsize, 1), memory_pool=pool)
        out[name] = np.frombuffer(buf, dtype=dtype, count=n)
    return out
