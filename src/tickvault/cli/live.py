"""The live-path commands: ``demo``, ``publish``, ``bridge``, ``tail``, ``replay`` and
``feed profitdll``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tickvault.cli.common import (
    open_vault,
    parse_speed,
    parse_symbols,
    settings_of,
    stop_on_signals,
)
from tickvault.cli.output import console, err_console
from tickvault.config import Settings
from tickvault.errors import TickvaultError


@click.command()
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
@click.option(
    "--seed-sessions",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="First store this many simulated sessions before the live ones as imported "
    "history (multi-day simulation, so history features have something to find).",
)
@click.pass_context
def demo(
    ctx: click.Context,
    speed: str,
    duration: float | None,
    symbols: str,
    seed: int,
    keep: bool,
    seed_sessions: int,
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
    with open_vault(ctx) as vault:
        run_live_demo(
            vault,
            parse_symbols(symbols) or list(DEMO_SYMBOLS),
            speed=parse_speed(speed),
            duration_s=duration,
            console=console,
            seed=seed,
            keep=keep,
            seed_sessions=seed_sessions,
        )


@click.command()
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

    settings = settings_of(ctx)
    feeder = SimulatedFeeder(
        parse_symbols(symbols) or [], seed=seed, speed=parse_speed(speed), days=days
    )
    _run_feeder(feeder, settings)


@click.command()
@click.option("--symbols", help="Only these symbols (comma-separated; default: all).")
@click.option("--connect", "host", help="Publisher host (default: zmq_host).")
@click.option(
    "--pool",
    is_flag=True,
    help="Be one worker of a pool sharing --symbols: start several (on any hosts); each "
    "symbol is stored by exactly one of them at a time (leases in Valkey), and a dead "
    "worker's symbols move to the others within pool_lease_ttl_ms.",
)
@click.option("--worker-id", help="This pool worker's name (default: host:pid).")
@click.pass_context
def bridge(
    ctx: click.Context, symbols: str | None, host: str | None, pool: bool, worker_id: str | None
) -> None:
    """Store what publishers send into Valkey, until SIGINT/SIGTERM (then flush)."""
    import logging

    from tickvault.live.bridge import Bridge, tune_for_latency
    from tickvault.transport.endpoints import Endpoints

    tune_for_latency()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if pool:
        _bridge_pool(ctx, parse_symbols(symbols) or [], host, worker_id)
        return
    with open_vault(ctx) as vault:
        eps = Endpoints.from_settings(vault.settings, host)
        b = Bridge(vault, symbols=parse_symbols(symbols), endpoints=[eps])
        stop_on_signals(b.stop)
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
        if s.unstored:
            err_console.print(s.unstored_summary(), highlight=False)
            ctx.exit(1)


def _bridge_pool(
    ctx: click.Context, symbols: list[str], host: str | None, worker_id: str | None
) -> None:
    """``bridge --pool``: one worker of the bridge pool (``live.pool``)."""
    import os
    import socket
    import threading

    from tickvault.live.bridge import Bridge
    from tickvault.live.pool import LeaseKeeper, run_pool
    from tickvault.storage.leases import Fence
    from tickvault.transport.endpoints import Endpoints
    from tickvault.vault import Vault

    if not symbols:
        raise click.UsageError("bridge --pool needs --symbols (the symbols the pool shares)")
    stop = threading.Event()
    stop_on_signals(stop.set)
    stored: dict[str, int] = {}
    with open_vault(ctx) as vault:
        eps = Endpoints.from_settings(vault.settings, host)
        keeper = LeaseKeeper(vault, "bridge", symbols, worker_id)
        status = f"bridge:{socket.gethostname()}:{os.getpid()}:pool"
        bridges: list[Bridge] = []

        def make(own: Vault, wanted: list[str], fence: Fence, lost: Any) -> Bridge:
            for b in bridges:  # the previous instance's figures
                for sym, n in b.stats.stored_by_symbol.items():
                    stored[sym] = stored.get(sym, 0) + n
            bridges.clear()
            b = Bridge(own, symbols=wanted, endpoints=[eps], fence=fence,
                       on_lease_lost=lost, status_name=status)  # fmt: skip
            bridges.append(b)
            return b

        def changed(wanted: list[str]) -> None:
            err_console.print(f"bridge pool {keeper.worker_id}: storing "
                              f"{', '.join(wanted) or 'nothing'}", highlight=False)  # fmt: skip

        err_console.print(
            f"bridge pool worker {keeper.worker_id} ({len(symbols)} symbols, leases of "
            f"{vault.settings.pool_lease_ttl_ms} ms): {eps.ticks} -> {vault.url}; "
            "SIGINT/SIGTERM stop it",
            highlight=False,
        )
        run_pool(vault, keeper, make, stop, on_change=changed)
        for b in bridges:
            for sym, n in b.stats.stored_by_symbol.items():
                stored[sym] = stored.get(sym, 0) + n
        err_console.print(f"bridge pool worker stopped: {sum(stored.values()):,} trades stored "
                          f"({', '.join(f'{k} {v:,}' for k, v in sorted(stored.items()))})",
                          highlight=False)  # fmt: skip


@click.command()
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

    settings = settings_of(ctx)
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
    stop_on_signals(sub.stop)
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


@click.command()
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

    settings = settings_of(ctx)
    wanted = parse_symbols(symbols)
    options = ImportOptions(symbols=frozenset(wanted) if wanted else None,
                            skip_bad_rows=skip_bad_rows)  # fmt: skip
    pace = parse_speed(speed)
    if not store:
        feeder = FileFeeder(list(files), settings.tz, speed=pace, options=options)
        err_console.print(f"replaying {feeder.total:,} trades of {', '.join(feeder.symbols)}")
        _run_feeder(feeder, settings)
        return
    from tickvault.live.pipeline import Pipeline

    with open_vault(ctx) as vault:  # the store first: an unreachable one fails before any work
        feeder = FileFeeder(list(files), settings.tz, speed=pace, options=options)
        err_console.print(f"replaying {feeder.total:,} trades of {', '.join(feeder.symbols)}")
        pipe = Pipeline(vault, feeder).start()
        stop_on_signals(pipe.feed.stop_event.set)
        while pipe.feed.running:
            pipe.feed.stop_event.wait(0.5)
        pipe.stop()
        err_console.print(
            f"replayed {feeder.delivered:,} trades; stored {pipe.bridge.stats.trades_stored:,}"
        )
        if pipe.bridge.stats.unstored:
            err_console.print(pipe.bridge.stats.unstored_summary(), highlight=False)
            ctx.exit(1)


@click.group()
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
    settings = settings_of(ctx)
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
    from tickvault.live.pubstatus import PublisherStatus
    from tickvault.transport.publisher import Publisher

    with Publisher(settings) as publisher, PublisherStatus(publisher, settings).start():
        runner = FeedRunner(feeder, publisher)
        stop_on_signals(runner.stop_event.set)
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
