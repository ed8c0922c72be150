"""``tickvault backtest``: a replay of the store through the live objects
(``engine.backtest``), and ``tickvault bench backtest`` (its speed). Registered from
``cli/main.py`` with one line each."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tickvault.cli.common import POSITIVE, open_vault
from tickvault.cli.output import check_output_path, console, err_console, write_output

_TIME_HELP = (
    "ISO 8601 (2025-11-03T10:30), day-first DD/MM/YYYY [HH:MM], 'now' or 'today'; "
    "exchange time (America/Sao_Paulo) without an offset"
)
_LABELS = {
    "pnl_brl": "PnL (BRL, after costs)",
    "sharpe": "Sharpe (per-session PnL, x sqrt(252))",
    "hit_rate": "hit rate (closing fills with a gain)",
    "turnover": "turnover (contracts)",
    "fees_brl": "fees (BRL)",
    "max_drawdown_brl": "max drawdown (BRL)",
    "fills": "fills",
    "sessions": "sessions",
    "trades": "records replayed",
    "read_s": "store read (s)",
    "compute_s": "replay (s)",
    "trades_per_s": "replay speed (records/s)",
}


def _fmt(key: str, v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if key == "hit_rate":
        return f"{v:.1%}"
    if key in ("fills", "sessions", "trades", "turnover"):
        return f"{int(v):,}"
    if key.endswith("_s"):
        return f"{v:.2f}"
    return f"{v:,.2f}"


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, label in _LABELS.items():
        if k in metrics:
            t.add_row(label, _fmt(k, metrics[k]))
    return t


@click.command("backtest")
@click.argument("symbol")
@click.option("--start", required=True, help=f"First instant replayed, inclusive: {_TIME_HELP}.")
@click.option("--end", required=True, help="End, exclusive.")
@click.option(
    "--model",
    default=None,
    help="Model version (tickvault ml list); default: the symbol's promoted models.",
)
@click.option(
    "--fast-model",
    default=None,
    help="Fast model version (trained with --features fast) for rows without history numbers.",
)
@click.option(
    "--predict-every",
    default=None,
    help="Predict at the first row of each step (1s, 500ms); 0: every row. "
    "Default: the predict_every_ms setting.",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the equity curve and the tables to this HTML file.",
)
@click.pass_context  # fmt: skip
def backtest_cmd(
    ctx: click.Context,
    symbol: str,
    start: str,
    end: str,
    model: str | None,
    fast_model: str | None,
    predict_every: str | None,
    plot: Path | None,
) -> None:
    """Replay SYMBOL's stored trades in [--start, --end), as the live processes saw them,
    through the feature stream, the models, the signal policy and the paper broker;
    report PnL, Sharpe, hit rate, turnover and max drawdown."""
    from tickvault.engine.backtest import backtest
    from tickvault.models.equity_report import equity_html

    if plot is not None:
        check_output_path(plot, "--plot")
    with open_vault(ctx) as vault:
        r = backtest(vault, symbol, start, end, model=model, fast_model=fast_model,
                     predict_every=predict_every)  # fmt: skip
    versions = ", ".join(f"{k} {v}" for k, v in r.models.items())
    title = f"backtest {r.symbol} {start} to {end} ({versions})"
    console.print(metrics_table(title, r.metrics))
    d = r.decider
    console.print(
        f"{d.get('predictions', 0):,} predictions ({d.get('history', 0):,} history, "
        f"{d.get('fast', 0):,} fast), {len(r.signals):,} signals, {len(r.orders):,} orders, "
        f"{len(r.fills):,} fills"
    )
    if plot is not None:
        page = equity_html(title, r.equity_t, r.equity, r.metrics, r.sessions)
        write_output(plot, lambda p: p.write_text(page, encoding="utf-8"), "--plot")
        err_console.print(f"wrote the equity curve to {plot}")


@click.command("backtest")
@click.option(
    "--trades",
    type=POSITIVE,
    default=1_200_000,
    show_default=True,
    help="Trades of the replayed session.",
)
@click.option(
    "--sessions",
    type=POSITIVE,
    default=5,
    show_default=True,
    help="Seeded sessions before it (history features, training).",
)
@click.option("--every", default="1s", show_default=True, help="Prediction step.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context  # fmt: skip
def bench_backtest(ctx: click.Context, trades: int, sessions: int, every: str,
                   as_json: bool) -> None:  # fmt: skip
    """Backtest replay speed over one simulated WIN session (target 500k trades/s)."""
    from tickvault.bench.backtest import format_backtest_bench, run_backtest_bench
    from tickvault.bench.isolation import on_own_server
    from tickvault.cli.bench import _bench_result

    result: Any = _bench_result(ctx, as_json, on_own_server(run_backtest_bench), trades=trades,
                                sessions=sessions, every=every)  # fmt: skip
    if result is not None:
        console.print(format_backtest_bench(result))
