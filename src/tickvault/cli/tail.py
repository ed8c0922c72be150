"""``tickvault tail``: print trades as they arrive over ZeroMQ."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tickvault.records.events import Gap
from tickvault.records.trades import TradeType
from tickvault.timeutil import format_ns
from tickvault.transport.wire import Message, WireError

_SIDE: dict[int, str] = {TradeType.AGGRESSOR_BUY: "buy ", TradeType.AGGRESSOR_SELL: "sell"}


class TailPrinter:
    """A subscriber handler that prints one line per trade."""

    def __init__(self, console: Console, tz: Any):
        self.console = console
        self.tz = tz

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Message) -> None:
        for r in msg.records():
            side = _SIDE.get(int(r["trade_type"]), "    ")
            self.console.print(
                f"{format_ns(int(r['ts_event']), self.tz)}  {msg.symbol}  #{int(r['trade_id'])}  "
                f"{side} {float(r['price']):,.2f} x {int(r['qty'])}  "
                f"({int(r['buy_agent'])} -> {int(r['sell_agent'])})",
                highlight=False,
            )

    def on_gap(self, gap: Gap) -> None:
        self.console.print(
            f"[yellow]gap: messages {gap.seq_first}..{gap.seq_last} of {gap.topic} lost "
            f"({gap.reason})[/]"
        )

    def on_invalid(self, frames: list[bytes], error: WireError) -> None:
        self.console.print(f"[red]invalid message: {error}[/]")
