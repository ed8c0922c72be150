"""``tickvault chaos``: the fault-injection suite (``bench.chaos``), bounded and
self-stopping, on a temporary server of its own."""

from __future__ import annotations

import json

import click

from tickvault.bench import tables
from tickvault.cli.common import POSITIVE, settings_of
from tickvault.cli.output import console, err_console


@click.command("chaos")
@click.option("--trades", type=POSITIVE, default=1_000_000, show_default=True,
              help="Trades replayed in all (one part per scenario).")  # fmt: skip
@click.option("--stop-seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="How long the bridge stays stopped (SIGSTOP) in that scenario.")  # fmt: skip
@click.option("--scenarios", help="Only these scenarios, comma-separated (default: all; "
              "see the table's names).")  # fmt: skip
@click.option(
    "--no-models",
    is_flag=True,
    help="No model worker (no training first); the signal columns stay empty.",
)
@click.option(
    "--stall-seconds",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="A scenario ends when nothing has moved for this long (a loss shows then).",
)
@click.option(
    "--fuzz",
    is_flag=True,
    help="Also run the fuzzing (tickvault.bench.fuzz.run_fuzz) when installed.",
)
@click.option("--fuzz-messages", type=POSITIVE, default=10_000, show_default=True)
@click.option("--fuzz-rows", type=POSITIVE, default=1_000, show_default=True,
              help="Malformed rows per file format.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def chaos(
    ctx: click.Context, trades: int, stop_seconds: float, scenarios: str | None,
    no_models: bool, stall_seconds: float, fuzz: bool, fuzz_messages: int, fuzz_rows: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Kill, stop and restart the live processes and the server during a replay; check
    that what was stored is what was sent (exit 1 if a row is not 0 lost, 0 duplicated,
    apart from the documented buffer-overrun loss, reported by gap markers).

    Runs on its own temporary embedded server (AOF everysec): your store is never touched.
    """
    from tickvault.bench.chaos import SCENARIOS, run_chaos
    from tickvault.errors import ConfigError

    chosen = SCENARIOS
    if scenarios:
        chosen = tuple(s.strip() for s in scenarios.split(",") if s.strip())
        unknown = [s for s in chosen if s not in SCENARIOS]
        if unknown:
            raise ConfigError(f"--scenarios: unknown {unknown}; choose from {list(SCENARIOS)}")
    settings = settings_of(ctx)
    say = None if as_json else (lambda m: err_console.print(f"[dim]{m}[/]"))
    result = run_chaos(
        settings,
        trades=trades, stop_seconds=stop_seconds, scenarios=chosen, models=not no_models,
        stall_s=stall_seconds, fuzz=fuzz, fuzz_messages=fuzz_messages, fuzz_rows=fuzz_rows,
        progress=say,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(result))
    else:
        for shown in tables.chaos_table(result):
            console.print(shown)
    if not result["ok"]:
        ctx.exit(1)
