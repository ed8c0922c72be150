"""The one place where tickvault opens Valkey connections and translates their errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import valkey
from valkey.exceptions import AskError, ClusterError, TryAgainError, ValkeyClusterException

from tickvault.config import Settings, hide_password
from tickvault.errors import ServerError, ServerUnreachable, StoreRefused
from tickvault.storage.cluster import ClusterClient, is_cluster_url, parse_cluster_url
from tickvault.storage.scripting import StoreClient
from tickvault.storage.server import ServerInfo, ensure_server, server_auth

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Connection:
    """A client plus where it points and whether this process started the server."""

    client: valkey.Valkey | ClusterClient
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


def _not_valkey(url: str, what: str) -> ServerError:
    return ServerError(
        f"the service at {hide_password(url)} is not a Valkey server ({what}). Check the host "
        "and port of TICKVAULT_VALKEY_URL (or valkey_url in tickvault.toml): they must be "
        "those of a Valkey (or Redis) server; unset it to use the embedded server"
    )


def _is_tls(url: str) -> bool:
    return url.startswith(("valkeys://", "rediss://", "valkeys+cluster://", "rediss+cluster://"))


def client_options(settings: Settings, url: str, embedded: bool) -> dict[str, Any]:
    """valkey-py keyword arguments for ``url``: the credentials of the settings (those
    in the URL win) and, for a ``valkeys://`` URL, the TLS files."""
    opts: dict[str, Any] = {}
    if embedded:
        auth = server_auth(settings)
        if auth is not None:
            opts.update(auth.client_kwargs())
        return opts
    if settings.valkey_password is not None:
        opts["password"] = settings.valkey_password.get_secret_value()
    if settings.valkey_username is not None:
        opts["username"] = settings.valkey_username
    if _is_tls(url):
        for key, value in (("ssl_ca_certs", settings.valkey_tls_ca),
                           ("ssl_certfile", settings.valkey_tls_cert),
                           ("ssl_keyfile", settings.valkey_tls_key)):  # fmt: skip
            if value is not None:
                if not value.is_file():
                    raise ServerUnreachable(
                        f"the TLS file {value} does not exist: fix valkey_tls_ca, "
                        "valkey_tls_cert or valkey_tls_key"
                    )
                opts[key] = str(value)
    return opts


_CREDENTIALS_HINT = (
    "set valkey_password (TICKVAULT_VALKEY_PASSWORD) and, for a user other than the "
    "default one, valkey_username; or put them in the URL, valkey://user:password@host:port/db"
)


def _unreachable(url: str, exc: BaseException) -> ServerUnreachable:
    if _is_tls(url) and ("SSL" in str(exc) or "TLS" in str(exc)):
        return ServerUnreachable(
            f"the TLS handshake with {hide_password(url)} failed ({exc}): the server may not "
            "speak TLS (use valkey:// for a plain server), or its certificate is not signed by "
            "valkey_tls_ca"
        )
    return ServerUnreachable(_check_hint(url) + f" ({exc})")


def _probe(url: str, timeout_s: float, **options: Any) -> None:
    """PING ``url`` on a short-lived connection whose every read has a timeout, so a
    service that is not Valkey (an HTTP server, one that never answers) fails here with
    a clear error instead of hanging or surfacing a protocol error later."""
    probe: Any = valkey.Valkey.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **options
    )
    try:
        if probe.ping() is not True:
            raise _not_valkey(url, "it did not answer PING with PONG")
    except valkey.AuthenticationError as exc:
        raise ServerUnreachable(
            f"Valkey at {hide_password(url)} refused the credentials ({exc}): " + _CREDENTIALS_HINT
        ) from None
    except valkey.TimeoutError:
        if _is_tls(url):  # a plain server waits for the end of a "command" that never comes
            raise ServerUnreachable(
                f"the TLS handshake with {hide_password(url)} did not complete within "
                f"{timeout_s:g} s: the server may not speak TLS (use valkey:// for a plain "
                "server), or nothing that speaks TLS listens there"
            ) from None
        raise _not_valkey(
            url, f"it accepted a connection but did not answer within {timeout_s:g} s"
        ) from None
    except (valkey.ConnectionError, OSError) as exc:
        raise _unreachable(url, exc) from None
    except valkey.InvalidResponse as exc:
        raise _not_valkey(url, f"its answer is not in the Valkey protocol: {exc}") from None
    except valkey.ResponseError as exc:
        raise _not_valkey(url, f"it refused PING: {exc}") from None
    except valkey.ValkeyError as exc:
        raise _not_valkey(url, str(exc)) from None
    finally:
        probe.close()


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
            auth=server_auth(settings),
            appendfsync=settings.valkey_appendfsync,
        )
        target = embedded.url
    options = client_options(settings, target, embedded is not None)
    if is_cluster_url(target):
        return _connect_cluster(settings, target, options)
    try:
        _probe(target, settings.connect_timeout_s, **options)
        client = StoreClient.from_url(
            target,
            socket_connect_timeout=settings.connect_timeout_s,
            health_check_interval=30,
            client_name=f"tickvault-{os.getpid()}",
            **options,
        )
        _use_chunking_packer(client)
        client.ping()
        if embedded is not None and not started:
            _apply_appendfsync(client, settings.valkey_appendfsync)
    except ValueError as exc:  # malformed URL
        raise ServerUnreachable(f"bad Valkey URL {hide_password(target)}: {exc}") from None
    except valkey.AuthenticationError as exc:
        raise ServerUnreachable(
            f"Valkey at {hide_password(target)} refused the credentials ({exc}): "
            + _CREDENTIALS_HINT
        ) from None
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as exc:
        raise _unreachable(target, exc) from None
    except valkey.ValkeyError as exc:
        raise _not_valkey(target, str(exc)) from None
    return Connection(client=client, url=target, embedded=embedded, started_here=started)


def _connect_cluster(settings: Settings, url: str, options: dict[str, Any]) -> Connection:
    """A ``ClusterClient`` of the cluster URL ``url``: every seed PINGed first (one that
    answers and is a cluster node is enough), credentials of the URL over the settings'."""
    try:
        parsed = parse_cluster_url(url)
    except ValueError as exc:
        raise ServerUnreachable(f"bad Valkey Cluster URL {hide_password(url)}: {exc}") from None
    if parsed.password is not None:
        options["password"] = parsed.password
    if parsed.username is not None:
        options["username"] = parsed.username
    problems: list[str] = []
    for host, port in parsed.seeds:  # a seed URL's scheme says TLS or not to the probes
        seed = f"{'valkeys' if parsed.tls else 'valkey'}://{host}:{port}/0"
        try:
            _probe(seed, settings.connect_timeout_s, **options)
        except ServerError as exc:
            problems.append(str(exc))
            continue
        if not _is_cluster_node(seed, settings.connect_timeout_s, options):
            raise ServerUnreachable(
                f"{host}:{port} of {hide_password(url)} is a Valkey server without cluster "
                "mode: use valkey://host:port/0 for a single server, or the seeds of a "
                "cluster (`tickvault cluster up` starts a local one)"
            )
        break
    else:
        raise ServerUnreachable(
            f"no seed node of the Valkey Cluster {hide_password(url)} answers: "
            + "; ".join(problems)
        )
    if parsed.tls:
        options["ssl"] = True
    try:
        client = ClusterClient(
            parsed.seeds,
            use_node=_use_chunking_packer,
            socket_connect_timeout=settings.connect_timeout_s,
            health_check_interval=30,
            client_name=f"tickvault-{os.getpid()}",
            **options,
        )
        client.ping()
    except valkey.AuthenticationError as exc:
        raise ServerUnreachable(
            f"Valkey Cluster {hide_password(url)} refused the credentials ({exc}): "
            + _CREDENTIALS_HINT
        ) from None
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as exc:
        raise _unreachable(url, exc) from None
    except (valkey.ValkeyError, ValkeyClusterException) as exc:
        raise ServerUnreachable(
            f"the Valkey Cluster {hide_password(url)} is not usable: {exc}. `tickvault cluster "
            "status` (for a local one) or CLUSTER INFO on a node says what is wrong"
        ) from None
    return Connection(client=client, url=url, embedded=None, started_here=False)


def _is_cluster_node(url: str, timeout_s: float, options: dict[str, Any]) -> bool:
    probe: Any = valkey.Valkey.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **options
    )
    try:
        return bool(probe.info("cluster").get("cluster_enabled"))
    except valkey.ValkeyError:
        return False
    finally:
        probe.close()


def _apply_appendfsync(client: valkey.Valkey, mode: str) -> None:
    """A running embedded server takes the configured fsync mode (it is this data
    directory's server: the setting is this store's)."""
    current: dict[str, str] = client.config_get("appendfsync")  # type: ignore[assignment]
    if current.get("appendfsync") != mode:
        client.config_set("appendfsync", mode)


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
    except (ClusterError, AskError, TryAgainError, ValkeyClusterException) as exc:
        # ClusterDownError, MasterDownError, MOVED/ASK/TRYAGAIN past the client's own
        # retries, a slot no node serves: a failover or a resharding under way
        raise ServerUnreachable(
            f"the Valkey Cluster is changing its topology or misses a primary ({exc}); "
            "retry in a few seconds (a failover takes about cluster-node-timeout plus one "
            "second); `tickvault cluster status` or CLUSTER INFO on a node says more"
        ) from exc
    except valkey.ResponseError as exc:
        msg = str(exc)
        refused = refusal(exc)
        if refused is not None:
            raise refused from exc
        raise ServerError(f"Valkey refused a request: {msg}") from exc
    except valkey.ValkeyError as exc:
        raise ServerError(f"Valkey error: {exc}") from exc


OOM_HINT = (
    "Valkey refuses writes: OOM command not allowed when used memory > 'maxmemory' "
    "(maxmemory-policy noeviction never drops market data to make room); raise maxmemory "
    "(CONFIG SET maxmemory <bytes>, or 0 for no limit) or trim old data (`tickvault trim`, "
    "a lower retention_days)"
)
MISCONF_HINT = (
    "Valkey refuses writes: it cannot persist to disk (MISCONF: its last RDB save or AOF "
    "write failed); free disk space or fix the permissions of its data directory (valkey.log "
    "there says what failed), then writes resume once a save succeeds (BGSAVE)"
)


def refusal(exc: Exception) -> StoreRefused | None:
    """The ``StoreRefused`` of a reply by which the server refuses a write (out of memory,
    MISCONF, a read-only replica), else None."""
    # A pipeline's error starts with the command (block bytes and all): look inside it.
    msg = str(exc)
    if isinstance(exc, valkey.OutOfMemoryError) or "command not allowed when used memory" in msg:
        return StoreRefused("oom", OOM_HINT)
    if "MISCONF" in msg:
        return StoreRefused("misconf", MISCONF_HINT)
    if isinstance(exc, valkey.ReadOnlyError) or "READONLY" in msg:
        return StoreRefused(
            "readonly",
            "Valkey refuses writes: it is a read-only replica; point TICKVAULT_VALKEY_URL "
            "(valkey_url) at the primary",
        )
    return None
