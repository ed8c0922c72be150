"""No secret anywhere: ``tickvault up`` (embedded Valkey with an ACL password, CURVE on
every ZeroMQ socket, a dashboard token, ProfitDLL credentials set) runs for a while;
then every file under the data directory (logs, state, AOF), the captured output, the
command lines of every process, ``/metrics``, ``tickvault config`` / ``ps`` and the
settings' repr are searched for each secret. None may be found.

Waits poll a condition under a guard; nothing asserts on elapsed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import zmq.auth

from tests.integration.test_live import free_ports, port_env
from tickvault.config import load_settings
from tickvault.live import supervisor as sv
from tickvault.transport.endpoints import free_tcp_ports
from tickvault.transport.security import generate_keys

GUARD_S = 600.0
SYMBOL = "WINSIM"
SECRETS = {
    "TICKVAULT_VALKEY_PASSWORD": "vk-pass-Q3zR8wLm",
    "TICKVAULT_DASHBOARD_TOKEN": "dash-token-N4pX7cYe",
    "TICKVAULT_PROFITDLL_KEY": "dll-key-H2kV9sTa",
    "TICKVAULT_PROFITDLL_USER": "dll-user-J6bW1qZo",
    "TICKVAULT_PROFITDLL_PASSWORD": "dll-pass-F8mD3rUi",
    "TICKVAULT_PROFITDLL_ROUTING_PASSWORD": "dll-route-K5tG2nEy",
}


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _ready(data_dir: Path, proc: subprocess.Popen[bytes], names: tuple[str, ...]) -> bool:
    assert proc.poll() is None, "tickvault up exited"
    state = sv.read_state(data_dir) or {"components": []}
    states = {c["name"]: c["state"] for c in state["components"]}
    return all(states.get(n) == "ready" for n in names)


def _stored(data_dir: Path) -> float:
    state = sv.read_state(data_dir) or {"components": []}
    bridge = next((c for c in state["components"] if c["name"] == "bridge"), {})
    return float(bridge.get("figures", {}).get("stored", 0))


def _get(url: str, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_up_with_every_secret_set_shows_none_in_logs_output_command_lines_metrics_or_reprs(
    own_data_dir: Path, tmp_path: Path
) -> None:
    keys = generate_keys(tmp_path / "keys")
    curve_secrets = {}
    for name, path in keys.items():
        if "secret" in name:
            _, secret = zmq.auth.load_certificate(path)
            assert secret is not None
            curve_secrets[name] = secret.decode()
    features, signals, orders, dashboard = free_tcp_ports(4)
    env = {
        **os.environ,
        "TICKVAULT_DATA_DIR": str(own_data_dir),
        **port_env(free_ports()),
        "TICKVAULT_ZMQ_FEATURES_PORT": str(features),
        "TICKVAULT_ZMQ_SIGNALS_PORT": str(signals),
        "TICKVAULT_ZMQ_ORDERS_PORT": str(orders),
        "TICKVAULT_DASHBOARD_PORT": str(dashboard),
        **SECRETS,
        "TICKVAULT_ZMQ_CURVE": "true",
        "TICKVAULT_ZMQ_CURVE_SERVER_PUBLIC_KEY": str(keys["zmq_curve_server_public_key"]),
        "TICKVAULT_ZMQ_CURVE_SERVER_SECRET_KEY": str(keys["zmq_curve_server_secret_key"]),
        "TICKVAULT_ZMQ_CURVE_CLIENT_PUBLIC_KEY": str(keys["zmq_curve_client_public_key"]),
        # one secret key as its z85 text, the other as a file: both forms
        "TICKVAULT_ZMQ_CURVE_CLIENT_SECRET_KEY": curve_secrets["zmq_curve_client_secret_key"],
    }
    secrets = [*SECRETS.values(), *curve_secrets.values()]
    out_path = tmp_path / "up.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickvault.cli.main", "up", "--symbols", SYMBOL,
             "--speed", "20", "--no-models"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        names = ("server", "publisher", "bridge", "features", "dashboard")
        _wait(lambda: _ready(own_data_dir, proc, names), "every component to be ready")
        _wait(lambda: _stored(own_data_dir) > 500, "trades stored over CURVE and the ACL")
        commands = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                                  check=True).stdout  # fmt: skip
        metrics_url = f"http://127.0.0.1:{dashboard}/metrics"
        status, metrics = _get(metrics_url, SECRETS["TICKVAULT_DASHBOARD_TOKEN"])
        assert status == 200 and "tickvault_trades_stored_total" in metrics
        refused, refusal_body = _get(metrics_url, None)
        assert refused == 401
        listed = subprocess.run([sys.executable, "-m", "tickvault.cli.main", "ps"],
                                env=env, capture_output=True, text=True, timeout=120,
                                check=False)  # fmt: skip
        assert listed.returncode == 0 and "bridge" in listed.stdout, listed.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(GUARD_S)
    shown = subprocess.run([sys.executable, "-m", "tickvault.cli.main", "config"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("TICKVAULT_")})
    assert settings.zmq_curve and settings.valkey_password is not None  # what the run used

    texts = {
        "up output": out_path.read_text(errors="replace"),
        "command lines": commands,
        "/metrics": metrics,
        "/metrics refused": refusal_body,
        "ps": listed.stdout + listed.stderr,
        "config": shown.stdout + shown.stderr,
        "settings repr": repr(settings) + str(settings),
    }
    files = [p for p in own_data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and len(files) > 5
    blobs = {str(p): p.read_bytes() for p in files}
    assert "refused a ZeroMQ client" not in texts["up output"]  # every component was allowed
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret appears in {where}"
        for where, blob in blobs.items():
            assert secret.encode() not in blob, f"a secret appears in {where}"
