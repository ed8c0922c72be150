"""``tickvault gaps`` and ``tickvault quarantine``: what the store knows is missing, and
the messages the bridge rejected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.table import Table
from rich.text import Text

from tickvault.cli.output import console, err_console
from tickvault.config import load_settings
from tickvault.timeutil import format_ns
from tickvault.vault import Vault


@contextmanager
def _vault(ctx: click.Context) -> Iterator[Vault]:
    with Vault.open(settings=load_settings((ctx.obj or {}).get("config_path"))) as vault:
        yield vault


@click.command()
@click.argument("symbol")
@click.option("--start", help="Start, inclusive (ISO time; naive = exchange time zone).")
@click.option("--end", help="End, exclusive.")
@click.pass_context
def gaps(ctx: click.Context, symbol: str, start: str | None, end: str | None) -> None:
    """Spans of SYMBOL's data known to be incomplete (messages lost in transport and not
    recovered), overlapping [start, end)."""
    with _vault(ctx) as vault:
        found = vault.gaps(symbol, start, end)
        tz = vault.settings.tz
    if not found:
        err_console.print(f"no gaps recorded for {symbol.upper()}", highlight=False)
        return
    table = Table(title=f"{symbol.upper()}: {len(found):,} gaps")
    for col in ("from (exchange)", "to", "stream", "messages lost", "publisher", "topic", "reason"):
        table.add_column(col, justify="right" if col == "messages lost" else "left")
    for g in found:
        table.add_row(
            format_ns(g.start_ns, tz),
            format_ns(g.end_ns, tz),
            g.stream,
            f"{g.seq_last - g.seq_first + 1:,} (seq {g.seq_first}..{g.seq_last})",
            Text(g.publisher),
            Text(g.topic),
            Text(g.reason),
        )
    console.print(table, highlight=False)


@click.command()
@click.option("--count", type=click.IntRange(min=1), default=20, show_default=True,
              help="The latest N messages.")  # fmt: skip
@click.option("--raw", is_flag=True, help="Also dump every raw frame in hex.")
@click.pass_context
def quarantine(ctx: click.Context, count: int, raw: bool) -> None:
    """Messages the bridge rejected and kept, newest first: why, when and their frames."""
    with _vault(ctx) as vault:
        items = vault.quarantined(count)
        tz = vault.settings.tz
    if not items:
        err_console.print("nothing quarantined", highlight=False)
        return
    if raw:
        for item in items:
            frames = _frames(item)
            click.echo(f"{format_ns(item['ts'], tz)}  {item['reason']}: {item['detail']}")
            for i, frame in enumerate(frames):
                click.echo(f"  frame {i} ({len(frame):,} bytes): {frame.hex()}")
        return
    table = Table(title=f"{len(items):,} quarantined messages, newest first")
    for col in ("quarantined at (exchange)", "reason", "detail", "frames (bytes)"):
        table.add_column(col)
    for item in items:
        sizes = [len(f) for f in _frames(item)]
        table.add_row(
            format_ns(item["ts"], tz),
            Text(item["reason"]),
            Text(item["detail"]),
            f"{len(sizes)}: " + " + ".join(f"{n:,}" for n in sizes),
        )
    console.print(table, highlight=False)


def _frames(item: dict[str, object]) -> list[bytes]:
    """The raw frames of a quarantined message, in order (fields f0, f1, ...)."""
    out = []
    i = 0
    while f"f{i}" in item:
        frame = item[f"f{i}"]
        assert isinstance(frame, bytes)
        out.append(frame)
        i += 1
    return out
