"""The block decoder (pure): blocks in, one array per column out.

The column rules are defined once (``layout``'s ``_DELTA_COLUMNS`` and
``_FLOAT_COLUMNS``, the float rule ``_float_column`` and the derived volume
``_derived_volume``) and applied by two strategies: large blocks one at a time in
place (a block-sized scratch array that stays in cache, threads across blocks),
small blocks vectorised across blocks (per-block numpy calls would cost more than
the decoding itself; live writes make small blocks).
"""

from __future__ import annotations

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
from tickvault.storage.layout import (
    _DELTA_COLUMNS,
    _FLOAT_COLUMNS,
    _POW10,
    _ROWS_HEADER,
    _WIDTH_DTYPES,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_ROWS,
    CODEC_ZSTD,
    HEADER_SIZE,
    PRICE_RAW,
    VOLUME_DERIVED,
    VOLUME_RAW,
    BlockHeader,
    RawHeader,
    _unpack,
)


def _payload(block: bytes | memoryview, h: RawHeader) -> bytes:
    codec, payload_len = h.codec, h.payload_len
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


def _decode_into(
    block: bytes | memoryview, h: RawHeader, out: dict[str, npt.NDArray[Any]], start: int
) -> None:
    """Decode one columnar block into ``out[name][start:start + n]`` for every column."""
    payload = _payload(block, h)
    price_decimals, volume_mode, volume_decimals = (
        h.price_decimals,
        h.volume_mode,
        h.volume_decimals,
    )
    n, volume_mult = h.n, h.volume_multiplier
    end = start + n
    pos = 0
    scratch = np.empty(n, dtype=np.int64)
    for ci, name in enumerate(TRADE_FIELDS):
        first, base, width, unit = h.column(ci)
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
            _float_column(vals, price_decimals, price_decimals == PRICE_RAW, out=target)
        elif name == "volume":
            _float_column(vals, volume_decimals, volume_mode == VOLUME_RAW, out=target)
        elif not integer_target:
            target[:] = vals
    if volume_mode == VOLUME_DERIVED:
        _derived_volume(out["price"][start:end], out["qty"][start:end], volume_mult,
                        out=out["volume"][start:end])  # fmt: skip


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
    blocks: list[bytes | memoryview], headers: list[RawHeader], out: dict[str, Any],
    starts: list[int],
) -> None:  # fmt: skip
    # Sizes were checked when the headers were read (_unpack).
    joined = b"".join(memoryview(b)[_ROWS_HEADER.size :] for b in blocks)
    rows = np.frombuffer(joined, dtype=TRADE_DTYPE)
    dest = _destination(starts, np.array([h.n for h in headers], dtype=np.int64))
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
    blocks: list[bytes | memoryview], headers: list[RawHeader], out: dict[str, Any],
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
        volume = np.where(np.repeat(derived, counts), _derived_volume(price, qty, mult), volume)
    values: dict[str, npt.NDArray[Any]] = {**ints, "price": price, "volume": volume}
    for name in TRADE_FIELDS:
        out[name][dest] = values[name]


def _float_column(
    vals: npt.NDArray[np.int64],
    decimals: int,
    raw: bool,
    out: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """The float rule (price, volume) of one block, or of blocks that share their
    scaling: undo the decimal scaling, or for raw blocks reinterpret the bits.
    ``out``: write there."""
    if raw:
        bits = vals.view(np.float64)
        if out is None:
            return bits.copy()
        out[:] = bits
        return out
    if out is None:
        result: npt.NDArray[np.float64] = vals / _POW10[decimals]
        return result
    return np.divide(vals, _POW10[decimals], out=out)


def _to_float(
    vals: npt.NDArray[np.int64],
    decimals: npt.NDArray[np.int64],
    raw: npt.NDArray[np.bool_],
    counts: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """The float rule over rows of many blocks (``_float_column`` when they share their
    scaling, else per row)."""
    if (decimals == decimals[0]).all() and (raw == raw[0]).all():
        return _float_column(vals, int(decimals[0]), bool(raw[0]))
    scaled: npt.NDArray[np.float64] = vals / np.repeat(
        np.array(_POW10)[np.maximum(decimals, 0)], counts
    )
    if raw.any():
        scaled = np.where(np.repeat(raw, counts), vals.view(np.float64), scaled)
    return scaled


def _derived_volume(
    price: npt.NDArray[np.float64],
    qty: npt.NDArray[np.int64],
    multiplier: float | npt.NDArray[np.float64],
    out: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """The derived-volume rule (``VOLUME_DERIVED``): price * qty * multiplier."""
    if out is None:
        result: npt.NDArray[np.float64] = price * qty * multiplier
        return result
    np.multiply(price, qty, out=out)
    out *= multiplier
    return out


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
    raw = (
        [h.raw if h.raw is not None else _unpack(b) for h, b in zip(headers, blocks, strict=True)]
        if headers is not None
        else [_unpack(b) for b in blocks]
    )
    starts = [0] * len(blocks)
    total = 0
    for i, h in enumerate(raw):
        starts[i] = total
        total += h.n
    out = allocate_columns(total)
    rows = [i for i, h in enumerate(raw) if h.codec == CODEC_ROWS]
    small = [i for i, h in enumerate(raw) if h.codec != CODEC_ROWS and h.n < _SMALL_BLOCK]
    large = [i for i, h in enumerate(raw) if h.codec != CODEC_ROWS and h.n >= _SMALL_BLOCK]
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
