"""``tickvault ml train|list|show|promote|rollback``: training and the model registry.

Registered from ``cli/main.py`` with one line; later commands of issue 15 (``run``,
``lookahead``) attach to the same group.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, cast

import click
from rich.table import Table

from tickvault.cli.common import open_vault, settings_of
from tickvault.cli.output import check_output_path, console, err_console, write_output
from tickvault.models.registry import ALL_REGIMES, Registry, feature_set_of, promotion_key
from tickvault.models.splits import Window

_TIME_HELP = (
    "ISO 8601 (2025-11-03T10:30), day-first DD/MM/YYYY [HH:MM]; exchange time "
    "(America/Sao_Paulo) without an offset"
)
_SHOWN = ("rows", "accuracy", "log_loss", "auc", "ic", "trades", "pnl_brl")


@click.group()
def ml() -> None:
    """ML models: walk-forward training and the model registry."""


def _registry(ctx: click.Context) -> Registry:
    return Registry.of_data_dir(settings_of(ctx).data_dir)


def _fmt(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key in ("rows", "trades"):
        return f"{int(v):,}"
    if key == "pnl_brl":
        return f"{v:,.2f}"
    return f"{v:.4f}"


def metrics_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("who")
    for k in _SHOWN:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(_fmt(k, m.get(k)) for k in _SHOWN))
    return table


@ml.command("train")
@click.argument("symbol")
@click.option("--start", required=True, help=f"First T, inclusive: {_TIME_HELP}.")
@click.option("--end", required=True, help="End, exclusive.")
@click.option("--horizon", default="1min", show_default=True, help="Label horizon.")
@click.option("--dead-zone-ticks", default=0, show_default=True, type=click.IntRange(min=0),
              help="A forward move of at most this many ticks is FLAT.")  # fmt: skip
@click.option("--folds", default=4, show_default=True, type=click.IntRange(min=1),
              help="Walk-forward folds (the sessions are cut into folds + 1 blocks).")  # fmt: skip
@click.option("--estimator", default="lightgbm", show_default=True,
              help="'lightgbm' or the dotted path of a scikit-learn classifier class.")  # fmt: skip
@click.option("--every", default="1min", show_default=True, help="Step between rows.")
@click.option("--window", type=click.Choice(["expanding", "rolling"]), default="expanding",
              show_default=True, help="Training window of each fold.")  # fmt: skip
@click.option("--train-sessions", type=click.IntRange(min=1), default=None,
              help="Sessions in a rolling training window.")  # fmt: skip
@click.option("--cost-brl", default=0.25, show_default=True, type=click.FloatRange(min=0),
              help="Fees per contract per side (BRL) in the PnL.")  # fmt: skip
@click.option("--slippage-ticks", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Slippage per contract per side (ticks) in the PnL.")  # fmt: skip
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write an HTML report (PnL curves, metrics) to this file.")  # fmt: skip
@click.option("--no-save", is_flag=True, help="Evaluate only; do not store a model version.")
@click.option(
    "--features",
    "feature_set",
    type=click.Choice(["full", "fast"]),
    default="full",
    show_default=True,
    help="full: every feature; fast: the intraday set only (the FAST mode's model).",
)
@click.pass_context
def train_cmd(
    ctx: click.Context,
    symbol: str,
    start: str,
    end: str,
    horizon: str,
    dead_zone_ticks: int,
    folds: int,
    estimator: str,
    every: str,
    window: str,
    train_sessions: int | None,
    cost_brl: float,
    slippage_ticks: float,
    plot: Path | None,
    no_save: bool,
    feature_set: str,
) -> None:
    """Train a model of SYMBOL with walk-forward evaluation beside naive baselines,
    and store it as a new model version."""
    from tickvault.engine.training import metadata, train
    from tickvault.models.metrics import Costs
    from tickvault.models.report import html_report

    if plot is not None:
        check_output_path(plot, "--plot")
    with open_vault(ctx) as vault:
        result = train(
            vault, symbol, start, end, horizon, dead_zone_ticks=dead_zone_ticks, folds=folds,
            estimator=estimator, every=every, window=cast(Window, window),
            train_sessions=train_sessions,
            costs=Costs(cost_brl=cost_brl, slippage_ticks=slippage_ticks), features=feature_set,
        )  # fmt: skip
        data_dir = vault.settings.data_dir
    ev = result.evaluation
    title = (f"{result.symbol} {result.horizon} {result.estimator} {result.feature_set} "
             f"features ({result.window_text()})")  # fmt: skip
    for f in ev.folds:
        first = dt.date.fromordinal(f.test_sessions[0])
        last = dt.date.fromordinal(f.test_sessions[-1])
        console.print(metrics_table(
            f"fold {f.number}: test {first}..{last}, {f.train_rows:,} train rows "
            f"({f.purged:,} purged), {f.test_rows:,} test rows", f.metrics,
        ))  # fmt: skip
    console.print(metrics_table(f"overall, out of sample: {title}", ev.overall))
    share = ", ".join(f"{k} {v:.1%}" for k, v in ev.class_share.items())
    console.print(f"test classes: {share}; AUC is up vs down, IC is Spearman")
    if plot is not None:
        page = html_report(title, ev, result.dataset.times_ns)
        write_output(plot, lambda p: p.write_text(page, encoding="utf-8"), "--plot")
        err_console.print(f"wrote the report to {plot}")
    if not no_save:
        version = Registry.of_data_dir(data_dir).save(result.symbol, result.model, metadata(result))
        console.print(f"model version {version} (tickvault ml promote {version})")


@ml.command("list")
@click.argument("symbol", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def list_cmd(ctx: click.Context, symbol: str | None, as_json: bool) -> None:
    """The stored model versions (of SYMBOL), oldest first; * marks the promoted one."""
    reg = _registry(ctx)
    metas = reg.versions(symbol)
    promoted = {m["symbol"]: reg.current(m["symbol"]) for m in metas}
    if as_json:
        click.echo(json.dumps([{**_summary(m), "promoted": m["version"] in promoted[m["symbol"]]}
                               for m in metas]))  # fmt: skip
        return
    table = Table(title=f"model versions under {reg.root}")
    for col in ("", "symbol", "version", "features", "estimator", "horizon", "dead zone",
                "window", "auc", "pnl_brl"):  # fmt: skip
        table.add_column(col)
    for m in metas:
        s = _summary(m)
        table.add_row(
            "*" if m["version"] in promoted[m["symbol"]] else "", s["symbol"], s["version"],
            s["feature_set"], s["estimator"], s["horizon"], str(s["dead_zone_ticks"]), s["window"],
            _fmt("auc", s["auc"]), _fmt("pnl_brl", s["pnl_brl"]),
        )  # fmt: skip
    console.print(table)


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    overall = m.get("metrics", {}).get("overall", {}).get("model", {})
    training = m.get("training", {})
    return {
        "symbol": m.get("symbol"), "version": m.get("version"), "estimator": m.get("estimator"),
        "feature_set": m.get("feature_set", "full"),
        "horizon": m.get("horizon"), "dead_zone_ticks": m.get("dead_zone_ticks"),
        "window": f"{training.get('start')} to {training.get('end')}",
        "auc": overall.get("auc"), "pnl_brl": overall.get("pnl_brl"),
    }  # fmt: skip


@ml.command("show")
@click.argument("version")
@click.pass_context
def show(ctx: click.Context, version: str) -> None:
    """The metadata of a model VERSION (JSON)."""
    click.echo(json.dumps(_registry(ctx).show(version), indent=1))


@ml.command("promote")
@click.argument("version")
@click.option("--regime", default=ALL_REGIMES, show_default=True, help="The regime key.")
@click.pass_context
def promote(ctx: click.Context, version: str, regime: str) -> None:
    """Make VERSION the promoted model of its symbol (a fast model: under the key
    REGIME/fast)."""
    reg = _registry(ctx)
    symbol = reg.promote(version, regime)
    kind = feature_set_of(reg.show(version))
    console.print(f"{symbol}: promoted {version} (regime {regime}, {kind} features, key "
                  f"{promotion_key(regime, kind)})")  # fmt: skip


@ml.command("rollback")
@click.argument("symbol")
@click.option("--regime", default=ALL_REGIMES, show_default=True, help="The regime key.")
@click.option("--features", "feature_set", type=click.Choice(["full", "fast"]), default="full",
              show_default=True, help="Roll back the full or the fast model.")  # fmt: skip
@click.pass_context
def rollback(ctx: click.Context, symbol: str, regime: str, feature_set: str) -> None:
    """Undo the last promotion of SYMBOL: the version promoted before is current again."""
    current = _registry(ctx).rollback(symbol, regime, feature_set)
    console.print(f"{symbol.upper()}: promoted now {current or 'none'} (regime {regime}, "
                  f"{feature_set} features)")  # fmt: skip


@ml.command("first-models")
@click.option("--symbols", required=True, help="Symbols (comma-separated).")
@click.option(
    "--sessions",
    type=click.IntRange(min=2),
    default=None,
    help="Sessions to train on, those before --before (default: up_seed_sessions).",
)
@click.option(
    "--before", default=None, help="Train on the sessions before this date (default today)."
)
@click.pass_context
def first_models(
    ctx: click.Context, symbols: str, sessions: int | None, before: str | None
) -> None:
    """Train and promote the first models of SYMBOLS that have none of a kind: the fast
    ones first (intraday features, the latest 2 sessions), then the full ones (every
    feature, every session). What `tickvault up` runs with no promoted model yet."""
    from tickvault.cli.common import parse_symbols
    from tickvault.live.firstmodels import train_first_models

    settings = settings_of(ctx)
    try:
        day = dt.date.fromisoformat(before) if before else dt.datetime.now(settings.tz).date()
    except ValueError:
        raise click.BadParameter(f"{before!r}: use YYYY-MM-DD", param_hint="--before") from None
    wanted = parse_symbols(symbols) or []

    def say(text: str) -> None:
        err_console.print(f"first models: {text}", highlight=False, soft_wrap=True)

    with open_vault(ctx) as vault:
        n = sessions or settings.up_seed_sessions
        done = train_first_models(vault, wanted, before=day, sessions=n, say=say)
    if not done:
        say(f"every one of {', '.join(wanted)} has a promoted fast and full model already")
