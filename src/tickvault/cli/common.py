"""What the command modules share: settings and the store from the command context,
and the parsers of common options."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from tickvault.config import Settings, load_settings
from tickvault.vault import Vault


def settings_of(ctx: click.Context, **overrides: Any) -> Settings:
    return load_settings(ctx.obj["config_path"], **overrides)


@contextmanager
def open_vault(ctx: click.Context) -> Iterator[Vault]:
    vault = Vault.open(settings=settings_of(ctx))
    try:
        yield vault
    finally:
        vault.close()


POSITIVE = click.IntRange(min=1)


def valkey_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    import pydantic

    try:
        return Settings.model_validate({"valkey_url": value}, context={"raw": True}).valkey_url
    except pydantic.ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise click.BadParameter(msg) from None


def parse_symbols(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    return [s.strip().upper() for s in raw.split(",") if s.strip()]


def parse_speed(raw: str) -> float | None:
    if raw.lower() == "max":
        return None
    try:
        value = float(raw.rstrip("xX"))
    except ValueError:
        raise click.BadParameter(f"{raw!r}: use a number such as 1 or 10, or 'max'") from None
    if value <= 0:
        raise click.BadParameter(f"{raw!r}: the speed must be above 0")
    return value


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGINT and SIGTERM call ``stop`` (a clean shutdown) instead of raising.

    ``stop`` runs on a thread of its own: a handler runs on the main thread between two
    bytecodes, possibly inside ``threading.Event.wait`` while that holds the event's
    (non-reentrant) lock, and an ``Event.set`` there would wait for that lock forever
    (a paper broker once hung on SIGTERM this way)."""

    def handler(signum: int, _frame: object) -> None:
        threading.Thread(target=stop, name="tickvault-stop", daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
