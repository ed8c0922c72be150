"""``tickvault ml run``: the live model worker (``live.models.ModelWorker``). A plain
click command: ``cli/main.py`` attaches it to the ``ml`` group."""

from __future__ import annotations

from typing import Any

import click

from tickvault.cli.common import open_vault, parse_symbols, stop_on_signals
from tickvault.cli.output import err_console


@click.command("run")
@click.option("--symbols", required=True, help="Symbols to run the models of (comma-separated).")
@click.option("--connect", "host", help="Feature worker host (default: zmq_host).")
@click.option("--reset", is_flag=True,
              help="Delete the symbols' stored signals and the worker's cursor first.")  # fmt: skip
@click.option(
    "--pool",
    is_flag=True,
    help="Be one worker of a pool sharing --symbols: start several (on any hosts); each "
    "symbol is decided by exactly one of them at a time (leases in Valkey), and a dead "
    "worker's symbols move to the others within pool_lease_ttl_ms. A pool worker "
    "publishes its signals only with --publish-ports.",
)
@click.option("--worker-id", help="This pool worker's name (default: host:pid).")
@click.option("--publish-ports", help="With --pool: SIGNALS,REPLAY ports to publish the "
              "signals on (one pair per worker on a host).")  # fmt: skip
@click.pass_context
def run(
    ctx: click.Context,
    symbols: str,
    host: str | None,
    reset: bool,
    pool: bool,
    worker_id: str | None,
    publish_ports: str | None,
) -> None:
    """Predict on every feature row of SYMBOLS with the promoted models (the history
    model within the latency budget signal_deadline_ms, else the fast one), store the
    signals in signals:{SYMBOL} and publish them on zmq_signals_port, until
    SIGINT/SIGTERM. Restarted, it continues from its cursor (signals:{SYMBOL}:cursor)."""
    import logging

    from tickvault.engine.signals import SignalStore
    from tickvault.live.bridge import tune_for_latency
    from tickvault.live.models import ModelWorker, status_line

    tune_for_latency()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    wanted = parse_symbols(symbols) or []
    with open_vault(ctx) as vault:
        if reset:
            store = SignalStore(vault)
            for name in wanted:
                store.delete(name)
        s = vault.settings
        features = f"tcp://{host or s.zmq_host}:{s.zmq_features_port}"
        if pool:
            if reset:
                raise click.UsageError("--pool does not go with --reset (it would delete "
                                       "what another worker of the pool stores)")  # fmt: skip
            _pool(vault, wanted, features, worker_id, publish_ports)
            return
        worker = ModelWorker(vault, wanted, features_endpoint=features)
        stop_on_signals(worker.stop)
        pub = worker.publisher
        err_console.print(
            f"models: {features} feature.{{SYMBOL}} -> {vault.url} signals:{{SYMBOL}}, "
            f"published on {pub.endpoints.signals if pub else '-'} (replay "
            f"{pub.endpoints.replay if pub else '-'}); deadline {s.signal_deadline_ms:g} ms; "
            "SIGINT/SIGTERM stop it",
            highlight=False,
        )
        try:
            worker.run()
        finally:
            worker.close()
        for sym in worker.symbols:
            err_console.print("models stopped: " + status_line(sym, worker.stats(sym)),
                              highlight=False)  # fmt: skip


def _pool(vault: Any, symbols: list[str], features: str, worker_id: str | None,
          publish_ports: str | None) -> None:  # fmt: skip
    """``ml run --pool``: one worker of the model pool (``live.pool``)."""
    import threading

    from tickvault.live.models import ModelWorker, signal_endpoints
    from tickvault.live.pool import LeaseKeeper, run_pool

    endpoints = None
    if publish_ports:
        try:
            sig, rep = (int(p) for p in publish_ports.split(","))
        except ValueError:
            raise click.UsageError(
                f"--publish-ports: give two ports, SIGNALS,REPLAY (got {publish_ports!r})"
            ) from None
        endpoints = signal_endpoints(vault.settings.model_copy(
            update={"zmq_signals_port": sig, "zmq_signals_replay_port": rep}))  # fmt: skip
    stop = threading.Event()
    stop_on_signals(stop.set)
    keeper = LeaseKeeper(vault, "models", symbols, worker_id)

    def make(own: Any, wanted: list[str], fence: Any, lost: Any) -> ModelWorker:
        return ModelWorker(own, wanted, features_endpoint=features, endpoints=endpoints,
                           publish=endpoints is not None, fence=fence,
                           on_lease_lost=lost)  # fmt: skip

    def changed(wanted: list[str]) -> None:
        err_console.print(f"models pool {keeper.worker_id}: deciding "
                          f"{', '.join(wanted) or 'nothing'}", highlight=False)  # fmt: skip

    err_console.print(
        f"models pool worker {keeper.worker_id} ({len(symbols)} symbols, leases of "
        f"{vault.settings.pool_lease_ttl_ms} ms): {features} -> {vault.url}; "
        "SIGINT/SIGTERM stop it",
        highlight=False,
    )
    run_pool(vault, keeper, make, stop, on_change=changed)
    err_console.print("models pool worker stopped", highlight=False)
