"""Settings: defaults of the original design, TOML + env precedence, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickvault import ConfigError, Settings, load_settings


def test_defaults_follow_the_original_design() -> None:
    s = load_settings(environ={})
    assert (s.zmq_ticks_port, s.zmq_book_port, s.zmq_history_port, s.zmq_signals_port) == (
        5555,
        5556,
        5557,
        5558,
    )
    assert s.stream_maxlen == 100_000
    assert s.retention_days == 30
    # the original design's hour-of-day "fast mode" settings were never used: gone
    assert not {"time_travel_lookback_minutes", "fast_mode_threshold_s"} & set(
        Settings.model_fields
    )
    assert s.exchange_tz == "America/Sao_Paulo"
    assert s.valkey_url is None
    assert s.data_dir.is_absolute() and s.data_dir.parts[-2:] == ("tickvault", "valkey")


def test_default_data_dir_is_per_user_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    here = load_settings(environ={}).data_dir
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).data_dir == here == tmp_path / "share/tickvault/valkey"


def test_relative_data_dir_in_a_file_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "conf" / "tickvault.toml"
    cfg.parent.mkdir()
    cfg.write_text('data_dir = "store"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(cfg, environ={}).data_dir == tmp_path / "conf" / "store"


def test_user_config_file_is_read_when_no_other_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    user_file = tmp_path / "cfg" / "tickvault" / "tickvault.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("retention_days = 3\n")
    assert load_settings(environ={}).retention_days == 3


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "tickvault.toml"
    cfg.write_text('retention_days = 7\nzmq_ticks_port = 6000\ndata_dir = "/x"\n')
    s = load_settings(cfg, environ={"TICKVAULT_ZMQ_TICKS_PORT": "7000"}, data_dir="/y")
    assert s.retention_days == 7
    assert s.zmq_ticks_port == 7000
    assert s.data_dir == Path("/y")


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text("stream_maxlen = 5\n")
    assert load_settings(environ={"TICKVAULT_CONFIG": str(cfg)}).stream_maxlen == 5


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "tickvault.toml"
    cfg.write_text("retension_days = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'retension_days'"):
        load_settings(cfg, environ={})


def test_unknown_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="TICKVAULT_STREAM_MAXLENGTH"):
        load_settings(environ={"TICKVAULT_STREAM_MAXLENGTH": "3"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("zmq_ticks_port = 70000\n", "zmq_ticks_port"),
        ('exchange_tz = "Mars/Olympus"\n', "unknown time zone"),
        ('valkey_url = "http://x"\n', "not a Valkey URL"),
        ("retention_days = [1\n", "not valid TOML"),
    ],
)
def test_bad_values_are_explained(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "tickvault.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_settings_are_frozen_and_hide_passwords() -> None:
    s = Settings(valkey_url="valkey://user:secret@host:6379/0")
    with pytest.raises(Exception, match="frozen"):
        s.retention_days = 1  # type: ignore[misc]
    assert "secret" not in repr(s)


def test_settings_built_directly_with_a_bad_value_raise_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(zmq_ticks_port=70_000)
    message = str(caught.value)
    assert "zmq_ticks_port" in message and "70000" in message
    assert "tickvault config" in message  # what to do
    assert not isinstance(caught.value, ValueError)  # not pydantic's ValidationError


def test_settings_built_directly_with_an_unknown_key_raise_config_error_listing_known_ones() -> (
    None
):
    with pytest.raises(ConfigError, match=r"unknown setting 'zmq_hwn'.*zmq_hwm"):
        Settings(zmq_hwn=5)  # type: ignore[call-arg]


def test_settings_model_validate_with_a_bad_value_raises_config_error_too() -> None:
    with pytest.raises(ConfigError, match="exchange_tz"):
        Settings.model_validate({"exchange_tz": "Mars/Olympus"})


def test_load_settings_still_says_where_a_bad_value_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "tickvault.toml"
    cfg.write_text("zmq_hwm = 0\n")
    with pytest.raises(
        ConfigError, match=r"invalid settings \(from .*tickvault.toml and environment\): zmq_hwm"
    ):
        load_settings(cfg, environ={})
