"""``tickvault trim``: retention, shown first and confirmed before anything is removed."""

from __future__ import annotations

import sys

import click

from tickvault.cli.common import open_vault
from tickvault.timeutil import format_ns, now_ns
from tickvault.vault import TrimReport, Vault


@click.command()
@click.argument("symbol", required=False)
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Remove without asking.")
@click.pass_context
def trim(ctx: click.Context, symbol: str | None, dry_run: bool, assume_yes: bool) -> None:
    """Apply retention to SYMBOL (default: every symbol): remove trades whose event time
    is more than retention_days old, and the oldest blocks beyond stream_maxlen per
    stream, with the order book before that time.

    Retention counts event age, so imported and backfilled history older than the window
    goes too. The plan is shown first and you are asked to confirm (--yes skips the
    question; without a terminal, --yes is required). Imported files whose trades are
    removed can be imported again afterwards."""
    from tickvault.cli.output import err_console

    now = now_ns()
    with open_vault(ctx) as vault:
        plan = vault.trim(symbol, now=now, dry_run=True)
        if symbol and not plan.items and not _holds_data(vault, plan.symbols[0]):
            stored = ", ".join(vault.symbols()) or "none"
            err_console.print(
                f"[yellow]warning:[/] nothing is stored for {plan.symbols[0]} (no trades, "
                f"no offer book), so there is nothing to trim; stored symbols: {stored}",
                highlight=False,
            )
            sys.exit(1)
        _echo_plan(plan, vault)
        if not plan.items:
            click.echo("nothing to trim: everything stored is inside the retention window")
            return
        if dry_run:
            click.echo("dry run: nothing was removed")
            return
        if not assume_yes:
            if not sys.stdin.isatty():
                raise click.ClickException(
                    "not trimming: there is no terminal to confirm on; run "
                    "`tickvault trim --yes` to remove the above, or --dry-run to only show it"
                )
            if not click.confirm("remove them?", default=False):
                err_console.print("trim cancelled: nothing was removed")
                sys.exit(1)
        report = vault.trim(symbol, now=now)
    click.echo(
        f"removed {_n(report.trades_removed, 'trade')} in {_n(report.blocks_removed, 'block')} "
        f"and {_n(report.book_entries_removed, 'book entry', 'book entries')}"
    )
    if report.imports_released:
        click.echo(
            f"{_n(len(report.imports_released), 'imported file')} can be imported again: "
            + ", ".join(report.imports_released)
        )


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _holds_data(vault: Vault, symbol: str) -> bool:
    return bool(vault.stats(symbol)) or vault.books.stats(symbol).entries > 0


def _echo_plan(plan: TrimReport, vault: Vault) -> None:
    s, tz = vault.settings, vault.settings.tz
    where = plan.symbols[0] if len(plan.symbols) == 1 else f"{len(plan.symbols)} symbols"
    click.echo(
        f"trim {where}: retention_days {s.retention_days:g} removes event times before "
        f"{format_ns(plan.cutoff_ns, tz)[:19]} ({tz.key} time); stream_maxlen keeps at most "
        f"{s.stream_maxlen:,} blocks per stream"
    )
    for item in plan.items:
        span = (
            f", {format_ns(item.first_ns, tz)[:19]} to {format_ns(item.last_ns, tz)[:19]}"
            if item.first_ns is not None and item.last_ns is not None
            else ""
        )
        what = (
            _n(item.blocks, "entry", "entries")
            if item.stream == "book"
            else f"{_n(item.trades, 'trade')} in {_n(item.blocks, 'block')}"
        )
        click.echo(f"  {item.symbol} {item.stream}: {what}{span}")
    if plan.imports_released:
        click.echo(
            "  imported files with trades among these (they can be imported again after): "
            + ", ".join(plan.imports_released)
        )
