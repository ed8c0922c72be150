"""The embedded server: persistence across restarts, sharing, stale state, bad addresses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import frame_equals_batch, sim_trades
from tests.integration.test_live import wait_for
from tickvault import ServerUnreachable, Vault
from tickvault.storage.server import STATE_FILE, ensure_server, read_state, stop_server


def test_data_survives_a_server_restart(own_data_dir: Path) -> None:
    batch = sim_trades(30_000)
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", batch)
        vault.write_trades("WINZ25", batch.take(slice(0, 100)), stream="historical")
        first_pid = read_state(own_data_dir.resolve()).pid  # type: ignore[union-attr]
    assert read_state(own_data_dir.resolve()) is None  # the demo-style owner stopped it
    with Vault.open(data_dir=own_data_dir) as vault:
        assert read_state(own_data_dir.resolve()).pid != first_pid  # type: ignore[union-attr]
        frame_equals_batch(vault.range("WINZ25"), batch)
        assert sum(s.trades for s in vault.stats("WINZ25")) == 30_100
        status = vault.server_status()
        assert status["aof"] and status["appendfsync"] == "everysec"
        assert status["maxmemory_policy"] == "noeviction"


def test_processes_share_one_server_per_data_dir(own_data_dir: Path) -> None:
    info, started = ensure_server(own_data_dir)
    assert started
    with Vault.open(data_dir=own_data_dir) as a, Vault.open(data_dir=own_data_dir) as b:
        assert a.url == b.url == info.url
        a.write_trades("WINZ25", sim_trades(10))
        assert len(b.range("WINZ25")) == 10
    # Neither vault started it, so neither stopped it.
    assert read_state(own_data_dir.resolve()) == info


def test_owner_leaves_server_running_while_another_process_uses_it(own_data_dir: Path) -> None:
    owner = Vault.open(data_dir=own_data_dir)
    code = (
        "import sys, time; from tickvault import Vault\n"
        f"v = Vault.open(data_dir={str(own_data_dir)!r}); print('ready', flush=True)\n"
        "sys.stdin.readline(); print(len(v.range('WINZ25')), flush=True); v.close()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "ready"
        owner.write_trades("WINZ25", sim_trades(7))
        owner.close()
        assert read_state(own_data_dir.resolve()) is not None  # still serving the other
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "7"
    finally:
        other.wait(timeout=30)


def test_stale_state_of_a_killed_server_is_replaced(own_data_dir: Path) -> None:
    info, _ = ensure_server(own_data_dir)
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", sim_trades(50))
        vault.client.execute_command("WAITAOF", 1, 0, 0)
    os.kill(info.pid, signal.SIGKILL)
    os.waitpid(info.pid, 0)
    assert (own_data_dir / STATE_FILE).exists()
    assert read_state(own_data_dir.resolve()) is None
    with Vault.open(data_dir=own_data_dir) as vault:
        assert read_state(own_data_dir.resolve()) != info
        assert vault.url == info.url  # back on the same port: old clients find it again
        assert len(vault.range("WINZ25")) == 50  # the AOF was replayed


def test_server_comes_back_on_its_port_and_a_kept_client_reconnects(own_data_dir: Path) -> None:
    info, _ = ensure_server(own_data_dir)
    client = Vault.open(info.url)  # a long-running process holding the address
    try:
        client.write_trades("WINZ25", sim_trades(20))
        client.client.execute_command("WAITAOF", 1, 0, 0)
        os.kill(info.pid, signal.SIGKILL)
        os.waitpid(info.pid, 0)
        with pytest.raises(ServerUnreachable):
            client.range("WINZ25")
        again, started = ensure_server(own_data_dir)  # what `tickvault server start` runs
        assert started and again.port == info.port and again.pid != info.pid
        assert len(client.range("WINZ25")) == 20  # the same client object, no new address
    finally:
        client.close()


def test_server_moves_only_when_its_port_is_taken(own_data_dir: Path) -> None:
    import socket

    info, _ = ensure_server(own_data_dir)
    stop_server(own_data_dir)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", info.port))
        squatter.listen()
        moved, _ = ensure_server(own_data_dir)
        assert moved.port != info.port
    stop_server(own_data_dir)
    back, _ = ensure_server(own_data_dir)
    assert back.port == moved.port  # the new port is the remembered one now


def test_server_of_a_script_that_never_closed_stops_after_its_last_client(
    own_data_dir: Path,
) -> None:
    code = (
        "from tickvault import Vault\n"
        f"v = Vault.open(data_dir={str(own_data_dir)!r}, embedded_idle_stop_s=1)\n"
        "v.write_trades('WINZ25', [dict(ts_event=1_762_200_000_000_000_000, trade_id=1,"
        " price=1.0, qty=1)])\n"
        "print(v.url)\n"  # exits without v.close()
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("valkey://")
    wait_for(lambda: read_state(own_data_dir.resolve()) is None, "the idle server stopped")
    with Vault.open(data_dir=own_data_dir) as vault:
        assert len(vault.range("WINZ25")) == 1  # stopped cleanly, nothing lost


def test_idle_server_keeps_running_while_a_client_is_connected(own_data_dir: Path) -> None:
    import time

    vault = Vault.open(data_dir=own_data_dir, embedded_idle_stop_s=0.5)
    try:
        time.sleep(3)  # several watchdog rounds with a client connected
        assert read_state(own_data_dir.resolve()) is not None
        assert vault.client.ping()
    finally:
        vault.close()


def test_server_start_keeps_an_on_demand_server_running(own_data_dir: Path) -> None:
    vault = Vault.open(data_dir=own_data_dir, embedded_idle_stop_s=0.5)
    info, started = ensure_server(own_data_dir)  # `tickvault server start`
    assert not started
    other = Vault.open(info.url)
    vault.close()  # the owner leaves while `other` is connected
    other.close()
    import time

    time.sleep(3)
    assert read_state(own_data_dir.resolve()) == info


def test_garbage_state_file_is_treated_as_stale(own_data_dir: Path) -> None:
    own_data_dir.mkdir(parents=True)
    (own_data_dir / STATE_FILE).write_text(json.dumps({"pid": 1, "host": "x"}))
    with Vault.open(data_dir=own_data_dir) as vault:
        assert vault.client.ping()


def test_unreachable_server_names_the_address() -> None:
    with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1:1.*TICKVAULT_VALKEY_URL"):
        Vault.open("valkey://127.0.0.1:1/0", connect_timeout_s=0.5)


def test_external_url_is_used_as_given(own_data_dir: Path) -> None:
    info, _ = ensure_server(own_data_dir)
    with Vault.open(info.url) as vault:
        assert not vault.embedded
        vault.write_trades("WINZ25", sim_trades(3))
        assert len(vault.range("WINZ25")) == 3
    assert read_state(own_data_dir.resolve()) == info  # an external server is never stopped


def test_stop_without_server_reports_false(tmp_path: Path) -> None:
    assert stop_server(tmp_path / "never-started") is False


def test_a_settings_view_never_stops_the_server(own_data_dir: Path) -> None:
    vault = Vault.open(data_dir=own_data_dir)
    view = vault.with_settings(compression="zstd", block_max_trades=100)
    view.write_trades("WINZ25", sim_trades(1000))
    view.close()
    assert read_state(own_data_dir.resolve()) is not None
    assert len(vault.range("WINZ25")) == 1000  # zstd blocks read by the lz4-configured vault
    vault.close()
    assert read_state(own_data_dir.resolve()) is None
