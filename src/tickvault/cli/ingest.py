"""``tickvault import`` and ``backfill``: history into the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tickvault.cli.common import (
    open_vault,
    parse_symbols,
)
from tickvault.cli.output import console, err_console
from tickvault.config import Settings
from tickvault.timeutil import format_ns


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--symbols", help="Only these symbols, comma-separated (default: all).")
@click.option("--skip-bad-rows", is_flag=True, help="Count and report bad rows; import the rest.")
@click.option("--force", is_flag=True, help="Import files already imported (reads still dedupe).")
@click.option(
    "--map",
    "mapping",
    help="For CSV/Parquet files: field=column pairs, e.g. ts_event=time,price=preco,qty=qtd.",
)
@click.option("--symbol", help="Symbol of every row of a mapped file without a symbol column.")
@click.option("--time-unit", default="ns", show_default=True, help="Unit of integer times.")
@click.option("--delimiter", default=",", show_default=True, help="Field separator of CSV files.")
@click.pass_context
def import_cmd(
    ctx: click.Context,
    files: tuple[Path, ...],
    symbols: str | None,
    skip_bad_rows: bool,
    force: bool,
    mapping: str | None,
    symbol: str | None,
    time_unit: str,
    delimiter: str,
) -> None:
    """Import trade files (B3 "negócios" TXT, .gz, .zip; or mapped CSV/Parquet) into the
    historical stream."""
    from tickvault.files.mapped import ColumnMap
    from tickvault.ingest.files import ImportOptions, import_files

    wanted = parse_symbols(symbols)
    options = ImportOptions(
        symbols=frozenset(wanted) if wanted else None,
        skip_bad_rows=skip_bad_rows,
        force=force,
        mapping=ColumnMap.parse(mapping, time_unit=time_unit) if mapping else None,
        symbol=symbol,
        delimiter=delimiter,
    )
    with open_vault(ctx) as vault, _import_bar() as on_progress:
        reports = import_files(vault, list(files), options, progress=on_progress)
        tz = vault.settings.tz
    table = Table(title="import")
    for col in ("file", "rows", "stored", "bad rows", "cancelled", "s"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in reports:
        stored = "already imported" if r.already_imported else f"{r.total_stored:,}"
        table.add_row(
            Path(r.name).name, f"{r.rows:,}", stored, f"{r.bad_rows:,}", f"{r.cancelled:,}",
            f"{r.seconds:.2f}",
        )  # fmt: skip
    console.print(table)
    for r in reports:
        if r.already_imported:
            when = (
                f" on {format_ns(r.imported_at_ns, tz)[:19]} ({tz.key} time)"
                if r.imported_at_ns
                else ""
            )
            err_console.print(
                f"{r.name}: already imported{when}, so nothing was stored again; to import "
                "it anyway, add --force (reads still show each trade once)",
                highlight=False,
            )
        for example in r.bad_examples:
            err_console.print(f"[yellow]skipped[/] {r.name}: {example}", highlight=False)
        if r.bad_rows > len(r.bad_examples):
            err_console.print(f"[yellow]skipped[/] {r.name}: {r.bad_rows:,} bad rows in all")
        if r.bad_lines:
            where = "rows" if Path(r.name).suffix.lower() in (".parquet", ".pq") else "lines"
            shown = ", ".join(str(n) for n in r.bad_lines[:_BAD_LINES_SHOWN])
            more = f" and {len(r.bad_lines) - _BAD_LINES_SHOWN:,} more" if len(
                r.bad_lines) > _BAD_LINES_SHOWN else ""  # fmt: skip
            err_console.print(f"[yellow]skipped[/] {r.name}: bad {where} {shown}{more}",
                              highlight=False)  # fmt: skip


_BAD_LINES_SHOWN = 50


@contextmanager
def _import_bar() -> Iterator[Callable[[str, int, int], None]]:
    """Two bars on stderr, reading (MB) and storing (records); the import is done when
    both are, since the storing of a file starts once it is read."""
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.percentage:>3.0f}%",
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "reading" if stage == "read" else "storing"
                tasks[stage] = bar.add_task(label, total=None, detail="")
            if stage == "read":
                detail = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
            else:
                detail = f"{done:,}/{total:,} records"
            bar.update(tasks[stage], completed=done, total=total or None, detail=detail)

        yield update


@click.command()
@click.argument("symbol")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=1,
    show_default=True,
    help="How far back (days, above 0).",
)
@click.option("--feed", "feed_name", type=click.Choice(["sim", "profitdll", "file"]),
              default="sim", show_default=True)  # fmt: skip
@click.option("--file", "files", multiple=True, type=click.Path(path_type=Path),
              help="Trade files (with --feed file).")  # fmt: skip
@click.option("--exchange", help="ProfitDLL exchange of SYMBOL: F or B (default by root).")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed.")
@click.pass_context
def backfill(
    ctx: click.Context,
    symbol: str,
    days: float,
    feed_name: str,
    files: tuple[Path, ...],
    exchange: str | None,
    seed: int,
) -> None:
    """Fetch SYMBOL's last N days from a feeder's history API into the historical stream."""
    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    from tickvault.ingest.backfill import backfill as run_backfill
    from tickvault.records.validate import check_symbol
    from tickvault.timeutil import NS_PER_DAY, now_ns

    symbol = check_symbol(symbol)
    end = now_ns()
    start = end - int(days * NS_PER_DAY)
    with open_vault(ctx) as vault, _history_feeder(vault.settings, feed_name, symbol, files,
                                               exchange, seed) as feeder:  # fmt: skip
        with Progress("[progress.description]{task.description}", BarColumn(),
                      "{task.percentage:>3.0f}%", TimeElapsedColumn(), console=err_console,
                      transient=True) as bar:  # fmt: skip
            task = bar.add_task(f"backfilling {symbol}", total=100)
            report = run_backfill(vault, feeder, symbol, start, end,
                                  progress=lambda _s, p: bar.update(task, completed=p))  # fmt: skip
        tz = vault.settings.tz
    console.print(
        f"{symbol}: stored {report.stored:,} history trades from {format_ns(start, tz)} "
        f"to {format_ns(end, tz)} ({feed_name})"
    )


@contextmanager
def _history_feeder(
    settings: Settings,
    feed_name: str,
    symbol: str,
    files: tuple[Path, ...],
    exchange: str | None,
    seed: int,
) -> Iterator[Any]:
    """A feeder ready to answer history requests; a ProfitDLL session is logged in for
    the duration (subscribed to nothing)."""
    if feed_name == "sim":
        from tickvault.feeds.sim import SimulatedFeeder

        yield SimulatedFeeder([symbol], seed=seed, speed=None)
        return
    if feed_name == "file":
        from tickvault.feeds.files import FileFeeder

        if not files:
            raise click.UsageError("--feed file needs at least one --file")
        yield FileFeeder(list(files), settings.tz, speed=None)
        return
    import threading

    from tickvault.errors import FeedError
    from tickvault.feeds.base import NullEvents
    from tickvault.feeds.profitdll import ProfitCredentials, ProfitDLLFeeder
    from tickvault.feeds.profitdll.credentials import FUTURES_PREFIXES

    ex = (exchange or ("F" if symbol.startswith(FUTURES_PREFIXES) else "B")).upper()
    feeder = ProfitDLLFeeder(
        [],
        ProfitCredentials.from_settings(settings),
        library=settings.profitdll_path,
        tz=settings.tz,
        book=False,
    )
    feeder.set_exchange(symbol, ex)
    stop = threading.Event()
    failure: list[BaseException] = []

    def session() -> None:
        try:
            feeder.run(NullEvents(), stop)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=session, daemon=True)
    thread.start()
    try:
        while not feeder.wait_until_ready(0.2):
            if failure or not thread.is_alive():
                raise failure[0] if failure else FeedError("the ProfitDLL session ended")
        yield feeder
    finally:
        stop.set()
        thread.join(30)
