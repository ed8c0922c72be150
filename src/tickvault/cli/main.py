"""The ``tickvault`` command line: the group, its error handling, and one line per command
module. Errors print one clear line, never a traceback."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from tickvault.cli.backtest import backtest_cmd, bench_backtest
from tickvault.cli.bench import bench
from tickvault.cli.chaos import chaos
from tickvault.cli.cluster import cluster
from tickvault.cli.compact import compact
from tickvault.cli.dashboard import dashboard
from tickvault.cli.features import features
from tickvault.cli.ingest import backfill, import_cmd
from tickvault.cli.inspect import gaps, quarantine
from tickvault.cli.keys import keys
from tickvault.cli.live import bridge, demo, feed, publish, replay, tail
from tickvault.cli.ml import ml
from tickvault.cli.ml_lookahead import lookahead_cmd
from tickvault.cli.ml_run import run as ml_run
from tickvault.cli.output import err_console
from tickvault.cli.paper import paper
from tickvault.cli.proxy import proxy
from tickvault.cli.query import book, query, status
from tickvault.cli.server import server
from tickvault.cli.settings import config_cmd
from tickvault.cli.signals import signals
from tickvault.cli.trim import trim as trim_command
from tickvault.cli.up import ps, up
from tickvault.errors import TickvaultError
from tickvault.vault import to_frame


class _App(click.Group):
    """Turns every TickvaultError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TickvaultError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            sys.exit(2)


@click.group(cls=_App)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file (default: $TICKVAULT_CONFIG or ./tickvault.toml).",
)
@click.version_option(package_name="tickvault")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """tickvault: B3 market data into Valkey, with time travel."""
    ctx.obj = {"config_path": config_path}


for command in (query, status, trim_command, server, bench, demo, publish, bridge, tail, replay,
                backfill, feed, book, import_cmd, config_cmd, gaps, quarantine):  # fmt: skip
    cli.add_command(command)
cli.add_command(features)
cli.add_command(signals)
cli.add_command(paper)
cli.add_command(ml)
ml.add_command(ml_run)
cli.add_command(backtest_cmd)
cli.add_command(dashboard)
cli.add_command(keys)  # issue 17: ZeroMQ CURVE
bench.add_command(bench_backtest)
ml.add_command(lookahead_cmd)
for command in (up, ps):  # issue 16: the supervisor
    cli.add_command(command)
cli.add_command(chaos)  # issue 17: the fault-injection suite
cli.add_command(cluster)  # issue 18: a local Valkey Cluster
cli.add_command(proxy)  # issue 18: fan-out across hosts
cli.add_command(compact)  # issue 19: compaction of settled live blocks


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks: servers stop, data flushes


def _unraisable(info: sys.UnraisableHookArgs) -> None:
    """An interrupt that lands in a finaliser (``__del__``) cannot be raised there and
    would be lost (the command would run on to exit 0): raise its signal again, so it
    is raised in the main code at the next step."""
    if isinstance(info.exc_value, SystemExit):
        signal.raise_signal(signal.SIGTERM)
    elif isinstance(info.exc_value, KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    else:
        sys.__unraisablehook__(info)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.unraisablehook = _unraisable
    cli(prog_name="tickvault")


__all__ = ["bench", "cli", "main", "to_frame"]

if __name__ == "__main__":
    main()
