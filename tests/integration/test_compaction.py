"""Compaction against the real store: a reader during compaction sees each trade once,
a compactor killed with SIGKILL loses or doubles nothing, compaction beside a live
bridge, and the ``tickvault compact`` command.

Waits poll for a condition with a generous guard; no test asserts on elapsed time.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import sim_trades
from tickvault import TradeBatch, Vault
from tickvault.cli.main import cli
from tickvault.live.bridge import Bridge
from tickvault.records.trades import TRADE_DTYPE, TRADE_FIELDS
from tickvault.storage import codec
from tickvault.storage.keys import STORED_STREAMS, meta_key, trades_key
from tickvault.storage.writes import StoreItem
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher

GUARD_S = 120.0
SYMBOL = "WINZ25"
FAR = 2**62
"""A ``now`` at which everything stored is settled."""


def wait_for(condition: Callable[[], bool], what: str, guard_s: float = GUARD_S) -> None:
    deadline = time.monotonic() + guard_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.002)


def stored_records(vault: Vault, symbol: str = SYMBOL) -> np.ndarray:
    """Every record of every stored stream of ``symbol`` (each copy), sorted."""
    blocks = [f[b"b"] for stream in STORED_STREAMS
              for _, f in vault.client.xrange(trades_key(symbol, stream))]  # fmt: skip
    if not blocks:
        return np.empty(0, TRADE_DTYPE)
    cols = codec.decode_blocks(blocks)
    rows = TradeBatch(**{n: cols[n] for n in TRADE_FIELDS}).to_structured()
    return np.sort(rows, order=list(TRADE_FIELDS))


def sorted_records(batch: TradeBatch) -> np.ndarray:
    return np.sort(batch.to_structured(), order=list(TRADE_FIELDS))


def gen(vault: Vault, symbol: str = SYMBOL) -> int:
    return int(vault.client.hget(meta_key(symbol, "compacted"), "gen") or 0)


def write_small(vault: Vault, batch: TradeBatch, seed: int, late_every: int = 50) -> None:
    """``batch`` as blocks of 1 to 12 trades, the way the bridge stores a live feed (many
    blocks per round trip), every ``late_every``-th block held back and written at the
    end (a late block)."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 13, size=len(batch)))
    cuts = [0, *cuts[cuts < len(batch)].tolist(), len(batch)]
    items = [StoreItem(SYMBOL, "realtime", batch.take(slice(a, b)).to_structured(), {})
             for a, b in itertools.pairwise(cuts)]  # fmt: skip
    held = items[late_every // 2 :: late_every]
    ordered = [it for i, it in enumerate(items) if (i - late_every // 2) % late_every] + held
    for i in range(0, len(ordered), 500):
        vault.store_cycle(ordered[i : i + 500])


def checksum(cols: dict[str, Any]) -> tuple[int, int, int]:
    return (len(cols["trade_id"]), int(cols["trade_id"].sum()), int(cols["ts_event"].sum() % 2**61))


# ---------------------------------------------------------------------- readers during compaction
@pytest.mark.store_backends
def test_a_reader_during_compaction_sees_each_trade_exactly_once(vault: Vault) -> None:
    """A reader loops over the whole day and over its first half while compaction runs
    (many small swaps) and a writer appends later trades: every answer holds each trade
    once, and exactly the trades written at that time (count and checksum)."""
    store = vault.with_settings(block_max_trades=256, compact_after_minutes=0)
    day = sim_trades(24_000, SYMBOL, seed=5, days=1)
    base, extra = day.take(slice(0, 18_000)), day.take(slice(18_000, None))
    write_small(store, base, seed=1)
    lo, hi = int(day.ts_event[0]), int(day.ts_event[-1]) + 1
    half = int(base.ts_event[9_000])
    # The writer's trades, in order, a few per call: a read sees a prefix of them.
    chunks = [extra.take(slice(i, i + 7)) for i in range(0, len(extra), 7)]
    prefixes = {checksum(TradeBatch.concat([base, *chunks[:k]]).columns()): k
                for k in range(len(chunks) + 1)}  # fmt: skip
    first_half = checksum(base.take(base.ts_event < half).columns())
    done = threading.Event()
    reads: list[tuple[float, float]] = []
    errors: list[str] = []

    def reader() -> None:
        while not done.is_set():
            t0 = time.monotonic()
            whole = store.range_columns(SYMBOL, lo, hi)
            part = store.range_columns(SYMBOL, lo, half)
            reads.append((t0, time.monotonic()))
            if len(np.unique(whole["trade_id"])) != len(whole["trade_id"]):
                errors.append("a trade twice in the whole day")
            if checksum(whole) not in prefixes:
                errors.append(f"the whole day is no prefix of the writes: {checksum(whole)}")
            if checksum(part) != first_half:
                errors.append(f"the first half differs: {checksum(part)} != {first_half}")

    def writer() -> None:
        for chunk in chunks:
            store.store_batch(SYMBOL, chunk)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(reads) >= 1, "a first read")
        started = time.monotonic()
        report = store.compact([SYMBOL], now=int(extra.ts_event[0]))  # the base is settled
        ended = time.monotonic()
        threads[1].join(GUARD_S)
        wait_for(lambda: len([r for r in reads if r[0] > ended]) >= 1, "a read after")
    finally:
        done.set()
        for t in threads:
            t.join(GUARD_S)
    assert not errors, errors[:5]
    assert report.items[0].swaps >= 20 and report.items[0].swaps_lost == 0
    assert any(a < ended and b > started for a, b in reads), "no read overlapped compaction"
    np.testing.assert_array_equal(stored_records(store), sorted_records(day))


@pytest.mark.store_backends
def test_two_compactors_at_once_compact_each_entry_once(vault: Vault) -> None:
    store = vault.with_settings(block_max_trades=128)
    batch = sim_trades(12_000, SYMBOL, seed=8, days=2)
    write_small(store, batch, seed=2)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(store.compact([SYMBOL], now=FAR)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD_S)
    assert sum(r.items[0].trades_compacted for r in reports) == len(batch)
    assert store.client.xlen(trades_key(SYMBOL, "realtime")) == 0
    np.testing.assert_array_equal(stored_records(store), sorted_records(batch))
    assert sum(s.trades for s in store.stats(SYMBOL)) == len(batch)


def test_an_open_session_compacts_full_blocks_only_and_the_rest_at_the_close(vault: Vault) -> None:
    store = vault.with_settings(block_max_trades=1000, compact_after_minutes=5)
    day = sim_trades(5_500, SYMBOL, seed=3, days=1)
    write_small(store, day, seed=3)
    now = int(day.ts_event[4_500]) + 60 * 10**9  # in the session, with trades after
    store.compact([SYMBOL], now=now)
    blocks = [codec.read_header(f[b"b"]) for _, f in
              store.client.xrange(trades_key(SYMBOL, "compacted"))]  # fmt: skip
    assert blocks and all(h.n > 900 for h in blocks)  # full chunks only
    assert all(h.ts_last < now - 5 * 60 * 10**9 for h in blocks)  # settled only
    left = store.client.xlen(trades_key(SYMBOL, "realtime"))
    assert left > 0
    store.compact([SYMBOL], now=int(day.ts_event[-1]) + 86_400 * 10**9)  # the day is over
    assert store.client.xlen(trades_key(SYMBOL, "realtime")) == 0
    np.testing.assert_array_equal(stored_records(store), sorted_records(day))


def test_late_blocks_after_compaction_are_found_and_compacted_again(vault: Vault) -> None:
    store = vault.with_settings(block_max_trades=500)
    day = sim_trades(6_000, SYMBOL, seed=4, days=1)
    odd = np.arange(len(day)) % 10 == 3
    write_small(store, day.take(~odd), seed=4)
    store.compact([SYMBOL], now=FAR)
    write_small(store, day.take(odd), seed=5)  # all of them older than compacted blocks
    every = store.range(SYMBOL)
    assert len(every) == len(day)
    store.compact([SYMBOL], now=FAR)
    assert store.range(SYMBOL).equals(every)
    assert store.range(SYMBOL, streams=["realtime"]).equals(every)
    assert store.client.zcard(f"ticks:{{{SYMBOL}}}:compacted:late") > 0
    np.testing.assert_array_equal(stored_records(store), sorted_records(day))
    assert len(store.last(SYMBOL, 10)) == 10


# ---------------------------------------------------------------------- processes
def _env(vault: Vault, **settings: Any) -> dict[str, str]:
    extra = {f"TICKVAULT_{k.upper()}": str(v) for k, v in settings.items()}
    return {**os.environ, "TICKVAULT_VALKEY_URL": vault.connection_url, **extra}


def test_kill_9_of_tickvault_compact_mid_run_then_a_rerun_stores_what_was_written(
    vault: Vault,
) -> None:
    batch = sim_trades(100_000, SYMBOL, seed=6, days=2)
    write_small(vault, batch, seed=6)
    written = sorted_records(batch)
    proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "compact"],
                            env=_env(vault, block_max_trades=128), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: gen(vault) >= 3 or proc.poll() is not None, "the first swaps")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(GUARD_S)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read() if proc.stdout else ""
    assert vault.client.xlen(trades_key(SYMBOL, "realtime")) > 0  # killed mid-run
    np.testing.assert_array_equal(stored_records(vault), written)
    assert sum(s.trades for s in vault.stats(SYMBOL)) == len(batch)
    again = subprocess.run([sys.executable, "-m", "tickvault.cli.main", "compact", "--json"],
                           env=_env(vault, block_max_trades=128), capture_output=True, text=True,
                           timeout=GUARD_S, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    item = json.loads(again.stdout)["symbols"][0]
    assert item["symbol"] == SYMBOL and item["trades_after"] == len(batch)
    assert vault.client.xlen(trades_key(SYMBOL, "realtime")) == 0
    np.testing.assert_array_equal(stored_records(vault), written)
    assert len(vault.range(SYMBOL)) == len(batch)


def test_compaction_while_the_bridge_ingests_stores_what_was_sent_once(
    vault: Vault, endpoints: Endpoints
) -> None:
    """A live bridge stores a paced simulated feed while `tickvault compact --follow`
    compacts every 50 ms (the feed's days are over: everything stored is settled)."""
    trades = sim_trades(30_000, SYMBOL, seed=9, days=1)
    argv = [sys.executable, "-m", "tickvault.cli.main", "compact", "--follow"]
    env = _env(vault, block_max_trades=512, compact_every_s=0.05)
    follow = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)  # fmt: skip
    try:
        assert follow.stdout is not None
        assert "SIGINT/SIGTERM stop it" in follow.stdout.readline()
        with Publisher(vault.settings, endpoints=endpoints) as pub:
            bridge = Bridge(vault, endpoints=[endpoints]).start()
            try:
                gen_before = gen(vault)
                rows = zip(trades.ts_event.tolist(), trades.trade_id.tolist(),
                           trades.price.tolist(), trades.qty.tolist(), trades.volume.tolist(),
                           trades.buy_agent.tolist(), trades.sell_agent.tolist(),
                           trades.trade_type.tolist(), strict=True)  # fmt: skip
                for i, row in enumerate(rows):
                    pub.publish_trade(SYMBOL, *row)
                    if i % 100 == 99:
                        time.sleep(0.005)  # about 20k trades/s: small blocks
                pub.flush()
                wait_for(lambda: bridge.stats.trades_stored >= len(trades), "every trade stored")
                gen_sent = gen(vault)
            finally:
                bridge.close()
        wait_for(lambda: vault.client.xlen(trades_key(SYMBOL, "realtime")) == 0,
                 "the compactor to compact the rest")  # fmt: skip
    finally:
        follow.send_signal(signal.SIGTERM)
        follow.wait(GUARD_S)
    assert follow.returncode == 0
    assert gen_sent > gen_before  # swaps landed while the bridge was storing
    got = vault.range_columns(SYMBOL)
    assert len(got["trade_id"]) == len(trades)
    for name in ("ts_event", "trade_id", "price", "qty"):
        np.testing.assert_array_equal(got[name], getattr(trades, name), name)
    assert sum(s.trades for s in vault.stats(SYMBOL)) == len(trades)  # nothing doubled


# ---------------------------------------------------------------------- the command
@pytest.fixture
def cli_env(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> Iterator[Vault]:
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", vault.connection_url)
    yield vault


def test_compact_cli_dry_run_changes_nothing_then_compacts(cli_env: Vault) -> None:
    vault = cli_env
    batch = sim_trades(3_000, SYMBOL, seed=7, days=1)
    write_small(vault, batch, seed=7)
    blocks = vault.client.xlen(trades_key(SYMBOL, "realtime"))
    dry = CliRunner().invoke(cli, ["compact", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"{SYMBOL}: would compact 3,000 trades in {blocks:,} blocks into 1" in dry.output
    assert "dry run: nothing was changed" in dry.output
    assert vault.client.xlen(trades_key(SYMBOL, "realtime")) == blocks
    done = CliRunner().invoke(cli, ["compact", "--symbol", SYMBOL.lower(), "--json"])
    assert done.exit_code == 0, done.output
    item = json.loads(done.output)["symbols"][0]
    assert item["blocks_before"] == blocks and item["blocks_after"] == 1
    assert item["trades_before"] == item["trades_after"] == 3_000
    assert item["bytes_after"] < item["bytes_before"]


def test_compact_cli_of_a_symbol_with_nothing_stored_says_so(cli_env: Vault) -> None:
    cli_env.write_trades(SYMBOL, sim_trades(10, SYMBOL))
    result = CliRunner().invoke(cli, ["compact", "--symbol", "NOPE3"])
    assert result.exit_code == 2
    assert "nothing is stored for NOPE3" in result.output and SYMBOL in result.output
    bad = CliRunner().invoke(cli, ["compact", "--symbol", "WIN Z25"])
    assert bad.exit_code == 2 and "'WIN Z25'" in bad.output, bad.output


def test_entries_not_at_the_start_of_the_stream_go_in_bounded_swaps(vault: Vault) -> None:
    """The day's last trade, written first, holds the stream's start (unsettled), so the
    one-trade blocks written after it (late: their trades are earlier) cannot go with
    one XTRIM: they go with XDEL, at most XDEL_MAX per swap (a full chunk of 2,048 in
    two swaps); the rest waits for the chunk to fill (the session is open)."""
    from tickvault.storage.compaction import XDEL_MAX

    store = vault.with_settings(block_max_trades=2048, compact_after_minutes=0)
    full = sim_trades(3_100, SYMBOL, seed=11, days=1)
    last_ms = int(full.ts_event[-1]) // 1_000_000
    early = full.take(slice(0, 3_000)).take(full.ts_event[:3_000] // 1_000_000 < last_ms - 1)
    last = full.take(slice(-1, None))
    store.store_batch(SYMBOL, last)
    items = [StoreItem(SYMBOL, "realtime", early.take(slice(i, i + 1)).to_structured(), {})
             for i in range(len(early))]  # fmt: skip
    for i in range(0, len(items), 500):
        store.store_cycle(items[i : i + 500])
    late = f"ticks:{{{SYMBOL}}}:realtime:late"
    assert store.client.zcard(late) == len(early) > 2048 > XDEL_MAX
    before = store.range(SYMBOL)
    report = store.compact([SYMBOL], now=int(last.ts_event[0]) - 1)
    item = report.items[0]
    assert item.entries_compacted == 2048 and item.swaps == -(-2048 // XDEL_MAX)
    assert store.client.xlen(trades_key(SYMBOL, "realtime")) == 1 + len(early) - 2048
    assert store.client.zcard(late) == len(early) - 2048
    assert store.range(SYMBOL).equals(before)
    day = TradeBatch.concat([early, last])
    np.testing.assert_array_equal(stored_records(store), sorted_records(day))


@pytest.mark.store_backends
def test_a_swap_between_the_two_round_trips_of_a_read_makes_it_read_again(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the first half of the day needs a second round trip (late blocks whose
    ids lie past the range are fetched by id). A compaction landing between its round
    trips (run from inside the read, at the moment the first reply is handled) deletes
    those entries: the read sees the generation move and reads again, whole."""
    from tickvault.storage import reads

    day = sim_trades(6_000, SYMBOL, seed=12, days=1)
    write_small(vault, day, seed=12, late_every=10)
    half = int(day.ts_event[3_000])
    want = day.take(day.ts_event < half)
    calls = {"fetch": 0, "compacted": 0}
    original_fetch, original_split = reads.TradeReads._fetch_once, reads.split_member

    def fetch_once(self: Any, *args: Any) -> Any:
        calls["fetch"] += 1
        return original_fetch(self, *args)

    def split_member(member: bytes) -> tuple[bytes, int]:
        if not calls["compacted"]:
            calls["compacted"] = 1
            vault.compact([SYMBOL], now=FAR)
        return original_split(member)

    monkeypatch.setattr(reads.TradeReads, "_fetch_once", fetch_once)
    monkeypatch.setattr(reads, "split_member", split_member)
    got = vault.range_columns(SYMBOL, int(day.ts_event[0]), half)
    assert calls == {"fetch": 2, "compacted": 1}
    assert checksum(got) == checksum(want.columns())
    assert vault.client.xlen(trades_key(SYMBOL, "realtime")) == 0


@pytest.mark.parametrize("deleted", ["realtime", "every"])
def test_keys_deleted_and_written_again_under_a_compactor_are_not_touched_by_it(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, deleted: str
) -> None:
    """Between a compactor's scan and its first swap, the symbol's keys are deleted (a
    user's DEL, a benchmark clearing its keys) and other trades written: the swap sees
    it (the generation, or the stream's first and last entries, differ), changes
    nothing, and the compactor reads the stream again."""
    from tickvault.storage import compaction

    old = sim_trades(3_000, SYMBOL, seed=13, days=1)
    new = sim_trades(2_000, SYMBOL, seed=14, days=2).take(slice(1_000, None))  # another day
    write_small(vault, old, seed=13)
    original = compaction.plan_chunks
    done = []

    def plan_chunks(*args: Any) -> Any:
        if not done:
            done.append(1)
            stream = "realtime" if deleted == "realtime" else "*"
            for key in vault.client.scan_iter(match=f"ticks:{{{SYMBOL}}}:{stream}*"):
                vault.client.delete(key)
            write_small(vault, new, seed=14)
        return original(*args)

    monkeypatch.setattr(compaction, "plan_chunks", plan_chunks)
    report = vault.compact([SYMBOL], now=FAR)
    assert report.items[0].swaps_lost == 1 and report.items[0].trades_compacted == len(new)
    assert vault.client.xlen(trades_key(SYMBOL, "realtime")) == 0
    np.testing.assert_array_equal(stored_records(vault), sorted_records(new))
