"""ZeroMQ CURVE: the keys, the server and client side of a socket, and the ZAP
authenticator that enforces the allow-list of client public keys.

Off unless ``zmq_curve`` is set; then every socket that binds (the publishers' PUB and
replay ROUTER sockets, the feature worker's and the broker's PUB) is a CURVE server
with the publishers' key pair, and every socket that connects (SUB, the replay DEALER)
is a CURVE client that checks the server's public key and presents the client key
pair. A client whose public key is not allowed gets no connection, so it receives
nothing; a client without CURVE fails the handshake. The refusal of a key is logged
(at most once a minute per key, with the count) naming the public key and the
address, never a secret.

A key setting holds either the key's z85 text (40 characters) or the path of a key
file in ZeroMQ's certificate format (``zmq.auth.create_certificates``; what
``tickvault keys generate`` writes). A secret key file must not be readable by other
users (mode 0600).

One ``ThreadAuthenticator`` (a ZAP handler) runs per ZeroMQ context while a CURVE
server socket of that context is open: each server socket takes a ``ZapLease`` and
releases it after closing the socket, so a context can still be terminated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from pydantic import SecretStr
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from tickvault.config import Settings
from tickvault.errors import ConfigError

log = logging.getLogger("tickvault.transport.security")

Z85_KEY_CHARS = 40
REFUSAL_LOG_EVERY_S = 60.0
"""A client refused again and again (it reconnects) is logged once per this long."""


def is_z85_key(text: str) -> bool:
    """True if ``text`` is a 32-byte key in z85 (40 characters)."""
    if len(text) != Z85_KEY_CHARS:
        return False
    try:
        return len(z85.decode(text.encode("ascii"))) == 32
    except (ValueError, KeyError, UnicodeEncodeError, IndexError, struct.error):
        return False


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """The keys in effect (z85 bytes). Secrets are left out of ``repr``."""

    server_public: bytes
    server_secret: bytes | None = field(default=None, repr=False)
    client_public: bytes | None = None
    client_secret: bytes | None = field(default=None, repr=False)
    allowed: frozenset[bytes] = frozenset()


def _secret_file_ok(path: Path, setting: str) -> None:
    if sys.platform == "win32":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{setting}: the secret key file {path} can be read by other users (mode "
            f"{mode:04o}); make it private with `chmod 600 {path}`"
        )


def _from_file(path: Path, setting: str, *, secret: bool) -> bytes:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{setting}: {path} is not a ZeroMQ key file ({exc}); use the files "
            "`tickvault keys generate` writes (server.key, server.key_secret, client.key, "
            "client.key_secret) or the key's z85 text"
        ) from None
    if not secret:
        return public
    if secret_key is None:
        raise ConfigError(
            f"{setting}: {path} holds a public key only; point {setting} at the secret key "
            f"file (the one ending in .key_secret)"
        )
    _secret_file_ok(path, setting)
    return secret_key


def _path(text: str) -> Path:
    """``text`` as a path, ``~`` expanded when it names a user that exists."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~name of no user
        return Path(text)


def load_key(setting: str, value: str | SecretStr, *, secret: bool = False) -> bytes:
    """A key (z85 bytes) from a setting's value: its z85 text or a key file's path."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    text = text.strip()
    if is_z85_key(text):
        return text.encode("ascii")
    path = _path(text)
    # a secret value is named only when it is clearly a path (never a mistyped key)
    shown = f"{path}" if (not secret or os.sep in text or text.endswith(".key_secret")) else None
    if not path.is_file():
        what = f"{shown!r} is" if shown else "the value is"
        raise ConfigError(
            f"{setting}: {what} neither a z85 key (40 characters) nor an existing key file; "
            f"run `tickvault keys generate` and set {setting} to the path of the file it wrote"
        )
    return _from_file(path, setting, secret=secret)


def _allowed(settings: Settings, client_public: bytes | None) -> frozenset[bytes]:
    keys: set[bytes] = set()
    for entry in settings.zmq_curve_allowed_clients:
        path = _path(entry)
        if not is_z85_key(entry) and path.is_dir():
            try:
                found = zmq.auth.load_certificates(path)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"zmq_curve_allowed_clients: cannot read the key files in {path} ({exc})"
                ) from None
            if not found:
                raise ConfigError(
                    f"zmq_curve_allowed_clients: {path} holds no public key file (*.key)"
                )
            keys.update(found)
        else:
            keys.add(load_key("zmq_curve_allowed_clients", entry))
    if not keys and client_public is not None:
        keys.add(client_public)
    return frozenset(keys)


def curve_keys(settings: Settings, *, server: bool) -> CurveKeys | None:
    """The keys a server (``server``) or a client socket needs; None when CURVE is off.
    A missing or bad key is a ConfigError naming the setting."""
    if not settings.zmq_curve:
        return None
    hint = "(`tickvault keys generate` writes the keys and prints the settings)"
    if settings.zmq_curve_server_public_key is None:
        raise ConfigError(f"zmq_curve is on but zmq_curve_server_public_key is not set {hint}")
    server_public = load_key("zmq_curve_server_public_key", settings.zmq_curve_server_public_key)
    client_public = client_secret = server_secret = None
    if settings.zmq_curve_client_public_key is not None:
        client_public = load_key(
            "zmq_curve_client_public_key", settings.zmq_curve_client_public_key
        )
    if server:
        if settings.zmq_curve_server_secret_key is None:
            raise ConfigError(
                "zmq_curve is on: a publisher needs zmq_curve_server_secret_key " + hint
            )
        server_secret = load_key(
            "zmq_curve_server_secret_key", settings.zmq_curve_server_secret_key, secret=True
        )
        if zmq.curve_public(server_secret) != server_public:
            raise ConfigError(
                "zmq_curve_server_secret_key does not belong to zmq_curve_server_public_key: "
                "take both from the same `tickvault keys generate`"
            )
        allowed = _allowed(settings, client_public)
        if not allowed:
            raise ConfigError(
                "zmq_curve is on but no client may connect: set zmq_curve_allowed_clients "
                "(or zmq_curve_client_public_key) " + hint
            )
        return CurveKeys(server_public, server_secret, client_public, None, allowed)
    if client_public is None or settings.zmq_curve_client_secret_key is None:
        raise ConfigError(
            "zmq_curve is on: a subscriber needs zmq_curve_client_public_key and "
            "zmq_curve_client_secret_key " + hint
        )
    client_secret = load_key(
        "zmq_curve_client_secret_key", settings.zmq_curve_client_secret_key, secret=True
    )
    if zmq.curve_public(client_secret) != client_public:
        raise ConfigError(
            "zmq_curve_client_secret_key does not belong to zmq_curve_client_public_key: "
            "take both from the same `tickvault keys generate`"
        )
    return CurveKeys(server_public, None, client_public, client_secret)


# ---------------------------------------------------------------------- ZAP
class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread with tickvault's allow-lists (one per ZAP domain) and a log
    line for each refused key."""

    def __init__(self, context: zmq.Context[Any]) -> None:
        super().__init__(context, log=logging.getLogger("tickvault.transport.zap"))
        self.allowed: dict[str, frozenset[bytes]] = {}
        self.leases = 0
        self._address = ""
        self._refused: dict[bytes, list[float]] = {}
        """client key -> [when last logged, refusals]"""
        self.refusals = 0

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials provider: is the z85 ``key`` allowed in ``domain``?"""
        if key in self.allowed.get(domain, frozenset()):
            return True
        self.refusals += 1
        now = time.monotonic()
        seen = self._refused.setdefault(key, [0.0, 0])
        seen[1] += 1
        if seen[0] == 0.0 or now - seen[0] >= REFUSAL_LOG_EVERY_S:
            seen[0] = now
            log.warning(
                "publisher: refused a ZeroMQ client with CURVE public key %s (address %s; "
                "refusal %d of this key): it is not in zmq_curve_allowed_clients, so it "
                "receives nothing; add its public key there to let it in",
                key.decode("ascii", "replace"), self._address or "local", int(seen[1]),
            )  # fmt: skip
        return False


_lock = threading.Lock()
_authenticators: dict[int, _Authenticator] = {}


@dataclass(slots=True)
class ZapLease:
    """A server socket's hold on its context's authenticator: ``release()`` it after
    closing the socket (the last release stops the authenticator)."""

    context_id: int
    domain: str
    released: bool = False

    def release(self) -> None:
        with _lock:
            if self.released:
                return
            self.released = True
            auth = _authenticators.get(self.context_id)
            if auth is None:
                return
            auth.leases -= 1
            if auth.leases <= 0:
                del _authenticators[self.context_id]
                auth.stop()


def _start_authenticator(context: zmq.Context[Any]) -> _Authenticator | zmq.ZMQError:
    """A started authenticator, or the error of the last try. The ZAP endpoint of one
    stopped just before (the last lease released) is unbound by ZeroMQ's reaper thread a
    moment after its socket closes: "address in use" is retried for up to 2 s."""
    deadline = time.monotonic() + 2.0
    while True:
        auth = _Authenticator(context)
        try:
            auth.start()
            return auth
        except zmq.ZMQError as exc:
            with contextlib.suppress(Exception):
                auth.stop()
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                return exc
            time.sleep(0.02)


def _lease(context: zmq.Context[Any], allowed: frozenset[bytes]) -> ZapLease:
    domain = "tickvault-" + hashlib.sha256(b",".join(sorted(allowed))).hexdigest()[:16]
    with _lock:
        found = _authenticators.get(id(context))
        if found is None:
            started = _start_authenticator(context)
            if isinstance(started, zmq.ZMQError):
                raise ConfigError(
                    f"cannot start the ZeroMQ authenticator ({started}): another ZAP handler "
                    "runs in this process's ZeroMQ context; give tickvault a context of its own"
                ) from None
            found = _authenticators[id(context)] = started
        auth = found
        if domain not in auth.allowed:
            auth.allowed[domain] = allowed
            auth.configure_curve_callback(domain, credentials_provider=auth)
        auth.leases += 1
    return ZapLease(id(context), domain)


def refusals(context: zmq.Context[Any]) -> int:
    """Clients refused so far by the authenticator of ``context`` (0 when none runs)."""
    auth = _authenticators.get(id(context))
    return auth.refusals if auth is not None else 0


def secure_server(sock: zmq.Socket[Any], settings: Settings) -> ZapLease | None:
    """Make ``sock`` (before its bind) a CURVE server that accepts the allowed clients
    only; None (and nothing changed) when CURVE is off. Release the lease after closing
    the socket."""
    keys = curve_keys(settings, server=True)
    if keys is None:
        return None
    assert keys.server_secret is not None
    lease = _lease(sock.context, keys.allowed)
    try:
        sock.setsockopt(zmq.ZAP_DOMAIN, lease.domain.encode("ascii"))
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    except BaseException:
        lease.release()
        raise
    return lease


def secure_client(sock: zmq.Socket[Any], settings: Settings) -> None:
    """Make ``sock`` (before its connect) a CURVE client of the publishers' key; nothing
    when CURVE is off."""
    keys = curve_keys(settings, server=False)
    if keys is None:
        return
    assert keys.client_public is not None and keys.client_secret is not None
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)


# ---------------------------------------------------------------------- key files
KEY_NAMES = ("server", "client")


def _write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _cert_text(name: str, public: bytes, secret: bytes | None) -> str:
    lines = [
        f"#   ZeroMQ CURVE {'secret' if secret else 'public'} certificate: tickvault {name} key",
        "#   written by `tickvault keys generate`"
        + ("; keep it private (mode 0600)" if secret else ""),
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def generate_keys(directory: Path, *, force: bool = False) -> dict[str, Path]:
    """Write a server and a client key pair into ``directory`` (``NAME.key`` public,
    ``NAME.key_secret`` secret, mode 0600). Existing files are kept unless ``force``.
    Returns the setting -> file to set."""
    paths = {
        f"{name}{ext}": directory / f"{name}.key{suffix}"
        for name in KEY_NAMES
        for ext, suffix in (("_public", ""), ("_secret", "_secret"))
    }
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{existing[0]} exists: keys are not overwritten (the clients allowed today would "
            "be refused); use another --dir, or --force to replace them"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for p in existing:
            p.unlink()
        for name in KEY_NAMES:
            public, secret = zmq.curve_keypair()
            _write_private(paths[f"{name}_public"], _cert_text(name, public, None), 0o644)
            _write_private(paths[f"{name}_secret"], _cert_text(name, public, secret), 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write keys in {directory}: {exc.strerror}") from None
    return {f"zmq_curve_{k}_key": p for k, p in paths.items()}
