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
        assert vault.url != info.url or read_state(own_data_dir.resolve()) != info
        assert len(vault.range("WINZ25")) == 50  # the AOF was replayed


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
