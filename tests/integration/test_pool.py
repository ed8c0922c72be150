"""Worker pools (issue 18 part 4): real worker processes sharing symbols through leases
in the real embedded Valkey, a real publisher, kill -9 of a worker while trades flow.

Ownership is watched through the lease keys the whole time; what is stored is checked
against what was sent, per symbol: every trade once (unique trades) and no record
written twice (stored records == sent). The bridge, feature and model pool tests and
the fenced writes also run on the session's 3-primary cluster (``[cluster]``), where a
pool bridge's cycle is one fenced transaction per slot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import sim_trades
from tests.integration.test_live import GUARD_S, free_ports, port_env, wait_for
from tickvault import Vault
from tickvault.config import Settings
from tickvault.errors import LeaseLost
from tickvault.storage.leases import Fence
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher

SYMBOLS = ["WDOF26", "WDOG26", "WDOZ25", "WINF26", "WING26", "WINZ25"]
TTL_MS = 1500
CHUNK = 40


class Owners:
    """Samples the lease keys of ``role`` every few ms: symbol -> the owners seen in
    turn (consecutive repeats folded), and the first sample time of each change."""

    def __init__(self, vault: Vault, role: str) -> None:
        self.leases = vault.leases(role)
        self.history: dict[str, list[tuple[str | None, float]]] = {s: [] for s in SYMBOLS}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            now = time.monotonic()
            for s, token in self.leases.owners(SYMBOLS).items():
                worker = token.split(":")[0] if token else None
                h = self.history[s]
                if not h or h[-1][0] != worker:
                    h.append((worker, now))
            self.samples += 1

    def now(self) -> dict[str, str | None]:
        return {s: h[-1][0] if h else None for s, h in self.history.items()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(GUARD_S)


class Feed:
    """Publishes CHUNK trades per symbol per round until ``stop``; ``sent`` per symbol."""

    def __init__(self, pub: Publisher) -> None:
        self.pub = pub
        self.trades = {s: sim_trades(200_000, s, seed=i, days=1) for i, s in enumerate(SYMBOLS)}
        self.sent = dict.fromkeys(SYMBOLS, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for s in SYMBOLS:
                n = self.sent[s]
                self.pub.publish_trades(s, self.trades[s].take(range(n, n + CHUNK)))
                self.sent[s] = n + CHUNK
            self.pub.flush()
            self.stop.wait(0.02)  # a pace, not a check

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(GUARD_S)
        self.pub.flush()


def unique_stored(vault: Vault, symbol: str) -> int:
    return len(vault.range_numpy(symbol))


def records_stored(vault: Vault, symbol: str) -> int:
    return sum(s.trades for s in vault.stats(symbol))


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def bridge_pool_env(vault: Vault, tmp_path: Path) -> tuple[dict[str, str], Settings]:
    """(the environment of pool bridges on ``vault``, the publisher's settings): the
    same free ports, no journal, the test's lease TTL."""
    ports = free_ports()
    env = {**os.environ, **port_env(ports), "TICKVAULT_VALKEY_URL": vault.url,
           "TICKVAULT_DATA_DIR": str(tmp_path / "data"), "TICKVAULT_JOURNAL": "false",
           "TICKVAULT_POOL_LEASE_TTL_MS": str(TTL_MS)}  # fmt: skip
    settings = Settings(data_dir=tmp_path / "data", journal=False,
                        **{f"zmq_{k}_port": v for k, v in ports.items()})  # fmt: skip
    return env, settings


def start_pool_bridges(env: dict[str, str], workers: list[subprocess.Popen[bytes]], n: int) -> None:
    """``n`` ``bridge --pool`` processes over SYMBOLS, worker ids w0, w1, ..."""
    for i in range(n):
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "tickvault.cli.main", "bridge", "--pool",
             "--symbols", ",".join(SYMBOLS), "--worker-id", f"w{i}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))  # fmt: skip


@pytest.mark.store_backends  # on a cluster: one fenced transaction per symbol
def test_a_bridge_pool_shares_symbols_one_owner_each_and_a_killed_workers_symbols_move_without_loss(
    vault: Vault, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    env, settings = bridge_pool_env(vault, tmp_path)
    owners = Owners(vault, "bridge")
    with Publisher(settings, endpoints=Endpoints.from_settings(settings)) as pub:
        start_pool_bridges(env, workers, 3)

        def balanced() -> bool:
            now = owners.now()
            counts = [list(now.values()).count(f"w{i}") for i in range(3)]
            return None not in now.values() and counts == [2, 2, 2]

        wait_for(balanced, "3 workers holding 2 symbols each")
        feed = Feed(pub)
        feed.thread.start()
        wait_for(lambda: all(unique_stored(vault, s) > 0 for s in SYMBOLS), "trades stored")
        before = owners.now()
        victim = before[SYMBOLS[0]]
        assert victim is not None
        moved = [s for s, w in before.items() if w == victim]
        workers[int(victim[1:])].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        survivors = {f"w{i}" for i in range(3)} - {victim}
        wait_for(lambda: all(owners.now()[s] in survivors for s in moved),
                 "the killed worker's symbols owned by the others")  # fmt: skip
        move_s = max(h[-1][1] for s, h in owners.history.items() if s in moved) - killed_at
        at_move = {s: unique_stored(vault, s) for s in moved}
        wait_for(lambda: all(unique_stored(vault, s) > at_move[s] + CHUNK for s in moved),
                 "the moved symbols stored by their new owners")  # fmt: skip
        feed.finish()
        sent = dict(feed.sent)
        wait_for(lambda: all(unique_stored(vault, s) >= sent[s] for s in SYMBOLS),
                 "every trade sent stored")  # fmt: skip
        final = owners.now()
        owners.close()  # before the clean stops, which hand symbols over again
        for p in workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(GUARD_S) for p in workers]
    print(f"the killed worker's symbols moved {move_s:.2f} s after the kill (TTL {TTL_MS} ms)")
    for s in SYMBOLS:
        assert unique_stored(vault, s) == sent[s]  # none lost
        assert records_stored(vault, s) == sent[s]  # none written twice
        assert vault.gaps(s) == []
    # ownership over time: only the pool's workers, the dead one never again after its
    # symbols moved, the moved symbols once to a survivor and there they stayed
    for h in owners.history.values():
        assert {w for w, _ in h} <= {None, "w0", "w1", "w2"}
    for s in moved:  # after the kill: only survivors (balancing may move one again)
        after_kill = [w for w, t in owners.history[s] if t > killed_at and w is not None]
        assert after_kill and set(after_kill) <= survivors
    assert sorted(final.values()) == sorted(list(survivors) * 3)  # 3 each: balanced again
    assert codes[int(victim[1:])] == -signal.SIGKILL
    assert [c for i, c in enumerate(codes) if f"w{i}" != victim] == [0, 0]


def test_a_bridge_worker_paused_past_its_leases_writes_nothing_after_its_successor(
    vault: Vault, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    env, settings = bridge_pool_env(vault, tmp_path)
    owners = Owners(vault, "bridge")
    with Publisher(settings, endpoints=Endpoints.from_settings(settings)) as pub:
        start_pool_bridges(env, workers, 2)
        wait_for(lambda: sorted(w or "" for w in owners.now().values()) == ["w0"] * 3 + ["w1"] * 3,
                 "2 workers holding 3 symbols each")  # fmt: skip
        feed = Feed(pub)
        feed.thread.start()
        wait_for(lambda: all(unique_stored(vault, s) > 0 for s in SYMBOLS), "trades stored")
        workers[0].send_signal(signal.SIGSTOP)  # a zombie: it holds what it received
        wait_for(lambda: set(owners.now().values()) == {"w1"}, "w1 owning every symbol")
        taken = {s: unique_stored(vault, s) for s in SYMBOLS}
        wait_for(lambda: all(unique_stored(vault, s) > taken[s] + CHUNK for s in SYMBOLS),
                 "w1 storing every symbol")  # fmt: skip
        workers[0].send_signal(signal.SIGCONT)  # wakes with writes for symbols not its own
        wait_for(lambda: sorted(w or "" for w in owners.now().values()) == ["w0"] * 3 + ["w1"] * 3,
                 "the pool balanced again")  # fmt: skip
        feed.finish()
        sent = dict(feed.sent)
        wait_for(lambda: all(unique_stored(vault, s) >= sent[s] for s in SYMBOLS),
                 "every trade sent stored")  # fmt: skip
        owners.close()
        for p in workers:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(GUARD_S) for p in workers]
        assert workers[0].stderr is not None
        err = workers[0].stderr.read().decode()
    for s in SYMBOLS:
        assert unique_stored(vault, s) == sent[s]
        assert records_stored(vault, s) == sent[s]  # the zombie's late writes: refused
    assert codes == [0, 0]
    assert "leases lost" in err


@pytest.mark.store_backends
def test_a_fenced_write_lands_only_while_its_lease_is_held(vault: Vault) -> None:
    from tickvault.storage.writes import StoreItem

    leases = vault.leases("bridge")
    a, b = Fence("bridge", "a:1"), Fence("bridge", "b:1")
    trades = sim_trades(100, "WINZ25").to_structured()
    item = StoreItem("WINZ25", "realtime", trades[:50], {"00:trade.WINZ25": 1})
    assert leases.acquire("WINZ25", a.token, 60_000)
    assert not leases.acquire("WINZ25", b.token, 60_000)  # held: nobody else takes it
    vault.store_cycle([item], fence=a)
    with pytest.raises(LeaseLost, match="WINZ25"):  # b never held it
        vault.store_cycle([StoreItem("WINZ25", "realtime", trades[50:], {})], fence=b)
    assert records_stored(vault, "WINZ25") == 50
    # a's lease expires (a paused past its TTL), b takes the symbol: a's write is refused
    assert leases.renew(["WINZ25"], a.token, 1) == {"WINZ25"}
    wait_for(lambda: leases.acquire("WINZ25", b.token, 60_000), "the lease free for b")
    with pytest.raises(LeaseLost):
        vault.store_cycle([StoreItem("WINZ25", "realtime", trades[50:], {})], fence=a)
    vault.store_cycle([StoreItem("WINZ25", "realtime", trades[50:], {"00:trade.WINZ25": 2})],
                      fence=b)  # fmt: skip
    assert records_stored(vault, "WINZ25") == 100
    assert vault.bridge_cursor("WINZ25", "00:trade.WINZ25") == 2
    assert leases.renew(["WINZ25"], a.token, 60_000) == set()  # a cannot renew b's lease
    leases.release(["WINZ25"], a.token)  # nor release it
    assert leases.owners(["WINZ25"]) == {"WINZ25": b.token}


@pytest.mark.store_backends
def test_a_fenced_cycle_over_many_symbols_stores_the_held_ones_whole_and_refuses_the_lost_one(
    vault: Vault,
) -> None:
    # on a cluster the symbols' leases are on several slots: one transaction each
    from tickvault.storage.writes import StoreItem

    leases = vault.leases("bridge")
    a, b = Fence("bridge", "a:1"), Fence("bridge", "b:1")
    trades = {s: sim_trades(60, s, seed=i).to_structured() for i, s in enumerate(SYMBOLS)}
    for s in SYMBOLS:
        assert leases.acquire(s, a.token, 60_000)
    vault.store_cycle([StoreItem(s, "realtime", trades[s][:30], {f"00:trade.{s}": 1})
                       for s in SYMBOLS], fence=a)  # fmt: skip
    assert {s: records_stored(vault, s) for s in SYMBOLS} == dict.fromkeys(SYMBOLS, 30)
    taken = SYMBOLS[2]  # a loses one lease to b
    leases.release([taken], a.token)
    assert leases.acquire(taken, b.token, 60_000)
    with pytest.raises(LeaseLost, match=taken) as caught:
        vault.store_cycle([StoreItem(s, "realtime", trades[s][30:], {f"00:trade.{s}": 2})
                           for s in SYMBOLS], fence=a)  # fmt: skip
    assert caught.value.symbols == [taken]
    assert caught.value.stored == sorted(set(SYMBOLS) - {taken})
    for s in SYMBOLS:
        want = 30 if s == taken else 60
        assert records_stored(vault, s) == want and unique_stored(vault, s) == want
        assert vault.bridge_cursor(s, f"00:trade.{s}") == (1 if s == taken else 2)


@pytest.mark.store_backends
def test_fenced_feature_rows_and_signals_land_only_while_their_lease_is_held(
    vault: Vault,
) -> None:
    # the feature and model pools' writes (one symbol each), on both backends
    from typing import Any

    import numpy as np

    from tickvault.engine.rows import FeatureRows
    from tickvault.engine.signals import SignalStore
    from tickvault.records.signals import Mode, Side, Signal

    rows, signals = FeatureRows(vault), SignalStore(vault)
    values = {c: np.arange(1, 4).astype(t) for c, t in rows.schema.columns}
    sig = Signal("WINZ25", 3, 2, Side.LONG, 0.4, 0.55, 60, "a1b2c3", Mode.HISTORY)

    def queue(pipe: Any) -> Any:
        check = rows.append_queued(pipe, "WINZ25", values, {"T": 3})
        signals.append_decided_queued(pipe, "WINZ25", [sig], {"T": 3, "rows": 3})
        return lambda replies: check(replies[0])

    mine, other = Fence("features", "a:1"), Fence("features", "b:1")
    assert vault.leases("features").acquire("WINZ25", mine.token, 60_000)
    with pytest.raises(LeaseLost, match="WINZ25"):
        vault.fenced(other, ["WINZ25"], queue)
    assert len(rows.range("WINZ25", versions=True)) == 0
    assert signals.signals("WINZ25", 0, 2**62) == []
    vault.fenced(mine, ["WINZ25"], queue)
    assert [int(t) for t in rows.range("WINZ25", versions=True).index] == [1, 2, 3]
    assert signals.signals("WINZ25", 0, 2**62) == [sig]
    assert signals.cursor("WINZ25")["rows"] == "3"


@pytest.fixture(params=["single", "cluster"])
def pool_store_url(request: pytest.FixtureRequest) -> str | None:
    """None: the embedded server of the test's data directory; else the session's
    3-primary cluster, emptied (the worker processes get it as TICKVAULT_VALKEY_URL)."""
    if request.param == "single":
        return None
    v: Vault = request.getfixturevalue("session_cluster_vault")
    v.client.flushdb()
    return str(request.getfixturevalue("session_cluster"))


def test_a_feature_pool_moves_a_killed_workers_symbols_and_no_row_is_lost_or_doubled(
    own_data_dir: Path, workers: list[subprocess.Popen[bytes]], pool_store_url: str | None
) -> None:
    import datetime as dt

    import numpy as np

    from tickvault.engine.parity import check_rows
    from tickvault.engine.rows import FeatureRows
    from tickvault.feeds.sim import SimulatedFeeder
    from tickvault.live.seed import seed_sessions
    from tickvault.venue.b3 import B3_TZ, session

    day = dt.date(2025, 12, 1)
    ports = free_ports()
    env = {**os.environ, **port_env(ports), "TICKVAULT_DATA_DIR": str(own_data_dir),
           "TICKVAULT_POOL_LEASE_TTL_MS": str(TTL_MS)}  # fmt: skip
    if pool_store_url is not None:
        env["TICKVAULT_VALKEY_URL"] = pool_store_url
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    start = dt.datetime.combine(day, dt.time(9, 0), tzinfo=B3_TZ)
    feeder = SimulatedFeeder(SYMBOLS, speed=None, days=1, trades_per_day=3_000, chained=True,
                             start=start)  # fmt: skip
    trades = {s: feeder.day_trades(s, day).to_structured() for s in SYMBOLS}

    def cli(*args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        workers.append(p)
        return p

    def publish(pub: Publisher, lo: float, hi: float) -> None:
        for s, t in trades.items():
            a, b = int(len(t) * lo), int(len(t) * hi)
            for i in range(a, b, 100):  # chunks that split one nanosecond's trades too
                pub.publish_trades(s, t[i : min(i + 100, b)])
        pub.flush()

    with Vault.open(pool_store_url, data_dir=own_data_dir, **overrides) as vault, \
            Publisher(vault.settings) as pub:  # fmt: skip
        for s in SYMBOLS:
            seed_sessions(vault, s, 2, before=day, trades_per_day=1_000)
        cli("bridge")
        for i in range(3):
            cli("features", "run", "--pool", "--symbols", ",".join(SYMBOLS), "--worker-id",
                f"f{i}")  # fmt: skip
        owners = Owners(vault, "features")
        rows = FeatureRows(vault)

        def balanced() -> bool:
            now = owners.now()
            return sorted(w or "" for w in now.values()) == ["f0", "f0", "f1", "f1", "f2", "f2"]

        wait_for(balanced, "3 feature workers holding 2 symbols each")
        wait_for(lambda: pub.subscribers() >= 4, "the bridge and the feature workers")
        publish(pub, 0, 0.5)
        wait_for(lambda: all(len(rows.range(s, versions=True)) > 100 for s in SYMBOLS),
                 "rows of every symbol")  # fmt: skip
        before = owners.now()
        victim = before[SYMBOLS[0]]
        assert victim is not None
        moved = [s for s, w in before.items() if w == victim]
        workers[1 + int(victim[1:])].send_signal(signal.SIGKILL)  # mid-stream, maybe mid-cycle
        killed_at = time.monotonic()
        publish(pub, 0.5, 1.0)
        survivors = {f"f{i}" for i in range(3)} - {victim}
        wait_for(lambda: all(owners.now()[s] in survivors for s in moved),
                 "the killed worker's symbols owned by the others")  # fmt: skip
        last_t = {s: int(t["ts_event"][-1]) + 1 for s, t in trades.items()}
        wait_for(lambda: all((r := rows.last(s)) is not None and r.name == last_t[s]
                             for s in SYMBOLS), "every symbol's last row")  # fmt: skip
        owners.close()
        for p in workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(GUARD_S) for p in workers]
        move_s = max(h[-1][1] for s, h in owners.history.items() if s in moved) - killed_at
        print(f"the killed feature worker's symbols moved {move_s:.2f} s after the kill")
        for s in SYMBOLS:
            versions = rows.range(s, versions=True)
            key = list(zip(versions.index, versions["last_trade_id"], strict=True))
            assert len(set(key)) == len(key), s  # no row written twice
            sess = session(s, day)
            report = check_rows(vault, s, sess.open_ns, sess.close_ns + 2)
            assert report.ok, (s, report.differences.head(), report.missing[:5], report.extra[:5])
            assert report.rows == len(np.unique(trades[s]["ts_event"]))  # none lost
    for s in moved:
        after_kill = [w for w, t in owners.history[s] if t > killed_at and w is not None]
        assert after_kill and set(after_kill) <= survivors
    assert codes[1 + int(victim[1:])] == -signal.SIGKILL
    assert [c for i, c in enumerate(codes) if i != 1 + int(victim[1:])] == [0, 0, 0]


def test_a_model_pool_moves_a_killed_workers_symbols_and_no_signal_is_lost_or_doubled(
    own_data_dir: Path, workers: list[subprocess.Popen[bytes]], pool_store_url: str | None
) -> None:
    import datetime as dt

    from tickvault.engine import FeatureEngine
    from tickvault.engine.rows import FeatureRows
    from tickvault.engine.signals import SignalStore
    from tickvault.engine.training import load_promoted, metadata, train
    from tickvault.feeds.sim import SimulatedFeeder
    from tickvault.live.models import frame_rows
    from tickvault.live.seed import seed_sessions
    from tickvault.models.registry import Registry
    from tickvault.signals.coordinator import CoordinatorParams, Decider
    from tickvault.signals.policy import PolicyParams
    from tickvault.venue.b3 import B3_TZ

    day = dt.date(2025, 12, 1)
    policy = PolicyParams(enter=0.01, exit=0.0, min_confidence=0.0, cooldown_ns=0)
    ports, more = free_ports(), free_ports()
    env = {**os.environ, **port_env(ports), "TICKVAULT_DATA_DIR": str(own_data_dir),
           "TICKVAULT_POOL_LEASE_TTL_MS": str(TTL_MS),
           "TICKVAULT_ZMQ_FEATURES_PORT": str(more["ticks"]),
           "TICKVAULT_ZMQ_SIGNALS_PORT": str(more["book"]),
           "TICKVAULT_ZMQ_SIGNALS_REPLAY_PORT": str(more["history"]),
           "TICKVAULT_SIGNAL_DEADLINE_MS": str(3_600_000), "TICKVAULT_SIGNAL_ENTER": "0.01",
           "TICKVAULT_SIGNAL_EXIT": "0", "TICKVAULT_SIGNAL_MIN_CONFIDENCE": "0",
           "TICKVAULT_SIGNAL_COOLDOWN_S": "0"}  # fmt: skip
    if pool_store_url is not None:
        env["TICKVAULT_VALKEY_URL"] = pool_store_url
    overrides = {f"zmq_{name}_port": p for name, p in ports.items()}
    start = dt.datetime.combine(day, dt.time(9, 0), tzinfo=B3_TZ)
    feeder = SimulatedFeeder(SYMBOLS, speed=None, days=1, trades_per_day=4_000, chained=True,
                             start=start)  # fmt: skip
    trades = {s: feeder.day_trades(s, day).to_structured() for s in SYMBOLS}

    def cli(*args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        workers.append(p)
        return p

    def publish(pub: Publisher, lo: float, hi: float) -> None:
        for s, t in trades.items():
            a, b = int(len(t) * lo), int(len(t) * hi)
            for i in range(a, b, 100):
                chunk = t[i : min(i + 100, b)].copy()
                chunk["ts_recv"] = time.time_ns()  # received now: the deadline counts from it
                pub.publish_trades(s, chunk)
        pub.flush()

    with Vault.open(pool_store_url, data_dir=own_data_dir, **overrides) as vault, \
            Publisher(vault.settings) as pub:  # fmt: skip
        reg = Registry.of_data_dir(own_data_dir)
        for s in SYMBOLS:  # a fast model per symbol (intraday features only)
            seed_sessions(vault, s, 3, before=day, trades_per_day=2_000)
            result = train(vault, s, "2025-11-20", "2025-12-01", every="5min", folds=2,
                           estimator="sklearn.linear_model.LogisticRegression",
                           features="fast")  # fmt: skip
            reg.promote(reg.save(s, result.model, metadata(result)))
        cli("bridge")
        cli("features", "run", "--symbols", ",".join(SYMBOLS))
        for i in range(3):
            cli("ml", "run", "--pool", "--symbols", ",".join(SYMBOLS), "--worker-id", f"m{i}")
        owners = Owners(vault, "models")
        store = SignalStore(vault)

        def balanced() -> bool:
            now = owners.now()
            return sorted(w or "" for w in now.values()) == ["m0", "m0", "m1", "m1", "m2", "m2"]

        wait_for(balanced, "3 model workers holding 2 symbols each")
        wait_for(lambda: pub.subscribers() >= 2, "the bridge and the feature worker")
        publish(pub, 0, 0.5)
        wait_for(lambda: all(int(store.cursor(s).get("rows") or 0) > 100 for s in SYMBOLS),
                 "decisions on every symbol")  # fmt: skip
        victim = owners.now()[SYMBOLS[0]]
        assert victim is not None
        moved = [s for s, w in owners.now().items() if w == victim]
        index = 2 + int(victim[1:])
        workers[index].send_signal(signal.SIGKILL)  # mid-stream, maybe mid-batch
        killed_at = time.monotonic()
        publish(pub, 0.5, 1.0)
        survivors = {f"m{i}" for i in range(3)} - {victim}
        wait_for(lambda: all(owners.now()[s] in survivors for s in moved),
                 "the killed worker's symbols owned by the others")  # fmt: skip
        last_t = {s: int(t["ts_event"][-1]) + 1 for s, t in trades.items()}
        wait_for(lambda: all(store.cursor(s).get("T") == str(last_t[s]) for s in SYMBOLS),
                 "every symbol decided to its last row")  # fmt: skip
        owners.close()
        for p in workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(GUARD_S) for p in workers]
        move_s = max(h[-1][1] for s, h in owners.history.items() if s in moved) - killed_at
        print(f"the killed model worker's symbols moved {move_s:.2f} s after the kill")
        params = CoordinatorParams(deadline_ns=3_600 * 10**9)
        total = 0
        for s in SYMBOLS:
            models = load_promoted(reg, s, FeatureEngine(vault))
            d = Decider(s, models, params, policy)
            rows = frame_rows(FeatureRows(vault).range(s, versions=True))
            expected = [x.signal for x in d.on_rows((r[0], r[1], r[3]) for r in rows) if x.signal]
            stored = store.signals(s, 0, 2**62)
            assert stored == expected, s  # none lost, none twice
            cursor = store.cursor(s)
            assert int(cursor["rows"]) == len(rows) and int(cursor["signals"]) == len(stored)
            total += len(stored)
        assert total > 10
    for s in moved:
        after_kill = [w for w, t in owners.history[s] if t > killed_at and w is not None]
        assert after_kill and set(after_kill) <= survivors
    assert codes[index] == -signal.SIGKILL
    assert [c for i, c in enumerate(codes) if i != index] == [0] * 4


def test_lease_keepers_balance_take_only_free_symbols_and_give_away_on_request(
    vault: Vault,
) -> None:
    from tickvault.live.pool import LeaseKeeper

    a = LeaseKeeper(vault, "bridge", SYMBOLS, "a")
    a.tick()  # alone: it takes every symbol
    assert a.wanted() == SYMBOLS and a.members == 1
    b = LeaseKeeper(vault, "bridge", SYMBOLS, "b")
    b.tick()  # 2 members: b may hold 3, but every symbol is a's
    assert b.held() == set() and b.members == 2
    a.tick()  # a holds 6 > 3: marks 3 to give away, still holds (and renews) them
    assert len(a.wanted()) == 3 and a.held() == set(SYMBOLS)
    b.tick()
    assert b.held() == set()  # nothing is free until a gives them away
    a.give_away()  # (the pool loop calls it once its instance stopped writing them)
    b.tick()
    assert sorted(a.held() | b.held()) == SYMBOLS and not a.held() & b.held()
    assert len(b.held()) == 3
    owners = vault.leases("bridge").owners(SYMBOLS)
    assert {s for s, t in owners.items() if t == b.token} == b.held()
    a.close()  # a clean stop releases at once and leaves the pool
    b.tick()
    assert b.held() == set(SYMBOLS) and b.members == 1
    b.close()
    assert set(vault.leases("bridge").owners(SYMBOLS).values()) == {None}
    assert vault.leases("bridge").members() == []
