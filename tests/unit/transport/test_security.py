"""CURVE keys and settings: generated files, z85 or file values, and every bad key a
ConfigError that names the setting and never shows a secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.transport import security


def _settings(keys: dict[str, Path], **extra: object) -> Settings:
    return Settings(zmq_curve=True, **{k: str(v) for k, v in keys.items()}, **extra)


def test_keys_generate_writes_two_pairs_with_private_secret_files_and_keeps_existing_ones(
    tmp_path: Path,
) -> None:
    keys = security.generate_keys(tmp_path / "keys")
    assert sorted(p.name for p in keys.values()) == [
        "client.key", "client.key_secret", "server.key", "server.key_secret"]  # fmt: skip
    for name, path in keys.items():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert (mode & 0o077 == 0) if "secret" in name else (mode & 0o600 == 0o600)
        public, secret = zmq.auth.load_certificate(path)
        assert (secret is not None) == ("secret" in name)
    for who in ("server", "client"):  # each secret belongs to its public key
        public = security.load_key("p", str(keys[f"zmq_curve_{who}_public_key"]))
        secret = security.load_key("s", str(keys[f"zmq_curve_{who}_secret_key"]), secret=True)
        assert zmq.curve_public(secret) == public
    before = keys["zmq_curve_server_secret_key"].read_bytes()
    with pytest.raises(ConfigError, match="not overwritten"):
        security.generate_keys(tmp_path / "keys")
    assert keys["zmq_curve_server_secret_key"].read_bytes() == before
    again = security.generate_keys(tmp_path / "keys", force=True)
    assert again["zmq_curve_server_secret_key"].read_bytes() != before


def test_a_key_setting_takes_the_z85_text_or_a_key_file_alike(tmp_path: Path) -> None:
    keys = security.generate_keys(tmp_path)
    by_file = security.curve_keys(_settings(keys), server=True)
    assert by_file is not None and by_file.server_secret is not None
    z85 = {
        "zmq_curve_server_public_key": by_file.server_public.decode(),
        "zmq_curve_server_secret_key": by_file.server_secret.decode(),
        "zmq_curve_client_public_key": str(keys["zmq_curve_client_public_key"]),
    }
    by_text = security.curve_keys(Settings(zmq_curve=True, **z85), server=True)
    assert by_text == by_file
    assert by_file.allowed == {by_file.client_public}  # empty allow-list: the client key
    assert by_file.server_secret.decode() not in repr(by_file)
    assert security.curve_keys(Settings(), server=True) is None  # off by default


def test_the_allow_list_takes_keys_files_and_directories(tmp_path: Path) -> None:
    keys = security.generate_keys(tmp_path / "a")
    other = security.generate_keys(tmp_path / "b")
    extra_public, _ = zmq.curve_keypair()
    allowed = [str(tmp_path / "b"), extra_public.decode()]  # a directory and a z85 key
    got = security.curve_keys(_settings(keys, zmq_curve_allowed_clients=allowed), server=True)
    assert got is not None
    files = {security.load_key("k", str(other[f"zmq_curve_{w}_public_key"]))
             for w in ("server", "client")}  # fmt: skip
    assert got.allowed == files | {extra_public}  # the own client key only when empty
    env = Settings(zmq_curve_allowed_clients=f"{extra_public.decode()}, {tmp_path / 'b'}")
    assert env.zmq_curve_allowed_clients == [extra_public.decode(), str(tmp_path / "b")]


def _break(keys: dict[str, Path], tmp_path: Path, case: str) -> dict[str, object]:
    other = security.generate_keys(tmp_path / "other")
    if case == "missing file":
        return {"zmq_curve_server_secret_key": str(tmp_path / "nope.key_secret")}
    if case == "public file as secret":
        return {"zmq_curve_server_secret_key": str(keys["zmq_curve_server_public_key"])}
    if case == "readable by others":
        keys["zmq_curve_server_secret_key"].chmod(0o640)
        return {}
    if case == "pair mismatch":
        return {"zmq_curve_server_secret_key": str(other["zmq_curve_server_secret_key"])}
    if case == "not a key file":
        bad = tmp_path / "junk.key_secret"
        bad.write_text("hello\n")
        bad.chmod(0o600)
        return {"zmq_curve_server_secret_key": str(bad)}
    if case == "no server public key":
        return {"zmq_curve_server_public_key": None}
    assert case == "nobody allowed"
    return {"zmq_curve_client_public_key": None}


@pytest.mark.parametrize("case", ["missing file", "public file as secret", "readable by others",
                                  "pair mismatch", "not a key file", "no server public key",
                                  "nobody allowed"])  # fmt: skip
def test_bad_key_settings_are_a_config_error_naming_the_setting(tmp_path: Path, case: str) -> None:
    keys = security.generate_keys(tmp_path / "keys")
    settings = _settings(keys).model_copy(update=_break(keys, tmp_path, case))
    with pytest.raises(ConfigError, match="zmq_curve") as err:
        security.curve_keys(settings, server=True)
    for path in keys.values():
        if "secret" in path.name:
            _, secret = zmq.auth.load_certificate(path)
            assert secret is not None and secret.decode() not in str(err.value)


def test_a_subscriber_without_client_keys_is_a_config_error(tmp_path: Path) -> None:
    keys = security.generate_keys(tmp_path)
    settings = _settings(keys).model_copy(update={"zmq_curve_client_secret_key": None})
    with pytest.raises(ConfigError, match="zmq_curve_client_secret_key"):
        security.curve_keys(settings, server=False)


@hsettings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=40,
               max_size=40))  # fmt: skip
@example("00000000000000000000%:000000000000000000")  # z85 decode: struct.error, not ValueError
def test_a_mistyped_secret_key_is_never_shown_in_the_error(text: str) -> None:
    if security.is_z85_key(text):
        return  # a valid key: nothing to report
    settings = Settings(zmq_curve=True, zmq_curve_client_secret_key=text,
                        zmq_curve_server_public_key="x" * 3)  # fmt: skip
    with pytest.raises(ConfigError) as err:
        security.load_key("zmq_curve_client_secret_key",
                          settings.zmq_curve_client_secret_key, secret=True)  # type: ignore[arg-type]  # fmt: skip
    shown_as_path = "/" in text or text.strip().endswith(".key_secret")
    assert shown_as_path or text.strip() not in str(err.value)
