"""``tickvault up`` (the whole system, supervised) and ``tickvault ps`` (what runs)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import click
from rich.table import Table

from tickvault.cli.common import parse_symbols, settings_of, stop_on_signals
from tickvault.cli.output import console, err_console
from tickvault.errors import SupervisorError


def _has_command(ctx: click.Context, path: Sequence[str]) -> bool:
    """Whether this build's command tree has ``tickvault PATH...`` (looked up at run time)."""
    cmd: click.Command | None = ctx.find_root().command
    for name in path:
        if not isinstance(cmd, click.Group):
            return False
        cmd = cmd.get_command(ctx, name)
        if cmd is None:
            return False
    return True


@click.command()
@click.option(
    "--feed",
    type=click.Choice(["sim", "profitdll", "file"]),
    default="sim",
    show_default=True,
    help="The feeder: the market simulator, ProfitDLL, or a replay of trade files.",
)
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--symbols",
    help="Symbols (comma-separated); default WINSIM,WDOSIM for the simulator. ProfitDLL: "
    "with the exchange (WINZ25:F).",
)
@click.option("--speed", default="1", show_default=True, help="Feed pace: 1, 10, ... or max.")
@click.option("--no-models", is_flag=True, help="Leave out the model worker and paper broker.")
@click.option("--no-dashboard", is_flag=True, help="Leave out the dashboard.")
@click.pass_context
def up(
    ctx: click.Context,
    feed: str,
    files: tuple[Path, ...],
    symbols: str | None,
    speed: str,
    no_models: bool,
    no_dashboard: bool,
) -> None:
    """Start the whole system, each component its own supervised process: the embedded
    Valkey, the feeder and publisher, the bridge, the compactor, the feature worker, the
    model worker, the paper broker and the dashboard (those this build has). A component
    that dies is restarted with backoff; Ctrl-C or SIGTERM stops them in a safe order (feeder first,
    Valkey last) with nothing lost. Logs: <data_dir>/logs/<name>.log; `tickvault ps`
    lists them. FILES: the trade files of --feed file."""
    from tickvault.live import supervisor as sv

    settings = settings_of(ctx)
    data_dir = settings.data_dir.resolve()
    running = sv.read_state(data_dir)
    if running is not None:
        raise SupervisorError(
            f"tickvault up already runs for {data_dir} (pid {running['pid']}): "
            "`tickvault ps` shows it; stop it (Ctrl-C or kill -TERM) before starting another"
        )
    if files and feed != "file":
        raise click.BadParameter("files are only for --feed file", param_hint="FILES")
    opts = sv.UpOptions(
        feed=feed,  # type: ignore[arg-type]
        files=files,
        symbols=tuple(parse_symbols(symbols) or ()),
        speed=speed,
        models=not no_models,
        dashboard=not no_dashboard,
    )
    symbols_of_run = [s.partition(":")[0] for s in sv.up_symbols(opts)]
    untrained = sv.untrained_symbols(settings, symbols_of_run) if opts.models else []
    before = sv.first_session(opts, settings)
    table = sv.process_table(settings, opts, lambda path: _has_command(ctx, path),
                             untrained=untrained, before=before)  # fmt: skip
    sv.check_ports(settings, table)
    env = {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    if ctx.obj.get("config_path") is not None:
        env["TICKVAULT_CONFIG"] = str(Path(ctx.obj["config_path"]).resolve())

    def say(text: str) -> None:
        err_console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] up: {text}", highlight=False,
                          soft_wrap=True)  # fmt: skip

    for c in table:
        if not c.enabled and c.name != "train":
            say(f"left out: {c.name} ({c.left_out})")
    training = any(c.name == "train" and c.enabled for c in table)
    seeding = training and opts.feed == "sim"  # simulated history under simulated symbols only

    def seed(stop: threading.Event) -> None:
        sv.seed_first_sessions(settings, untrained, before=before, say=say, stop=stop)

    if training:
        where = "seeded simulated" if seeding else "stored"
        say(f"no promoted fast and full model for {', '.join(untrained)} yet: training first "
            f"models on the {settings.up_seed_sessions} {where} sessions before {before} "
            "(once; later runs use them), in the background (`train` in tickvault ps, log "
            f"{sv.logs_dir(data_dir) / 'train.log'}); the model worker starts once the fast "
            "ones are promoted, and loads the full ones when they are")  # fmt: skip
    stop = threading.Event()
    supervisor = sv.Supervisor(settings, table, env=env, say=say, symbols=symbols_of_run,
                               seed=seed if seeding else None)  # fmt: skip
    stop_on_signals(stop.set)
    say(f"data directory {data_dir}; state {sv.state_path(data_dir)}; `tickvault ps` lists "
        "the components")  # fmt: skip
    if supervisor.dashboard_url is not None:
        say(f"dashboard: {supervisor.dashboard_url} (metrics: {supervisor.dashboard_url}metrics)")
    supervisor.run(stop)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state file as JSON.")
@click.pass_context
def ps(ctx: click.Context, as_json: bool) -> None:
    """The components `tickvault up` runs: state, uptime, restarts and their figures."""
    import json

    from tickvault.live import supervisor as sv

    data_dir = settings_of(ctx).data_dir.resolve()
    state = sv.read_state(data_dir)
    if state is None:
        console.print(f"tickvault up is not running (data directory {data_dir})", highlight=False)
        return
    if as_json:
        click.echo(json.dumps(state))
        return
    table = Table(title=f"tickvault up (pid {state['pid']}, {state['phase']}), {data_dir}")
    columns = ("name", "state", "pid", "uptime", "restarts", "last exit", "figures", "log")
    for col in columns:
        table.add_column(col, overflow="fold")
    notes = []
    for row in sv.ps_rows(state, time.time_ns()):
        table.add_row(*(row[c] for c in columns))
        if row["message"]:
            notes.append(f"{row['name']}: {row['message']}")
    console.print(table)
    if state.get("dashboard_url"):
        console.print(f"dashboard: {state['dashboard_url']}", highlight=False, soft_wrap=True)
    if state.get("metrics_url"):
        console.print(f"metrics: {state['metrics_url']}", highlight=False, soft_wrap=True)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)
