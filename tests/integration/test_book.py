"""Offer books in the real store: any past time equals replaying every update up to it,
and book messages travel from the simulator over ZeroMQ into ``book:{SYM}``."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.integration.test_live import wait_for
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.errors import QueryError, ValidationError
from tickvault.feeds.base import NullEvents, PublishingEvents
from tickvault.feeds.sim import SimulatedFeeder
from tickvault.live.bridge import Bridge
from tickvault.records.book import ASK, BID, BookState
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.transport.wire import BOOK_DTYPE
from tickvault.venue.b3 import B3_TZ

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

START = dt.datetime(2025, 11, 3, 9, 0, tzinfo=B3_TZ)


class _BookTap(NullEvents):
    """FeedEvents that keep the book updates (and optionally pass everything on)."""

    def __init__(self, inner: Any = None):
        self.inner = inner
        self.updates: dict[str, list[np.ndarray]] = {}

    def on_trade(self, symbol: str, trades: np.ndarray) -> None:
        if self.inner:
            self.inner.on_trade(symbol, trades)

    def on_book(self, symbol: str, updates: np.ndarray) -> None:
        self.updates.setdefault(symbol, []).append(updates.copy())
        if self.inner:
            self.inner.on_book(symbol, updates)


def sim_book(trades_per_day: int = 20_000, symbols: tuple[str, ...] = ("WINZ25",)) -> _BookTap:
    tap = _BookTap()
    feeder = SimulatedFeeder(symbols, speed=None, start=START, trades_per_day=trades_per_day)
    feeder.run(tap, threading.Event())
    return tap


def replayed(updates: np.ndarray, at_ns: int) -> BookState:
    state = BookState()
    state.apply(updates[updates["ts_event"] <= at_ns])
    return state


def same_book(view: Any, oracle: BookState) -> None:
    for frame, side in ((view.bids, BID), (view.asks, ASK)):
        want = oracle.side_frame(side, len(frame) if len(frame) else None)
        assert frame[["price", "qty", "agent", "offer_id"]].equals(
            want[["price", "qty", "agent", "offer_id"]].head(len(frame))
        )
        assert len(frame) == min(10, len(oracle.sides[side].offers))


def test_book_at_any_time_equals_replaying_every_update(vault: Vault) -> None:
    tap = sim_book()
    small = vault.with_settings(book_snapshot_every=200)
    for batch in tap.updates["WINZ25"]:
        small.write_book("WINZ25", batch)
    every = np.concatenate(tap.updates["WINZ25"])
    largest = max(len(b) for b in tap.updates["WINZ25"])
    assert vault.client.xlen("book:{WINZ25}:snapshots") >= len(every) // (200 + largest)
    np.testing.assert_array_equal(
        vault.book_updates("WINZ25", int(every["ts_event"][0]), int(every["ts_event"][-1]) + 1),
        every,
    )
    rng = np.random.default_rng(5)
    times = rng.integers(int(every["ts_event"][0]), int(every["ts_event"][-1]), 40)
    for t in [*times.tolist(), int(every["ts_event"][-1]), int(every["ts_event"][0]) - 1]:
        view = vault.book("WINZ25", at=t)
        same_book(view, replayed(every, t))
        assert view.updates_applied <= 200 + 4096  # a snapshot bounds the replay
    view = vault.book("WINZ25", at=int(every["ts_event"][-1]), depth=None)
    assert view.best_bid is not None and view.best_ask is not None
    assert view.best_bid < view.best_ask
    bids, asks = view.levels(5)
    assert len(bids) == 5 and bids["price"].is_monotonic_decreasing
    assert asks["price"].is_monotonic_increasing


def test_bad_book_updates_are_rejected_whole(vault: Vault) -> None:
    bad = np.zeros(2, dtype=BOOK_DTYPE)
    bad["ts_event"] = 1_762_171_200_000_000_000
    bad["side"][1] = 7
    with pytest.raises(ValidationError, match="side"):
        vault.write_book("WINZ25", bad)
    assert vault.client.exists("book:{WINZ25}") == 0
    with pytest.raises(QueryError, match="depth"):
        vault.book("WINZ25", depth=0)
    assert vault.book("NOBOOK", at="2025-11-03T10:00").bids.empty


def test_book_messages_go_through_zeromq_into_the_store(vault: Vault, endpoints: Endpoints) -> None:
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        try:
            tap = _BookTap(PublishingEvents(pub))
            feeder = SimulatedFeeder(
                ("WINZ25", "WDOZ25"), speed=None, start=START, trades_per_day=3_000
            )
            feeder.run(tap, threading.Event())
            want = {s: np.concatenate(u) for s, u in tap.updates.items()}
            total = sum(len(u) for u in want.values())
            wait_for(lambda: bridge.stats.book_updates_stored == total, "book updates stored")
        finally:
            bridge.close()
    for symbol, every in want.items():
        stored = vault.book_updates(symbol, int(every["ts_event"][0]), 2**62)
        np.testing.assert_array_equal(stored[list(BOOK_DTYPE.names or ())], every)
        last = int(every["ts_event"][-1])
        same_book(vault.book(symbol, at=last), replayed(every, last))


def test_book_cli(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    tap = sim_book(2_000)
    for batch in tap.updates["WINZ25"]:
        vault.write_book("WINZ25", batch)
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", vault.url)
    last = int(np.concatenate(tap.updates["WINZ25"])["ts_event"][-1])
    result = CliRunner().invoke(cli, ["book", "winz25", "--at", str(last), "--depth", "5"])
    assert result.exit_code == 0, result.output
    view = vault.book("WINZ25", at=last, depth=5)
    assert f"{view.bids['price'].iloc[0]:,.2f}" in result.output
    levels = CliRunner().invoke(cli, ["book", "WINZ25", "--at", str(last), "--levels"])
    assert levels.exit_code == 0 and "offers" in levels.output
    vault.write_trades("WINZ25", sim_trades_at(last))
    status = CliRunner().invoke(cli, ["status"])
    stats = vault.books.stats("WINZ25")
    assert status.exit_code == 0 and "offer books" in status.output
    assert f"{stats.entries:,}" in status.output and stats.memory_bytes > 0


def test_bench_book_json(vault: Vault) -> None:
    from tickvault.bench.book import run_book_bench

    result = run_book_bench(vault, trades_per_day=3000, queries=20, seed_queries=2)
    assert result["trades"] == 3000 and result["book_updates"] > 3000
    assert result["queries"] == 20 and result["book_ms"]["p50"] > 0
    assert result["updates_replayed_median"] <= vault.settings.book_snapshot_every + 512


def test_trim_keeps_every_book_from_the_cutoff_on(vault: Vault) -> None:
    tap = sim_book(5_000)
    small = vault.with_settings(book_snapshot_every=100)
    for batch in tap.updates["WINZ25"]:
        small.write_book("WINZ25", batch)
    every = np.concatenate(tap.updates["WINZ25"])
    vault.write_trades("WINZ25", sim_trades_at(int(every["ts_event"][0])))
    first, last = int(every["ts_event"][0]), int(every["ts_event"][-1])
    cutoff = first + (last - first) // 2
    after = [*np.random.default_rng(3).integers(cutoff, last, 15).tolist(), cutoff, last]
    before = [vault.book("WINZ25", at=t, depth=None) for t in after]
    entries = vault.client.xlen("book:{WINZ25}")
    days = vault.settings.retention_days * 86_400 * 10**9
    report = vault.trim("WINZ25", now=cutoff + int(days))
    assert report.book_entries_removed > 0
    assert vault.client.xlen("book:{WINZ25}") < entries
    for t, view in zip(after, before, strict=True):
        again = vault.book("WINZ25", at=t, depth=None)
        assert again.bids.equals(view.bids) and again.asks.equals(view.asks)


def sim_trades_at(ts: int) -> np.ndarray:
    from tickvault.records.trades import TRADE_DTYPE

    out = np.zeros(1, dtype=TRADE_DTYPE)
    out["ts_event"], out["ts_recv"], out["trade_id"] = ts, ts, 1
    out["price"], out["qty"] = 100.0, 1
    return out


def test_bad_book_messages_are_quarantined_and_the_rest_stored(
    vault: Vault, endpoints: Endpoints
) -> None:
    from tickvault.transport.wire import Kind

    good = sim_book(500).updates["WINZ25"][:5]
    bad = good[0].copy()
    bad["side"] = 7
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        try:
            # one message each (a message is accepted or rejected whole)
            for batch in [good[0], bad, *good[1:]]:
                pub.publish_records(Kind.BOOK, "WINZ25", batch)
                pub.flush()
            total = sum(len(b) for b in good)
            wait_for(lambda: bridge.stats.book_updates_stored == total, "good updates stored")
            # rejected as received, then its original fetched again and rejected too (a
            # loaded machine may fetch it once more: every rejection is quarantined)
            wait_for(lambda: len(vault.quarantined()) >= 2, "the bad one quarantined")
            wait_for(lambda: len(vault.gaps("WINZ25")) == 1, "its gap marker")
            wait_for(lambda: len(vault.quarantined()) == bridge.stats.rejected["side"],
                     "every rejection quarantined")  # fmt: skip
        finally:
            bridge.close()
    assert bridge.stats.rejected["side"] >= 2
    assert all(q["reason"] == "side" and "side" in q["detail"] for q in vault.quarantined())
    (gap,) = vault.gaps("WINZ25")
    assert gap.stream == "book" and gap.seq_first == gap.seq_last == 2
    assert gap.reason.startswith("rejected (side)")
    every = np.concatenate(good)
    np.testing.assert_array_equal(vault.book_updates("WINZ25", 0, 2**62), every)
