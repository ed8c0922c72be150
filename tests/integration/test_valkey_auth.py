"""Valkey authentication on a real embedded server: an ACL user and password when
configured, clients refused without it with an error that says what to set, the
password never on a command line; an external server's credentials from the URL or the
settings; a ``valkeys://`` URL to a server that does not speak TLS is a clear error."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import valkey

from tests.conftest import sim_trades
from tickvault import Vault
from tickvault.config import Settings
from tickvault.errors import ConfigError, EmbeddedServerError, ServerUnreachable
from tickvault.storage.server import ACL_FILE, read_state, server_auth

PASSWORD = "pw-Vk7-correct-horse"


def _cmdlines() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_with_an_acl_a_client_without_the_password_is_refused_naming_what_to_set(
    own_data_dir: Path,
) -> None:
    secured = Settings(data_dir=own_data_dir, valkey_password=PASSWORD)
    trades = sim_trades(2_000)
    with Vault.open(settings=secured) as vault:  # starts the server with the ACL
        vault.write_trades("WINZ25", trades)
        assert vault.client.acl_whoami() == "tickvault"
        info = read_state(own_data_dir.resolve(), server_auth(secured))
        assert info is not None
        acl = own_data_dir / ACL_FILE
        assert stat.S_IMODE(acl.stat().st_mode) == 0o600
        assert PASSWORD not in acl.read_text()  # only its SHA-256
        assert PASSWORD not in _cmdlines()  # the server and its watchdog
        with pytest.raises(EmbeddedServerError, match=r"requires a password.*valkey_password"):
            Vault.open(settings=Settings(data_dir=own_data_dir))
        with pytest.raises(EmbeddedServerError, match=r"refuses the user 'tickvault'") as err:
            Vault.open(settings=Settings(data_dir=own_data_dir, valkey_password="wrong-pw"))
        assert "wrong-pw" not in str(err.value)
        raw = valkey.Valkey(host=info.host, port=info.port)  # the default user is off
        with pytest.raises(valkey.AuthenticationError):
            raw.ping()
        raw.close()
        with Vault.open(settings=secured) as second:  # with it, everything works
            stored = second.range_columns("WINZ25")["trade_id"]
            assert sorted(stored.tolist()) == sorted(trades.to_structured()["trade_id"].tolist())


def test_an_external_server_takes_credentials_from_the_url_or_the_settings(
    own_data_dir: Path,
) -> None:
    secured = Settings(data_dir=own_data_dir, valkey_password=PASSWORD, valkey_username="app")
    with Vault.open(settings=secured) as owner:
        port = owner.url.rsplit(":", 1)[1].split("/")[0]
        plain = f"valkey://127.0.0.1:{port}/0"
        by_url = Settings(valkey_url=f"valkey://app:{PASSWORD}@127.0.0.1:{port}/0")
        by_settings = Settings(valkey_url=plain, valkey_username="app", valkey_password=PASSWORD)
        for s in (by_url, by_settings):
            with Vault.open(settings=s) as vault:
                assert vault.client.acl_whoami() == "app"
        with pytest.raises(ServerUnreachable, match="set valkey_password") as err:
            Vault.open(settings=Settings(valkey_url=plain))
        with pytest.raises(ServerUnreachable, match="refused the credentials") as wrong:
            Vault.open(
                settings=Settings(valkey_url=f"valkey://app:nope-{PASSWORD}@127.0.0.1:{port}/0")
            )
        for e in (err, wrong):
            assert PASSWORD not in str(e.value)


def test_a_tls_url_to_a_server_that_does_not_speak_tls_is_a_clear_error(
    own_data_dir: Path, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: the handshake fails first\n")
    with Vault.open(data_dir=own_data_dir) as owner:
        port = owner.url.rsplit(":", 1)[1].split("/")[0]
        tls = Settings(valkey_url=f"valkeys://127.0.0.1:{port}/0", connect_timeout_s=1.0)
        with pytest.raises(ServerUnreachable, match=r"TLS handshake .* may not speak TLS"):
            Vault.open(settings=tls)
        missing = tls.model_copy(update={"valkey_tls_ca": tmp_path / "absent.pem"})
        with pytest.raises(ServerUnreachable, match="valkey_tls_ca"):
            Vault.open(settings=missing)


def test_tls_files_without_a_tls_url_or_a_cert_without_its_key_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a TLS URL"):
        Settings(valkey_tls_ca=Path("/ca.pem"))
    with pytest.raises(ConfigError, match="go together"):
        Settings(valkey_url="valkeys://h:6379/0", valkey_tls_cert=Path("/c.pem"))
    ok = Settings(valkey_url="valkeys://h:6379/0", valkey_tls_ca=Path("/ca.pem"))
    assert ok.valkey_tls_ca == Path("/ca.pem")


def test_a_password_in_the_environment_reaches_the_settings_and_no_repr() -> None:
    from tickvault.config import load_settings

    s = load_settings(environ={"TICKVAULT_VALKEY_PASSWORD": PASSWORD,
                               "TICKVAULT_VALKEY_URL": f"valkey://u:{PASSWORD}@h:1/0"})  # fmt: skip
    assert s.valkey_password is not None and s.valkey_password.get_secret_value() == PASSWORD
    for text in (repr(s), str(s)):
        assert PASSWORD not in text
    assert os.environ.get("TICKVAULT_VALKEY_PASSWORD") is None


class TlsTerminator:
    """A TLS endpoint in front of the embedded server (what stunnel or a TLS-enabled
    server gives): each accepted TLS connection is relayed to the plain server."""

    def __init__(self, cert: Path, key: Path, upstream: tuple[str, int]) -> None:
        import socket
        import ssl
        import threading

        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        import contextlib
        import socket
        import ssl
        import threading

        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            try:
                tls = self._ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()  # a client that does not finish the handshake
                continue
            plain = socket.create_connection(self._upstream)

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.close()

            for a, b in ((tls, plain), (plain, tls)):
                t = threading.Thread(target=pump, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)  # fmt: skip
    return cert, key


def test_a_valkeys_url_with_the_ca_connects_over_tls_and_a_wrong_ca_is_refused(
    own_data_dir: Path, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, "server")
    other_ca, _ = _self_signed(tmp_path, "other")
    trades = sim_trades(1_000)
    with Vault.open(settings=Settings(data_dir=own_data_dir, valkey_password=PASSWORD)) as owner:
        port = int(owner.url.rsplit(":", 1)[1].split("/")[0])
        proxy = TlsTerminator(cert, key, ("127.0.0.1", port))
        try:
            url = f"valkeys://127.0.0.1:{proxy.port}/0"
            tls = Settings(valkey_url=url, valkey_tls_ca=cert, valkey_password=PASSWORD,
                           valkey_username="tickvault")  # fmt: skip
            with Vault.open(settings=tls) as vault:
                vault.write_trades("WINZ25", trades)
                stored = vault.range_columns("WINZ25")["trade_id"]
            assert sorted(stored.tolist()) == sorted(trades.to_structured()["trade_id"].tolist())
            wrong = tls.model_copy(update={"valkey_tls_ca": other_ca})
            with pytest.raises(ServerUnreachable, match="not signed by valkey_tls_ca") as err:
                Vault.open(settings=wrong)
            assert PASSWORD not in str(err.value)
        finally:
            proxy.close()


def test_a_password_in_the_url_is_hidden_in_what_commands_print(own_data_dir: Path) -> None:
    import sys

    secured = Settings(data_dir=own_data_dir, valkey_password=PASSWORD, valkey_username="app")
    with Vault.open(settings=secured) as owner:
        port = owner.url.rsplit(":", 1)[1].split("/")[0]
        url = f"valkey://app:{PASSWORD}@127.0.0.1:{port}/0"
        with Vault.open(settings=Settings(valkey_url=url)) as vault:
            assert vault.url == f"valkey://app:***@127.0.0.1:{port}/0"
            assert vault.connection_url == url
        env = {**os.environ, "TICKVAULT_VALKEY_URL": url, "COLUMNS": "200"}
        shown = subprocess.run([sys.executable, "-m", "tickvault.cli.main", "status"],
                               env=env, capture_output=True, text=True, timeout=120,
                               check=False)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert f"app:***@127.0.0.1:{port}" in shown.stdout
        assert PASSWORD not in shown.stdout + shown.stderr
