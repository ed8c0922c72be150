"""The settings explained: a sample ``tickvault.toml`` generated from ``Settings``, and
the settings in effect with where each one came from.

The sample is generated from the model (field docstrings, types, bounds and
defaults), so it is true by construction; ``tickvault.example.toml`` in the
repository is this text, and a test keeps it current.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from tickvault.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    Settings,
    _from_env,
    _from_file,
    config_file,
    hide_password,
    load_settings,
)

SAMPLE_FILE = "tickvault.example.toml"

_HEADER = f"""\
# tickvault settings: every setting, with its meaning and its default.
#
# Generated from tickvault.config.Settings by `tickvault config --sample`; do not edit
# by hand (a test checks that it is current). Copy it to {DEFAULT_CONFIG_FILE} in the
# working directory, or anywhere and point {CONFIG_ENV} (or --config) at it, then
# uncomment and change what you need: a commented setting keeps its default.
# Every setting can also be set by its environment variable, which wins over the file.
# `tickvault config` prints the settings in effect and where each one came from.
"""


def env_var(name: str) -> str:
    """The environment variable of setting ``name``."""
    return ENV_PREFIX + name.upper()


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether None is allowed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _type_text(field: FieldInfo) -> str:
    base, _ = _base_type(field.annotation)
    if typing.get_origin(base) is typing.Literal:
        text = "one of " + ", ".join(json.dumps(v) for v in typing.get_args(base))
    else:
        names = {str: "text", int: "integer", float: "number", bool: "true or false",
                 Path: "path", SecretStr: "secret text"}  # fmt: skip
        if typing.get_origin(base) is list:
            text = "list of text"
        else:
            text = names.get(base, getattr(base, "__name__", str(base)))
    bounds = []
    for m in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                bounds.append(f"{sign} {getattr(m, attr)}")
    return text + (" " + ", ".join(bounds) if bounds else "")


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def sample_toml() -> str:
    """The sample settings file: every field of ``Settings`` with its docstring, type,
    environment variable and default, each assignment commented out."""
    parts = [_HEADER]
    for name, field in Settings.model_fields.items():
        doc = (field.description or "").replace("``", "`")
        lines = [f"# {line.strip()}".rstrip() for line in doc.splitlines()]
        about = f"# {_type_text(field)}; environment variable {env_var(name)}."
        if field.default_factory is not None:
            lines += [about + " Default: computed at start (`tickvault config` shows it).",
                      f"# {name} ="]  # fmt: skip
        elif field.default is None:
            lines += [about + " Default: not set.", f"# {name} ="]
        else:
            lines += [about, f"# {name} = {toml_value(field.default)}"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Effective:
    """One setting in effect: its name, its value as shown (secrets hidden) and where
    it came from."""

    name: str
    value: str
    source: str


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, SecretStr):
        return "(set, hidden)"
    return str(value)


def effective_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> tuple[Settings, Path | None, list[Effective]]:
    """The settings ``load_settings`` gives for the same arguments, the file it read,
    and each setting with its source: ``default``, the file, ``environment variable
    TICKVAULT_...`` or ``override``."""
    env = os.environ if environ is None else environ
    settings = load_settings(path, environ=env, **overrides)  # raises on any bad input
    file_path = config_file(path, env)
    from_file = _from_file(file_path) if file_path is not None else {}
    from_env = _from_env(env)
    rows = []
    for name in Settings.model_fields:
        if overrides.get(name) is not None:
            source = "override"
        elif name in from_env:
            source = f"environment variable {env_var(name)}"
        elif name in from_file:
            source = f"file {file_path}"
        else:
            source = "default"
        value = getattr(settings, name)
        shown = hide_password(value) if name == "valkey_url" and value else _shown(value)
        rows.append(Effective(name, shown, source))
    return settings, file_path, rows
