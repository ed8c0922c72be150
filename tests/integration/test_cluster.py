"""The store on a real local Valkey Cluster (``tickvault cluster up``): forming and
restarting it, what fans out over the primaries, scripts after a SCRIPT FLUSH, and the
live path through a failover (kill -9 of a primary with a replica) and a slot moved
while a bridge ingests. Stored is compared with sent by count and by a checksum over
(trade_id, price, qty)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import sim_trades
from tests.integration.test_faults import _publish_paced, _wait_or_explain, stored_count
from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.errors import ServerError
from tickvault.records.trades import TRADE_DTYPE
from tickvault.storage import localcluster
from tickvault.storage.cluster import ClusterClient, parse_cluster_url
from tickvault.storage.keys import cursor_key, trades_key
from tickvault.storage.localcluster import ClusterState
from tickvault.storage.writes import StoreItem
from tickvault.transport.publisher import Publisher


def checksum(trade_id: Any, price: Any, qty: Any) -> str:
    """Order-free checksum of (trade_id, price, qty) rows: sha256 of the sorted rows."""
    rows = np.zeros(len(trade_id), dtype=[("t", "<i8"), ("p", "<f8"), ("q", "<i8")])
    rows["t"], rows["p"], rows["q"] = trade_id, price, qty
    rows.sort(order=["t", "p", "q"])
    return hashlib.sha256(rows.tobytes()).hexdigest()


def sent_checksum(arr: Any) -> str:
    return checksum(arr["trade_id"], arr["price"], arr["qty"])


def stored_checksum(vault: Vault, symbol: str) -> str:
    cols = vault.range_columns(symbol)
    return checksum(cols["trade_id"], cols["price"], cols["qty"])


@pytest.fixture
def cluster_3x1(tmp_path: Path) -> Iterator[tuple[Path, ClusterState]]:
    """3 primaries with a replica each, in a directory of the test's own."""
    where = tmp_path / "cluster"
    with localcluster.running(where, 3, 1) as state:
        yield where, state


@pytest.fixture
def cluster_3x0(tmp_path: Path) -> Iterator[tuple[Path, ClusterState]]:
    where = tmp_path / "cluster"
    with localcluster.running(where, 3, 0) as state:
        yield where, state


def symbol_on_each_primary(client: ClusterClient, count: int = 3) -> list[str]:
    """Symbols whose keys land on ``count`` different primaries."""
    found: dict[str, str] = {}
    for i in range(1000):
        sym = f"S{i}X"
        node = client.node_of_key(trades_key(sym, "realtime")).name
        found.setdefault(node, sym)
        if len(found) == count:
            return sorted(found.values())
    raise AssertionError("no symbols on every primary")


def primary_of(client: ClusterClient, symbol: str) -> int:
    """Port of the primary that serves ``symbol``'s slot now."""
    client.nodes_manager.initialize()
    return int(client.node_of_key(cursor_key(symbol)).port)


# ---------------------------------------------------------------------- the URL
@pytest.mark.parametrize(
    ("url", "seeds", "user", "password", "tls"),
    [
        ("valkey+cluster://127.0.0.1:7000", (("127.0.0.1", 7000),), None, None, False),
        ("valkey+cluster://a:1,b:2,c:3/0", (("a", 1), ("b", 2), ("c", 3)), None, None, False),
        ("valkeys+cluster://u:p%40w@h:6380,h:6381", (("h", 6380), ("h", 6381)), "u", "p@w", True),
        ("redis+cluster://:secret@[::1]:7000", (("::1", 7000),), None, "secret", False),
    ],
)
def test_a_cluster_url_names_its_seeds_and_credentials(
    url: str, seeds: tuple[tuple[str, int], ...], user: str | None, password: str | None,
    tls: bool,
) -> None:  # fmt: skip
    parsed = parse_cluster_url(url)
    assert (parsed.seeds, parsed.username, parsed.password) == (seeds, user, password)
    assert parsed.tls is tls


@given(
    seeds=st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535)),
        min_size=1,
        max_size=6,
    ),
    password=st.none()
    | st.text(st.characters(codec="ascii", exclude_characters="@/?#%"), min_size=1, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_any_seed_list_reads_back_from_its_cluster_url(
    seeds: list[tuple[str, int]], password: str | None
) -> None:
    creds = f":{password}@" if password is not None else ""
    url = "valkey+cluster://" + creds + ",".join(f"{h}:{p}" for h, p in seeds)
    parsed = parse_cluster_url(url)
    assert parsed.seeds == tuple(seeds) and parsed.password == password and not parsed.tls


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("valkey+cluster://h:7000/1", "only database 0"),
        ("valkey+cluster://h", "not host:port"),
        ("valkey+cluster://h:7000,h:x", "'h:x' is not host:port"),
    ],
)
def test_a_bad_cluster_url_is_refused_saying_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cluster_url(url)


def test_a_single_server_given_as_a_cluster_url_is_refused_with_what_to_use(
    session_vault: Vault, tmp_path: Path
) -> None:
    from tickvault.errors import ServerUnreachable

    host_port = session_vault.connection_url.split("://", 1)[1].split("/", 1)[0]
    with pytest.raises(ServerUnreachable, match="without cluster mode: use valkey://"):
        Vault.open(f"valkey+cluster://{host_port}", data_dir=tmp_path / "d")


# ---------------------------------------------------------------------- cluster up/down
def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickvault.cli.main", "cluster", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=GUARD_S * 2,
        check=False,
    )  # fmt: skip


def test_cluster_up_forms_once_and_a_second_up_restarts_the_same_nodes_with_their_data(
    tmp_path: Path,
) -> None:
    env = {"TICKVAULT_DATA_DIR": str(tmp_path / "data")}
    try:
        first = _cli(env, "up", "--nodes", "3", "--replicas", "1")
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("formed: 3 primaries, 1 replica(s) each")
        url = first.stdout.split("TICKVAULT_VALKEY_URL=", 1)[1].split()[0]
        status = _cli(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" primary ") == 3 and status.stdout.count(" replica ") == 3
        ids = sorted(n.node_id for n in localcluster.status(tmp_path / "data" / "cluster"))
        batch = sim_trades(3_000, symbol="WINZ25")
        with Vault.open(url, data_dir=tmp_path / "d") as vault:
            vault.write_trades("WINZ25", batch)
        shown = subprocess.run(
            [sys.executable, "-m", "tickvault.cli.main", "status"], capture_output=True,
            text=True, env={**os.environ, **env, "TICKVAULT_VALKEY_URL": url}, check=False,
            timeout=GUARD_S,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "Valkey Cluster of 3 primaries" in shown.stdout and "WINZ25" in shown.stdout
        assert shown.stdout.count("1 replica(s)") == 3
        down = _cli(env, "down")
        assert down.returncode == 0 and "stopped the cluster" in down.stdout
        assert _cli(env, "status").returncode == 1  # every node down
        again = _cli(env, "up", "--nodes", "3", "--replicas", "1")
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("restarted:") and url in again.stdout
        nodes = localcluster.status(tmp_path / "data" / "cluster")
        assert sorted(n.node_id for n in nodes) == ids  # the same nodes, not a new cluster
        assert all(n.cluster_state == "ok" for n in nodes)
        with Vault.open(url, data_dir=tmp_path / "d") as vault:
            assert len(vault.range("WINZ25")) == len(batch)
        other = _cli(env, "up", "--nodes", "4")
        assert other.returncode == 2 and "formed with 3 primaries" in other.stderr
    finally:
        _cli(env, "down", "--delete")
    assert not (tmp_path / "data" / "cluster").exists()


def test_a_cluster_with_a_password_refuses_clients_without_it_and_replicates(
    tmp_path: Path,
) -> None:
    from tickvault.errors import ServerUnreachable
    from tickvault.storage.server import ServerAuth

    auth = ServerAuth("default", "s3cret-pw")  # cluster_auth: only valkey_password set
    with localcluster.running(tmp_path / "c", 3, 1, auth=auth) as state:
        assert all(n.replicas_online == 1 for n in localcluster.status(tmp_path / "c", auth)
                   if n.role == "primary")  # fmt: skip
        with pytest.raises(ServerUnreachable):
            Vault.open(state.url, data_dir=tmp_path / "d")
        with Vault.open(state.url, data_dir=tmp_path / "d", valkey_password="s3cret-pw") as v:
            v.write_trades("WINZ25", sim_trades(100, symbol="WINZ25"))
            assert len(v.range("WINZ25")) == 100
        assert not any("s3cret-pw" in p.read_text() for p in (tmp_path / "c").rglob("*.acl"))


# ---------------------------------------------------------------------- fan-out, scripts
def test_symbols_cursors_and_statuses_fan_out_over_every_primary(
    session_cluster_vault: Vault,
) -> None:
    vault = session_cluster_vault
    vault.client.flushdb()
    symbols = symbol_on_each_primary(vault.client)
    for i, sym in enumerate(symbols):
        arr = sim_trades(50, symbol=sym, seed=i).to_structured()
        vault.store_cycle([StoreItem(sym, "realtime", arr, {f"{i:016x}:trade.{sym}": 7 + i})])
        vault.put_status(f"bridge:h:{i}", {"on": sym})
    assert vault.symbols() == symbols
    assert vault.bridge_cursors() == {f"{i:016x}:trade.{s}": 7 + i for i, s in enumerate(symbols)}
    assert sorted(vault.statuses("bridge:")) == [f"bridge:h:{i}" for i in range(3)]
    report = vault.trim(now=2**62)  # every symbol's trades are past the window
    assert report.symbols == tuple(symbols) and report.trades_removed == 150
    status = vault.server_status()
    assert status["cluster"] and len(status["nodes"]) == 3 and status["writes_refused"] is None


def test_scripts_are_loaded_again_after_a_script_flush_on_every_path(
    session_cluster_vault: Vault,
) -> None:
    vault = session_cluster_vault
    vault.client.flushdb()
    a, b = sim_trades(200, symbol="WINZ25", seed=1), sim_trades(200, symbol="WINZ25", seed=2)
    b.trade_id[:] += 10_000  # other trades than a's (a trade is its day and trade id)
    vault.client.script_flush()
    vault.write_trades("WINZ25", a)  # a script call of its own
    vault.client.script_flush()
    vault.store_cycle([StoreItem("WINZ25", "realtime", b.to_structured(), {"p:trade.WINZ25": 3})])
    vault.client.script_flush()
    report = vault.trim("WINZ25", now=2**62, dry_run=True)  # a script in a read
    assert report.trades_removed == 400
    assert len(vault.range("WINZ25")) == 400
    assert vault.bridge_cursor("WINZ25", "p:trade.WINZ25") == 3


def test_a_transaction_over_two_symbols_is_refused_before_anything_is_written(
    session_cluster_vault: Vault,
) -> None:
    vault = session_cluster_vault
    vault.client.flushdb()
    a, b = symbol_on_each_primary(vault.client, 2)
    pipe = vault.client.pipeline(transaction=True)
    pipe.hset(cursor_key(a), "x", 1)
    pipe.hset(cursor_key(b), "x", 1)
    with pytest.raises(ServerError, match="only on keys of one hash tag"):
        pipe.execute()
    assert vault.bridge_cursors() == {}


def test_a_transaction_with_script_calls_commits_all_of_one_symbol_on_its_primary(
    session_cluster_vault: Vault,
) -> None:
    """The broker's commit: orders and fills (script calls, sent as EVAL inside MULTI),
    state, position and routing of one symbol, all or nothing, after a SCRIPT FLUSH."""
    from tickvault.records.orders import FILL_DTYPE, ORDER_DTYPE
    from tickvault.storage import recordstreams as rs

    vault = session_cluster_vault
    vault.client.flushdb()
    vault.client.script_flush()
    orders, fills = np.zeros(2, ORDER_DTYPE), np.zeros(1, FILL_DTYPE)
    orders["ts_placed"], orders["order_id"] = [10**15, 10**15 + 1], [1, 2]
    fills["ts_event"], fills["order_id"], fills["price"] = 10**15 + 2, 1, 5.5
    rs.routing_put(vault.client, "WINZ25", 1, "{}")
    rs.commit_execution(vault.client, "WINZ25", orders, fills, '{"s": 1}', {"qty": "3"}, [1])
    got, _ = rs.RecordStream(vault.client, "orders").read("WINZ25", 0, 2**62)
    got_fills, _ = rs.RecordStream(vault.client, "fills").read("WINZ25", 0, 2**62)
    assert got["order_id"].tolist() == [1, 2] and got_fills["price"].tolist() == [5.5]
    assert rs.broker_state(vault.client, "WINZ25") == '{"s": 1}'
    assert rs.position_of(vault.client, "WINZ25") == {"qty": "3"}
    assert rs.routing_entries(vault.client, "WINZ25") == {}


def test_wait_replicas_counts_the_replicas_that_acknowledged_each_write_cycle(
    cluster_3x1: tuple[Path, ClusterState], session_cluster_vault: Vault, tmp_path: Path
) -> None:
    _, state = cluster_3x1
    arr = sim_trades(100, symbol="WINZ25").to_structured()
    item = StoreItem("WINZ25", "realtime", arr, {"p:trade.WINZ25": 1})
    with Vault.open(state.url, data_dir=tmp_path / "d", valkey_wait_replicas=1) as vault:
        assert vault.store_cycle([item]) == 1
        assert vault.with_settings(valkey_wait_replicas=0).store_cycle([item]) is None
    # no replica: WAIT gives up after valkey_wait_timeout_ms with 0 acknowledgements
    lonely = session_cluster_vault.with_settings(valkey_wait_replicas=1, valkey_wait_timeout_ms=5)
    lonely.client.flushdb()
    assert lonely.store_cycle([item]) == 0
    assert len(lonely.range("WINZ25")) == 100


def test_a_bridge_with_wait_replicas_counts_the_cycles_no_replica_acknowledged(
    vault: Vault, endpoints: Any
) -> None:
    """On a server without replicas every WAIT comes back short: counted, reported in the
    status hash, and the trades are stored all the same."""
    from tickvault.live.bridge import Bridge

    waiting = vault.with_settings(valkey_wait_replicas=1, valkey_wait_timeout_ms=5)
    arr = sim_trades(2_000, symbol="WINZ25", days=1).to_structured()
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(waiting, endpoints=[endpoints]).start()
        try:
            _publish_paced(pub, "WINZ25", arr, 200, 0.01)
            wait_for(lambda: stored_count(vault, "WINZ25") == len(arr), "everything stored")
            wait_for(lambda: any(s.get("replica_wait_short", "0") != "0"
                                 for s in vault.statuses("bridge:").values()),
                     "the short WAITs reported")  # fmt: skip
        finally:
            bridge.close()
    assert 0 < bridge.stats.replica_wait_short <= bridge.stats.writes
    assert stored_checksum(vault, "WINZ25") == sent_checksum(arr)


# ---------------------------------------------------------------------- failover, resharding
def _bridge_env(state: ClusterState, tmp_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """(the environment of a bridge process on the cluster, the same ports as settings
    overrides for the test's own Vault and Publisher)."""
    ports = free_ports()
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    env = {"TICKVAULT_VALKEY_URL": state.url, "TICKVAULT_DATA_DIR": str(tmp_path / "d"),
           **port_env(ports)}  # fmt: skip
    return env, overrides


def _bridge(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "bridge"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_kill_9_of_a_primary_under_a_running_bridge_promotes_its_replica_and_loses_nothing(
    cluster_3x1: tuple[Path, ClusterState], tmp_path: Path
) -> None:
    where, state = cluster_3x1
    env, overrides = _bridge_env(state, tmp_path)
    with (
        Vault.open(state.url, data_dir=tmp_path / "d", **overrides) as vault,
        Publisher(vault.settings) as pub,
    ):
        victim = primary_of(vault.client, "WINZ25")
        other = next(s for s in symbol_on_each_primary(vault.client)
                     if primary_of(vault.client, s) != victim)  # fmt: skip
        win = sim_trades(20_000, symbol="WINZ25", days=1).to_structured()
        rest = sim_trades(4_000, symbol=other, days=1, seed=5).to_structured()
        bridge = _bridge(env)
        try:
            time.sleep(0.5)  # let the bridge subscribe (a late start is repaired anyway)
            sender = threading.Thread(target=_publish_paced, args=(pub, "WINZ25", win, 100, 0.01),
                                      daemon=True)  # fmt: skip
            sender.start()
            _wait_or_explain(bridge, vault, lambda: stored_count(vault, "WINZ25") > 3_000,
                             "the bridge to store")  # fmt: skip
            os.kill(state.pids[victim], signal.SIGKILL)  # mid-stream, maybe mid-write
            _publish_paced(pub, other, rest, 100, 0.01)  # its primary is alive throughout
            sender.join(GUARD_S)
            _wait_or_explain(
                bridge, vault,
                lambda: stored_count(vault, "WINZ25") == len(win)
                and stored_count(vault, other) == len(rest),
                "everything stored after the failover",
            )  # fmt: skip
            bridge.send_signal(signal.SIGTERM)
            _, err = bridge.communicate(timeout=GUARD_S)
        finally:
            bridge.kill()
        text = err.decode()
        assert bridge.returncode == 0, text
        assert stored_checksum(vault, "WINZ25") == sent_checksum(win)
        assert stored_checksum(vault, other) == sent_checksum(rest)
        assert vault.gaps("WINZ25") == [] and vault.gaps(other) == []
        new_primary = primary_of(vault.client, "WINZ25")
    nodes = {n.port: n for n in localcluster.status(where)}
    assert nodes[victim].role == "down"
    assert new_primary != victim and nodes[new_primary].role == "primary"
    replica = next(s for s in state.nodes if s.replica and state.nodes[s.primary_index].port
                   == victim)  # fmt: skip
    assert new_primary == replica.port  # the replica was promoted
    assert "cannot write to Valkey" in text  # the outage was seen and ridden out


def _move_slot(state: ClusterState, slot: int, source: int, target: int) -> int:
    """Move ``slot`` from the node on port ``source`` to the one on ``target`` as
    valkey-cli --cluster reshard does; returns the keys moved."""
    import valkey

    src, dst = (valkey.Valkey(port=p, socket_timeout=10) for p in (source, target))
    try:
        src_id, dst_id = (c.execute_command("CLUSTER MYID").decode() for c in (src, dst))
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 10_000, "KEYS", *keys)
            moved += len(keys)
        for spec in state.nodes:  # the new owner first, then everyone else
            if spec.replica:
                continue
            with valkey.Valkey(port=spec.port, socket_timeout=10) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        return moved
    finally:
        src.close()
        dst.close()


def test_moving_a_slot_while_a_bridge_ingests_loses_nothing(
    cluster_3x0: tuple[Path, ClusterState], tmp_path: Path
) -> None:
    _, state = cluster_3x0
    env, overrides = _bridge_env(state, tmp_path)
    with (
        Vault.open(state.url, data_dir=tmp_path / "d", **overrides) as vault,
        Publisher(vault.settings) as pub,
    ):
        win = sim_trades(20_000, symbol="WINZ25", days=1).to_structured()
        slot = vault.client.keyslot(cursor_key("WINZ25"))
        source = primary_of(vault.client, "WINZ25")
        target = next(s.port for s in state.nodes if s.port != source)
        bridge = _bridge(env)
        try:
            time.sleep(0.5)
            sender = threading.Thread(target=_publish_paced, args=(pub, "WINZ25", win, 50, 0.005),
                                      daemon=True)  # fmt: skip
            sender.start()
            _wait_or_explain(bridge, vault, lambda: stored_count(vault, "WINZ25") > 3_000,
                             "the bridge to store")  # fmt: skip
            moved = _move_slot(state, slot, source, target)
            assert stored_count(vault, "WINZ25") < len(win), "moved after the end: no test"
            sender.join(GUARD_S)
            _wait_or_explain(bridge, vault, lambda: stored_count(vault, "WINZ25") == len(win),
                             "everything stored after the move")  # fmt: skip
            bridge.send_signal(signal.SIGTERM)
            _, err = bridge.communicate(timeout=GUARD_S)
        finally:
            bridge.kill()
        assert bridge.returncode == 0, err.decode()
        assert moved >= 3  # the stream, its meta hash and the cursor at least
        assert primary_of(vault.client, "WINZ25") == target
        assert stored_checksum(vault, "WINZ25") == sent_checksum(win)
        assert vault.gaps("WINZ25") == []
        raw = sum(s.trades for s in vault.stats("WINZ25"))
        assert raw >= len(win)  # a write repeated across the move is resolved on read


def test_the_checksum_ignores_order_and_sees_any_changed_value() -> None:
    arr = np.zeros(2, dtype=TRADE_DTYPE)
    arr["trade_id"], arr["price"], arr["qty"] = [2, 1], [1.5, 2.5], [3, 4]
    before = sent_checksum(arr)
    assert sent_checksum(arr[::-1].copy()) == before
    arr["qty"][0] = 5
    assert sent_checksum(arr) != before
