"""The ``tickvault`` command line. Errors print one clear line, never a traceback."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from tickvault.cli.output import check_output_path, console, err_console, write_output
from tickvault.cli.trim import trim as trim_command
from tickvault.config import Settings, hide_password, load_settings
from tickvault.errors import TickvaultError
from tickvault.storage import server as embedded
from tickvault.timeutil import format_ns
from tickvault.vault import Vault, to_frame

F = TypeVar("F", bound=Callable[..., Any])


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


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return load_settings(ctx.obj["config_path"], **overrides)


@contextmanager
def _vault(ctx: click.Context) -> Iterator[Vault]:
    vault = Vault.open(settings=_settings(ctx))
    try:
        yield vault
    finally:
        vault.close()


# ---------------------------------------------------------------------- query
@cli.command()
@click.argument("symbol")
@click.option(
    "--start",
    help="Start, inclusive: ISO 8601 (2025-11-03T10:30) or day-first DD/MM/YYYY [HH:MM]; "
    "without an offset it is exchange time.",
)
@click.option("--end", help="End, exclusive.")
@click.option("--known-at", help="Show the data as it was known at this time (by ts_recv).")
@click.option(
    "--last", "last_n", type=click.IntRange(min=0), help="Only the last N trades of the range."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "parquet"]),
    default="table",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write to this file (required for parquet).",
)
@click.pass_context
def query(
    ctx: click.Context,
    symbol: str,
    start: str | None,
    end: str | None,
    known_at: str | None,
    last_n: int | None,
    fmt: str,
    out: Path | None,
) -> None:
    """Print or export the trades of SYMBOL in [start, end)."""
    if fmt == "parquet" and out is None:
        raise click.UsageError("--format parquet needs --out FILE")
    if out is not None:
        check_output_path(out)
    with _vault(ctx) as vault:
        if last_n is not None and start is None and end is None:
            frame = vault.last(symbol, last_n, known_at=known_at)
        else:
            frame = vault.range(symbol, start, end, known_at=known_at)
            if last_n is not None:
                frame = frame.iloc[-last_n:]
        tz = vault.settings.tz
    if fmt == "parquet":
        assert out is not None
        write_output(out, frame.to_parquet)
        err_console.print(f"wrote {len(frame):,} trades to {out}")
    elif fmt == "csv":
        text = frame.to_csv()
        if out:
            write_output(out, lambda p: p.write_text(text))
            err_console.print(f"wrote {len(frame):,} trades to {out}")
        else:
            click.echo(text, nl=False)
    else:
        _print_trades(frame, tz, limit=200)


def _print_trades(frame: Any, tz: Any, *, limit: int) -> None:
    table = Table(
        title=f"{len(frame):,} trades" + (f" (last {limit} shown)" if len(frame) > limit else "")
    )
    for col in (
        "time (exchange)",
        "trade_id",
        "price",
        "qty",
        "volume",
        "buy",
        "sell",
        "type",
        "flags",
    ):
        table.add_column(col, justify="right")
    shown = frame.iloc[-limit:]
    for ts, row in zip(shown.index.asi8, shown.itertuples(index=False), strict=True):
        table.add_row(
            format_ns(int(ts), tz),
            str(row.trade_id),
            f"{row.price:,.2f}",
            str(row.qty),
            f"{row.volume:,.2f}",
            str(row.buy_agent),
            str(row.sell_agent),
            str(row.trade_type),
            str(row.flags),
        )
    console.print(table)


# ---------------------------------------------------------------------- status
@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Symbols, unique trades and stored records, time span, bytes per trade, server,
    data directory and persistence."""
    with _vault(ctx) as vault:
        info = vault.server_status()
        tz = vault.settings.tz
        rows = [_status_rows(vault, sym) for sym in vault.symbols()]
        books = [b for b in (vault.books.stats(sym) for sym in vault.symbols()) if b.entries]
        data_dir = vault.settings.data_dir.resolve() if vault.embedded else None
    table = Table(title="tickvault store")
    numeric = ("trades", "records", "blocks", "bytes/trade")
    for col in ("symbol", "stream", *numeric[:3], "first", "last", numeric[3]):
        table.add_column(col, justify="right" if col in numeric else "left")
    for per_symbol in rows:
        for r in per_symbol:
            table.add_row(
                r.symbol, r.stream, f"{r.trades:,}", f"{r.records:,}", f"{r.blocks:,}",
                format_ns(r.first_ns, tz) if r.first_ns else "-",
                format_ns(r.last_ns, tz) if r.last_ns else "-",
                f"{r.memory_bytes / r.trades:.2f}" if r.trades else "-",
            )  # fmt: skip
    console.print(table)
    if rows:
        console.print(
            "trades: unique trades as reads return them (repeats, copies in both streams and "
            "corrections resolved, cancelled trades left out); records: entries stored",
            highlight=False,
            soft_wrap=True,
        )
    if books:
        book_table = Table(title="offer books")
        for col in ("symbol", "update entries", "snapshots", "MB"):
            book_table.add_column(col, justify="left" if col == "symbol" else "right")
        for b in books:
            book_table.add_row(b.symbol, f"{b.entries:,}", f"{b.snapshots:,}",
                               f"{b.memory_bytes / 1e6:.1f}")  # fmt: skip
        console.print(book_table)
    kind = "embedded" if info["embedded"] else "external"
    aof = f"AOF on (appendfsync {info['appendfsync']})" if info["aof"] else "AOF off"
    console.print(
        f"server: {info['url']} ({kind}, Valkey {info['version']}), persistence: "
        f"{aof}, maxmemory-policy {info['maxmemory_policy']}, "
        f"used memory {info['used_memory'] / 1e6:.1f} MB",
        highlight=False,
    )
    if data_dir is not None:
        console.print(f"data directory: {data_dir}", highlight=False)


@dataclass(frozen=True, slots=True)
class _StatusRow:
    symbol: str
    stream: str
    trades: int
    """Unique trades as a read of all time returns them."""
    records: int
    blocks: int
    memory_bytes: int
    first_ns: int | None
    last_ns: int | None


def _status_rows(vault: Vault, symbol: str) -> list[_StatusRow]:
    """One row per stream of ``symbol``, plus an "all" row when it has both (a trade
    stored in both streams counts once there)."""
    out = []
    stats = vault.stats(symbol)
    for s in stats:
        unique = len(vault.range_columns(symbol, streams=[s.stream])["trade_id"])
        out.append(_StatusRow(symbol, s.stream, unique, s.trades, s.blocks, s.memory_bytes,
                              s.first_ns, s.last_ns))  # fmt: skip
    if len(stats) > 1:
        firsts = [s.first_ns for s in stats if s.first_ns is not None]
        lasts = [s.last_ns for s in stats if s.last_ns is not None]
        out.append(
            _StatusRow(
                symbol,
                "all",
                len(vault.range_columns(symbol)["trade_id"]),
                sum(s.trades for s in stats),
                sum(s.blocks for s in stats),
                sum(s.memory_bytes for s in stats),
                min(firsts) if firsts else None,
                max(lasts) if lasts else None,
            )
        )
    return out


cli.add_command(trim_command)


# ---------------------------------------------------------------------- server
@cli.group()
def server() -> None:
    """Manage the embedded Valkey server of the data directory."""


def _note_external(settings: Settings) -> None:
    """Say so when valkey_url is set: the other commands then use that server, not the
    embedded one these commands manage."""
    if settings.valkey_url:
        from tickvault.config import hide_password

        err_console.print(
            f"note: valkey_url is set ({hide_password(settings.valkey_url)}), so the other "
            "commands use that server, not this embedded one",
            highlight=False,
        )


@server.command("start")
@click.pass_context
def server_start(ctx: click.Context) -> None:
    """Start the embedded server (or report the one already running)."""
    settings = _settings(ctx)
    _note_external(settings)
    info, started = embedded.ensure_server(settings.data_dir, settings.valkey_server_binary)
    verb = "started" if started else "already running"
    console.print(
        f"{verb}: {info.url} (pid {info.pid}, data {info.data_dir}); it keeps running until "
        "`tickvault server stop`"
    )


@server.command("stop")
@click.pass_context
def server_stop(ctx: click.Context) -> None:
    """Stop the embedded server cleanly (the AOF is flushed)."""
    settings = _settings(ctx)
    if embedded.stop_server(settings.data_dir):
        console.print(f"stopped the server of {settings.data_dir}")
    else:
        console.print(f"no server was running for {settings.data_dir}")


@server.command("status")
@click.pass_context
def server_status(ctx: click.Context) -> None:
    """Say whether the embedded server runs, and where."""
    settings = _settings(ctx)
    _note_external(settings)
    info = embedded.read_state(settings.data_dir.resolve())
    if info is None:
        console.print(f"not running (data directory {settings.data_dir})")
        sys.exit(1)
    console.print(f"running: {info.url} (pid {info.pid}, data {info.data_dir})")


# ---------------------------------------------------------------------- bench
def _valkey_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    import pydantic

    try:
        return Settings.model_validate({"valkey_url": value}).valkey_url
    except pydantic.ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise click.BadParameter(msg) from None


@cli.group()
@click.option(
    "--url",
    callback=_valkey_url,
    help="Bench this Valkey server (valkey://host:port/db) instead of a temporary one; "
    "only the benchmark's own keys (TVBENCH_* symbols, tvbench:*) are written and deleted.",
)
@click.pass_context
def bench(ctx: click.Context, url: str | None) -> None:
    """Benchmarks: tickvault beside the original per-tick design, in one run.

    Each runs on its own embedded Valkey server in a temporary directory, removed
    afterwards: your store is never touched. --url benches a server of your choice.
    """
    ctx.obj["bench_url"] = url


def _bench_result(ctx: click.Context, as_json: bool, run: Callable[..., Any], **kw: Any) -> Any:
    """Run a benchmark on its own store (progress on stderr); with --json print its
    result and return None, else return it for the table."""
    from tickvault.bench.isolation import bench_vault

    url = ctx.obj.get("bench_url")
    settings = _settings(ctx)
    with bench_vault(settings, url) as vault:
        if not as_json:
            where = (
                f"{hide_password(url)}, only its own keys"
                if url
                else f"a temporary server in {vault.settings.data_dir}, removed afterwards"
            )
            err_console.print(f"[dim]benchmark store: {where}[/]")
        say = None if as_json else (lambda m: err_console.print(f"[dim]{m}[/]"))
        result = run(vault, progress=say, **kw)
    if as_json:
        click.echo(json.dumps(result))
        return None
    return result


_POSITIVE = click.IntRange(min=1)


@bench.command("store")
@click.option("--trades", type=_POSITIVE, default=2_000_000, show_default=True)
@click.option(
    "--seed-trades",
    type=_POSITIVE,
    default=None,
    help="Trades for the slow original layout (default: all).",
)
@click.option(
    "--repeats",
    type=_POSITIVE,
    default=3,
    show_default=True,
    help="Timed runs of tickvault's write and read (median reported).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_store(
    ctx: click.Context, trades: int, seed_trades: int | None, repeats: int, as_json: bool
) -> None:
    """Write N trades and read them back: block store vs one entry per trade."""
    from tickvault.bench.store import run_store_bench

    result = _bench_result(ctx, as_json, run_store_bench, n_trades=trades,
                           seed_trades=seed_trades, repeats=repeats)  # fmt: skip
    if result is None:
        return
    table = Table(title=f"bench store: {trades:,} trades")
    table.add_column("")
    for col in ("ingest trades/s", "read trades/s", "bytes/trade"):
        table.add_column(col, justify="right")
    keys = ("ingest_trades_per_s", "read_trades_per_s", "bytes_per_trade")
    for name, label in (("tickvault", "tickvault"), ("original_design", "original layout")):
        f = result[name]
        table.add_row(
            label, *(f"{f[k]:,.0f}" if k != "bytes_per_trade" else f"{f[k]:.2f}" for k in keys)
        )
    r = result["ratio"]
    table.add_row("ratio", f"{r['ingest']}x", f"{r['read']}x", f"{r['bytes']}x smaller")
    console.print(table)


@bench.command("import")
@click.option("--trades", type=_POSITIVE, default=2_000_000, show_default=True)
@click.option("--seed-trades", type=_POSITIVE, default=100_000, show_default=True,
              help="Rows for the slow original design.")  # fmt: skip
@click.option("--repeats", type=_POSITIVE, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_import(
    ctx: click.Context, trades: int, seed_trades: int, repeats: int, as_json: bool
) -> None:
    """Import a generated B3 trade file: vectorised import vs pandas rows + XADD per trade."""
    from tickvault.bench.imports import run_import_bench

    result = _bench_result(ctx, as_json, run_import_bench, n_trades=trades,
                           seed_trades=seed_trades, repeats=repeats)  # fmt: skip
    if result is None:
        return
    table = Table(title=f"bench import: {trades:,} trades ({result['file_mb']} MB)")
    table.add_column("")
    table.add_column("trades/s", justify="right")
    table.add_row("tickvault import", f"{result['trades_per_s']:,}")
    table.add_row("original design", f"{result['original_design']['trades_per_s']:,}")
    table.add_row("ratio", f"{result['ratio']}x")
    console.print(table)


@bench.command("book")
@click.option("--trades-per-day", type=_POSITIVE, default=None, help="Default: a full WIN day.")
@click.option("--queries", type=_POSITIVE, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_book(ctx: click.Context, trades_per_day: int | None, queries: int, as_json: bool) -> None:
    """The book at random past times of a simulated day, against replaying the whole day."""
    from tickvault.bench.book import run_book_bench

    result = _bench_result(ctx, as_json, run_book_bench, trades_per_day=trades_per_day,
                           queries=queries)  # fmt: skip
    if result is None:
        return
    ms = result["book_ms"]
    table = Table(title=f"bench book: {result['book_updates']:,} updates in a day")
    table.add_column("")
    table.add_column("book(at=t, depth=10)", justify="right")
    table.add_row("tickvault p50 / p99", f"{ms['p50']} / {ms['p99']} ms")
    table.add_row("replay the day (original)", f"{result['original_design_ms_median']} ms")
    table.add_row("ratio", f"{result['ratio']}x")
    console.print(table)


@bench.command("live")
@click.option("--trades", type=_POSITIVE, default=1_000_000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=50_000,
    show_default=True,
    help="Trades/s of the lag runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_live(ctx: click.Context, trades: int, rate: float, as_json: bool) -> None:
    """Publisher process -> ZeroMQ -> bridge process -> Valkey, against the original design."""
    from tickvault.bench.live import run_live_bench

    result = _bench_result(ctx, as_json, run_live_bench, trades=trades, rate=rate)
    if result is None:
        return
    table = Table(title=f"bench live: {trades:,} trades, lag at {rate:,.0f} trades/s")
    for col in ("design", "trades/s", "lost", "duplicated", "lag p50 ms", "lag p99 ms"):
        table.add_column(col, justify="right")
    for name, label in (("tickvault", "tickvault"), ("original_design", "original design")):
        row = result[name]
        table.add_row(
            label,
            f"{row['trades_per_s']:,}",
            f"{row['lost']:,}",
            f"{row['duplicated']:,}",
            f"{row['lag_ms']['p50']:,.2f}",
            f"{row['lag_ms']['p99']:,.2f}",
        )
    console.print(table)
    console.print(f"throughput ratio: {result['ratio']['throughput']}x")


@bench.command("formats")
@click.option("--trades", type=_POSITIVE, default=500_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.pass_context
def bench_formats(ctx: click.Context, trades: int, as_json: bool) -> None:
    """Bytes per trade and rates by block size and codec (docs/storage-format.md)."""
    from tickvault.bench.store import run_format_sweep

    rows = _bench_result(ctx, as_json, run_format_sweep, n_trades=trades)
    if rows is None:
        return
    table = Table(title=f"block formats: {trades:,} trades")
    for col in ("codec", "block_max_trades", "bytes/trade", "ingest trades/s", "read trades/s"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["compression"],
            f"{row['block_max_trades']:,}",
            f"{row['bytes_per_trade']:.2f}",
            f"{row['ingest_trades_per_s']:,}",
            f"{row['read_trades_per_s']:,}",
        )
    console.print(table)


# ---------------------------------------------------------------------- live path
def _symbols(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    return [s.strip().upper() for s in raw.split(",") if s.strip()]


def _speed(raw: str) -> float | None:
    if raw.lower() == "max":
        return None
    try:
        value = float(raw.rstrip("xX"))
    except ValueError:
        raise click.BadParameter(f"{raw!r}: use a number such as 1 or 10, or 'max'") from None
    if value <= 0:
        raise click.BadParameter(f"{raw!r}: the speed must be above 0")
    return value


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGINT and SIGTERM call ``stop`` (a clean shutdown) instead of raising."""

    def handler(signum: int, _frame: object) -> None:
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@cli.command()
@click.option(
    "--speed",
    default="1",
    show_default=True,
    help="Simulator pace: 1 (real time: today's session from now, or the last one), "
    "10, ... or max (faster: the latest completed sessions, 1 or with max 5).",
)
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
@click.option(
    "--symbols",
    default="WINSIM,WDOSIM",
    show_default=True,
    help="Symbols to simulate (WIN... or WDO... contracts) and store under.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--keep",
    is_flag=True,
    help="Add to what is stored under the symbols instead of replacing the previous demo's data.",
)
@click.pass_context
def demo(
    ctx: click.Context, speed: str, duration: float | None, symbols: str, seed: int, keep: bool
) -> None:
    """The live pipeline on the embedded Valkey: simulator, ZeroMQ, bridge, live view.

    The simulated trades are stored under the demo's own symbols (WINSIM, WDOSIM), so
    they never mix with real data; each run replaces the previous demo's data (--keep
    adds to it), and symbols holding data the demo did not write are refused. No
    simulated trade is dated after the moment it is stored: faster than real time, the
    demo simulates the latest completed sessions."""
    from tickvault.cli.demo import DEMO_SYMBOLS, run_live_demo
    from tickvault.live.bridge import tune_for_latency

    tune_for_latency()
    with _vault(ctx) as vault:
        run_live_demo(
            vault,
            _symbols(symbols) or list(DEMO_SYMBOLS),
            speed=_speed(speed),
            duration_s=duration,
            console=console,
            seed=seed,
            keep=keep,
        )


@cli.command()
@click.option("--feed", type=click.Choice(["sim"]), default="sim", show_default=True)
@click.option(
    "--symbols",
    default="WINSIM,WDOSIM",
    show_default=True,
    help="Simulated symbols; by default names no real contract has, so simulated trades "
    "never mix with real ones.",
)
@click.option("--speed", default="1", show_default=True, help="1, 10, ... or max.")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Sessions to simulate.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def publish(ctx: click.Context, feed: str, symbols: str, speed: str, days: int, seed: int) -> None:
    """Run a feeder and publish its events over ZeroMQ until it ends or is stopped.

    At real-time pace the simulator plays today's session from now (or the last one);
    faster than real time it plays the DAYS latest completed sessions, so no trade is
    published before the time it says it happened."""
    from tickvault.feeds.sim import SimulatedFeeder

    settings = _settings(ctx)
    feeder = SimulatedFeeder(_symbols(symbols) or [], seed=seed, speed=_speed(speed), days=days)
    _run_feeder(feeder, settings)


@cli.command()
@click.option("--symbols", help="Only these symbols (comma-separated; default: all).")
@click.option("--connect", "host", help="Publisher host (default: zmq_host).")
@click.pass_context
def bridge(ctx: click.Context, symbols: str | None, host: str | None) -> None:
    """Store what publishers send into Valkey, until SIGINT/SIGTERM (then flush)."""
    import logging

    from tickvault.live.bridge import Bridge, tune_for_latency
    from tickvault.transport.endpoints import Endpoints

    tune_for_latency()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with _vault(ctx) as vault:
        eps = Endpoints.from_settings(vault.settings, host)
        b = Bridge(vault, symbols=_symbols(symbols), endpoints=[eps])
        _stop_on_signals(b.stop)
        err_console.print(f"bridge: {eps.ticks} -> {vault.url}; SIGINT/SIGTERM stop it")
        try:
            b.run()
        finally:
            b.subscriber.close()
        s, sub = b.stats, b.subscriber.stats
        err_console.print(
            f"bridge stopped: {s.trades_stored:,} trades stored in {s.writes:,} writes; "
            f"gaps {sub.gaps_detected} detected, {sub.lost_messages} messages lost; "
            f"duplicates {sub.duplicates}; rejected {dict(s.rejected)}"
        )


@cli.command()
@click.argument("symbol")
@click.option("--history", is_flag=True, help="History trades instead of live ones.")
@click.option("--connect", "host", help="Publisher host (default: zmq_host).")
@click.pass_context
def tail(ctx: click.Context, symbol: str, history: bool, host: str | None) -> None:
    """Print SYMBOL's trades live from ZeroMQ (Ctrl-C stops).

    Shows every trade published from the moment tail starts, including those a
    publisher started later sent before the subscription reached it (fetched from
    its replay buffer). Says on stderr that it is waiting until the first trade."""
    import time

    from tickvault.cli.tail import TailPrinter
    from tickvault.transport.endpoints import Endpoints
    from tickvault.transport.subscriber import Subscriber
    from tickvault.transport.wire import Kind

    settings = _settings(ctx)
    since = time.time_ns()
    eps = Endpoints.from_settings(settings, host)
    printer = TailPrinter(console, settings.tz)
    sub = Subscriber(
        settings,
        handler=printer,
        endpoints=[eps],
        kinds=[Kind.HISTORY if history else Kind.TRADE],
        symbols=[symbol.upper()],
        recover_from_start=False,
        recover_since_ns=since,
    )
    _stop_on_signals(sub.stop)
    err_console.print(
        f"waiting for {symbol.upper()} {'history ' if history else ''}trades from "
        f"{eps.history if history else eps.ticks} (a publisher: tickvault publish, replay "
        "or feed); Ctrl-C stops",
        highlight=False,
    )
    try:
        sub.run()
    finally:
        sub.close()


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--speed", default="1", show_default=True, help="1, 10 (times real time) or max.")
@click.option("--symbols", help="Only these symbols, comma-separated.")
@click.option("--skip-bad-rows", is_flag=True, help="Leave bad rows out instead of failing.")
@click.option("--store", is_flag=True, help="Also run a bridge here, storing what is replayed.")
@click.pass_context
def replay(
    ctx: click.Context,
    files: tuple[Path, ...],
    speed: str,
    symbols: str | None,
    skip_bad_rows: bool,
    store: bool,
) -> None:
    """Publish trade files through the live path, in event order, at the chosen pace."""
    from tickvault.feeds.files import FileFeeder
    from tickvault.ingest.files import ImportOptions

    settings = _settings(ctx)
    wanted = _symbols(symbols)
    options = ImportOptions(symbols=frozenset(wanted) if wanted else None,
                            skip_bad_rows=skip_bad_rows)  # fmt: skip
    pace = _speed(speed)
    if not store:
        feeder = FileFeeder(list(files), settings.tz, speed=pace, options=options)
        err_console.print(f"replaying {feeder.total:,} trades of {', '.join(feeder.symbols)}")
        _run_feeder(feeder, settings)
        return
    from tickvault.live.pipeline import Pipeline

    with _vault(ctx) as vault:  # the store first: an unreachable one fails before any work
        feeder = FileFeeder(list(files), settings.tz, speed=pace, options=options)
        err_console.print(f"replaying {feeder.total:,} trades of {', '.join(feeder.symbols)}")
        pipe = Pipeline(vault, feeder).start()
        _stop_on_signals(pipe.feed.stop_event.set)
        while pipe.feed.running:
            pipe.feed.stop_event.wait(0.5)
        pipe.stop()
        err_console.print(
            f"replayed {feeder.delivered:,} trades; stored {pipe.bridge.stats.trades_stored:,}"
        )


@cli.command()
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
    with _vault(ctx) as vault, _history_feeder(vault.settings, feed_name, symbol, files,
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
    from tickvault.feeds.profitdll.feeder import FUTURES_PREFIXES

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


@cli.group()
def feed() -> None:
    """Run a market-data feeder as a publisher process."""


@feed.command("profitdll")
@click.option("--symbols", required=True, help="Tickers with exchange: WINZ25:F,PETR4:B.")
@click.option("--no-book", is_flag=True, help="Do not subscribe to the offer books.")
@click.option("--routing", is_flag=True, help="Log in with routing (orders) too.")
@click.option("--library", type=click.Path(path_type=Path), help="Overrides profitdll_path.")
@click.pass_context
def feed_profitdll(
    ctx: click.Context, symbols: str, no_book: bool, routing: bool, library: Path | None
) -> None:
    """Publish ProfitDLL market data over ZeroMQ until Ctrl-C. Credentials come from
    TICKVAULT_PROFITDLL_KEY/_USER/_PASSWORD or the config file, never from options."""
    import logging

    from tickvault.feeds.profitdll import ProfitCredentials, ProfitDLLFeeder, parse_subscriptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = _settings(ctx)
    feeder = ProfitDLLFeeder(
        parse_subscriptions(symbols),
        ProfitCredentials.from_settings(settings),
        library=library or settings.profitdll_path,
        tz=settings.tz,
        book=not no_book,
        routing=routing,
    )
    _run_feeder(feeder, settings)


def _run_feeder(feeder: Any, settings: Settings) -> None:
    """Publish ``feeder`` until it ends, fails or a signal stops it."""
    from tickvault.live.pipeline import FeedRunner
    from tickvault.transport.publisher import Publisher

    with Publisher(settings) as publisher:
        runner = FeedRunner(feeder, publisher)
        _stop_on_signals(runner.stop_event.set)
        err_console.print(
            f"publishing {feeder.name} {', '.join(feeder.symbols)} on "
            f"{publisher.endpoints.ticks} (publisher id {publisher.id:016x}); Ctrl-C stops"
        )
        runner.start()
        while runner.running:
            runner.stop_event.wait(0.5)
        runner.stop()
        publisher.flush()
        stats = publisher.stats()
        err_console.print(f"published {stats.records:,} records in {stats.messages:,} messages")
        if isinstance(runner.error, TickvaultError):
            raise runner.error
        if runner.error is not None:
            raise click.ClickException(f"the {feeder.name} feeder failed: {runner.error}")


@cli.command()
@click.argument("symbol")
@click.option(
    "--at", "at", help="Time: ISO 8601 or DD/MM/YYYY HH:MM, exchange time if naive; default now."
)
@click.option("--depth", type=int, default=10, show_default=True, help="Offers (or levels).")
@click.option("--levels", is_flag=True, help="Aggregate offers by price.")
@click.pass_context
def book(ctx: click.Context, symbol: str, at: str | None, depth: int, levels: bool) -> None:
    """Print SYMBOL's offer book as it stood at a time."""
    with _vault(ctx) as vault:
        view = vault.book(symbol, at=at, depth=None if levels else depth)
        tz = vault.settings.tz
    bids, asks = view.levels(depth) if levels else (view.bids, view.asks)
    title = f"{view.symbol} book at {format_ns(view.at, tz)}"
    if view.last_update:
        title += f" (last update {format_ns(view.last_update, tz)})"
    table = Table(title=title)
    extra = "offers" if levels else "agent"
    for col in (f"bid {extra}", "bid qty", "bid", "ask", "ask qty", f"ask {extra}"):
        table.add_column(col, justify="right")
    for i in range(max(len(bids), len(asks))):
        left = (
            [str(bids[extra].iloc[i]), f"{bids['qty'].iloc[i]:,}", f"{bids['price'].iloc[i]:,.2f}"]
            if i < len(bids)
            else ["", "", ""]
        )
        right = (
            [f"{asks['price'].iloc[i]:,.2f}", f"{asks['qty'].iloc[i]:,}", str(asks[extra].iloc[i])]
            if i < len(asks)
            else ["", "", ""]
        )
        table.add_row(*left, *right)
    console.print(table)
    if not len(bids) and not len(asks):
        err_console.print(f"no book stored for {view.symbol} at or before that time")


@cli.command("import")
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

    wanted = _symbols(symbols)
    options = ImportOptions(
        symbols=frozenset(wanted) if wanted else None,
        skip_bad_rows=skip_bad_rows,
        force=force,
        mapping=ColumnMap.parse(mapping, time_unit=time_unit) if mapping else None,
        symbol=symbol,
        delimiter=delimiter,
    )
    with _vault(ctx) as vault, _import_bar() as on_progress:
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


from tickvault.cli.inspect import gaps, quarantine  # noqa: E402
from tickvault.cli.settings import config_cmd  # noqa: E402

cli.add_command(config_cmd)
cli.add_command(gaps)
cli.add_command(quarantine)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks: servers stop, data flushes


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cli(prog_name="tickvault")


__all__ = ["cli", "main", "to_frame"]


if __name__ == "__main__":
    main()
