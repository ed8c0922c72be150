"""``tickvault features list|show|frame``: the feature engine from the command line.

The group is importable on its own (``from tickvault.cli.features import features``),
so the live worker's commands (``run``, ``check``) can be attached to it elsewhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.table import Table

from tickvault.cli.common import open_vault
from tickvault.cli.features_live import check, run
from tickvault.cli.output import check_output_path, console, err_console, write_output
from tickvault.errors import OutputError
from tickvault.timeutil import format_ns

_TIME_HELP = (
    "ISO 8601 (2025-11-03T10:30), day-first DD/MM/YYYY [HH:MM], 'now' or 'today'; "
    "exchange time (America/Sao_Paulo) without an offset"
)
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@click.group()
def features() -> None:
    """Features: the definitions, the row at a time T, and training frames."""


@features.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_cmd(as_json: bool) -> None:
    """The features (the default intraday set and the history features)."""
    from tickvault.engine.features import history_descriptions
    from tickvault.features import FeatureSet, HistoryParams

    rows = [{**f, "kind": "intraday"} for f in FeatureSet().describe()]
    rows += history_descriptions(HistoryParams())
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="tickvault features")
    for col in ("name", "version", "windows", "units", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        first = str(r["definition"]).strip().split("\n\n")[0].replace("\n", " ")
        windows = ", ".join(str(w) for w in r["windows"])  # type: ignore[attr-defined]
        table.add_row(str(r["name"]), str(r["version"]), windows, str(r["units"]), first)
    console.print(table)


def _mode_option(f: Any) -> Any:
    return click.option(
        "--mode",
        type=click.Choice(["knowledge", "store"]),
        default="knowledge",
        show_default=True,
        help="knowledge: a record counts from when a live system could have known it "
        "(imported trades at ts_event + feed latency); store: from its ts_recv "
        "(what this store held at T).",
    )(f)


@features.command("show")
@click.argument("symbol")
@click.option("--at", "at", default="now", show_default=True, help=f"T: {_TIME_HELP}.")
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def show(ctx: click.Context, symbol: str, at: str, mode: str, as_json: bool) -> None:
    """The feature row of SYMBOL at a time T (default now)."""
    from tickvault.engine import FeatureEngine
    from tickvault.timeutil import to_ns

    with open_vault(ctx) as vault:
        t_ns = to_ns(at, vault.settings.tz, name="--at")
        fe = FeatureEngine(vault, mode=mode)  # type: ignore[arg-type]
        row = fe.at(symbol.upper(), t_ns)
        tz = vault.settings.tz
    if as_json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        click.echo(json.dumps({"symbol": symbol.upper(), "T": t_ns, "mode": mode, **clean}))
        return
    table = Table(title=f"{symbol.upper()} features at {format_ns(t_ns, tz)} ({mode} mode)")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for k, v in row.items():
        table.add_row(k, _shown(v))
    console.print(table)


def _shown(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.6g}"
    return str(v)


@features.command("frame")
@click.argument("symbol")
@click.option("--start", required=True, help=f"First T, inclusive: {_TIME_HELP}.")
@click.option("--end", required=True, help="End, exclusive.")
@click.option("--every", default="1min", show_default=True, help="Step between rows.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Forward-return label horizon (repeat it); default 1min and 5min.",
)
@_mode_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output file: .csv or .parquet.",
)
@click.pass_context
def frame_cmd(
    ctx: click.Context,
    symbol: str,
    start: str,
    end: str,
    every: str,
    labels: tuple[str, ...],
    mode: str,
    out: Path,
) -> None:
    """Write a training frame of SYMBOL: one row per step T inside a session."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tickvault.engine import FeatureEngine

    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"--out {out}: unknown extension {out.suffix or '(none)'!r}; use .csv or .parquet"
        )
    check_output_path(out)
    with open_vault(ctx) as vault:
        fe = FeatureEngine(vault, mode=mode)  # type: ignore[arg-type]
        with Progress(
            TextColumn("[dim]sessions[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as bar:
            task = bar.add_task("frame", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            frame = fe.frame(
                symbol.upper(), start, end, every=every, labels=labels or ("1min", "5min"),
                progress=progress,
            )  # fmt: skip
    if fmt == "parquet":
        write_output(out, frame.to_parquet)
    else:
        write_output(out, frame.to_csv)
    local = pd.DatetimeIndex(frame.index).tz_convert("America/Sao_Paulo")
    sessions = len(set(local.date))
    err_console.print(
        f"wrote {len(frame):,} rows x {frame.shape[1]} columns ({sessions} sessions) to {out}"
    )


features.add_command(run)  # the live worker's commands (cli/features_live.py)
features.add_command(check)
