"""Running the dashboard: the safe-default check on the address and the uvicorn server."""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Callable
from pathlib import Path

from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.vault import Vault

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """ConfigError when ``host`` is reachable from other machines and no token is set."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the dashboard would listen on {host}, reachable from other machines, without "
            "a token: set dashboard_token (TICKVAULT_DASHBOARD_TOKEN or the config file), "
            "or listen on 127.0.0.1 (the default)"
        )


def token_of(settings: Settings) -> str | None:
    t = settings.dashboard_token
    value = t.get_secret_value() if t is not None else None
    return value or None


def serve(
    vault: Vault,
    host: str,
    port: int,
    *,
    data_dir: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard of ``vault`` on ``host:port`` until SIGINT/SIGTERM."""
    import uvicorn

    from tickvault.web.app import create_app

    token = token_of(vault.settings)
    check_bind(host, token)
    app = create_app(vault, token=token, data_dir=data_dir)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            ws_max_size=1 << 16, access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGINT/SIGTERM it stopped on once it is done, with the
    # handlers found at start: quiet ones make that a clean exit (status 0, no traceback)
    # instead of death by the signal (status 143), which a supervisor reads as a failure
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    if on_ready is not None:
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{port}/")
    server.run()
