"""``tickvault keys generate``: the ZeroMQ CURVE key pairs of the publishers and their
clients, and the settings that use them."""

from __future__ import annotations

from pathlib import Path

import click

from tickvault.cli.common import settings_of
from tickvault.cli.output import console


@click.group()
def keys() -> None:
    """ZeroMQ CURVE keys (encryption and client authentication of every socket)."""


@keys.command("generate")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the key files (default: <data_dir>/keys).",
)
@click.option("--force", is_flag=True, help="Replace key files that exist already.")
@click.pass_context
def generate(ctx: click.Context, directory: Path | None, force: bool) -> None:
    """Write a server and a client key pair: server.key and client.key (public),
    server.key_secret and client.key_secret (secret, mode 0600), then print the settings
    that turn CURVE on with them. Copy the client pair to the hosts that subscribe; the
    server secret stays with the publishers."""
    from tickvault.config_doc import toml_value
    from tickvault.transport.security import generate_keys

    target = (directory or settings_of(ctx).data_dir / "keys").expanduser().resolve()
    written = generate_keys(target, force=force)
    console.print(f"wrote a server and a client key pair in {target}", highlight=False)
    console.print("add to tickvault.toml (or set the TICKVAULT_ variables):", highlight=False)
    console.print("zmq_curve = true", highlight=False, markup=False)
    for setting, path in written.items():
        console.print(f"{setting} = {toml_value(str(path))}", highlight=False, markup=False)
