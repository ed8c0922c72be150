"""``tickvault bench ...``: the benchmarks, each on its own store (tables: ``bench.tables``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from tickvault.bench import tables
from tickvault.cli.common import (
    POSITIVE,
    settings_of,
    valkey_url,
)
from tickvault.cli.output import console, err_console
from tickvault.config import hide_password


@click.group()
@click.option(
    "--url",
    callback=valkey_url,
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
    settings = settings_of(ctx)
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


@bench.command("store")
@click.option("--trades", type=POSITIVE, default=2_000_000, show_default=True)
@click.option(
    "--seed-trades",
    type=POSITIVE,
    default=None,
    help="Trades for the slow original layout (default: all).",
)
@click.option(
    "--repeats",
    type=POSITIVE,
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
    for shown in tables.store_table(result, trades):
        console.print(shown)


@bench.command("import")
@click.option("--trades", type=POSITIVE, default=2_000_000, show_default=True)
@click.option("--seed-trades", type=POSITIVE, default=100_000, show_default=True,
              help="Rows for the slow original design.")  # fmt: skip
@click.option("--repeats", type=POSITIVE, default=3, show_default=True)
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
    for shown in tables.import_table(result, trades):
        console.print(shown)


@bench.command("book")
@click.option("--trades-per-day", type=POSITIVE, default=None, help="Default: a full WIN day.")
@click.option("--queries", type=POSITIVE, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_book(ctx: click.Context, trades_per_day: int | None, queries: int, as_json: bool) -> None:
    """The book at random past times of a simulated day, against replaying the whole day."""
    from tickvault.bench.book import run_book_bench

    result = _bench_result(ctx, as_json, run_book_bench, trades_per_day=trades_per_day,
                           queries=queries)  # fmt: skip
    if result is None:
        return
    for shown in tables.book_table(result):
        console.print(shown)


@bench.command("live")
@click.option("--trades", type=POSITIVE, default=1_000_000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=50_000,
    show_default=True,
    help="Trades/s of the lag runs.",
)
@click.option("--fsync", default="", metavar="MODES",
              help="Also run tickvault under each AOF fsync mode, e.g. everysec,always "
              "(CONFIG SET appendfsync on the benchmark's server, restored after).")  # fmt: skip
@click.option("--wait-replicas", "wait", default="", metavar="COUNTS",
              help="Also run tickvault with valkey_wait_replicas set to each count, e.g. "
              "0,1 (WAIT after each write cycle; bench a store with replicas: --url).")  # fmt: skip
@click.option("--stages", is_flag=True,
              help="Split tickvault's lag into its stages (publisher queue, send and receive, "
              "handoff, wait for the writer, write) and count the bridge's garbage "
              "collections.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_live(ctx: click.Context, trades: int, rate: float, fsync: str, wait: str,
               stages: bool, as_json: bool) -> None:  # fmt: skip
    """Publisher process -> ZeroMQ -> bridge process -> Valkey, against the original design."""
    from tickvault.bench.live import run_live_bench

    modes = [m.strip() for m in fsync.split(",") if m.strip()]
    try:
        counts = [int(c) for c in wait.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter(f"{wait!r}: use counts such as 0,1",
                                 param_hint="--wait-replicas") from None  # fmt: skip
    if any(c < 0 for c in counts):
        raise click.BadParameter(f"{wait!r}: counts are 0 or more", param_hint="--wait-replicas")
    result = _bench_result(ctx, as_json, run_live_bench, trades=trades, rate=rate, fsync=modes,
                           wait_replicas=counts, stages=stages)  # fmt: skip
    if result is None:
        return
    for shown in tables.live_table(result, rate, trades):
        console.print(shown)


@bench.command("compact")
@click.option(
    "--trades",
    type=POSITIVE,
    default=1_000_000,
    show_default=True,
    help="Trades of the day captured live (WIN's pace: about 1.2M a day).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=50_000,
    show_default=True,
    help="Trades/s the publisher sends during the capture.",
)
@click.option(
    "--repeats",
    type=POSITIVE,
    default=3,
    show_default=True,
    help="Timed full-day reads (median reported).",
)
@click.option(
    "--seed-trades",
    type=POSITIVE,
    default=100_000,
    show_default=True,
    help="Trades for the original one-entry-per-trade layout.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_compact(ctx: click.Context, trades: int, rate: float, repeats: int, seed_trades: int,
                  as_json: bool) -> None:  # fmt: skip
    """A day captured live (publisher -> ZeroMQ -> bridge), its bytes per trade and
    full-day read rate before and after compaction, the compaction's time, and the same
    trades written in bulk and in the original layout, in one run."""
    from tickvault.bench.compact import run_compact_bench

    result = _bench_result(ctx, as_json, run_compact_bench, trades=trades, rate=rate,
                           repeats=repeats, seed_trades=seed_trades)  # fmt: skip
    if result is None:
        return
    for shown in tables.compact_table(result):
        console.print(shown)


@bench.command("dashboard")
@click.option("--trades", type=POSITIVE, default=1_000_000, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=20_000,
              show_default=True, help="Trades/s of the lag runs.")  # fmt: skip
@click.option("--clients", type=POSITIVE, default=10, show_default=True,
              help="Open dashboards (websocket clients) of the second run.")  # fmt: skip
@click.option("--pairs", type=POSITIVE, default=3, show_default=True,
              help="Interleaved pairs of runs (without, with the clients).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="No progress lines: only the JSON.")
@click.pass_context
def bench_dashboard(
    ctx: click.Context, trades: int, rate: float, clients: int, pairs: int, as_json: bool
) -> None:
    """The bridge path of `bench live` with 0, then CLIENTS, open dashboards on the same
    store, in interleaved pairs: throughput and lag p99 of every run, the medians and
    their ratios (one JSON object)."""
    from tickvault.bench.dashboard import run_dashboard_bench

    result = _bench_result(ctx, as_json, run_dashboard_bench, trades=trades, rate=rate,
                           clients=clients, pairs=pairs)  # fmt: skip
    if result is not None:
        click.echo(json.dumps(result))


@bench.command("features")
@click.option("--sessions", type=POSITIVE, default=31, show_default=True)
@click.option("--trades-per-session", type=POSITIVE, default=100_000, show_default=True)
@click.option("--queries", type=POSITIVE, default=300, show_default=True,
              help="Warm history-feature calls at random T.")  # fmt: skip
@click.option("--original-queries", type=POSITIVE, default=5, show_default=True,
              help="Requests of the original design (each reads 31 sessions).")  # fmt: skip
@click.option("--worker-trades", type=click.IntRange(min=0), default=300_000, show_default=True,
              help="Trades fed through the live worker process (0: skip).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_features(
    ctx: click.Context,
    sessions: int,
    trades_per_session: int,
    queries: int,
    original_queries: int,
    worker_trades: int,
    as_json: bool,
) -> None:
    """History features, training frames and live updates, against range queries + pandas."""
    from tickvault.bench.features import run_features_bench

    result = _bench_result(ctx, as_json, run_features_bench, sessions=sessions,
                           trades_per_session=trades_per_session, queries=queries,
                           original_queries=original_queries,
                           worker_trades=worker_trades)  # fmt: skip
    if result is None:
        return
    for shown in tables.features_table(result):
        console.print(shown)


@bench.command("formats")
@click.option("--trades", type=POSITIVE, default=500_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.pass_context
def bench_formats(ctx: click.Context, trades: int, as_json: bool) -> None:
    """Bytes per trade and rates by block size and codec (docs/storage-format.md)."""
    from tickvault.bench.store import run_format_sweep

    rows = _bench_result(ctx, as_json, run_format_sweep, n_trades=trades)
    if rows is None:
        return
    for shown in tables.formats_table(rows, trades):
        console.print(shown)


@bench.command("signals")
@click.option("--sessions", type=POSITIVE, default=5, show_default=True,
              help="Simulated past sessions the models are trained on.")  # fmt: skip
@click.option("--session-trades", type=POSITIVE, default=60_000, show_default=True,
              help="Trades per seeded session.")  # fmt: skip
@click.option("--realistic-seconds", type=POSITIVE, default=30, show_default=True,
              help="Seconds at the realistic pace (1k and 5k trades/s alternating).")  # fmt: skip
@click.option("--fast-seconds", type=POSITIVE, default=5, show_default=True)
@click.option("--fast-rate", type=POSITIVE, default=50_000, show_default=True,
              help="Trades/s of the fast pace.")  # fmt: skip
@click.option("--original-requests", type=POSITIVE, default=30, show_default=True,
              help="Requests of the original design (range query + pandas + predict).")  # fmt: skip
@click.option("--predict-rows", type=POSITIVE, default=2_000, show_default=True,
              help="Feature rows of the one-row predict cost.")  # fmt: skip
@click.option("--backtest-trades", type=click.IntRange(min=0), default=1_200_000,
              show_default=True, help="Trades of the backtest session (0: skip).")  # fmt: skip
@click.option("--estimator", default="lightgbm", show_default=True,
              help="The models' estimator (as tickvault ml train --estimator).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_signals(
    ctx: click.Context,
    sessions: int,
    session_trades: int,
    realistic_seconds: int,
    fast_seconds: int,
    fast_rate: int,
    original_requests: int,
    predict_rows: int,
    backtest_trades: int,
    estimator: str,
    as_json: bool,
) -> None:
    """Tick -> signal through the live processes (publisher, feature worker, model worker,
    subscriber), against the original per-request range query + pandas + predict; one-row
    predict cost; backtest trades/s. Always on temporary servers of its own."""
    from tickvault.bench.signals import run_signals_bench

    result = _bench_result(ctx, as_json, run_signals_bench, sessions=sessions,
                           session_trades=session_trades, realistic_seconds=realistic_seconds,
                           fast_seconds=fast_seconds, fast_rate=fast_rate,
                           original_requests=original_requests, predict_rows=predict_rows,
                           backtest_trades=backtest_trades, estimator=estimator)  # fmt: skip
    if result is None:
        return
    for shown in tables.signals_table(result):
        console.print(shown)


@bench.command("compare")
@click.option("--trades", type=POSITIVE, default=2_000_000, show_default=True)
@click.option("--repeats", type=POSITIVE, default=3, show_default=True,
              help="Timed runs of each write, read and as-of read (median reported).")  # fmt: skip
@click.option("--rounds", type=POSITIVE, default=3, show_default=True,
              help="Interleaved rounds of both sides (median of the rounds).")  # fmt: skip
@click.option("--history-days", type=POSITIVE, default=30, show_default=True,
              help="Days stored for the long-history side of 'slice vs history'.")  # fmt: skip
@click.option("--history-trades-per-day", type=POSITIVE, default=100_000, show_default=True)
@click.option("--arcticdb-python", default=None, metavar="PATH",
              help="A Python that has ArcticDB (default: .venv-compare/bin/python, made "
              "by `make compare-env`).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_compare(
    ctx: click.Context,
    trades: int,
    repeats: int,
    rounds: int,
    history_days: int,
    history_trades_per_day: int,
    arcticdb_python: str | None,
    as_json: bool,
) -> None:
    """tickvault beside ArcticDB (LMDB) on the same simulated trades: bulk write, full read,
    1-minute slice, as-of read, bytes per trade; then a 1-minute slice with 1 day stored
    against HISTORY_DAYS. Without ArcticDB the tickvault side runs alone and says how to
    add it."""
    from tickvault.bench.compare import run_compare_bench

    result = _bench_result(ctx, as_json, run_compare_bench, trades=trades, repeats=repeats,
                           rounds=rounds, history_days=history_days,
                           history_trades_per_day=history_trades_per_day,
                           arcticdb_python=arcticdb_python)  # fmt: skip
    if result is None:
        return
    for shown in tables.compare_table(result):
        console.print(shown)


@bench.command("scale")
@click.option("--trades", type=POSITIVE, default=1_000_000, show_default=True,
              help="Trades per cell, split evenly over the symbols.")  # fmt: skip
@click.option("--symbols", type=click.IntRange(1, 100), default=50, show_default=True)
@click.option("--bridges", default="1,2,4", show_default=True, metavar="COUNTS",
              help="Pool bridges of each cell (processes).")  # fmt: skip
@click.option("--original-trades", type=click.IntRange(min=0), default=100_000,
              show_default=True, help="Trades of the original design's row (0: skip).")  # fmt: skip
@click.option("--live-rate", type=click.FloatRange(min=0), default=5_000, show_default=True,
              help="Trades/s (in all) of the paced cell, one bridge: bytes/trade of live "
              "blocks (0: skip).")  # fmt: skip
@click.option("--live-trades", type=click.IntRange(min=0), default=50_000, show_default=True,
              help="Trades of the paced cell.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bench_scale(ctx: click.Context, trades: int, symbols: int, bridges: str,
                original_trades: int, live_rate: float, live_trades: int,
                as_json: bool) -> None:  # fmt: skip
    """Ingest (publisher process -> pool bridges -> store) and read throughput of one node
    against a private 3-node Valkey Cluster, with 1, 2, 4 pool bridges over SYMBOLS
    symbols; CPU seconds per role, bytes/trade, Valkey memory. Always on stores of its
    own (a temporary server, a temporary local cluster)."""
    from tickvault.bench.scale import run_scale_bench

    try:
        counts = [int(c) for c in bridges.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter(f"{bridges!r}: use counts such as 1,2,4",
                                 param_hint="--bridges") from None  # fmt: skip
    if not counts or any(c < 1 for c in counts):
        raise click.BadParameter(f"{bridges!r}: counts of 1 or more", param_hint="--bridges")
    result = _bench_result(ctx, as_json, run_scale_bench, trades=trades, symbols=symbols,
                           bridges=counts, original_trades=original_trades,
                           live_rate=live_rate, live_trades=live_trades)  # fmt: skip
    if result is None:
        return
    for shown in tables.scale_table(result):
        console.print(shown)
