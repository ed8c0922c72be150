"""The dashboard in a real headless Chromium: every page loads without console errors,
live values change as trades arrive through a real publisher and bridge, signal markers
appear for stored signals, and the known-at picker changes what is shown."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import GUARD_S, Page, Served
from tests.dashboard_seed import SYMBOL, seed
from tickvault import TradeBatch, Vault
from tickvault.engine.signals import SignalStore
from tickvault.live.bridge import Bridge
from tickvault.live.pubstatus import PublisherStatus
from tickvault.records.signals import Mode, Side, Signal
from tickvault.transport.endpoints import Endpoints
from tickvault.transport.publisher import Publisher
from tickvault.venue.b3 import B3_TZ

TIMEOUT_MS = GUARD_S * 1000  # only against hanging; no assertion on speed


@pytest.fixture
def seeded(vault: Vault) -> TradeBatch:
    return seed(vault)


@pytest.fixture
def served(vault: Vault, seeded: TradeBatch, tmp_path: Path) -> Iterator[Served]:
    s = Served(vault, tmp_path)
    try:
        yield s
    finally:
        s.close()


def expect(locator, pattern: str) -> None:
    from playwright.sync_api import expect as pw_expect

    pw_expect(locator).to_have_text(re.compile(pattern), timeout=TIMEOUT_MS)


def later_trades(seeded: TradeBatch, n: int, price: float, after_s: int = 1) -> np.ndarray:
    new = seeded.take(np.arange(len(seeded) - n, len(seeded))).to_structured()
    new["ts_event"] = int(seeded.ts_event[-1]) + after_s * 10**9 + np.arange(n)
    new["trade_id"] = int(seeded.trade_id[-1]) + 100 * after_s + np.arange(n)
    new["price"] = price
    return new


@pytest.mark.parametrize("name", ["market", "pipeline", "history"])
def test_dashboard_page_loads_without_console_errors(served: Served, page: Page, name) -> None:
    page.page.goto(f"{served.url}/{name}?symbol={SYMBOL}")
    expect(page.page.locator("#status"), r"^(live|now)$")
    if name == "market":
        expect(page.page.locator("#metric-trades"), r"^\d[\d,]*$")
    if name == "history":
        expect(page.page.locator("#history-summary"), r"^6 sessions with trades")
    if name == "pipeline":
        expect(page.page.locator("#v-policy"), "^noeviction$")
    assert page.errors == []


def test_market_live_values_change_as_trades_arrive_through_publisher_and_bridge(
    served: Served, page: Page, vault: Vault, seeded: TradeBatch, endpoints: Endpoints
) -> None:
    p = page.page
    p.goto(f"{served.url}/market?symbol={SYMBOL}")
    expect(p.locator("#status"), "^live$")
    expect(p.locator("#last-price"), f"^{float(seeded.price[-1]):,.0f}$")
    before = p.locator("#metric-trades").inner_text()
    with Publisher(vault.settings, endpoints=endpoints) as pub:
        bridge = Bridge(vault, endpoints=[endpoints]).start()
        reporter = PublisherStatus(pub, vault.settings, vault=vault).start()
        try:
            pub.publish_trades(SYMBOL, later_trades(seeded, 5, 131_000.0))
            expect(p.locator("#last-price"), "^131,000$")
            expect(p.locator("#metric-trades"), f"^(?!{re.escape(before)}$)")
            pub.publish_trades(SYMBOL, later_trades(seeded, 3, 131_500.0, after_s=2))
            expect(p.locator("#last-price"), "^131,500$")
            closes = p.evaluate("window.tickvault.bars['1s'].slice(-2).map(b => b.close)")
            assert closes == [131_000.0, 131_500.0]
            # the bridge's own report reaches the Pipeline page
            other = Page(p.context.browser)
            try:
                other.page.goto(f"{served.url}/pipeline")
                expect(other.page.locator("#processes"), "bridge:")
                expect(other.page.locator("#p-lag99"), r"ms$")
                # and the publisher's replay-buffer fill, per topic
                expect(other.page.locator("#replay-buffers"), rf"{reporter.name}.*\d %")
                expect(other.page.locator("#replay-topics"), f"trade.{SYMBOL}")
                assert other.errors == []
            finally:
                other.close()
        finally:
            reporter.close()
            bridge.close()
    assert page.errors == []


def test_market_signal_markers_appear_for_stored_signals(
    served: Served, page: Page, vault: Vault, seeded: TradeBatch
) -> None:
    p = page.page
    p.goto(f"{served.url}/market?symbol={SYMBOL}")
    expect(p.locator("#signal-count"), "^8$")
    expect(p.locator("#fill-count"), "^8$")
    t = int(seeded.ts_event[-1]) + 1
    SignalStore(vault).append([Signal(SYMBOL, t, t, Side.LONG, 0.9, 0.9, 10**9, "m9", Mode.FAST)])
    expect(p.locator("#signal-count"), "^9$")
    last = p.evaluate("window.tickvault.markers.slice(-1)[0]")
    assert last["kind"] == "signal" and last["side"] == "LONG"
    p.locator("#res-1m").click()
    expect(p.locator("#signal-count"), "^9$")
    assert page.errors == []


def test_known_at_picker_changes_what_history_and_market_show(
    served: Served, page: Page, seeded: TradeBatch
) -> None:
    p = page.page
    p.goto(f"{served.url}/history?symbol={SYMBOL}&sessions=10")
    expect(p.locator("#history-summary"), r"^6 sessions with trades")
    k_s = int(seeded.ts_recv[len(seeded) * 7 // 12]) // 10**9  # the middle of session 4 of 6
    local = dt.datetime.fromtimestamp(k_s, B3_TZ).replace(tzinfo=None)
    p.locator("#known-at").fill(local.isoformat(timespec="seconds"))
    p.locator("#known-apply").click()
    expect(p.locator("#status"), "^as known at")
    expect(p.locator("#history-summary"), r"^4 sessions with trades")
    # the same instant carries over to the Market page
    p.locator("#nav-market").click()
    expect(p.locator("#status"), "^as known at")
    known = seeded.ts_recv <= k_s * 10**9
    shown = seeded.price[known][np.argmax(seeded.ts_event[known])]
    expect(p.locator("#last-price"), f"^{float(shown):,.0f}$")
    expect(p.locator("#signal-count"), "^0$")  # every signal was stored after that instant
    p.locator("#known-live").click()
    expect(p.locator("#status"), "^live$")
    expect(p.locator("#signal-count"), "^8$")
    assert page.errors == []


def test_market_page_screenshot_is_saved_as_a_test_artifact(
    served: Served, page: Page, tmp_path: Path
) -> None:
    from tests.browser.screenshot import market_screenshot

    out = market_screenshot(page.page, served.url, SYMBOL, tmp_path / "market.png")
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []
