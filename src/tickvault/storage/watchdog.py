"""Stop an on-demand embedded server once its last client has gone.

Run by ``server.ensure_server`` as a detached process::

    python -m tickvault.storage.watchdog DATA_DIR RUN_ID IDLE_STOP_S

Every second it asks the server for its client list. When no client other
than itself has been connected for ``IDLE_STOP_S`` seconds, it stops the
server cleanly (``stop_server``: the AOF is flushed). It exits at once when
the server it watches is gone or replaced (another run id), or when
``tickvault server start`` has asked the server to keep running (the keep
file). A process that exits without ``Vault.close()`` (or is killed) closes
its sockets, so its connections leave the list and cannot keep the server up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import valkey

from tickvault.errors import TickvaultError
from tickvault.storage.server import (
    KEEP_FILE,
    STATE_FILE,
    ServerAuth,
    auth_from_env,
    read_state,
    stop_server,
)

POLL_S = 1.0


def other_clients(client: Any) -> int:
    """Connected clients other than the caller's own connection."""
    mine = int(client.client_id())
    return sum(1 for c in client.client_list() if int(c.get("id", -1)) != mine)


def _recorded_run_id(data_dir: Path) -> str | None:
    """The run id in the state file (read without connecting to anything)."""
    try:
        return str(json.loads((data_dir / STATE_FILE).read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def watch(data_dir: Path, run_id: str, idle_stop_s: float, auth: ServerAuth | None = None) -> str:
    """Watch until the server stops or is stopped; returns why the watch ended.

    One connection for the whole watch (a watchdog must not add to the server's
    connection count every second)."""
    idle_since = time.monotonic()
    try:
        info = read_state(data_dir, auth)
    except TickvaultError:
        return "server refuses the watchdog's credentials"
    if info is None or info.run_id != run_id:
        return "server gone"
    creds: dict[str, Any] = auth.client_kwargs() if auth is not None else {}
    client: Any = valkey.Valkey(host=info.host, port=info.port, socket_timeout=5,
                                client_name="tvwatchdog", **creds)  # fmt: skip
    try:
        while True:
            time.sleep(POLL_S)
            if (data_dir / KEEP_FILE).exists():
                return "kept running on request"
            if _recorded_run_id(data_dir) != run_id:
                return "server gone"
            try:
                if client.info("server").get("run_id") != run_id:
                    return "server replaced"
                busy = other_clients(client) > 0
            except (valkey.ValkeyError, OSError):
                return "server gone"
            now = time.monotonic()
            if busy:
                idle_since = now
            elif now - idle_since >= idle_stop_s:
                if other_clients(client) > 0:  # one arrived just now
                    idle_since = now
                    continue
                client.close()
                if not (data_dir / KEEP_FILE).exists():
                    stop_server(data_dir, auth)
                return "stopped after idling"
    finally:
        with contextlib.suppress(Exception):
            client.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    data_dir, run_id, idle = Path(args[0]), args[1], float(args[2])
    watch(data_dir, run_id, idle, auth_from_env(os.environ))


if __name__ == "__main__":
    main()
