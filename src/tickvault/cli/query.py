"""``tickvault query``, ``status`` and ``book``: what the store holds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from tickvault.cli.common import (
    open_vault,
)
from tickvault.cli.output import check_output_path, console, err_console, write_output
from tickvault.timeutil import format_ns
from tickvault.vault import StreamStats, Vault


@click.command()
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
    with open_vault(ctx) as vault:
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


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Symbols, unique trades and stored records, time span, bytes per trade, server,
    data directory and persistence."""
    with open_vault(ctx) as vault:
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
    if info.get("cluster"):
        kind = f"Valkey Cluster of {len(info['nodes'])} primaries"
    aof = f"AOF on (appendfsync {info['appendfsync']})" if info["aof"] else "AOF off"
    console.print(
        f"server: {info['url']} ({kind}, Valkey {info['version']}), persistence: "
        f"{aof}, maxmemory-policy {info['maxmemory_policy']}, "
        f"used memory {info['used_memory'] / 1e6:.1f} MB",
        highlight=False,
    )
    for node in info.get("nodes", ()):
        console.print(
            f"  primary {node['node']}: used memory {int(node['used_memory'] or 0) / 1e6:.1f} MB, "
            f"{node['replicas']} replica(s)"
            + (f"; refuses writes: {node['writes_refused']}" if node["writes_refused"] else ""),
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


def _live_folded(stats: list[StreamStats]) -> list[StreamStats]:
    """The compacted stream's figures added to the realtime stream's: both hold the live
    trades (compaction moves them from one to the other)."""
    live = [s for s in stats if s.stream in ("realtime", "compacted")]
    if len(live) < 2:
        return [dataclasses.replace(s, stream="realtime") if s.stream == "compacted" else s
                for s in stats]  # fmt: skip
    firsts = [s.first_ns for s in live if s.first_ns is not None]
    lasts = [s.last_ns for s in live if s.last_ns is not None]
    first, last = (min(firsts) if firsts else None), (max(lasts) if lasts else None)
    folded = StreamStats(live[0].symbol, "realtime", sum(s.trades for s in live),
                         sum(s.blocks for s in live), sum(s.memory_bytes for s in live),
                         first, last)  # fmt: skip
    return [folded, *(s for s in stats if s.stream not in ("realtime", "compacted"))]


def _status_rows(vault: Vault, symbol: str) -> list[_StatusRow]:
    """One row per stream of ``symbol``, plus an "all" row when it has both (a trade
    stored in both streams counts once there)."""
    out = []
    stats = _live_folded(vault.stats(symbol))
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


@click.command()
@click.argument("symbol")
@click.option(
    "--at", "at", help="Time: ISO 8601 or DD/MM/YYYY HH:MM, exchange time if naive; default now."
)
@click.option("--depth", type=int, default=10, show_default=True, help="Offers (or levels).")
@click.option("--levels", is_flag=True, help="Aggregate offers by price.")
@click.pass_context
def book(ctx: click.Context, symbol: str, at: str | None, depth: int, levels: bool) -> None:
    """Print SYMBOL's offer book as it stood at a time."""
    with open_vault(ctx) as vault:
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
