"""The import registry (``IMPORTS_KEY``): which files' trades are in the store.

One hash field per imported file (sha256, zip member and symbol filter) holds a
JSON summary: ``name``, ``rows``, ``stored`` (records per symbol), ``at_ns``
(when it was imported) and ``spans`` (per symbol, the event-time span
``[first_ns, last_ns]`` of what it stored). A file with a field is not imported
again unless forced. Trimming removes the fields of the files whose trades it
removed (``touched_by``), so the registry never claims trades the store no
longer holds and those files can be imported again. Valkey's errors become
``ServerError``s here (``translate``).
"""

from __future__ import annotations

from typing import Any

import orjson

from tickvault.storage.connection import translate
from tickvault.storage.keys import IMPORTS_KEY


@translate
def lookup(client: Any, field: str) -> dict[str, Any] | None:
    """The summary of an import, or None if the file is not registered."""
    raw = client.hget(IMPORTS_KEY, field)
    return None if raw is None else dict(orjson.loads(raw))


@translate
def register(client: Any, field: str, summary: dict[str, Any]) -> None:
    client.hset(IMPORTS_KEY, field, orjson.dumps(summary))


@translate
def touched_by(client: Any, symbol: str, first_ns: int, last_ns: int) -> dict[str, str]:
    """The imports (field -> file name) that stored trades of ``symbol`` with event times
    inside ``[first_ns, last_ns]``. An import recorded before spans were kept counts as
    touched when it stored anything for ``symbol``."""
    out: dict[str, str] = {}
    for raw_field, raw in client.hgetall(IMPORTS_KEY).items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        entry = orjson.loads(raw)
        spans = entry.get("spans")
        if spans is None:
            hit = int(entry.get("stored", {}).get(symbol, 0)) > 0
        else:
            span = spans.get(symbol)
            hit = span is not None and span[0] <= last_ns and first_ns <= span[1]
        if hit:
            out[field] = str(entry.get("name", field))
    return out


@translate
def release(client: Any, fields: list[str]) -> None:
    """Forget these imports: their files will be imported again."""
    if fields:
        client.hdel(IMPORTS_KEY, *fields)
