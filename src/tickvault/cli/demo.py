"""``tickvault demo``: simulated B3 trades into the store, then time-travel queries.

The live pipeline (feeders, ZeroMQ, bridge) will grow this into a live view.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tickvault.model.trades import TradeFlag
from tickvault.sim.generator import generate_trades
from tickvault.timeutil import NS_PER_S, format_ns, now_ns
from tickvault.vault import Vault

_CHUNK = 50_000


def run_demo(vault: Vault, symbols: list[str], trades: int, console: Console) -> None:
    tz = vault.settings.tz
    console.print(
        f"[bold]tickvault demo[/] on {vault.url} "
        f"({'embedded' if vault.embedded else 'external'} Valkey)"
    )
    batches = {s: generate_trades(s, trades, seed=42) for s in symbols}
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("storing simulated trades", total=trades * len(symbols))
        for symbol, batch in batches.items():
            for i in range(0, len(batch), _CHUNK):
                vault.write_trades(symbol, batch.take(slice(i, i + _CHUNK)))
                progress.advance(task, min(_CHUNK, len(batch) - i))
    elapsed = time.perf_counter() - t0
    console.print(
        f"stored {trades * len(symbols):,} trades in {elapsed:.2f} s "
        f"({trades * len(symbols) / elapsed:,.0f} trades/s)"
    )

    table = Table(title="stored")
    for col in ("symbol", "trades", "first (B3 time)", "last (B3 time)", "B/trade"):
        table.add_column(col, justify="right", no_wrap=True)
    total_records = 0
    for symbol in symbols:
        frame = vault.range(symbol)
        stats = vault.stats(symbol)
        memory = sum(s.memory_bytes for s in stats)
        records = sum(s.trades for s in stats)
        total_records += records
        table.add_row(
            symbol,
            f"{len(frame):,}",
            format_ns(frame.index[0].value, tz)[:19],
            format_ns(frame.index[-1].value, tz)[:19],
            f"{memory / records:.2f}",
        )
    console.print(table)
    console.print(
        f"[dim]{total_records:,} records stored in all; queries return each trade once "
        "(repeats from earlier runs are deduplicated)[/]"
    )

    # Time travel: correct a trade now, then look at the past as it was known before.
    symbol = symbols[0]
    batch = batches[symbol]
    i = len(batch) // 2
    before = now_ns()
    edit = batch.take(np.array([i]))
    correction = {k: v for k, v in edit.columns().items() if k != "ts_recv"}  # received now
    correction["price"] = edit.price + 50.0
    correction["flags"] = np.array([TradeFlag.EDIT], dtype=np.uint8)
    vault.write_trades(symbol, correction)
    t = int(batch.ts_event[i])
    window = (t - NS_PER_S, t + NS_PER_S)
    now_view = vault.range(symbol, *window)
    past_view = vault.range(symbol, *window, known_at=before)
    tid = int(batch.trade_id[i])
    console.print(f"\n[bold]time travel[/] on {symbol} trade {tid} at {format_ns(t, tz)}:")
    price_now = now_view.loc[now_view.trade_id == tid, "price"].iloc[0]
    price_past = past_view.loc[past_view.trade_id == tid, "price"].iloc[0]
    console.print(f"  as known now:          price {price_now:,.2f} (edited)")
    console.print(f"  as known before edit:  price {price_past:,.2f}")
    last = vault.last(symbol, 5)
    console.print(f"\nlast 5 trades of {symbol}:")
    for ts, row in zip(pd.DatetimeIndex(last.index).asi8, last.itertuples(), strict=True):
        console.print(f"  {format_ns(int(ts), tz)}  #{row.trade_id}  {row.price:,.1f} x {row.qty}")
