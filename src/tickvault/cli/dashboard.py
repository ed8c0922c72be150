"""``tickvault dashboard``: the live web dashboard (``tickvault.web``)."""

from __future__ import annotations

import click

from tickvault.cli.common import open_vault, settings_of
from tickvault.cli.output import err_console


@click.command("dashboard")
@click.option("--host", default=None,
              help="Address to listen on (default: dashboard_host, 127.0.0.1). Any other "
                   "than this machine's needs dashboard_token.")  # fmt: skip
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port (default: dashboard_port, 8050).",
)
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the dashboard (Market, Pipeline, History pages with live updates) until
    SIGINT/SIGTERM. Needs the web extra: pip install 'tickvault[web]'."""
    from tickvault.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs the web extra ({exc.name} is not installed): "
            "pip install 'tickvault[web]'"
        ) from None
    from tickvault.web.server import check_bind, serve, token_of

    settings = settings_of(ctx)
    host = host or settings.dashboard_host
    port = port or settings.dashboard_port
    check_bind(host, token_of(settings))  # before the store is opened
    with open_vault(ctx) as vault:

        def ready(url: str) -> None:
            auth = " (token required)" if token_of(settings) else ""
            err_console.print(f"dashboard: {url}{auth} over {vault.url}; SIGINT/SIGTERM stop it",
                              highlight=False)  # fmt: skip

        serve(vault, host, port, on_ready=ready)
