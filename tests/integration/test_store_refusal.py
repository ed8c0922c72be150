"""A full or failing store is never silent (issue 17 item 2): a real Valkey server that
refuses writes (``maxmemory`` reached under ``noeviction``; MISCONF when it cannot
persist) under a running bridge, real ZeroMQ. The bridge stalls without moving its
cursor, says what is wrong and what to do (log and status hash), keeps reading up to its
bound and then pauses, and resumes by itself: stored == sent by count and checksum."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey

from tests.conftest import sim_trades
from tests.integration.test_faults import sent_set, stored_count, stored_set
from tests.integration.test_live import wait_for
from tickvault import Vault
from tickvault.bench.fuzz import trades_checksum
from tickvault.errors import StoreRefused
from tickvault.live.bridge import Bridge, cursor_name
from tickvault.storage.server import server_binary
from tickvault.transport.endpoints import Endpoints, free_tcp_ports
from tickvault.transport.publisher import Publisher

SYMBOL = "WINZ25"


class RefusingServer:
    """A valkey-server of the test's own, whose ``dir`` can be changed at run time (to
    make its saves fail: MISCONF)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_tcp_ports(1)[0]
        self.proc = subprocess.Popen(
            [str(server_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
             "--enable-protected-configs", "yes", "--logfile", str(directory / "valkey.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.admin = valkey.Valkey(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return bool(self.admin.ping())
            except valkey.ValkeyError:
                return False

        wait_for(ready, "valkey-server to answer")

    @property
    def url(self) -> str:
        return f"valkey://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.admin.close()
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RefusingServer]:
    s = RefusingServer(tmp_path / "valkey-own")
    try:
        yield s
    finally:
        s.close()


def _publish(pub: Publisher, arr: Any, per_message: int = 100) -> None:
    for i in range(0, len(arr), per_message):
        pub.publish_trades(SYMBOL, arr[i : i + per_message])
        pub.flush()


def _status(vault: Vault) -> dict[str, str]:
    found = vault.statuses("bridge:")
    return next(iter(found.values())) if found else {}


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in list(caplog.records))


def _refuse_and_resume(
    server: RefusingServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    refuse: Any,
    accept: Any,
    expect: tuple[str, ...],
    status_written: bool,
) -> None:
    """Ingest, make the server refuse writes, publish more than the bridge may hold,
    check the stall, make it accept writes, check that everything sent is stored.
    ``status_written``: whether the bridge can still write its status hash (a server over
    maxmemory takes it; one that cannot persist refuses every write)."""
    caplog.set_level(logging.WARNING, logger="tickvault.live.bridge")
    arr = sim_trades(6_000, symbol=SYMBOL, days=1).to_structured()
    endpoints = Endpoints.ipc(str(tmp_path))
    # A low bound (about 9 messages of 100 trades) and high-water marks: past the bound
    # the bridge stops reading, the sockets drop, and the replay buffer supplies the rest.
    overrides = {"bridge_max_held_mb": 0.05, "store_retry_max_s": 0.2, "zmq_hwm": 20}
    with (
        Vault.open(server.url, data_dir=tmp_path / "d", **overrides) as vault,
        Publisher(vault.settings, endpoints=endpoints) as pub,
    ):
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        name = cursor_name(pub.id, f"trade.{SYMBOL}")
        try:
            # sent before the subscription maybe: the heartbeat shows it, the replay has it
            _publish(pub, arr[:100])
            wait_for(lambda: stored_count(vault, SYMBOL) > 0, "the bridge to subscribe")
            _publish(pub, arr[100:2_000])
            wait_for(lambda: stored_count(vault, SYMBOL) == 2_000, "the first third stored")
            wait_for(bridge.idle, "the bridge to write")
            cursor = vault.bridge_cursor(SYMBOL, name)
            refuse()
            _publish(pub, arr[2_000:5_000])  # 30 messages, about 170 kB: over the bound
            wait_for(lambda: bridge.stats.paused_reading > 0, "the bridge to stop reading")
            refused = vault.server_status()["writes_refused"]  # what the dashboard shows
            assert refused is not None and all(e in refused for e in expect), refused
            if status_written:  # out of memory: a status is still written (MISCONF: no)
                wait_for(lambda: _status(vault).get("store") == "refused", "the status")
                status = _status(vault)
                assert all(e in status["store_error"] for e in expect), status
                assert status["reading_paused"] == "1" and int(status["refused_writes"]) > 0
            assert vault.bridge_cursor(SYMBOL, name) == cursor  # the cursor did not move
            assert stored_count(vault, SYMBOL) == 2_000
            assert bridge.stats.trades_stored == 2_000
            wait_for(lambda: _logged(caplog, "reading paused"), "the pause logged")
            accept()
            _publish(pub, arr[5_000:])
            wait_for(lambda: stored_count(vault, SYMBOL) == len(arr), "everything stored")
            wait_for(bridge.idle, "the bridge to write")
            wait_for(lambda: _status(vault).get("store") == "ok", "the status to clear")
            assert vault.server_status()["writes_refused"] is None
            final_cursor = vault.bridge_cursor(SYMBOL, name)
            sub = bridge.subscriber.stats
        finally:
            bridge.close()
        stored = vault.range_columns(SYMBOL)
        assert stored_set(vault, SYMBOL) == sent_set(arr)
        assert trades_checksum(stored) == trades_checksum(arr)
        assert len(stored["trade_id"]) == len(arr)
        assert vault.gaps(SYMBOL) == []
        assert final_cursor == len(arr) // 100
        assert sub.lost_messages == 0
    refusals = [r.getMessage() for r in caplog.records if "refuses writes" in r.getMessage()
                and "cursors stay where they are" in r.getMessage()]  # fmt: skip
    assert len(refusals) == 1, refusals  # once per cause, not per attempt
    assert all(e in refusals[0] for e in expect), refusals[0]
    assert _logged(caplog, "Valkey accepts writes again")


def test_maxmemory_reached_under_a_running_bridge_stalls_it_clearly_and_it_resumes_by_itself(
    server: RefusingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _refuse_and_resume(
        server, tmp_path, caplog,
        refuse=lambda: server.admin.config_set("maxmemory", 1),
        accept=lambda: server.admin.config_set("maxmemory", 0),
        expect=("OOM command not allowed when used memory > 'maxmemory'", "raise maxmemory",
                "tickvault trim"), status_written=True,
    )  # fmt: skip


def test_a_server_that_cannot_persist_misconf_stalls_the_bridge_clearly_and_it_resumes(
    server: RefusingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone"

    def refuse() -> None:  # a save into a directory deleted under the server fails
        gone.mkdir()
        server.admin.config_set("dir", str(gone))
        gone.rmdir()
        server.admin.config_set("save", "3600 1")
        server.admin.bgsave()
        wait_for(lambda: server.admin.info("persistence")["rdb_last_bgsave_status"] == "err",
                 "the save to fail")  # fmt: skip

    def accept() -> None:
        server.admin.config_set("dir", str(server.directory))
        server.admin.bgsave()

    _refuse_and_resume(
        server, tmp_path, caplog, refuse=refuse, accept=accept,
        expect=("cannot persist to disk (MISCONF", "valkey.log"), status_written=False,
    )  # fmt: skip


def test_a_vault_write_refused_for_memory_raises_store_refused_and_writes_nothing(
    server: RefusingServer, tmp_path: Path
) -> None:
    batch = sim_trades(500, symbol=SYMBOL, days=1)
    with Vault.open(server.url, data_dir=tmp_path / "d") as vault:
        vault.write_trades(SYMBOL, batch.take(slice(0, 250)))
        server.admin.config_set("maxmemory", 1)
        with pytest.raises(StoreRefused, match="raise maxmemory") as info:
            vault.write_trades(SYMBOL, batch.take(slice(250, 500)))
        assert info.value.reason == "oom"
        vault.put_status("bridge:x", {"store": "refused"})  # a status is still written
        assert vault.statuses("bridge:x") == {"bridge:x": {"store": "refused"}}
        assert stored_count(vault, SYMBOL) == 250
        server.admin.config_set("maxmemory", 0)
        vault.write_trades(SYMBOL, batch.take(slice(250, 500)))
        assert stored_set(vault, SYMBOL) == sent_set(batch.to_structured())
