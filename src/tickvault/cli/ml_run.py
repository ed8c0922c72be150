"""``tickvault ml run``: the live model worker (``live.models.ModelWorker``). A plain
click command: ``cli/main.py`` attaches it to the ``ml`` group."""

from __future__ import annotations

import click

from tickvault.cli.common import open_vault, parse_symbols, stop_on_signals
from tickvault.cli.output import err_console


@click.command("run")
@click.option("--symbols", required=True, help="Symbols to run the models of (comma-separated).")
@click.option("--connect", "host", help="Feature worker host (default: zmq_host).")
@click.option("--reset", is_flag=True,
              help="Delete the symbols' stored signals and the worker's cursor first.")  # fmt: skip
@click.pass_context
def run(ctx: click.Context, symbols: str, host: str | None, reset: bool) -> None:
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
