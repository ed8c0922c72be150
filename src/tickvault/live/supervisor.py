"""``tickvault up``'s supervisor: the whole system as one process table.

Each component is its own process: the embedded Valkey server, the publisher with its
feeder, the bridge, the compactor (``compact --follow``: the bridge's small blocks
rewritten as full ones once settled), the feature worker, the model worker, the paper
broker and the dashboard (the last three only where this build has their commands). The pure part
(the table, the restart policy, the stop order, the state file and ``ps`` rows) is kept
apart from the OS part (``Child``, ``ServerChild``, ``Supervisor``).

- Health: a component is *ready* when it is alive and its readiness check passed: the
  server answers (its run id, a PING), the publisher's ticks port accepts connections,
  the bridge and the feature worker have logged their start line and then stored
  something (trades stored, feature rows) since they started; the compactor, the model
  worker and the paper broker have logged their start line; the dashboard answers ``GET /``.
- Restarts: a component that dies is started again after ``up_restart_initial_s``,
  doubling per exit that came at once (within ``up_quick_exit_s`` of its start), up to
  ``up_restart_max_s``; after ``up_give_up_after`` such exits in a row it is not
  restarted again and the reason (its exit code and last log line) is shown. A component
  ``up`` needs (server, publisher, bridge) giving up stops everything. A finite feed
  (a file replay, ``--speed max``) that ends with exit 0 is done, not restarted.
- Logs: ``<data_dir>/logs/<name>.log``, moved to ``<name>.log.1`` past ``up_log_max_mb``;
  the supervisor's own lines go to ``logs/up.log`` too. The server keeps its own
  ``<data_dir>/valkey.log``.
- Stop (Ctrl-C, SIGTERM): one component at a time, feeder first (the publisher stops
  its feeder, sends what is queued and announces the end of stream), then the bridge
  once it has stored everything the publisher's journal holds (and it stores what it
  holds when stopped), then the feature, model and broker workers, the dashboard, and
  the Valkey server last (only when ``up`` started it).
- State: ``<data_dir>/run/up.json`` (pids, start times, restarts, states, last exit
  codes, logs, ports and figures; ``dashboard_url`` and ``metrics_url`` when it runs
  the dashboard), rewritten about twice a second, read by ``ps``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tickvault.config import Settings
from tickvault.errors import SupervisorError, TickvaultError

STATE_DIR = "run"
STATE_NAME = "up.json"
LOGS_DIR = "logs"
SUPERVISOR_LOG = "up.log"
READY_LINE = "SIGINT/SIGTERM stop it"
"""What the bridge and the feature worker print once they run."""

Ready = Literal["ping", "port", "line", "http", "alive", "exit"]
State = Literal["pending", "starting", "ready", "running", "backoff", "stopping", "stopped",
                "done", "failed"]  # fmt: skip
RUNNING_STATES: tuple[State, ...] = ("starting", "ready", "running")
"""States of a component whose process runs."""
Waits = Literal["", "seed", "models"]


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_DIR / STATE_NAME


def logs_dir(data_dir: Path) -> Path:
    return data_dir / LOGS_DIR


# ---------------------------------------------------------------------- the table (pure)
@dataclass(frozen=True, slots=True)
class Component:
    """One row of the process table: what to run and how to watch and stop it."""

    name: str
    argv: tuple[str, ...]
    """``tickvault`` arguments (empty for the Valkey server, which is started directly)."""
    start_rank: int
    stop_rank: int
    critical: bool = False
    """``up`` cannot work without it: giving up on it stops everything."""
    restart: Literal["always", "on-failure", "never"] = "always"
    """``on-failure``: an exit 0 is done; ``never``: a job run once (done or failed)."""
    ready: Ready = "alive"
    """``exit``: a finite job, never ready; *running* while it runs, *done* at exit 0."""
    waits: Waits = ""
    """Started only once ``up`` seeded the store (``seed``: the history the feature worker
    reads when a session starts), or once every symbol has a promoted model (``models``)."""
    progress: str | None = None
    """A figure (from the store) that must move after a start before the component is
    ready, e.g. ``stored`` for the bridge."""
    binds: tuple[tuple[str, int], ...] = ()
    """(setting, port) it listens on: checked free before ``up`` starts anything."""
    command: tuple[str, ...] = ()
    """The CLI command it needs (``ml run``): absent from this build, it is left out."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment variables of its own (over ``up``'s)."""
    enabled: bool = True
    left_out: str = ""
    """Why it is not run (when not enabled)."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    feed: Literal["sim", "profitdll", "file"] = "sim"
    files: tuple[Path, ...] = ()
    symbols: tuple[str, ...] = ()
    speed: str = "1"
    models: bool = True
    dashboard: bool = True


SIM_SYMBOLS = ("WINSIM", "WDOSIM")


def up_symbols(opts: UpOptions) -> tuple[str, ...]:
    """The symbols of the run: given, else the simulator's own (sim feed), else none."""
    if opts.symbols:
        return opts.symbols
    return SIM_SYMBOLS if opts.feed == "sim" else ()


def _feed_argv(opts: UpOptions, symbols: Sequence[str]) -> tuple[str, ...]:
    joined = ",".join(symbols)
    if opts.feed == "sim":
        return ("publish", "--feed", "sim", "--symbols", joined, "--speed", opts.speed)
    if opts.feed == "file":
        extra = ("--symbols", joined) if symbols else ()
        return ("replay", *(str(p) for p in opts.files), "--speed", opts.speed, *extra)
    return ("feed", "profitdll", "--symbols", joined)


def first_session(opts: UpOptions, settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """The date of the first session the feed plays: the simulator's (today's from now,
    else the latest one started; faster than real time, the latest completed one), else
    today. First models are trained on (and seeded into) the sessions before it."""
    if opts.feed == "sim":
        from tickvault.feeds.sim.feeder import default_start

        raw = opts.speed.lower().rstrip("x")
        with contextlib.suppress(ValueError):  # a bad speed: the publisher says so
            speed = None if raw == "max" else float(raw)
            return default_start(now, speed=speed).date()
    return (now or dt.datetime.now(settings.tz)).astimezone(settings.tz).date()


def process_table(
    settings: Settings,
    opts: UpOptions,
    has_command: Callable[[Sequence[str]], bool],
    *,
    untrained: Sequence[str] = (),
    before: dt.date | None = None,
) -> list[Component]:
    """Every component ``up`` knows, enabled or left out (with the reason). ``untrained``:
    the symbols (tickers) lacking a promoted fast or full model; a ``train`` job trains
    them on the ``up_seed_sessions`` sessions before ``before``."""
    symbols = up_symbols(opts)
    if opts.feed == "file" and not opts.files:
        raise SupervisorError("--feed file needs a file: tickvault up --feed file PATH")
    if opts.feed == "profitdll" and not symbols:
        raise SupervisorError(
            "--feed profitdll needs --symbols with the exchange, e.g. --symbols WINZ25:F"
        )
    # ProfitDLL symbols carry the exchange (WINZ25:F); the workers want the ticker
    tickers = ",".join(s.partition(":")[0] for s in symbols)
    no_symbols = "it needs --symbols (the file feed does not say which symbols it holds)"
    models = opts.models and bool(symbols) and has_command(("ml", "run"))
    # The feeder's publisher binds a signals socket too (Endpoints.from_settings); with a
    # model worker, which publishes the signals on zmq_signals_port, it gets a spare port.
    pub_env = (("TICKVAULT_ZMQ_SIGNALS_PORT", str(_spare_port())),) if models else ()
    day = before or first_session(opts, settings)
    train_argv = ("ml", "first-models", "--symbols", ",".join(untrained), "--sessions",
                  str(settings.up_seed_sessions), "--before", day.isoformat())  # fmt: skip
    train_why = ("--no-models" if not opts.models else no_symbols if not symbols
                 else "every symbol has a promoted fast and full model")  # fmt: skip
    rows = [
        Component("server", (), start_rank=0, stop_rank=100, critical=True, ready="ping",
                  enabled=settings.valkey_url is None,
                  left_out="valkey_url is set: the components use that server"),
        Component("publisher", _feed_argv(opts, symbols), start_rank=90, stop_rank=10,
                  critical=True, restart="on-failure", ready="port", env=pub_env,
                  binds=(("zmq_ticks_port", settings.zmq_ticks_port),
                         ("zmq_book_port", settings.zmq_book_port),
                         ("zmq_history_port", settings.zmq_history_port),
                         ("zmq_replay_port", settings.zmq_replay_port))),
        Component("bridge", ("bridge",), start_rank=10, stop_rank=20, critical=True,
                  ready="line", progress="stored"),
        Component("compact", ("compact", "--follow"), start_rank=16, stop_rank=35,
                  ready="line", command=("compact",)),
        Component("features", ("features", "run", "--symbols", tickers), start_rank=20,
                  stop_rank=30, ready="line", progress="rows", waits="seed",
                  binds=(("zmq_features_port", settings.zmq_features_port),),
                  enabled=bool(symbols), left_out=no_symbols),
        Component("train", train_argv, start_rank=25, stop_rank=5, restart="never",
                  ready="exit", waits="seed", command=("ml", "first-models"),
                  enabled=opts.models and bool(symbols) and bool(untrained),
                  left_out=train_why),
        Component("model", ("ml", "run", "--symbols", tickers), start_rank=30, stop_rank=40,
                  ready="line", binds=(("zmq_signals_port", settings.zmq_signals_port),),
                  waits="models",
                  command=("ml", "run"), enabled=opts.models and bool(symbols),
                  left_out="--no-models" if not opts.models else no_symbols),
        Component("broker", ("paper", "run", "--symbols", tickers), start_rank=14,
                  stop_rank=41, command=("paper", "run"), ready="line",
                  binds=(("zmq_orders_port", settings.zmq_orders_port),),
                  enabled=opts.models and bool(symbols),
                  left_out="--no-models: no signals to trade" if not opts.models else no_symbols),
        Component("dashboard", ("dashboard",), start_rank=12, stop_rank=50, ready="http",
                  binds=(("dashboard_port", settings.dashboard_port),), command=("dashboard",),
                  enabled=opts.dashboard, left_out="--no-dashboard"),
    ]  # fmt: skip
    out = []
    for row in rows:
        if row.enabled and row.command and not has_command(row.command):
            row = Component(**{**_fields(row), "enabled": False,  # noqa: PLW2901
                               "left_out": f"`tickvault {' '.join(row.command)}` does not "
                                           "exist in this build"})  # fmt: skip
        out.append(row)
    return out


def _fields(c: Component) -> dict[str, Any]:
    return {name: getattr(c, name) for name in Component.__slots__}


def start_order(table: Iterable[Component]) -> list[Component]:
    return sorted((c for c in table if c.enabled), key=lambda c: c.start_rank)


def stop_order(table: Iterable[Component]) -> list[Component]:
    """Feeder and publisher first, the server last."""
    return sorted((c for c in table if c.enabled), key=lambda c: c.stop_rank)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    quick_s: float = 10.0
    give_up_after: int = 5

    @classmethod
    def of(cls, settings: Settings) -> RestartPolicy:
        return cls(settings.up_restart_initial_s, settings.up_restart_max_s,
                   settings.up_quick_exit_s, settings.up_give_up_after)  # fmt: skip

    def delay(self, quick_failures: int) -> float:
        """Wait before the next start after ``quick_failures`` exits at once in a row."""
        return min(self.initial_s * 2.0 ** max(quick_failures - 1, 0), self.max_s)


@dataclass(slots=True)
class Entry:
    """A component's runtime state (what ``ps`` shows)."""

    component: Component
    log: str = ""
    state: State = "pending"
    pid: int | None = None
    started_ns: int = 0
    started_mono: float = 0.0
    restarts: int = 0
    quick_failures: int = 0
    last_exit: int | None = None
    next_start: float = 0.0
    message: str = ""
    baseline: float | None = None
    """The progress figure when it started (ready once the figure moves past it)."""
    figures: dict[str, float] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    """Ports known once it runs (the embedded server's)."""

    @property
    def name(self) -> str:
        return self.component.name


def on_exit(entry: Entry, code: int | None, now_mono: float, policy: RestartPolicy,
            last_line: str = "") -> str:  # fmt: skip
    """Decide what follows a component's exit (its new state) and say it in one line."""
    ran = max(now_mono - entry.started_mono, 0.0)
    entry.last_exit = code
    entry.pid = None
    shown = "killed" if code is None or code < 0 else f"exit {code}"
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            shown = f"killed by {signal.Signals(-code).name}"
    tail = f"; last line: {last_line}" if last_line else ""
    if code == 0 and entry.component.restart in ("on-failure", "never"):
        entry.state = "done"
        entry.message = f"finished after {ran:.1f} s"
        return f"{entry.name} finished ({shown}) after {ran:.1f} s; not restarted"
    if entry.component.restart == "never":
        entry.state = "failed"
        entry.message = f"failed ({shown}) after {ran:.1f} s{tail}; see {entry.log}"
        return f"{entry.name} {entry.message}"
    entry.quick_failures = entry.quick_failures + 1 if ran < policy.quick_s else 1
    if ran < policy.quick_s and entry.quick_failures >= policy.give_up_after:
        entry.state = "failed"
        entry.message = (
            f"exited at once {entry.quick_failures} times in a row ({shown}){tail}; not "
            f"restarted again: see {entry.log}, fix the cause and run tickvault up again"
        )
        return f"{entry.name} {entry.message}"
    delay = policy.delay(entry.quick_failures)
    entry.state = "backoff"
    entry.next_start = now_mono + delay
    entry.message = f"{shown} after {ran:.1f} s; restart {entry.restarts + 1} in {delay:g} s"
    return f"{entry.name} {entry.message}{tail}"


# ---------------------------------------------------------------------- state file and ps
def _spare_port() -> int:
    from tickvault.transport.endpoints import free_tcp_ports

    return free_tcp_ports(1)[0]


def dashboard_url(settings: Settings) -> str:
    """The dashboard's address (``dashboard_host``, ``dashboard_port``); its metrics are
    at ``<url>metrics``."""
    host = settings.dashboard_host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.dashboard_port}/"


def _bind_host(settings: Settings, setting: str) -> str:
    return settings.dashboard_host if setting == "dashboard_port" else settings.zmq_host


def state_dict(pid: int, started_ns: int, entries: Sequence[Entry], *, data_dir: Path,
               left_out: dict[str, str], phase: str,
               dashboard: str | None = None) -> dict[str, Any]:  # fmt: skip
    """``dashboard``: the dashboard's URL when ``up`` runs one (its metrics under it)."""
    return {
        "pid": pid,
        "started_ns": started_ns,
        "updated_ns": time.time_ns(),
        "data_dir": str(data_dir),
        "phase": phase,
        "left_out": left_out,
        "dashboard_url": dashboard,
        "metrics_url": f"{dashboard}metrics" if dashboard else None,
        "components": [
            {
                "name": e.name,
                "state": e.state,
                "pid": e.pid,
                "started_ns": e.started_ns,
                "restarts": e.restarts,
                "last_exit": e.last_exit,
                "log": e.log,
                "ports": {**dict(e.component.binds), **e.ports},
                "figures": e.figures,
                "message": e.message,
            }
            for e in entries
        ],
    }


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The state of the ``up`` of ``data_dir`` if one runs, else None."""
    try:
        state: dict[str, Any] = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _figure(name: str, value: float) -> str:
    if name.endswith("/s"):
        return f"{name.removesuffix('/s')} {value:,.0f}/s"
    if float(value).is_integer():
        return f"{name} {int(value):,}"
    return f"{name} {value:,.1f}"


def ps_rows(state: dict[str, Any], now_ns: int) -> list[dict[str, str]]:
    """One row per component: name, state, pid, uptime, restarts, figures, log."""
    rows = []
    for c in state["components"]:
        up = c["state"] in RUNNING_STATES and c["started_ns"]
        rows.append({
            "name": c["name"],
            "state": c["state"],
            "pid": str(c["pid"]) if c["pid"] else "-",
            "uptime": _duration((now_ns - c["started_ns"]) / 1e9) if up else "-",
            "restarts": str(c["restarts"]),
            "last exit": "-" if c["last_exit"] is None else str(c["last_exit"]),
            "figures": ", ".join(_figure(k, v) for k, v in c["figures"].items()) or "-",
            "log": c["log"],
            "message": c.get("message", ""),
        })  # fmt: skip
    for name, why in state.get("left_out", {}).items():
        rows.append({"name": name, "state": "left out", "pid": "-", "uptime": "-",
                     "restarts": "-", "last exit": "-", "figures": "-", "log": "-",
                     "message": why})  # fmt: skip
    return rows


# ---------------------------------------------------------------------- OS helpers
def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (binding it the way ZeroMQ does fails)."""
    bind_host = "0.0.0.0" if host in ("*", "") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind_host, port))
        except OSError:
            return True
    return False


def port_accepts(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("*", "", "0.0.0.0") else host
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_answers(url: str) -> bool:
    """True when an HTTP server answers GET ``url`` (any status: 401 is an answer too)."""
    import urllib.error
    import urllib.request

    target = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    try:
        with urllib.request.urlopen(target, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def check_ports(settings: Settings, table: Iterable[Component]) -> None:
    """SupervisorError naming the first port (and its setting) another program holds."""
    for c in table:
        if not c.enabled:
            continue
        for setting, port in c.binds:
            host = _bind_host(settings, setting)
            if port_in_use(host, port):
                raise SupervisorError(
                    f"port {port} on {host} ({setting}, for the {c.name}) is "
                    f"in use by another program: stop it, or set {setting} "
                    f"(TICKVAULT_{setting.upper()}) to a free port"
                )


class BoundedLog:
    """An append-only log file moved to ``<name>.1`` past ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab")
        self._size = self._fh.tell()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._size + len(data) > self.max_bytes and self._size:
                self._fh.close()
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self._fh = self.path.open("ab")
                self._size = 0
            self._fh.write(data)
            self._fh.flush()
            self._size += len(data)

    def line(self, text: str) -> None:
        stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        self.write(f"{stamp} {text}\n".encode())

    def close(self) -> None:
        with self._lock:
            self._fh.close()


_PUBLISHER_ID = re.compile(rb"publisher id ([0-9a-f]{16})")


def _die_with_parent() -> None:
    """(in the child, Linux) SIGTERM when ``up`` dies, even by SIGKILL: nothing is left
    behind. Each child runs in a session of its own, so a terminal's Ctrl-C reaches only
    ``up``, which stops the children in order."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A component's process: ``tickvault ARGV`` with its output pumped into its log."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: BoundedLog):
        self.log = log
        self.ready_line = threading.Event()
        self.publisher_ids: set[int] = set()
        self.last_line = ""
        log.line(f"--- up: starting tickvault {' '.join(argv)}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickvault.cli.main", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        self.pid = self.proc.pid
        self._pump = threading.Thread(target=self._read, name=f"up-log-{self.pid}", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        for raw in iter(out.readline, b""):
            self.log.write(raw)
            if READY_LINE.encode() in raw:
                self.ready_line.set()
            for m in _PUBLISHER_ID.finditer(raw):
                self.publisher_ids.add(int(m.group(1), 16))
            text = raw.decode(errors="replace").strip()
            if text:
                self.last_line = text[:300]
        out.close()

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None:
            self._pump.join(5)
        return code

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int | None:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._pump.join(5)
        return code

    def kill(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        code = self.proc.wait()
        self._pump.join(5)
        return code


class ServerChild:
    """The embedded Valkey server (started detached by ``storage.server``)."""

    def __init__(self, settings: Settings):
        from tickvault.storage.server import ensure_server, server_auth

        self.data_dir = settings.data_dir.resolve()
        self.auth = server_auth(settings)
        info, self.started_here = ensure_server(
            self.data_dir, settings.valkey_server_binary,
            idle_stop_s=settings.embedded_idle_stop_s or None, auth=self.auth,
            appendfsync=settings.valkey_appendfsync,
        )  # fmt: skip
        self.pid = info.pid
        self.port = info.port
        self.url = info.url
        self.last_line = ""
        self._stopped = False

    def poll(self) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # not our child (already running), or already reaped
            return None if pid_alive(self.pid) else -int(signal.SIGKILL)
        if pid == 0:
            return None
        from tickvault.storage.server import LOG_FILE, _log_tail

        self.last_line = _log_tail(self.data_dir / LOG_FILE, 1)
        return os.waitstatus_to_exitcode(status)

    def ready(self) -> bool:
        from tickvault.storage.server import read_state as server_state

        return server_state(self.data_dir, self.auth) is not None

    def terminate(self) -> None:
        """A clean shutdown (the AOF flushed); ``stop_server`` waits for the exit."""
        from tickvault.storage.server import stop_server

        if self.started_here:
            stop_server(self.data_dir, self.auth)
            self._stopped = True

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = pid_alive(self.pid)
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    return os.waitstatus_to_exitcode(status)
            if not alive:
                return 0 if self._stopped else -int(signal.SIGKILL)
            time.sleep(0.05)
        return None

    def kill(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        return -int(signal.SIGKILL)


Say = Callable[[str], None]


def _gave_up(e: Entry) -> bool:
    return e.state == "failed"


def _subscribed(child: Child) -> bool:
    return child.ready_line.is_set() or child.poll() is not None


class Supervisor:
    """Runs the enabled components of ``table`` until ``stop`` is set; then stops them
    in order. ``run()`` returns the exit status of ``up``."""

    def __init__(
        self,
        settings: Settings,
        table: Sequence[Component],
        *,
        env: dict[str, str],
        say: Say,
        symbols: Sequence[str] = (),
        seed: Callable[[threading.Event], None] | None = None,
        policy: RestartPolicy | None = None,
    ):
        """``seed(stop)``: run on a thread of its own once the server is ready; the
        components that wait for it (``waits="seed"``) start after it returned."""
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.table = list(table)
        self.env = env
        self._say = say
        self.symbols = list(symbols)
        self.seed = seed
        self._seeded = threading.Event()
        self._seeder: threading.Thread | None = None
        self._models_loaded: dict[str, dict[str, list[str]]] | None = None
        """The promotions when the model worker last started (a change: it reloads)."""
        self._models_checked = 0.0
        self.policy = policy or RestartPolicy.of(settings)
        self.logs = logs_dir(self.data_dir)
        self.entries = {
            c.name: Entry(c, log=str(self._log_path(c))) for c in start_order(self.table)
        }
        self.left_out = {c.name: c.left_out for c in self.table if not c.enabled}
        self.children: dict[str, Child | ServerChild] = {}
        self._logs: dict[str, BoundedLog] = {}
        self.started_ns = time.time_ns()
        self.phase = "starting"
        self.failure = ""
        self._figures: dict[str, dict[str, float]] = {}
        self._vault: Any = None
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self.log = BoundedLog(self.logs / SUPERVISOR_LOG, self._max_log_bytes())
        dash = self.entries.get("dashboard")
        self.dashboard_url = dashboard_url(settings) if dash is not None else None

    def _max_log_bytes(self) -> int:
        return int(self.settings.up_log_max_mb * 2**20)

    def _log_path(self, c: Component) -> Path:
        if c.name == "server":
            from tickvault.storage.server import LOG_FILE

            return self.data_dir / LOG_FILE
        return self.logs / f"{c.name}.log"

    def say(self, text: str) -> None:
        self.log.line(text)
        self._say(text)

    # ------------------------------------------------------------------ run
    def run(self, stop: threading.Event) -> int:
        try:
            self._start_all(stop)
            if not self.failure:
                self.phase = "running"
                self.say("all components started; Ctrl-C (or SIGTERM) stops them in order")
                self._watch(stop)
        finally:
            self._stop_all()
        if self.failure:
            raise SupervisorError(self.failure)
        return 0

    def _start_all(self, stop: threading.Event) -> None:
        order = list(self.entries.values())
        if "server" not in self.entries:  # valkey_url: another server, already there
            self._open_vault()
        if "server" not in self.entries:
            self._start_seed(stop)
        for e in order:
            if stop.is_set() or self.failure:
                return
            if e.name == "publisher":  # subscribers first: they see the stream from its start
                self._wait_subscribers(stop)
            if e.component.waits == "seed":
                self._wait_seed(stop)
            if stop.is_set():  # stopped while waiting
                return
            if e.component.waits == "models" and not self._models_ready(e):
                continue  # started by _watch once they are promoted
            self._start(e)
            if e.name == "server":
                self._wait(stop, functools.partial(self._ready, e), "the Valkey server")
                self._open_vault()
                self._start_seed(stop)

    # ------------------------------------------------------------------ seed and models
    def _start_seed(self, stop: threading.Event) -> None:
        if self.seed is None:
            self._seeded.set()
            return
        seed = self.seed

        def run() -> None:
            try:
                seed(stop)
            except Exception as exc:  # the components start anyway; say why history lacks
                self.say(f"seeding failed: {exc}")
            finally:
                self._seeded.set()

        self._seeder = threading.Thread(target=run, name="up-seed", daemon=True)
        self._seeder.start()

    def _wait_seed(self, stop: threading.Event) -> None:
        while not self._seeded.is_set() and not stop.is_set():
            self._seeded.wait(0.1)

    def _promotions(self) -> dict[str, dict[str, list[str]]]:
        from tickvault.models.registry import Registry

        registry = Registry.of_data_dir(self.data_dir)
        return {s: registry.promotions(s) for s in self.symbols}

    def _models_ready(self, e: Entry) -> bool:
        """Every symbol has a promoted model; else the entry says what it waits for."""
        from tickvault.live.firstmodels import has_model
        from tickvault.models.registry import Registry

        registry = Registry.of_data_dir(self.data_dir)
        waiting = [s for s in self.symbols if not has_model(registry, s)]
        if not waiting:
            return True
        train = self.entries.get("train")
        if train is None or train.state in ("done", "failed", "stopped"):
            e.message = (f"no promoted model for {', '.join(waiting)}: train one (tickvault "
                         "ml train, ml promote VERSION) and run tickvault up again")  # fmt: skip
        else:
            e.message = f"waiting for the first models of {', '.join(waiting)} (see train)"
        return False

    def _watch_models(self, e: Entry, now: float) -> None:
        """Start the model worker once its models are promoted; restart it (a reload, not
        counted as a restart) when the promotions changed since it started, once no
        ``train`` job runs."""
        if now - self._models_checked < 1.0:
            return
        self._models_checked = now
        if e.state == "pending":
            if self._models_ready(e):
                self._start(e)
            return
        if e.state not in RUNNING_STATES or self._models_loaded is None:
            return
        train = self.entries.get("train")
        if train is not None and train.state in RUNNING_STATES:
            return
        current = self._promotions()
        if current == self._models_loaded:
            return
        child = self.children.get(e.name)
        self.say(f"{e.name}: newly promoted models: restarting it to load them")
        if child is not None:
            child.terminate()
            if child.wait(self.settings.up_stop_timeout_s) is None:
                child.kill()
        self._start(e)
        e.message = "restarted to load the newly promoted models"

    def _wait_subscribers(self, stop: threading.Event) -> None:
        for name in ("bridge", "features"):
            child = self.children.get(name)
            if isinstance(child, Child):
                self._wait(stop, functools.partial(_subscribed, child), f"the {name} to subscribe")

    def _wait(self, stop: threading.Event, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.settings.up_stop_timeout_s
        while not cond() and not stop.is_set():
            if time.monotonic() > deadline:
                self.say(f"still waiting for {what}; going on")
                return
            stop.wait(0.05)

    def _start(self, e: Entry) -> None:
        c = e.component
        e.message = ""
        try:
            if c.name == "server":
                child: Child | ServerChild = ServerChild(self.settings)
            else:
                log = self._logs.get(c.name)
                if log is None:
                    log = self._logs[c.name] = BoundedLog(Path(e.log), self._max_log_bytes())
                child = Child(c.argv, {**self.env, **dict(c.env)}, log)
        except TickvaultError as exc:
            e.state, e.message = "failed", str(exc)
            self.say(f"{c.name} cannot start: {exc}")
            if c.critical:
                self.failure = f"{c.name} cannot start: {exc}"
            return
        self.children[c.name] = child
        if isinstance(child, ServerChild):
            e.ports = {"valkey": child.port}
        e.pid, e.started_ns, e.started_mono = child.pid, time.time_ns(), time.monotonic()
        e.state = "running" if c.ready == "exit" else "starting"
        if c.waits == "models":
            self._models_loaded = self._promotions()
        e.baseline = self._figures.get(c.name, {}).get(c.progress) if c.progress else None
        self.write_state()
        again = f" (restart {e.restarts})" if e.restarts else ""
        cmd = f"tickvault {' '.join(c.argv)}" if c.argv else "valkey-server"
        self.say(f"started {c.name}{again}: pid {child.pid}, {cmd}, log {e.log}")

    def _ready(self, e: Entry) -> bool:
        c, child = e.component, self.children.get(e.name)
        if child is None:
            return False
        if c.ready == "ping":
            return isinstance(child, ServerChild) and child.ready()
        if c.ready == "port":
            return port_accepts(self.settings.zmq_host, self.settings.zmq_ticks_port)
        if c.ready == "http":
            return http_answers(dashboard_url(self.settings))
        if c.ready == "exit":
            return False
        if c.ready == "line" and not (isinstance(child, Child) and child.ready_line.is_set()):
            return False
        if c.progress is not None:
            value = self._figures.get(c.name, {}).get(c.progress)
            if value is None:
                return False
            if e.baseline is None:
                e.baseline = value
            return value > e.baseline
        return True

    def _watch(self, stop: threading.Event) -> None:
        written = 0.0
        while not stop.is_set():
            now = time.monotonic()
            for e in self.entries.values():
                child = self.children.get(e.name)
                if e.component.waits == "models" and e.state in ("pending", *RUNNING_STATES):
                    self._watch_models(e, now)
                    child = self.children.get(e.name)
                if e.state in RUNNING_STATES and child is not None:
                    code = child.poll()
                    if code is not None:
                        self.say(on_exit(e, code, now, self.policy, child.last_line))
                        if e.component.critical and _gave_up(e):
                            self.failure = f"{e.name} {e.message}"
                            return
                        continue
                    if e.state == "starting" and self._ready(e):
                        e.state = "ready"
                        self.say(f"{e.name} ready")
                    if e.component.ready == "exit" and isinstance(child, Child):
                        e.message = child.last_line
                elif e.state == "backoff" and now >= e.next_start:
                    e.restarts += 1
                    self._start(e)
                e.figures = self._figures.get(e.name, {})
            if now - written > 0.5:
                self.write_state()
                written = now
            stop.wait(0.1)

    def write_state(self) -> None:
        write_state(state_path(self.data_dir), state_dict(
            os.getpid(), self.started_ns, list(self.entries.values()), data_dir=self.data_dir,
            left_out=self.left_out, phase=self.phase, dashboard=self.dashboard_url,
        ))  # fmt: skip

    # ------------------------------------------------------------------ figures
    def _open_vault(self) -> None:
        from tickvault.vault import Vault

        try:
            self._vault = Vault.open(settings=self.settings)
        except TickvaultError as exc:
            self.say(f"figures unavailable: {exc}")
            return
        self._sampler = threading.Thread(target=self._sample_loop, name="up-figures", daemon=True)
        self._sampler.start()

    def _sample_loop(self) -> None:
        last: dict[str, tuple[float, float]] = {}
        while not self._sampling.wait(0.5):
            with contextlib.suppress(TickvaultError):
                now = time.monotonic()
                figures = self._sample()
                for name, key in (("bridge", "stored"), ("features", "rows")):
                    if key not in figures.get(name, {}):
                        continue
                    value = figures[name][key]
                    if name in last and now > last[name][0]:
                        t0, v0 = last[name]
                        rate = "trades/s" if name == "bridge" else "rows/s"
                        figures[name][rate] = max(value - v0, 0.0) / (now - t0)
                    last[name] = (now, value)
                self._figures = figures

    def _sample(self) -> dict[str, dict[str, float]]:
        from tickvault.storage.featurerows import rows_meta_key

        vault = self._vault
        symbols = self.symbols or vault.symbols()
        stored = float(sum(s.trades for sym in symbols for s in vault.stats(sym)))
        out: dict[str, dict[str, float]] = {"bridge": {"stored": stored}}
        if "features" in self.entries:
            rows = 0
            for sym in symbols:
                raw = vault.client.hget(rows_meta_key(sym), "rows")
                rows += int(raw or 0)
            out["features"] = {"rows": float(rows)}
        if "server" in self.entries:
            used = vault.client.info("memory").get("used_memory", 0)
            out["server"] = {"memory MB": round(used / 1e6, 1)}
        return out

    # ------------------------------------------------------------------ stop
    def _stop_all(self) -> None:
        self.phase = "stopping"
        self.say("stopping: feeder and publisher first, the Valkey server last")
        for c in stop_order(self.table):
            e, child = self.entries[c.name], self.children.get(c.name)
            if child is None or e.state not in RUNNING_STATES:
                if e.state in ("backoff", "pending", *RUNNING_STATES):
                    e.state = "stopped"
                continue
            if child.poll() is not None:
                e.state, e.pid = "stopped", None
                continue
            if c.name == "bridge":
                self._drain()
            if isinstance(child, ServerChild) and not child.started_here:
                self.say("the Valkey server was running before up: left running")
                e.state = "stopped"
                continue
            if self._sampler is not None and c.name == "server":
                self._close_vault()
            what = {"publisher": " (its feeder first, then the publisher drains)",
                    "bridge": " (it stores what it holds)"}.get(c.name, "")  # fmt: skip
            self.say(f"stopping {c.name}{what}")
            e.state = "stopping"
            self.write_state()
            child.terminate()
            code = child.wait(self.settings.up_stop_timeout_s)
            if code is None:
                code = child.kill()
                self.say(f"{c.name} did not stop within {self.settings.up_stop_timeout_s:.0f} s "
                         "(up_stop_timeout_s): killed")  # fmt: skip
            e.state, e.pid, e.last_exit = "stopped", None, code
            self.say(f"{c.name} stopped (exit {code})")
        self._close_vault()
        for log in self._logs.values():
            log.close()
        with contextlib.suppress(OSError):
            state_path(self.data_dir).unlink()
        self.say("up stopped")
        self.log.close()

    def _close_vault(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(10)
            self._sampler = None
        if self._vault is not None:
            with contextlib.suppress(TickvaultError):
                self._vault.close()
            self._vault = None

    def _drain(self) -> None:
        """Before the bridge stops: wait until it stored all the publisher's journal holds
        (what was published), so nothing is left for a later run."""
        publisher = self.children.get("publisher")
        bridge = self.children.get("bridge")
        if not isinstance(publisher, Child) or self._vault is None or not self.settings.journal:
            return
        from tickvault.transport.journal import JournalReader

        targets: dict[str, int] = {}
        for pid in publisher.publisher_ids:
            reader = JournalReader(self.settings.journal_path, pid)
            try:
                for topic, seq in reader.topics().items():
                    if topic.partition(".")[0] in ("trade", "history", "book") and seq:
                        targets[f"{pid:016x}:{topic}"] = seq
            finally:
                reader.close()
        if not targets:
            return
        deadline = time.monotonic() + self.settings.up_stop_timeout_s
        behind: dict[str, int] = targets
        while time.monotonic() < deadline and bridge is not None and bridge.poll() is None:
            try:
                cursors = self._vault.bridge_cursors()
            except TickvaultError:
                cursors = {}
            behind = {k: v for k, v in targets.items() if cursors.get(k, 0) < v}
            if not behind:
                self.say(f"bridge stored everything the publisher published ({len(targets)} "
                         "topics)")  # fmt: skip
                return
            time.sleep(0.05)
        self.say(f"the bridge had not stored all that was published ({len(behind)} topics "
                 "behind); stopping it anyway: its next run takes the rest from the "
                 "journal")  # fmt: skip


__all__ = [
    "RUNNING_STATES",
    "Component",
    "Entry",
    "RestartPolicy",
    "Supervisor",
    "UpOptions",
    "check_ports",
    "on_exit",
    "process_table",
    "ps_rows",
    "read_state",
    "seed_first_sessions",
    "start_order",
    "stop_order",
    "untrained_symbols",
]


# ---------------------------------------------------------------------- first models
def untrained_symbols(settings: Settings, symbols: Sequence[str]) -> list[str]:
    """The symbols lacking a promoted fast or full model (``up`` trains those)."""
    from tickvault.live.firstmodels import missing_kinds
    from tickvault.models.registry import Registry

    registry = Registry.of_data_dir(settings.data_dir)
    return [s for s in symbols if missing_kinds(registry, s)]


def seed_first_sessions(
    settings: Settings,
    symbols: Sequence[str],
    *,
    before: dt.date,
    say: Say,
    sessions: int | None = None,
    trades_per_day: int | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Seed the simulated past sessions the first models train on (``live.seed``: as
    imported history, sessions already held are skipped): the ``sessions``
    (``up_seed_sessions``) B3 sessions of each symbol before ``before``. Returns symbol
    -> trades stored."""
    from tickvault.live.seed import seed_sessions
    from tickvault.vault import Vault

    n = sessions or settings.up_seed_sessions
    done: dict[str, int] = {}
    with Vault.open(settings=settings) as vault:
        for symbol in symbols:
            if stop is not None and stop.is_set():
                break
            report = seed_sessions(vault, symbol, n, before=before, trades_per_day=trades_per_day)
            done[symbol] = report.trades
            if report.stored:
                say(f"{symbol}: seeded {len(report.stored)} simulated past sessions "
                    f"({min(report.stored)} to {max(report.stored)}, {report.trades:,} trades) "
                    "as imported history, for the first models and history features")  # fmt: skip
    return done
