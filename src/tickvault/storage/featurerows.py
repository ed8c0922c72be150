"""``features:{SYMBOL}``: the live feature worker's rows, columnar blocks in a stream.

One stream entry per write cycle of the worker (``append_features.lua``):

- ``s``: the schema hash of the block's columns (names, dtypes, feature versions);
- ``n``: rows in the block; ``t0``, ``t1``: its first and last ``T`` (int ns);
- ``b``: the columns, each ``n`` little-endian values of its dtype, one after the
  other in the schema's order, compressed with zstd (level 1).

Entry ids are ``<ms>-<seq>`` with ms the block's last T in milliseconds (the stream's
top ms if that is later, so ids never go back; blocks in one ms get seq 0, 1, ...).
Rows are appended in non-decreasing T, so a range read starts at XRANGE ``start_ms``
and stops at the first block whose t0 is at or after the end.

Beside it, ``features:{SYMBOL}:meta`` (hash: ``schema``, ``columns`` as JSON
``[[name, dtype], ...]``, ``rows``) and ``features:{SYMBOL}:cursor`` (hash: the worker's
position, strings). A block with another schema than the stored one is refused,
atomically, with nothing written.

Pure storage: this module knows nothing of what the columns mean (``engine.rows`` does).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import zstandard

from tickvault.errors import FormatError, ValidationError

_PAGE = 256
_tls = threading.local()


class FeatureSchemaError(ValidationError):
    """Feature rows of another schema than the stored ones: refused, nothing written."""


def rows_key(symbol: str) -> str:
    return f"features:{{{symbol}}}"


def rows_meta_key(symbol: str) -> str:
    return f"features:{{{symbol}}}:meta"


def rows_cursor_key(symbol: str) -> str:
    return f"features:{{{symbol}}}:cursor"


def _zc() -> zstandard.ZstdCompressor:
    c = getattr(_tls, "c", None)
    if c is None:
        c = _tls.c = zstandard.ZstdCompressor(level=1)
    return c


def _zd() -> zstandard.ZstdDecompressor:
    d = getattr(_tls, "d", None)
    if d is None:
        d = _tls.d = zstandard.ZstdDecompressor()
    return d


def encode_block(
    columns: Sequence[tuple[str, str]], values: Mapping[str, npt.NDArray[Any]]
) -> tuple[int, bytes]:
    """(rows, compressed bytes) of one block; every column must have the same length."""
    n = len(values[columns[0][0]]) if columns else 0
    parts = []
    for name, dtype in columns:
        col = np.ascontiguousarray(values[name], dtype=np.dtype(dtype).newbyteorder("<"))
        if col.shape != (n,):
            raise ValidationError(f"feature column {name!r} has {col.size} rows, expected {n}")
        parts.append(col.tobytes())
    return n, _zc().compress(b"".join(parts))


def decode_block(
    columns: Sequence[tuple[str, str]], n: int, raw: bytes
) -> dict[str, npt.NDArray[Any]]:
    data = _zd().decompress(raw)
    out: dict[str, npt.NDArray[Any]] = {}
    at = 0
    for name, dtype in columns:
        dt = np.dtype(dtype).newbyteorder("<")
        size = n * dt.itemsize
        if at + size > len(data):
            raise FormatError(f"feature block too short for column {name!r} ({len(data)} bytes)")
        out[name] = np.frombuffer(data, dtype=dt, count=n, offset=at).astype(dtype)
        at += size
    if at != len(data):
        raise FormatError(f"feature block has {len(data) - at} bytes after its columns")
    return out


class FeatureRowStore:
    """Reads and writes ``features:{SYMBOL}`` through the raw valkey-py client ``r``."""

    def __init__(self, r: Any) -> None:
        self._r = r
        lua = resources.files("tickvault.storage").joinpath("append_features.lua").read_text()
        self._append = r.register_script(lua)

    def schema(self, symbol: str) -> tuple[str, list[tuple[str, str]]] | None:
        """(schema hash, columns) of the stored rows, None when there are none."""
        schema, columns = self._r.hmget(rows_meta_key(symbol), ["schema", "columns"])
        if schema is None or columns is None:
            return None
        return schema.decode(), [(str(a), str(b)) for a, b in orjson.loads(columns)]

    def append(
        self,
        symbol: str,
        schema: str,
        columns: Sequence[tuple[str, str]],
        values: Mapping[str, npt.NDArray[Any]],
        *,
        t_column: str,
        cursor: Mapping[str, str | int],
        client: Any = None,
    ) -> str:
        """Append one block (may be empty: then only the cursor moves); the entry id.
        With ``client`` a valkey-py pipeline the call is only queued on it: pass its
        reply to ``check_reply`` after the pipeline ran."""
        n, block = encode_block(columns, values)
        t = np.asarray(values[t_column], dtype=np.int64)
        t0, t1 = (int(t[0]), int(t[-1])) if n else (0, 0)
        args: list[Any] = [schema, orjson.dumps([list(c) for c in columns]), t1 // 1_000_000,
                           t0, t1, n, block, len(cursor)]  # fmt: skip
        for name, value in cursor.items():
            args += [name, str(value)]
        keys = [rows_key(symbol), rows_meta_key(symbol), rows_cursor_key(symbol)]
        reply = self._append(keys=keys, args=args, client=client)
        if client is not None:
            return ""
        return self.check_reply(symbol, schema, reply)

    @staticmethod
    def check_reply(symbol: str, schema: str, reply: Any) -> str:
        """The entry id of an ``append``'s reply (FeatureSchemaError: refused)."""
        status, detail = reply[0].decode(), reply[1]
        if status == "schema":
            raise FeatureSchemaError(
                f"features:{{{symbol}}} holds rows of feature schema {detail.decode()}, not "
                f"{schema} (another feature set or versions): nothing was written. Run the "
                "worker with the feature set those rows were computed with, or delete them "
                f"(tickvault features run --reset) to start over"
            )
        return detail.decode() if isinstance(detail, bytes) else str(detail)

    def cursor(self, symbol: str) -> dict[str, str]:
        raw = self._r.hgetall(rows_cursor_key(symbol))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def read(
        self, symbol: str, start_ns: int, end_ns: int
    ) -> tuple[list[tuple[str, str]], list[dict[str, npt.NDArray[Any]]]]:
        """The columns and every block with rows in [start_ns, end_ns) (whole blocks)."""
        meta = self.schema(symbol)
        if meta is None:
            return [], []
        schema, columns = meta
        blocks: list[dict[str, npt.NDArray[Any]]] = []
        after = str(max(start_ns, 0) // 1_000_000)
        key = rows_key(symbol)
        while True:
            page = self._r.xrange(key, after, "+", count=_PAGE)
            for _id, f in page:
                t0, t1 = int(f[b"t0"]), int(f[b"t1"])
                if t0 >= end_ns:
                    return columns, blocks
                if t1 < start_ns:
                    continue
                if f[b"s"].decode() != schema:
                    raise FormatError(f"a block of {key} has schema {f[b's'].decode()}, "
                                      f"the stream's is {schema}")  # fmt: skip
                blocks.append(decode_block(columns, int(f[b"n"]), f[b"b"]))
            if len(page) < _PAGE:
                return columns, blocks
            after = "(" + page[-1][0].decode()

    def last_block(self, symbol: str) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
        meta = self.schema(symbol)
        if meta is None:
            return [], None
        top = self._r.xrevrange(rows_key(symbol), "+", "-", count=1)
        if not top:
            return meta[1], None
        f = top[0][1]
        return meta[1], decode_block(meta[1], int(f[b"n"]), f[b"b"])

    def delete(self, symbol: str) -> int:
        return int(self._r.delete(rows_key(symbol), rows_meta_key(symbol), rows_cursor_key(symbol)))
