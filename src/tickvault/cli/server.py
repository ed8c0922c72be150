"""``tickvault server start|stop|status``: the embedded Valkey server."""

from __future__ import annotations

import sys

import click

from tickvault.cli.common import (
    settings_of,
)
from tickvault.cli.output import console, err_console
from tickvault.config import Settings
from tickvault.storage import server as embedded


@click.group()
def server() -> None:
    """Manage the embedded Valkey server of the data directory."""


def _note_external(settings: Settings) -> None:
    """Say so when valkey_url is set: the other commands then use that server, not the
    embedded one these commands manage."""
    if settings.valkey_url:
        from tickvault.config import hide_password

        err_console.print(
            f"note: valkey_url is set ({hide_password(settings.valkey_url)}), so the other "
            "commands use that server, not this embedded one",
            highlight=False,
        )


@server.command("start")
@click.pass_context
def server_start(ctx: click.Context) -> None:
    """Start the embedded server (or report the one already running)."""
    settings = settings_of(ctx)
    _note_external(settings)
    info, started = embedded.ensure_server(
        settings.data_dir,
        settings.valkey_server_binary,
        auth=embedded.server_auth(settings),
        appendfsync=settings.valkey_appendfsync,
    )
    verb = "started" if started else "already running"
    console.print(
        f"{verb}: {info.url} (pid {info.pid}, data {info.data_dir}); it keeps running until "
        "`tickvault server stop`"
    )


@server.command("stop")
@click.pass_context
def server_stop(ctx: click.Context) -> None:
    """Stop the embedded server cleanly (the AOF is flushed)."""
    settings = settings_of(ctx)
    if embedded.stop_server(settings.data_dir, embedded.server_auth(settings)):
        console.print(f"stopped the server of {settings.data_dir}")
    else:
        console.print(f"no server was running for {settings.data_dir}")


@server.command("status")
@click.pass_context
def server_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs, and where."""
    settings = settings_of(ctx)
    _note_external(settings)
    info = embedded.read_state(settings.data_dir.resolve(), embedded.server_auth(settings))
    if info is None:
        console.print(f"not running (data directory {settings.data_dir})")
        sys.exit(1)
    console.print(f"running: {info.url} (pid {info.pid}, data {info.data_dir})")
