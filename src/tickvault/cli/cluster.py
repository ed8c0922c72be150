"""``tickvault cluster up|down|status``: a local Valkey Cluster in the data directory."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from tickvault.cli.common import settings_of
from tickvault.cli.output import console
from tickvault.storage import localcluster


@click.group()
def cluster() -> None:
    """A local Valkey Cluster (data in <data_dir>/cluster), from the embedded server's
    valkey-server. Point the other commands at it with the URL `up` prints."""


@cluster.command("up")
@click.option("--nodes", "primaries", type=click.IntRange(min=3), default=3, show_default=True,
              help="Primaries (the 16384 slots are split evenly over them).")  # fmt: skip
@click.option("--replicas", type=click.IntRange(min=0), default=0, show_default=True,
              help="Replicas per primary (one is promoted when its primary fails).")  # fmt: skip
@click.option("--port", "base_port", type=click.IntRange(1, 55535), default=None,
              help="First port of the nodes (consecutive); default: free ones, kept.")  # fmt: skip
@click.pass_context
def cluster_up(ctx: click.Context, primaries: int, replicas: int, base_port: int | None) -> None:
    """Start the local cluster; the first time, form it. Later runs restart the nodes
    with their own nodes.conf (same ports, ids, slots and data)."""
    settings = settings_of(ctx)
    state, what = localcluster.up(
        settings.data_dir / "cluster",
        primaries,
        replicas,
        binary=settings.valkey_server_binary,
        auth=localcluster.cluster_auth(settings),
        base_port=base_port,
        appendfsync=settings.valkey_appendfsync,
    )
    console.print(
        f"{what}: {state.primaries} primaries, {state.replicas} replica(s) each, data in "
        f"{settings.data_dir / 'cluster'}; it runs until `tickvault cluster down`"
    )
    console.print(f"use it with: export TICKVAULT_VALKEY_URL={state.url}", highlight=False)


@cluster.command("down")
@click.option("--delete", is_flag=True, help="Also delete the nodes' data directories.")
@click.pass_context
def cluster_down(ctx: click.Context, delete: bool) -> None:
    """Stop every node cleanly (AOFs flushed); the data stays unless --delete."""
    settings = settings_of(ctx)
    where = settings.data_dir / "cluster"
    if localcluster.down(where, localcluster.cluster_auth(settings), delete=delete):
        gone = " and deleted its data" if delete else ""
        console.print(f"stopped the cluster of {where}{gone}")
    else:
        console.print(f"no cluster was formed in {where}")


@cluster.command("status")
@click.pass_context
def cluster_status(ctx: click.Context) -> None:
    """Each node: port, role, slots, replicas online, cluster state. Exit 1 unless every
    node runs and says cluster_state:ok."""
    settings = settings_of(ctx)
    where = settings.data_dir / "cluster"
    state = localcluster.read_state(where.resolve())
    if state is None:
        console.print(f"no cluster was formed in {where} (`tickvault cluster up`)")
        sys.exit(1)
    nodes = localcluster.status(where, localcluster.cluster_auth(settings))
    table = Table(title=f"local Valkey Cluster ({where})")
    for name in ("port", "role", "node id", "slots", "replicas online", "cluster_state"):
        table.add_column(name)
    for n in nodes:
        table.add_row(str(n.port), n.role, n.node_id[:12], str(n.slots), str(n.replicas_online),
                      n.cluster_state)  # fmt: skip
    console.print(table)
    console.print(f"URL: {state.url}", highlight=False)
    if not all(n.running and n.cluster_state == "ok" for n in nodes):
        sys.exit(1)
