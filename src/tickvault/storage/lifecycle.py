"""A store's lifecycle under the ``Vault``: settings with changes applied, a connection
shared by a view, and closing (which stops the embedded server this process started
once no other tickvault process is connected to it)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import valkey

from tickvault.config import Settings
from tickvault.storage.connection import Connection, other_tickvault_clients
from tickvault.storage.server import kept_running, server_auth, stop_server


def merged(settings: Settings, changes: Mapping[str, Any]) -> Settings:
    """``settings`` with ``changes`` applied (validated again)."""
    return Settings(**{**settings.model_dump(), **changes})


def shared(conn: Connection) -> Connection:
    """The same connection for a view of the store: closing the view never stops the
    server."""
    return dataclasses.replace(conn, started_here=False)


def close(conn: Connection, data_dir: Path, settings: Settings | None = None) -> None:
    """Close the connection; stop the embedded server if this process started it and no
    other tickvault process is connected to it."""
    client: Any = conn.client
    try:
        if conn.started_here and conn.embedded is not None and not kept_running(data_dir):
            others = 0
            with contextlib.suppress(valkey.ValkeyError):
                others = other_tickvault_clients(client)
            if others == 0:
                client.close()
                stop_server(data_dir, server_auth(settings) if settings is not None else None)
                return
    finally:
        client.close()
