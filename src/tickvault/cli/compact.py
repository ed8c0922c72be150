"""``tickvault compact``: the small blocks of settled live data rewritten as full blocks,
by hand (once) or on schedule (``--follow``, the ``compact`` component of ``up``)."""

from __future__ import annotations

import json
import threading

import click

from tickvault.cli.common import open_vault, stop_on_signals
from tickvault.cli.output import err_console
from tickvault.errors import QueryError
from tickvault.records.validate import check_symbol
from tickvault.timeutil import format_ns
from tickvault.vault import CompactItem, CompactReport, Vault


@click.command()
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    metavar="S",
    help="A symbol to compact (repeat for more); default every stored symbol.",
)
@click.option("--dry-run", is_flag=True, help="Change nothing: show what would be compacted.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--follow", is_flag=True,
              help="Run again every compact_every_s until SIGINT/SIGTERM (as `tickvault up` "
                   "does).")  # fmt: skip
@click.pass_context
def compact(
    ctx: click.Context, symbols: tuple[str, ...], dry_run: bool, as_json: bool, follow: bool
) -> None:
    """Rewrite the small blocks live writes store as full columnar blocks, once they are
    settled: every trade in them compact_after_minutes old (event time), or their trading
    day's B3 session closed. Readers see every trade exactly once throughout, the bridge
    keeps appending, and every record (repeats, corrections, with their receive times)
    is kept, so queries as known at any time answer the same. Safe to stop at any
    instant (kill -9 included) and to run twice or from two places at once.

    Prints per symbol the live blocks, trades and bytes (Valkey MEMORY USAGE of the
    realtime and compacted streams) before and after."""
    with open_vault(ctx) as vault:
        wanted = [check_symbol(s) for s in symbols]
        if wanted:
            stored = set(vault.symbols())
            missing = [s for s in wanted if s not in stored]
            if missing:
                raise QueryError(
                    f"nothing is stored for {', '.join(missing)}: there is nothing to compact; "
                    f"stored symbols: {', '.join(sorted(stored)) or 'none'}"
                )
        if not follow:
            _echo(vault, vault.compact(wanted or None, dry_run=dry_run), as_json)
            return
        stop = threading.Event()
        stop_on_signals(stop.set)
        every = vault.settings.compact_every_s
        err_console.print(
            f"compact: every {every:g} s, blocks settled after "
            f"{vault.settings.compact_after_minutes:g} min or at session close, on {vault.url}; "
            "SIGINT/SIGTERM stop it",
            highlight=False,
        )
        while not stop.is_set():
            report = vault.compact(wanted or None, dry_run=dry_run, stop=stop.is_set)
            if report.entries_compacted or as_json:
                _echo(vault, report, as_json)
            stop.wait(every)


def _echo(vault: Vault, report: CompactReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({
            "now_ns": report.now_ns, "cutoff_ns": report.cutoff_ns, "dry_run": report.dry_run,
            "symbols": [_item_dict(i) for i in report.items],
        }))  # fmt: skip
        return
    tz = vault.settings.tz
    what = "would compact" if report.dry_run else "compacted"
    click.echo(
        f"{'dry run: ' if report.dry_run else ''}compaction of blocks settled before "
        f"{format_ns(report.cutoff_ns, tz)[:19]} ({tz.key}) or of closed sessions"
    )
    if not report.items:
        click.echo("no symbols stored: nothing to compact")
    for i in report.items:
        lost = (f"; {i.swaps_lost} swaps found entries deleted under them (another "
                "compactor or a trim) and read again" if i.swaps_lost else "")  # fmt: skip
        click.echo(
            f"  {i.symbol}: {what} {i.trades_compacted:,} trades in {i.entries_compacted:,} "
            f"blocks into {i.blocks_written:,}; blocks {i.blocks_before:,} -> {i.blocks_after:,}, "
            f"trades {i.trades_before:,} -> {i.trades_after:,}, bytes {i.bytes_before:,} -> "
            f"{i.bytes_after:,}{_per_trade(i)}{lost}"
        )
    if report.dry_run:
        click.echo("dry run: nothing was changed")


def _per_trade(i: CompactItem) -> str:
    if not i.trades_before or not i.trades_after:
        return ""
    return (f" ({i.bytes_before / i.trades_before:.1f} -> "
            f"{i.bytes_after / i.trades_after:.1f} bytes/trade)")  # fmt: skip


def _item_dict(i: CompactItem) -> dict[str, object]:
    return {name: getattr(i, name) for name in CompactItem.__slots__}
