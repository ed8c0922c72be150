"""``tickvault proxy``: fan-out of a publisher to subscribers on other hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tickvault.cli.common import settings_of, stop_on_signals
from tickvault.cli.output import err_console
from tickvault.errors import ConfigError

if TYPE_CHECKING:
    from tickvault.transport.endpoints import Endpoints


def _endpoints(raw: str | None, option: str) -> Endpoints | None:
    from tickvault.transport.endpoints import SOCKET_NAMES, Endpoints

    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) != len(SOCKET_NAMES) or not all(parts):
        raise ConfigError(
            f"{option}: give {len(SOCKET_NAMES)} endpoints separated by commas, in the order "
            f"{', '.join(SOCKET_NAMES)} (got {raw!r})"
        )
    return Endpoints(*parts)


@click.command()
@click.option("--upstream", "upstream_host",
              help="Host of the publisher to forward (default: proxy_upstream_host, "
                   "else zmq_host).")  # fmt: skip
@click.option("--bind", "bind_host", help="Address to bind for the subscribers (default: "
              "proxy_host; 0.0.0.0 for other machines).")  # fmt: skip
@click.option("--port-offset", type=click.IntRange(0, 60_000),
              help="The proxy's ports are the publisher's plus this (default: "
                   "proxy_port_offset).")  # fmt: skip
@click.option("--upstream-endpoints", help="The publisher's five endpoints instead (ticks, "
              "book, history, signals, replay; comma-separated, e.g. ipc://...).")  # fmt: skip
@click.option("--endpoints", "down_endpoints", help="The proxy's five endpoints instead "
              "(same order).")  # fmt: skip
@click.pass_context
def proxy(
    ctx: click.Context,
    upstream_host: str | None,
    bind_host: str | None,
    port_offset: int | None,
    upstream_endpoints: str | None,
    down_endpoints: str | None,
) -> None:
    """Forward a publisher's trades, book, history and signals, and its replay service, to
    many subscribers (ZeroMQ XSUB/XPUB), until SIGINT/SIGTERM.

    Subscribers connect to the proxy as they would to the publisher (zmq_host: the
    proxy's host; zmq_*_port plus the proxy's port offset) and recover what they miss
    through the proxy's replay endpoint, which relays to the publisher's."""
    import logging
    import threading

    from tickvault.live.proxystatus import ProxyStatus
    from tickvault.transport import proxy as proxy_mod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_of(ctx)
    up = _endpoints(upstream_endpoints, "--upstream-endpoints")
    down = _endpoints(down_endpoints, "--endpoints")
    up = up or proxy_mod.upstream_endpoints(settings, upstream_host)
    down = down or proxy_mod.downstream_endpoints(settings, bind_host, port_offset)
    stopped = threading.Event()
    with proxy_mod.Proxy(settings, upstream=up, downstream=down) as px, \
            ProxyStatus(px, settings).start():  # fmt: skip
        stop_on_signals(stopped.set)
        err_console.print(
            f"proxy: {up.ticks} ... {up.replay} -> {down.ticks} ... {down.replay}"
            f"{' (CURVE)' if settings.zmq_curve else ''}; SIGINT/SIGTERM stop it",
            highlight=False,
        )
        while not stopped.wait(0.5):
            pass
        s = px.stats()
    err_console.print(
        f"proxy stopped: {sum(s.messages.values()):,} messages forwarded "
        f"({', '.join(f'{k} {v:,}' for k, v in s.messages.items())}); "
        f"{s.replay_requests:,} replay requests relayed, {s.replayed_messages:,} messages "
        f"replayed; {s.subscribers} subscribers",
        highlight=False,
    )
