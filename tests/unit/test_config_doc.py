"""The sample settings file generated from ``Settings``, and ``tickvault config``: the
settings in effect with where each came from, secrets hidden."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.cli.main import cli
from tickvault.config import Settings, load_settings
from tickvault.config_doc import SAMPLE_FILE, effective_settings, env_var, sample_toml, toml_value

ROOT = Path(__file__).resolve().parents[2]


def test_committed_sample_file_is_what_the_generator_writes_now() -> None:
    committed = (ROOT / SAMPLE_FILE).read_text()
    assert committed == sample_toml(), (
        f"{SAMPLE_FILE} is stale: regenerate it with `tickvault config --sample > {SAMPLE_FILE}`"
    )


def test_sample_has_every_setting_once_with_its_docstring_and_variable() -> None:
    text = sample_toml()
    names = re.findall(r"^# (\w+) =", text, flags=re.MULTILINE)
    assert names == list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring: the sample needs one"
        first_doc_line = field.description.replace("``", "`").splitlines()[0].strip()
        block = text[: text.index(f"# {name} =")].rsplit("\n\n", 1)[-1]
        assert first_doc_line in block and env_var(name) in block


def test_sample_with_every_default_uncommented_reads_back_as_the_defaults(tmp_path: Path) -> None:
    """Every value the sample shows is the default: uncommented, it changes nothing."""
    lines = [
        line[2:] if re.match(r"# \w+ = \S", line) else line for line in sample_toml().splitlines()
    ]
    path = tmp_path / "tickvault.toml"
    path.write_text("\n".join(lines) + "\n")
    data = tomllib.loads(path.read_text())
    with_default = [
        n
        for n, f in Settings.model_fields.items()
        if f.default is not None and f.default_factory is None
    ]
    assert sorted(data) == sorted(with_default)
    assert load_settings(path, environ={}) == Settings()


def test_config_sample_command_prints_the_sample() -> None:
    result = CliRunner().invoke(cli, ["config", "--sample"])
    assert result.exit_code == 0
    assert result.stdout == sample_toml()


# ---------------------------------------------------------------------- sources
VALUES: dict[str, Any] = {
    "zmq_hwm": (st.integers(1, 10**6), int),
    "stream_maxlen": (st.integers(1, 10**9), int),
    "retention_days": (st.floats(0.5, 1000, allow_nan=False), float),
    "compression": (st.sampled_from(["lz4", "zstd"]), str),
    "exchange_tz": (st.sampled_from(["UTC", "America/Sao_Paulo", "Europe/London"]), str),
}
SOURCES = ("default", "file", "env", "override")


@settings(max_examples=60, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            name: st.lists(st.tuples(st.sampled_from(SOURCES[1:]), strat), max_size=3)
            for name, (strat, _) in VALUES.items()
        }
    )
)
def test_each_setting_shows_the_value_and_the_source_that_won(
    tmp_path_factory: pytest.TempPathFactory, plan: dict[str, list[tuple[str, Any]]]
) -> None:
    """Whatever mix of file, environment and override sets a setting, the winner is
    the highest of them (override > environment > file > default) and its value is
    the one in effect."""
    path = tmp_path_factory.mktemp("cfg") / "t.toml"
    file_values: dict[str, Any] = {}
    env: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    for name, given_values in plan.items():
        for source, value in given_values:
            if source == "file":
                file_values[name] = value
            elif source == "env":
                env[env_var(name)] = str(value)
            else:
                overrides[name] = value
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in file_values.items()))
    effective, file_path, rows = effective_settings(path, env, **overrides)
    assert file_path == path
    by_name = {r.name: r for r in rows}
    assert list(by_name) == list(Settings.model_fields)
    for name in VALUES:
        expected = (
            "override" if name in overrides
            else f"environment variable {env_var(name)}" if env_var(name) in env
            else f"file {path}" if name in file_values
            else "default"
        )  # fmt: skip
        assert by_name[name].source == expected
        assert by_name[name].value == str(getattr(effective, name))
    assert effective == load_settings(path, environ=env, **overrides)


def test_config_hides_secrets_and_url_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "tickvault.toml"
    cfg.write_text('profitdll_password = "file-secret-pw"\n')
    monkeypatch.setenv("TICKVAULT_PROFITDLL_KEY", "env-secret-key")
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", "valkey://me:url-secret@db.example:6380/2")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for secret in ("file-secret-pw", "env-secret-key", "url-secret"):
        assert secret not in out
    rows = {ln.split("│")[1].strip(): ln for ln in out.splitlines() if ln.startswith("│")}
    assert (
        "(set, hidden)" in rows["profitdll_password"]
        and f"file {cfg}" in rows["profitdll_password"]
    )
    assert (
        "(set, hidden)" in rows["profitdll_key"]
        and "TICKVAULT_PROFITDLL_KEY" in rows["profitdll_key"]
    )
    assert "valkey://me:***@db.example:6380/2" in rows["valkey_url"]
    assert "(not set)" in rows["profitdll_user"] and "default" in rows["profitdll_user"]
    assert f"file {cfg}" in out.splitlines()[0]


def test_config_with_a_bad_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("zmq_hwm = 0\n")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config"])
    assert result.exit_code == 2 and "zmq_hwm" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
