"""``tickvault demo``: the live pipeline on the embedded Valkey, with a terminal view.

Simulator -> Publisher -> ZeroMQ -> Bridge -> Valkey, all real, in one process.
The view shows per symbol what is stored and readable (``Vault.last``,
``Vault.book`` and ``Vault.stats``, not counters of the feeder), and the
pipeline's health.
Ctrl-C (or ``--duration``) stops the feeder, stores what was published, and
leaves the data queryable.

Simulated data never mixes with other data: the demo stores under its own symbols
(``WINSIM``, ``WDOSIM`` unless told otherwise), records them in ``DEMO_KEY``, and
each run replaces what the previous demo stored there (``keep`` adds to it). It
refuses symbols that hold data it did not write. Faster than real time it
simulates the most recent completed sessions, so no trade is dated after the
moment it is stored.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import click
import orjson
import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tickvault.errors import ServerError
from tickvault.feeds.sim import SimulatedFeeder
from tickvault.live.pipeline import Pipeline
from tickvault.storage.connection import translate
from tickvault.storage.keys import DEMO_KEY, trades_key
from tickvault.timeutil import format_ns, now_ns
from tickvault.vault import Vault

DEMO_SYMBOLS = ("WINSIM", "WDOSIM")
"""The demo's own symbols: simulated WIN and WDO mini futures that no real feed uses."""

_REFRESH_S = 0.5
_RATE_WINDOW_S = 2.0


@dataclass
class _SymbolView:
    last_price: float = float("nan")
    last_ts: int = 0
    bytes_per_trade: float = float("nan")
    bid: str = "-"
    ask: str = "-"


def _view(
    pipe: Pipeline,
    symbols: list[str],
    rates: dict[str, float],
    views: dict[str, _SymbolView],
    speed: str,
    elapsed: float,
    tz: ZoneInfo,
) -> Group:
    bridge, sub = pipe.bridge, pipe.bridge.subscriber.stats
    table = Table(title=f"tickvault live: simulator at {speed} pace, {elapsed:,.0f} s")
    columns = ("symbol", "stored", "trades/s", "last price", "bid", "ask",
               "last trade (B3 time)", "B/trade")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for s in symbols:
        v = views[s]
        table.add_row(
            s,
            f"{bridge.stats.stored_by_symbol[s]:,}",
            f"{rates.get(s, 0.0):,.0f}",
            f"{v.last_price:,.1f}",
            v.bid,
            v.ask,
            format_ns(v.last_ts, tz)[:23] if v.last_ts else "-",
            f"{v.bytes_per_trade:.1f}",
        )
    p50, p99 = bridge.stats.lag_percentiles(50, 99)
    rejected = sum(bridge.stats.rejected.values())
    health = Text.assemble(
        ("publish->stored lag ", "bold"), f"p50 {p50:.2f} ms  p99 {p99:.2f} ms   ",
        ("messages ", "bold"), f"{sub.messages:,}   ",
        ("gaps ", "bold"), f"detected {sub.gaps_detected}, "
        f"recovered msgs {sub.recovered_messages}, lost msgs {sub.lost_messages}   ",
        ("duplicates ", "bold"), f"{sub.duplicates}   ",
        ("book updates ", "bold"), f"{bridge.stats.book_updates_stored:,}   ",
        ("rejected ", "bold"), f"{rejected}",
    )  # fmt: skip
    return Group(table, health, Text("Ctrl-C stops; the data stays queryable.", style="dim"))


def _read_views(
    vault: Vault, symbols: Sequence[str], views: dict[str, _SymbolView], *, stats: bool
) -> None:
    """Last price, best bid/ask and (when ``stats``) bytes per trade of each symbol."""
    for s in symbols:
        last = vault.last_columns(s, 1)
        if len(last["price"]):
            views[s].last_price = float(last["price"][-1])
            views[s].last_ts = int(last["ts_event"][-1])
            _best(vault, s, views[s])
    if stats:
        for s in symbols:
            streams = vault.stats(s)
            records = sum(x.trades for x in streams)
            if records:
                views[s].bytes_per_trade = sum(x.memory_bytes for x in streams) / records


def _best(vault: Vault, symbol: str, view: _SymbolView) -> None:
    """Best bid and ask (qty x price) of the book as stored, read back from Valkey."""
    book = vault.book(symbol, depth=1)
    for side, frame in (("bid", book.bids), ("ask", book.asks)):
        if len(frame):
            text = f"{int(frame['qty'].iloc[0])} x {float(frame['price'].iloc[0]):,.1f}"
            setattr(view, side, text)


@translate  # the demo's own keys, through the raw client: Valkey errors translated here
def claim_symbols(
    vault: Vault, symbols: Sequence[str], *, keep: bool, run: dict[str, object]
) -> list[str]:
    """Make ``symbols`` the demo's before it writes: a symbol the previous demo wrote is
    emptied (unless ``keep``); a symbol holding data the demo did not write is refused
    (unless ``keep``: then the demo adds to it, and never claims it). Returns what
    was replaced, for the user."""
    r, tz = vault.client, vault.settings.tz
    owned = {k.decode(): orjson.loads(v) for k, v in r.hgetall(DEMO_KEY).items()}
    replaced, clear, claim = [], [], []
    for symbol in symbols:
        keys = list(r.scan_iter(match=f"*{{{symbol}}}*", count=1000))
        seeded = symbol in owned and owned[symbol].get("seed_sessions")  # its own history
        mine = symbol in owned and (seeded or not r.exists(trades_key(symbol, "historical")))
        if keys and not keep and not mine:
            raise click.ClickException(
                f"{symbol} holds data the demo did not write; the demo never mixes "
                f"simulated trades into it: leave out --symbols (the demo's own are "
                f"{','.join(DEMO_SYMBOLS)}), choose others, or add --keep to add to it anyway"
            )
        if keys and not keep:
            clear += keys
            started = owned[symbol].get("started_ns")
            when = f" (run of {format_ns(started, tz)[:19]})" if started else ""
            replaced.append(f"{symbol}{when}")
        if mine or not keys:
            claim.append(symbol)
    if clear:
        r.delete(*clear)
    if claim:
        r.hset(DEMO_KEY, mapping={s: orjson.dumps(run) for s in claim})
    return replaced


def run_live_demo(
    vault: Vault,
    symbols: list[str],
    *,
    speed: float | None,
    duration_s: float | None,
    console: Console,
    seed: int = 0,
    keep: bool = False,
    seed_sessions: int = 0,
) -> None:
    tz = vault.settings.tz
    speed_label = "max" if speed is None else f"{speed:g}x"
    feeder = SimulatedFeeder(symbols, seed=seed, speed=speed, days=1 if speed else 5,
                             chained=seed_sessions > 0)  # fmt: skip
    run = {"started_ns": now_ns(), "speed": speed_label, "seed": seed,
           "sim_start_ns": int(feeder.start.timestamp() * 1e9),
           "seed_sessions": seed_sessions}  # fmt: skip
    replaced = claim_symbols(vault, feeder.symbols, keep=keep, run=run)
    if replaced:
        console.print(
            f"replaced the previous demo's data of {', '.join(replaced)} "
            "(--keep adds to it instead)",
            highlight=False,
        )
    if seed_sessions:
        from tickvault.live.seed import seed_sessions as seed_history

        for symbol in feeder.symbols:
            rep = seed_history(vault, symbol, seed_sessions, before=feeder.sessions()[0],
                               trades_per_day=feeder.trades_per_day, seed=seed)  # fmt: skip
            console.print(
                f"seeded {symbol}: {len(rep.stored)} past sessions stored as imported history "
                f"({rep.trades:,} trades), {len(rep.skipped)} already there",
                highlight=False,
            )
    sim_start = format_ns(int(feeder.start.timestamp() * 1e9), tz)[:19]
    sessions = feeder.sessions()
    past = "" if speed is not None and speed <= 1 else (
        f" (the {len(sessions)} latest completed session{'s' if len(sessions) > 1 else ''}: "
        "faster than real time, the simulation is of the past)"
    )  # fmt: skip
    console.print(
        f"[bold]tickvault demo[/]: simulated {', '.join(feeder.symbols)} from "
        f"{sim_start} (B3 time){past} at {speed_label} pace, "
        f"Valkey {vault.url} ({'embedded' if vault.embedded else 'external'}), "
        f"ZeroMQ ticks on {vault.settings.zmq_host}:{vault.settings.zmq_ticks_port}"
    )
    pipe = Pipeline(vault, feeder).start()
    history: dict[str, collections.deque[tuple[float, int]]] = {
        s: collections.deque() for s in feeder.symbols
    }
    views = {s: _SymbolView() for s in feeder.symbols}
    t0 = time.monotonic()
    last_stats = 0.0
    interrupted = False
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                now = time.monotonic()
                rates = {}
                for s in feeder.symbols:
                    h = history[s]
                    h.append((now, pipe.bridge.stats.stored_by_symbol[s]))
                    while len(h) > 2 and now - h[0][0] > _RATE_WINDOW_S:
                        h.popleft()
                    dt = h[-1][0] - h[0][0]
                    rates[s] = (h[-1][1] - h[0][1]) / dt if dt > 0 else 0.0
                # Valkey may be restarting: the bridge holds and retries, the view waits
                with contextlib.suppress(ServerError):
                    _read_views(vault, feeder.symbols, views, stats=now - last_stats > 2.0)
                if now - last_stats > 2.0:
                    last_stats = now
                live.update(_view(pipe, list(feeder.symbols), rates, views, speed_label,
                                  now - t0, tz))  # fmt: skip
                if duration_s is not None and now - t0 >= duration_s:
                    break
                if not pipe.feed.running:
                    break
                time.sleep(_REFRESH_S)
    except KeyboardInterrupt:
        interrupted = True
    console.print("\nstopping: storing what was published..." if interrupted else "\nstopping...")
    complete = pipe.stop()
    if pipe.feed.error is not None:
        console.print(f"[red]the feeder failed: {pipe.feed.error}[/]")
    stats = pipe.bridge.stats
    sub = pipe.bridge.subscriber.stats
    p50, p99 = stats.lag_percentiles(50, 99)
    console.print(
        f"stored {stats.trades_stored:,} trades in {stats.writes:,} writes "
        f"(publish->stored lag p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
        f"gaps detected {sub.gaps_detected}, messages recovered {sub.recovered_messages}, "
        f"lost {sub.lost_messages})" + ("" if complete else " [red]- not all stored in time[/]")
    )
    symbol = feeder.symbols[0]
    frame = vault.last(symbol, 5)
    if len(frame):
        console.print(f"last 5 trades of {symbol}, read back from Valkey:")
        for ts, row in zip(pd.DatetimeIndex(frame.index).asi8, frame.itertuples(), strict=True):
            console.print(
                f"  {format_ns(int(ts), tz)}  #{row.trade_id}  {row.price:,.1f} x {row.qty}"
            )
    console.print(
        f"[dim]query them: tickvault query {symbol} --last 20   "
        f"(time travel: add --known-at '<time>')[/]"
    )
