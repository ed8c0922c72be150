"""The live feature worker's commands: ``run`` (the worker process) and ``check`` (live
vs recomputed parity). Plain click commands: the ``features`` group attaches them."""

from __future__ import annotations

from typing import Any

import click

from tickvault.cli.common import POSITIVE, open_vault, parse_symbols, stop_on_signals
from tickvault.cli.output import console, err_console


@click.command("run")
@click.option("--symbols", required=True, help="Symbols to compute features for (comma-separated).")
@click.option(
    "--seed-sessions",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="First store this many simulated past sessions (before today) as imported "
    "history, skipping sessions already stored.",
)
@click.option("--seed-trades-per-day", type=POSITIVE, help="Trades per seeded session.")
@click.option("--connect", "host", help="Publisher host (default: zmq_host).")
@click.option("--reset", is_flag=True, help="Delete the symbols' stored rows and cursor first.")
@click.option(
    "--models",
    "inline_models",
    is_flag=True,
    help="Also run the model worker in this process (inline): each cycle's rows are "
    "decided before they are stored, and signals go out on zmq_signals_port as with "
    "tickvault ml run (which must then not run for these symbols). One hop and one "
    "store round trip less from tick to signal.",
)
@click.option(
    "--pool",
    is_flag=True,
    help="Be one worker of a pool sharing --symbols: start several (on any hosts); each "
    "symbol's rows are computed and stored by exactly one of them at a time (leases in "
    "Valkey), and a dead worker's symbols move to the others within pool_lease_ttl_ms. "
    "A pool worker publishes its rows only with --publish-port.",
)
@click.option("--worker-id", help="This pool worker's name (default: host:pid).")
@click.option(
    "--publish-port",
    type=click.IntRange(1, 65535),
    help="With --pool: publish the rows on this port (one per worker on a host).",
)
@click.pass_context
def run(
    ctx: click.Context,
    symbols: str,
    seed_sessions: int,
    seed_trades_per_day: int | None,
    host: str | None,
    reset: bool,
    inline_models: bool,
    pool: bool,
    worker_id: str | None,
    publish_port: int | None,
) -> None:
    """Compute features live from the trade and book topics, store them in
    features:{SYMBOL} and publish them on zmq_features_port, until SIGINT/SIGTERM
    (then flush). Restarted, it continues from its cursor. With --models, the model
    worker runs inline (see the option)."""
    import datetime as dt
    import logging
    import threading

    from tickvault.engine.rows import FeatureRows
    from tickvault.live.bridge import tune_for_latency
    from tickvault.live.features import FeatureWorker
    from tickvault.live.seed import seed_sessions as seed
    from tickvault.transport.endpoints import Endpoints

    tune_for_latency()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    wanted = parse_symbols(symbols) or []
    stopped = threading.Event()
    workers: list[FeatureWorker] = []

    def stop() -> None:  # a signal during seeding or warm-up stops the run cleanly too
        stopped.set()
        for w in workers:
            w.stop()

    stop_on_signals(stop)
    if pool and (reset or inline_models):
        raise click.UsageError(
            "--pool does not go with --reset (it would delete rows another worker of the "
            "pool writes) nor --models (run the model worker on its own)"
        )
    with open_vault(ctx) as vault:
        if reset:
            rows = FeatureRows(vault)
            for s in wanted:
                rows.delete(s)
        if seed_sessions:
            today = dt.datetime.now(vault.settings.tz).date()
            for s in wanted:
                if stopped.is_set():
                    break
                rep = seed(vault, s, seed_sessions, before=today,
                           trades_per_day=seed_trades_per_day)  # fmt: skip
                err_console.print(
                    f"seeded {s}: {len(rep.stored)} sessions stored ({rep.trades:,} trades), "
                    f"{len(rep.skipped)} already there",
                    highlight=False,
                )
        eps = Endpoints.from_settings(vault.settings, host)
        if pool:
            if not stopped.is_set():
                _pool(vault, wanted, eps, worker_id, publish_port, stopped)
            return
        models = None
        if inline_models:
            from tickvault.live.models import ModelWorker, status_line

            models = ModelWorker(vault, wanted, inline=True)
        try:
            worker = FeatureWorker(vault, wanted, endpoints=[eps],
                                   on_rows=models.on_columns if models else None)  # fmt: skip
        except BaseException:
            if models is not None:
                models.close()
            raise
        workers.append(worker)
        if stopped.is_set():
            worker.stop()
        err_console.print(
            f"features: {eps.ticks} + {eps.book} -> {vault.url} features:{{SYMBOL}}, "
            f"published on {worker.publisher.endpoint if worker.publisher else '-'}; "
            "SIGINT/SIGTERM stop it",
            highlight=False,
        )
        try:
            if models is not None:
                models.start_inline()
                err_console.print(f"models inline: signals on {vault.settings.zmq_signals_port}",
                                  highlight=False)  # fmt: skip
            worker.run()
        finally:
            worker.subscriber.close()
            if worker.publisher is not None:
                worker.publisher.close()
            if models is not None:
                models.close()
                for s in wanted:
                    err_console.print(f"models stopped: {status_line(s, models.stats(s))}",
                                      highlight=False)  # fmt: skip
        st = worker.stats
        err_console.print(
            f"features stopped: {st.trades:,} trades, {st.rows:,} rows in {st.writes:,} writes; "
            f"skipped {st.skipped_duplicates} repeated, {st.skipped_late} late, "
            f"{st.skipped_corrections} corrections; {st.gaps} gaps",
            highlight=False,
        )


def _pool(vault: Any, symbols: list[str], eps: Any, worker_id: str | None,
          publish_port: int | None, stopped: Any) -> None:  # fmt: skip
    """``features run --pool``: one worker of the feature pool (``live.pool``)."""
    from tickvault.live.features import FeatureWorker
    from tickvault.live.pool import LeaseKeeper, run_pool

    keeper = LeaseKeeper(vault, "features", symbols, worker_id)
    endpoint = f"tcp://{vault.settings.zmq_host}:{publish_port}" if publish_port else None
    totals = {"rows": 0, "fenced": 0}
    workers: list[FeatureWorker] = []

    def count() -> None:
        for w in workers:
            totals["rows"] += sum(w.stats.rows_by_symbol.values())
            totals["fenced"] += w.stats.fenced_writes
        workers.clear()

    def make(own: Any, wanted: list[str], fence: Any, lost: Any) -> FeatureWorker:
        count()
        w = FeatureWorker(own, wanted, endpoints=[eps], publish=endpoint is not None,
                          publish_endpoint=endpoint, fence=fence, on_lease_lost=lost)  # fmt: skip
        workers.append(w)
        return w

    def changed(wanted: list[str]) -> None:
        err_console.print(f"features pool {keeper.worker_id}: computing "
                          f"{', '.join(wanted) or 'nothing'}", highlight=False)  # fmt: skip

    err_console.print(
        f"features pool worker {keeper.worker_id} ({len(symbols)} symbols, leases of "
        f"{vault.settings.pool_lease_ttl_ms} ms): {eps.ticks} + {eps.book} -> {vault.url}"
        f"{', published on ' + endpoint if endpoint else ''}; SIGINT/SIGTERM stop it",
        highlight=False,
    )
    run_pool(vault, keeper, make, stopped, on_change=changed)
    count()
    err_console.print(f"features pool worker stopped: {totals['rows']:,} rows stored; "
                      f"{totals['fenced']} writes refused by the lease fence",
                      highlight=False)  # fmt: skip


@click.command("check")
@click.argument("symbol")
@click.option("--start", required=True, help="First T to check (time; naive = exchange time).")
@click.option("--end", required=True, help="End of the range (exclusive).")
@click.option("--limit", type=POSITIVE, default=50, show_default=True, help="Differences shown.")
@click.pass_context
def check(ctx: click.Context, symbol: str, start: str, end: str, limit: int) -> None:
    """Recompute from the store what the live worker wrote for SYMBOL with T in
    [START, END) and report every difference (exit 1 when there is any)."""
    from rich.table import Table

    from tickvault.engine.parity import check_rows, format_report
    from tickvault.timeutil import format_ns

    with open_vault(ctx) as vault:
        report = check_rows(vault, symbol, start, end)
        tz = vault.settings.tz
        for line in format_report(report, tz):
            console.print(line, highlight=False)
        if not report.differences.empty:
            table = Table(title=f"differences (first {limit})")
            for col in ("T", "feature", "live", "recomputed"):
                table.add_column(col)
            head = report.differences.head(limit)
            for t, feature, live, recomputed in zip(
                head["T"].tolist(), head["feature"], head["live"], head["recomputed"],
                strict=True,
            ):  # fmt: skip
                table.add_row(format_ns(int(t), tz), str(feature), str(live), str(recomputed))
            console.print(table)
        for what, ts in (("missing", report.missing), ("extra", report.extra)):
            if ts:
                shown = ", ".join(format_ns(t, tz) for t in ts[:10])
                console.print(f"{what} rows at T = {shown}{' ...' if len(ts) > 10 else ''}")
        if not report.ok:
            ctx.exit(1)
