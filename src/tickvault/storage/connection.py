"""The one place where tickvault opens Valkey connections and translates their errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import valkey

from tickvault.config import Settings, hide_password
from tickvault.errors import ServerError, ServerUnreachable
from tickvault.storage.server import ServerInfo, ensure_server

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Connection:
    """A client plus where it points and whether this process started the server."""

    client: valkey.Valkey
    url: str
    embedded: ServerInfo | None
    started_here: bool


class _ChunkingPackerMixin:
    """Pack commands with valkey-py's Python packer, which sends large values as
    separate chunks; libvalkey's packer copies them into one buffer (about 10x
    slower for block writes). Replies are still parsed by libvalkey."""

    _buffer_cutoff: int
    encoder: Any

    def _construct_command_packer(self, packer: Any) -> Any:
        from valkey.connection import PythonRespSerializer

        return packer or PythonRespSerializer(self._buffer_cutoff, self.encoder.encode)


def _use_chunking_packer(client: valkey.Valkey) -> None:
    pool = client.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"Chunking{base.__name__}", (_ChunkingPackerMixin, base), {})


def _check_hint(url: str) -> str:
    return (
        f"cannot reach Valkey at {hide_password(url)}. Check that the server is running and "
        "that TICKVAULT_VALKEY_URL (or valkey_url in tickvault.toml) has the right host, port "
        "and password; unset it to use the embedded server"
    )


def connect(settings: Settings, url: str | None = None) -> Connection:
    """Connect to ``url``, the configured URL, or the embedded server of ``data_dir``."""
    target = url or settings.valkey_url
    embedded: ServerInfo | None = None
    started = False
    if target is None:
        embedded, started = ensure_server(
            settings.data_dir,
            settings.valkey_server_binary,
            idle_stop_s=settings.embedded_idle_stop_s,
        )
        target = embedded.url
    try:
        client = valkey.Valkey.from_url(
            target,
            socket_connect_timeout=settings.connect_timeout_s,
            health_check_interval=30,
            client_name=f"tickvault-{os.getpid()}",
        )
        _use_chunking_packer(client)
        client.ping()
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as exc:
        raise ServerUnreachable(_check_hint(target) + f" ({exc})") from None
    except valkey.AuthenticationError as exc:
        raise ServerUnreachable(
            f"Valkey at {hide_password(target)} refused the credentials: {exc}"
        ) from None
    except ValueError as exc:  # malformed URL
        raise ServerUnreachable(f"bad Valkey URL {hide_password(target)}: {exc}") from None
    return Connection(client=client, url=target, embedded=embedded, started_here=started)


def other_tickvault_clients(client: valkey.Valkey) -> int:
    """How many tickvault processes other than this one are connected."""
    mine = f"tickvault-{os.getpid()}"
    clients: list[dict[str, str]] = client.client_list()  # type: ignore[assignment]
    names = {c.get("name", "") for c in clients}
    return sum(1 for n in names if n.startswith("tickvault-") and n != mine)


def translate(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorator: valkey-py errors become tickvault ServerErrors with a message."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with translated():
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (valkey.ConnectionError, valkey.TimeoutError) as exc:
        raise ServerUnreachable(
            f"lost the connection to Valkey: {exc}. Check that the server is still running"
        ) from exc
    except valkey.ResponseError as exc:
        msg = str(exc)
        if "OOM" in msg:
            raise ServerError(
                "Valkey is out of memory and does not evict market data (noeviction): "
                "raise maxmemory, lower retention_days, or run `tickvault trim`"
            ) from exc
        raise ServerError(f"Valkey refused a request: {msg}") from exc
    except valkey.ValkeyError as exc:
        raise ServerError(f"Valkey error: {exc}") from exc
