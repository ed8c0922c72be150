"""Columnar block codec (format version 1). Pure: bytes in, arrays out.

A block holds up to a few thousand trades of one symbol, one trading date and one
stream. Each column is turned into integers (scaled prices, deltas of times and
trade ids), reduced by frame of reference (minus the column minimum) to the
narrowest of 0/1/2/4/8 bytes, and the column bytes together are compressed with
lz4 (default) or zstd. The exact layout is documented in ``docs/storage-format.md``.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import lz4.block
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import zstandard

from tickvault.errors import FormatError
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS, TradeBatch

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
    raw: tuple[Any, ...] = dataclasses.field(repr=False, compare=False, default=())
    """Every header field, for the decoder (so a block's header is parsed once)."""


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
    if _rows_size(n) < HEADER_SIZE + len(body):
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
        raw=h,
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


_N_FIXED: Final = len(_FIXED.unpack(bytes(_FIXED.size)))
"""Number of fields in _FIXED; column fields follow in _HEADER."""

_FLOAT_COLUMNS: Final = frozenset({"price", "volume"})


def _decode_into(
    block: bytes | memoryview, h: tuple[Any, ...], out: dict[str, npt.NDArray[Any]], start: int
) -> None:
    """Decode one columnar block into ``out[name][start:start + n]`` for every column."""
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


_SMALL_BLOCK: Final = 2048
"""Blocks of fewer trades are decoded together, vectorised across blocks: per-block
numpy calls would cost more than the decoding itself (live writes make small blocks)."""


def _destination(starts: list[int], counts: npt.NDArray[np.int64]) -> slice | npt.NDArray[np.int64]:
    """Where rows of blocks (concatenated in order) go in the output columns."""
    total = int(counts.sum())
    if all(starts[i + 1] == starts[i] + counts[i] for i in range(len(starts) - 1)):
        return slice(starts[0], starts[0] + total)
    local = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, dtype=np.int64) - local, counts) + np.arange(total)


def _decode_rows_together(
    blocks: list[bytes | memoryview], headers: list[tuple[Any, ...]], out: dict[str, Any],
    starts: list[int],
) -> None:  # fmt: skip
    # Sizes were checked when the headers were read (_unpack).
    joined = b"".join(memoryview(b)[_ROWS_HEADER.size :] for b in blocks)
    rows = np.frombuffer(joined, dtype=TRADE_DTYPE)
    dest = _destination(starts, np.array([h[8] for h in headers], dtype=np.int64))
    for name in TRADE_FIELDS:
        out[name][dest] = rows[name]


_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S3"), ("version", "u1"), ("codec", "u1"), ("price_decimals", "i1"),
        ("volume_mode", "u1"), ("volume_decimals", "i1"), ("flags_or", "u1"), ("reserved", "u1"),
        ("n", "<u4"), ("trading_day", "<i4"), ("ts_first", "<i8"), ("ts_last", "<i8"),
        ("recv_min", "<i8"), ("recv_max", "<i8"), ("volume_multiplier", "<f8"),
        ("payload_len", "<u4"),
        ("columns", [("first", "<i8"), ("base", "<i8"), ("width", "u1"), ("unit", "u1")],
         (len(TRADE_FIELDS),)),
    ]
)  # fmt: skip
"""The columnar block header as a numpy dtype: many headers parse in one call."""
assert _HEADER_DTYPE.itemsize == HEADER_SIZE


def _decode_columnar_together(
    blocks: list[bytes | memoryview], headers: list[tuple[Any, ...]], out: dict[str, Any],
    starts: list[int],
) -> None:  # fmt: skip
    payloads = [_payload(b, h) for b, h in zip(blocks, headers, strict=True)]
    hdr = np.frombuffer(b"".join(memoryview(b)[:HEADER_SIZE] for b in blocks), _HEADER_DTYPE)
    counts = hdr["n"].astype(np.int64)
    total = int(counts.sum())
    seg = np.cumsum(counts) - counts
    cols = hdr["columns"]  # shape (blocks, columns)
    widths = cols["width"].astype(np.int64)
    col_bytes = widths * counts[:, None]
    col_offset = np.cumsum(col_bytes, axis=1) - col_bytes  # within each payload
    if (col_offset[:, -1] + col_bytes[:, -1] > hdr["payload_len"]).any():
        raise FormatError("block payload too short for its columns")
    joined = memoryview(b"".join(payloads))
    all_bytes = np.frombuffer(joined, dtype=np.uint8)
    payload_start = np.cumsum(hdr["payload_len"].astype(np.int64)) - hdr["payload_len"]
    ints: dict[str, npt.NDArray[np.int64]] = {}
    for ci, name in enumerate(TRADE_FIELDS):
        w = widths[:, ci]
        if (w == 0).all():
            vals = np.zeros(total, dtype=np.int64)
        elif (w == w[0]).all():
            # This column's bytes from every payload, joined, viewed as integers.
            lo = (payload_start + col_offset[:, ci]).tolist()
            hi = (payload_start + col_offset[:, ci] + col_bytes[:, ci]).tolist()
            column = b"".join([joined[a:b] for a, b in zip(lo, hi, strict=True)])
            vals = np.frombuffer(column, _WIDTH_DTYPES[int(w[0])]).astype(np.int64)
        else:
            vals = np.zeros(total, dtype=np.int64)
            for bi in range(len(blocks)):
                width = int(w[bi])
                if width:
                    lo = int(payload_start[bi] + col_offset[bi, ci])
                    vals[seg[bi] : seg[bi] + counts[bi]] = all_bytes[
                        lo : lo + int(col_bytes[bi, ci])
                    ].view(_WIDTH_DTYPES[width])
        bases, units, firsts = cols["base"][:, ci], cols["unit"][:, ci], cols["first"][:, ci]
        if bases.any():
            vals += np.repeat(bases, counts)
        if units.any():
            vals *= np.repeat(10 ** units.astype(np.int64), counts)
        if name in _DELTA_COLUMNS:
            # Segmented prefix sum; int64 wrap-around cancels out exactly.
            vals[seg] = firsts
            csum = np.cumsum(vals)
            vals = csum - np.repeat(csum[seg] - firsts, counts)
        ints[name] = vals

    dest = _destination(starts, counts)
    price_dec = hdr["price_decimals"].astype(np.int64)
    vol_mode = hdr["volume_mode"].astype(np.int64)
    vol_dec = hdr["volume_decimals"].astype(np.int64)
    price = _to_float(ints["price"], price_dec, price_dec == PRICE_RAW, counts)
    qty = ints["qty"]
    volume = _to_float(ints["volume"], vol_dec, vol_mode == VOLUME_RAW, counts)
    derived = vol_mode == VOLUME_DERIVED
    if derived.any():
        mult = np.repeat(hdr["volume_multiplier"], counts)
        volume = np.where(np.repeat(derived, counts), price * qty * mult, volume)
    values: dict[str, npt.NDArray[Any]] = {**ints, "price": price, "volume": volume}
    for name in TRADE_FIELDS:
        out[name][dest] = values[name]


def _to_float(
    vals: npt.NDArray[np.int64],
    decimals: npt.NDArray[np.int64],
    raw: npt.NDArray[np.bool_],
    counts: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Undo decimal scaling per block; raw blocks reinterpret the bits."""
    if (decimals == decimals[0]).all() and not raw.any():
        result: npt.NDArray[np.float64] = vals / _POW10[int(decimals[0])]
        return result
    scaled: npt.NDArray[np.float64] = vals / np.repeat(
        np.array(_POW10)[np.maximum(decimals, 0)], counts
    )
    if raw.any():
        scaled = np.where(np.repeat(raw, counts), vals.view(np.float64), scaled)
    return scaled


def decode_blocks(
    blocks: Sequence[bytes | memoryview],
    *,
    threads: int = 1,
    headers: Sequence[BlockHeader] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Decode many blocks into one array per column, in block order.

    Large blocks decode one at a time straight into their slice of the output,
    with a block-sized scratch array that stays in cache (with ``threads`` > 1,
    spread over a thread pool: lz4, zstd and numpy release the GIL). Small
    blocks, row or columnar, decode together, vectorised across blocks.
    """
    raw = [h.raw for h in headers] if headers is not None else [_unpack(b) for b in blocks]
    starts = [0] * len(blocks)
    total = 0
    for i, h in enumerate(raw):
        starts[i] = total
        total += h[8]
    out = allocate_columns(total)
    rows = [i for i, h in enumerate(raw) if h[2] == CODEC_ROWS]
    small = [i for i, h in enumerate(raw) if h[2] != CODEC_ROWS and h[8] < _SMALL_BLOCK]
    large = [i for i, h in enumerate(raw) if h[2] != CODEC_ROWS and h[8] >= _SMALL_BLOCK]
    for group, decode in ((rows, _decode_rows_together), (small, _decode_columnar_together)):
        if group:
            decode([blocks[i] for i in group], [raw[i] for i in group], out,
                   [starts[i] for i in group])  # fmt: skip
    if threads > 1 and len(large) > 4:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(_decode_into, [blocks[i] for i in large],
                              [raw[i] for i in large], [out] * len(large),
                              [starts[i] for i in large]):  # fmt: skip
                pass
    else:
        for i in large:
            _decode_into(blocks[i], raw[i], out, starts[i])
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
