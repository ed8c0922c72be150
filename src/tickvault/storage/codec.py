"""Columnar block codec (format version 1). Pure: bytes in, arrays out.

A block holds up to a few thousand trades of one symbol, one trading date and one
stream. Each column is turned into integers (scaled prices, deltas of times and
trade ids), reduced by frame of reference (minus the column minimum) to the
narrowest of 0/1/2/4/8 bytes, and the column bytes together are compressed with
lz4 (default) or zstd. The exact layout is documented in ``docs/storage-format.md``.

This module is the encoder and the codec's public surface; the layout and its
headers (read into named fields) are ``storage.layout``, the one decoder is
``storage.decode``.
"""

from __future__ import annotations

import threading

import lz4.block
import numpy as np
import numpy.typing as npt
import zstandard

from tickvault.errors import FormatError
from tickvault.records.trades import TRADE_FIELDS, TradeBatch
from tickvault.storage.decode import allocate_columns, decode_block, decode_blocks
from tickvault.storage.layout import (
    _COLUMN,
    _COMPRESS_MIN_BYTES,
    _DELTA_COLUMNS,
    _FIXED,
    _MAX_DECIMALS,
    _POW10,
    _ROWS_HEADER,
    _UNIT_COLUMNS,
    _UNIT_EXPONENTS,
    _WIDTH_DTYPES,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_ROWS,
    CODEC_ZSTD,
    CODECS,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    PRICE_RAW,
    VOLUME_DERIVED,
    VOLUME_RAW,
    VOLUME_SCALED,
    BlockHeader,
    ColumnHeader,
    RawHeader,
    _rows_size,
    read_header,
)

_tls = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    key = f"c{level}"
    c = getattr(_tls, key, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level)
        setattr(_tls, key, c)
    return c


_UNIT_PROBE = 16
"""Values of a time column checked for a unit before all of them are."""


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
        raise FormatError("cannot encode an empty block: give at least one trade")
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
                # A few values first: ns times fail there, sparing full passes of % (slow).
                if not (values[:_UNIT_PROBE] % 10**e).any() and not (values % 10**e).any():
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


def _encode_rows(batch: TradeBatch, trading_day: int) -> bytes:
    """A small block as raw little-endian TRADE_DTYPE rows after a 13-byte header."""
    header = _ROWS_HEADER.pack(MAGIC, FORMAT_VERSION, CODEC_ROWS, len(batch), trading_day)
    return header + batch.to_structured().tobytes()


__all__ = [
    "CODECS",
    "CODEC_LZ4",
    "CODEC_NONE",
    "CODEC_ROWS",
    "CODEC_ZSTD",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "PRICE_RAW",
    "VOLUME_DERIVED",
    "VOLUME_RAW",
    "VOLUME_SCALED",
    "BlockHeader",
    "ColumnHeader",
    "RawHeader",
    "allocate_columns",
    "decode_block",
    "decode_blocks",
    "encode_block",
    "read_header",
]
