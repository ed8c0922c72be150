"""``tickvault ml lookahead``: recompute each signal from data cut at its time
(``engine.lookahead``); a click command that ``cli/main.py`` attaches to the ``ml`` group."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from tickvault.cli.common import open_vault
from tickvault.cli.output import console, err_console


@click.command("lookahead")
@click.argument("symbol")
@click.option(
    "--start",
    required=True,
    help="First signal time, inclusive (exchange time "
    "without an offset, ISO 8601 or DD/MM/YYYY [HH:MM]).",
)
@click.option("--end", required=True, help="End, exclusive.")
@click.option("--model", default=None, help="Model version; default: the promoted models.")
@click.option("--fast-model", default=None, help="Fast model version.")
@click.option(
    "--predict-every",
    default=None,
    help="For the backtest when no signals are stored (see tickvault backtest).",
)
@click.option(
    "--backtest",
    "use_backtest",
    is_flag=True,
    help="Check a backtest's signals even when signals are stored.",
)
@click.pass_context  # fmt: skip
def lookahead_cmd(
    ctx: click.Context,
    symbol: str,
    start: str,
    end: str,
    model: str | None,
    fast_model: str | None,
    predict_every: str | None,
    use_backtest: bool,
) -> None:
    """Recompute every signal of SYMBOL in [--start, --end) from the data cut at its T
    (the stored signals, else a backtest's) and list those whose side or strength
    changes; exit 1 when any does."""
    from tickvault.engine.lookahead import lookahead
    from tickvault.timeutil import format_ns
    from tickvault.venue.b3 import B3_TZ

    with open_vault(ctx) as vault:
        report = lookahead(vault, symbol, start, end, model=model, fast_model=fast_model,
                           predict_every=predict_every, use_stored=not use_backtest)  # fmt: skip
    what = "stored signals" if report.source == "stored" else "backtest signals"
    if report.ok:
        console.print(f"{report.symbol}: {report.checked:,} {what} recomputed from data cut at "
                      "their T: none changes")  # fmt: skip
        return
    t = Table(title=f"{report.symbol}: {len(report.changes):,} of {report.checked:,} {what} "
              "change when their data is cut at T", title_justify="left")  # fmt: skip
    for col in ("T (exchange time)", "mode", "side", "recomputed side", "strength",
                "recomputed strength"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in report.changes.to_dict("records"):
        t.add_row(format_ns(int(r["T"]), B3_TZ), str(r["mode"]), str(r["side"]),
                  str(r["new_side"]), f"{r['strength']:.4f}",
                  f"{r['new_strength']:.4f}")  # fmt: skip
    console.print(t)
    err_console.print("look-ahead: a feature reads data from after T (or the data changed)")
    sys.exit(1)
