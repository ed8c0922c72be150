# valkey-py's cluster module has no annotations: calls into it are untyped.
# mypy: disable-error-code="no-untyped-call"
"""The store on a Valkey Cluster: the URL form, and the client every store operation
uses there (``ClusterClient``, a valkey-py ``ValkeyCluster``).

A cluster URL names several seed nodes: ``valkey+cluster://host:port,host:port,...``
(``valkeys+cluster://`` for TLS; ``user:password@`` before the first host, or the
``valkey_username``/``valkey_password`` settings). Any one reachable seed is enough:
the client learns the slot map from it and follows MOVED/ASK redirections, failovers
and resharding by itself.

What differs from one server, and where it is handled here:

- Scripts (``register_script``): each call goes to the primary of its keys' slot (every
  script's keys share one symbol's hash tag). A node that does not know a script (a
  replica just promoted by a failover, a ``SCRIPT FLUSH``, a node added) answers
  NOSCRIPT: the script is loaded on every primary and the call sent again.
- Pipelines (``pipeline(transaction=False)``): valkey-py's cluster pipeline sends each
  node's commands on that node's connection in one write and follows redirections;
  it refuses ``EVALSHA``, so ``ScriptingPipeline`` queues script calls as plain
  commands (routed by their keys) and reloads a missing script as above.
- Transactions (``pipeline(transaction=True)``, MULTI/EXEC): only over keys of one slot
  (``SlotTransaction`` checks it), run on that slot's primary; script calls inside go
  as ``EVAL`` (a NOSCRIPT inside MULTI would break the all-or-nothing). A transaction
  refused with MOVED/ASK/TRYAGAIN/CLUSTERDOWN ran nothing and is sent again once the
  slot map is read again; a lost connection (a failover) reads the slot map again too,
  and a read-only transaction (a range read) is then sent again.
- Transactions that ``WATCH`` keys (a pool worker's fenced writes): on a connection of
  the slot's primary (``watch_pipeline``), one slot each; a redirection: the slot map is
  read again (``refresh_slots``) and the transaction started again.
- Commands over every key (``SCAN``, ``FLUSHDB``) go to every primary; ``INFO``,
  ``server_run_id`` and the status are gathered from every primary (``primaries_info``).

Block writes keep the single server's speed: every node's connections pack commands
with the chunking packer of ``storage.connection`` (large values sent as their own
chunks, not copied into one buffer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import valkey
from valkey.cluster import ClusterNode, ClusterPipeline, ValkeyCluster
from valkey.commands import CoreCommands
from valkey.commands.core import Script
from valkey.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from tickvault.errors import ServerError

CLUSTER_SCHEMES = ("valkey+cluster://", "valkeys+cluster://", "redis+cluster://",
                   "rediss+cluster://")  # fmt: skip
_TLS_SCHEMES = ("valkeys+cluster://", "rediss+cluster://")
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
_TRANSACTION_ATTEMPTS = 12
_READ_ONLY = frozenset({"XRANGE", "XREVRANGE", "XLEN", "ZRANGEBYSCORE", "ZRANGE", "HGET",
                        "HMGET", "HGETALL", "GET", "EXISTS", "MEMORY"})  # fmt: skip
"""Commands of a transaction that may be sent again after a lost connection."""


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(CLUSTER_SCHEMES)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool


def parse_cluster_url(url: str) -> ClusterURL:
    """The seeds and credentials of a cluster URL; ValueError saying what is wrong."""
    rest = url.partition("://")[2]
    if not url.startswith(CLUSTER_SCHEMES):
        raise ValueError(f"not a cluster URL (use {CLUSTER_SCHEMES[0]}host:port,host:port)")
    rest = rest.split("?", 1)[0]
    creds, at, hosts = rest.rpartition("@")
    hosts, _, db = hosts.partition("/")
    if db not in ("", "0"):
        raise ValueError(f"a Valkey Cluster has only database 0, the URL asks for /{db}")
    username = password = None
    if at:
        user, colon, pw = creds.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) if colon else None)
    seeds = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"seed {item.strip()!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    if not seeds:
        raise ValueError("no seed node: list at least one host:port")
    return ClusterURL(tuple(seeds), username, password, url.startswith(_TLS_SCHEMES))


def plain_client(url: str) -> Any:
    """A default valkey-py client of ``url`` as the original design would open it (for
    the benchmarks' baseline): ``Valkey.from_url``, or a plain ``ValkeyCluster`` of the
    seeds of a cluster URL."""
    if not is_cluster_url(url):
        return valkey.Valkey.from_url(url)
    parsed = parse_cluster_url(url)
    return ValkeyCluster(startup_nodes=[ClusterNode(h, p) for h, p in parsed.seeds],
                         username=parsed.username, password=parsed.password,
                         ssl=parsed.tls)  # fmt: skip


def is_redirect(exc: BaseException) -> bool:
    """A reply saying the slot is served elsewhere or not yet (MOVED, ASK, TRYAGAIN,
    CLUSTERDOWN): the command ran nowhere."""
    if isinstance(exc, MovedError | AskError | TryAgainError | ClusterDownError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_REDIRECTS)


class ClusterClient(ValkeyCluster):
    """A ``ValkeyCluster`` with tickvault's scripts, pipelines and packer (module doc)."""

    def __init__(self, seeds: Sequence[tuple[str, int]], *,
                 use_node: Callable[[Any], None] | None = None, **kwargs: Any) -> None:  # fmt: skip
        """``use_node(client)`` is applied to every node's valkey-py client as it is
        created (the chunking packer of ``storage.connection``)."""
        self._scripts: dict[str, str | bytes] = {}
        super().__init__(startup_nodes=[ClusterNode(h, p) for h, p in seeds], **kwargs)
        if use_node is not None:
            manager = self.nodes_manager
            create = manager.create_valkey_node

            def create_node(host: str, port: int, **node_kwargs: Any) -> Any:
                r = create(host, port, **node_kwargs)
                use_node(r)
                return r

            manager.create_valkey_node = create_node  # type: ignore[method-assign]
            for node in self.get_nodes():
                if node.valkey_connection is not None:
                    use_node(node.valkey_connection)

    # ------------------------------------------------------------------ scripts
    def register_script(self, script: Any) -> Script:
        s = Script(self, script)  # type: ignore[arg-type]
        self._scripts[s.sha] = script
        return s

    def script_text(self, sha: str) -> str | bytes:
        return self._scripts[sha]

    def reload_script(self, sha: str) -> None:
        """Load the script ``sha`` on every primary (after a NOSCRIPT)."""
        self.script_load(self._scripts[sha])

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        try:
            return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        except NoScriptError:
            if sha not in self._scripts:
                raise
            self.reload_script(sha)
            return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    # ------------------------------------------------------------------ pipelines
    def pipeline(self, transaction: bool | None = None, shard_hint: Any = None) -> Any:
        if transaction:
            return SlotTransaction(self)
        return ScriptingPipeline(
            self,
            nodes_manager=self.nodes_manager,
            commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes,
            result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks,
            cluster_error_retry_attempts=self.cluster_error_retry_attempts,
            read_from_replicas=self.read_from_replicas,
            reinitialize_steps=self.reinitialize_steps,
            lock=self._lock,
        )

    def watch_pipeline(self, key: str) -> Any:
        """A transaction pipeline (``WATCH`` allowed) on the connection of the primary
        serving ``key``'s slot now, for a transaction that must watch keys (the fenced
        writes of ``storage.leases``); every key of it must share ``key``'s slot. A reply
        that is a redirection (``is_redirect``: the slot moved, a failover) ran nothing of
        it: ``refresh_slots`` and start again."""
        return self.primary_client(self.key_slot(key)).pipeline(transaction=True)

    def key_slot(self, key: str) -> int:
        """The slot of ``key`` (its hash tag's)."""
        return int(self.keyslot(key))

    def refresh_slots(self) -> None:
        """Read the slot map again (after a redirection or a lost primary)."""
        self.nodes_manager.initialize()

    def slot_of(self, *args: Any) -> int:
        """The slot a command (its name first) goes to."""
        return int(self.determine_slot(*args))

    def node_of_key(self, key: str) -> Any:
        """The primary node (``ClusterNode``) serving ``key`` now."""
        return self.get_node_from_key(key)

    def primary_client(self, slot: int) -> Any:
        """The valkey-py client of the primary serving ``slot`` now."""
        node = self.nodes_manager.get_node_from_slot(slot)
        return self.get_valkey_connection(node)

    # ------------------------------------------------------------------ every primary
    def primaries_info(self, section: str) -> dict[str, dict[str, Any]]:
        """``INFO section`` of every primary: node name (host:port) -> fields."""
        raw: Any = self.info(section, target_nodes=self.PRIMARIES)
        if raw and not all(isinstance(v, dict) and ":" in k for k, v in raw.items()):
            # one primary only: valkey-py answers its fields directly
            node = self.get_primaries()[0]
            return {node.name: raw}
        return dict(raw)


class ScriptingPipeline(ClusterPipeline):
    """valkey-py's cluster pipeline with script calls allowed (routed by their keys)."""

    def __init__(self, owner: ClusterClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        replies: list[Any] = list(super().execute(raise_on_error=False))
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)
                   and str(stack[i].args[0]).upper() == "EVALSHA"]  # fmt: skip
        if missing:
            for sha in {str(stack[i].args[1]) for i in missing}:
                self._owner.reload_script(sha)
            for i in missing:  # in their order; each call is atomic on its own
                try:
                    replies[i] = self._owner.execute_command(*stack[i].args)
                except valkey.ValkeyError as exc:
                    replies[i] = exc
        if raise_on_error:
            for i, r in enumerate(replies):
                if isinstance(r, Exception):
                    cmd = " ".join(str(a)[:40] for a in stack[i].args[:3])
                    r.args = (f"Command # {i + 1} ({cmd}) of pipeline caused error: "
                              f"{r.args[0] if r.args else r}", *r.args[1:])  # fmt: skip
                    raise r
        return replies


class SlotTransaction(CoreCommands):
    """MULTI/EXEC over keys of one slot, run on that slot's primary (module doc)."""

    def __init__(self, owner: ClusterClient) -> None:
        self._owner = owner
        self._commands: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **options: Any) -> SlotTransaction:
        self._commands.append((args, options))
        return self

    def __len__(self) -> int:
        return len(self._commands)

    def __enter__(self) -> SlotTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self._commands = []

    def reset(self) -> None:
        self._commands = []

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self._commands = self._commands, []
        if not commands:
            return []
        owner = self._owner
        sent = []
        for queued, options in commands:
            args = queued
            if str(args[0]).upper() == "EVALSHA":
                args = ("EVAL", owner.script_text(str(args[1])), *args[2:])
            sent.append((args, options))
        slots = {owner.slot_of(*args) for args, _ in sent}
        if len(slots) != 1:
            names = sorted({str(a[1]) for a, _ in sent if len(a) > 1})[:6]
            raise ServerError(
                f"a transaction over keys of {len(slots)} cluster slots ({', '.join(names)}...): "
                "on a Valkey Cluster MULTI/EXEC works only on keys of one hash tag; this is a "
                "tickvault bug, please report it"
            )
        slot = slots.pop()
        read_only = all(str(args[0]).upper() in _READ_ONLY for args, _ in sent)
        delay = 0.02
        for attempt in range(_TRANSACTION_ATTEMPTS):
            pipe = owner.primary_client(slot).pipeline(transaction=True)
            for args, options in sent:
                pipe.execute_command(*args, **options)
            try:
                return list(pipe.execute(raise_on_error=raise_on_error))
            except ResponseError as exc:  # refused whole at EXEC: nothing of it ran
                if not is_redirect(exc) or attempt == _TRANSACTION_ATTEMPTS - 1:
                    raise
            except (valkey.ConnectionError, valkey.TimeoutError):
                # The slot's primary is gone (a failover): read the slot map again, so the
                # next call goes to the new primary. A read-only transaction is sent again
                # (as valkey-py's pipelines do); one that writes may have run: raised.
                owner.nodes_manager.initialize()
                if not read_only or attempt == _TRANSACTION_ATTEMPTS - 1:
                    raise
            owner.nodes_manager.initialize()
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")
