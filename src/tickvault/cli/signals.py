"""``tickvault signals tail|query``: model signals live from ZeroMQ, or stored."""

from __future__ import annotations

import time
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from tickvault.cli.common import open_vault, settings_of, stop_on_signals
from tickvault.cli.output import console, err_console
from tickvault.records.events import Gap
from tickvault.records.signals import SIGNAL_DTYPE, Signal
from tickvault.timeutil import format_ns
from tickvault.transport.wire import Message, WireError


def _line(sig: Signal, tz: Any) -> str:
    return (
        f"{format_ns(sig.ts_event, tz)}  {sig.symbol}  {sig.side.name:<5}  "
        f"strength {sig.strength:+.3f}  confidence {sig.confidence:.3f}  "
        f"horizon {sig.horizon_ns / 1e9:g}s  model {sig.model_version}  {sig.mode.name.lower()}  "
        f"(features at {format_ns(sig.t_features, tz)})"
    )


class SignalPrinter:
    """A subscriber handler that prints one line per signal."""

    def __init__(self, out: Console, tz: Any):
        self.out = out
        self.tz = tz

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        recs = np.frombuffer(msg.payload, dtype=SIGNAL_DTYPE, count=msg.count)
        for r in recs:
            self.out.print(_line(Signal.from_record(msg.symbol, r), self.tz), highlight=False)

    def on_gap(self, gap: Gap) -> None:
        self.out.print(
            f"[yellow]gap: messages {gap.seq_first}..{gap.seq_last} of {gap.topic} lost "
            f"({gap.reason})[/]"
        )

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        self.out.print(f"[red]invalid message: {error}[/]")


@click.group("signals")
def signals() -> None:
    """Model signals: live (tail) or stored (query)."""


@signals.command("tail")
@click.argument("symbol")
@click.option("--connect", "host", help="Publisher host (default: zmq_host).")
@click.pass_context
def tail_signals(ctx: click.Context, symbol: str, host: str | None) -> None:
    """Print SYMBOL's signals live from the signals port (Ctrl-C stops)."""
    from tickvault.live.models import signal_endpoints
    from tickvault.transport.subscriber import Subscriber
    from tickvault.transport.wire import Kind

    settings = settings_of(ctx)
    eps = signal_endpoints(settings, host)  # the model worker's: replay on its own port
    sub = Subscriber(settings, handler=SignalPrinter(console, settings.tz), endpoints=[eps],
                     kinds=[Kind.SIGNAL], symbols=[symbol.upper()], recover_from_start=False,
                     recover_since_ns=time.time_ns())  # fmt: skip
    stop_on_signals(sub.stop)
    err_console.print(f"waiting for {symbol.upper()} signals from {eps.signals}; Ctrl-C stops",
                      highlight=False)  # fmt: skip
    try:
        sub.run()
    finally:
        sub.close()


@signals.command("query")
@click.argument("symbol")
@click.option("--start", required=True, help="Start, inclusive (naive = exchange time).")
@click.option("--end", required=True, help="End, exclusive.")
@click.option("--known-at", help="Only what the store had received by this time.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.pass_context
def query_signals(
    ctx: click.Context, symbol: str, start: str, end: str, known_at: str | None, as_csv: bool
) -> None:
    """The stored signals of SYMBOL made in [start, end)."""
    from tickvault.engine.signals import SignalStore

    with open_vault(ctx) as vault:
        frame = SignalStore(vault).range(symbol.upper(), start, end, known_at=known_at)
        tz = vault.settings.tz
    if as_csv:
        click.echo(frame.to_csv(index=False), nl=False)
        return
    table = Table(title=f"{symbol.upper()} signals: {len(frame):,}")
    for col in ("made", "side", "strength", "confidence", "model", "mode", "features at"):
        table.add_column(col)
    for r in frame.tail(200).to_dict("records"):
        table.add_row(format_ns(int(r["ts_event"]), tz), str(r["side"]),
                      f"{r['strength']:+.3f}", f"{r['confidence']:.3f}", str(r["model_version"]),
                      str(r["mode"]).lower(), format_ns(int(r["t_features"]), tz))  # fmt: skip
    console.print(table)
