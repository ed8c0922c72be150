"""Script calls in pipelines: no round trip of their own, and a missing script (a restarted
server, a SCRIPT FLUSH) loaded again with every call run exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import sim_trades
from tickvault import Vault
from tickvault.storage.writes import StoreItem

pytestmark = pytest.mark.store_backends  # every test: single server and cluster


def _calls(vault: Vault, command: str) -> int:
    """How many times every primary ran ``command`` (INFO commandstats)."""
    raw: Any = vault.client.info("commandstats")
    one_server = any(str(k).startswith("cmdstat_") for k in raw)
    per_node = [raw] if one_server else raw.values()  # a cluster: node -> its stats
    total = 0
    for stats in per_node:
        entry = stats.get(f"cmdstat_{command}")
        total += int(entry["calls"]) if entry else 0
    return total


def _cycle(first_id: int, cursor: int) -> list[StoreItem]:
    a = sim_trades(300, symbol="WINZ25", seed=first_id)
    a.trade_id[:] += first_id * 100_000  # other trades than every other cycle's
    b = sim_trades(300, symbol="WDOF26", seed=first_id)
    b.trade_id[:] += first_id * 100_000
    return [
        StoreItem("WINZ25", "realtime", a.to_structured(), {"p:trade.WINZ25": cursor}),
        StoreItem("WDOF26", "realtime", b.to_structured(), {"p:trade.WDOF26": cursor}),
    ]


def test_a_write_cycle_costs_no_script_exists_round_trip(vault: Vault) -> None:
    vault.client.flushdb()
    vault.store_cycle(_cycle(1, 1))  # loads the script wherever it is missing
    before = _calls(vault, "script|exists")
    for i in range(2, 7):
        vault.store_cycle(_cycle(i, i))
    assert _calls(vault, "script|exists") == before
    assert len(vault.range("WINZ25")) == len(vault.range("WDOF26")) == 1_800


def test_a_cycle_after_a_script_flush_stores_every_trade_once(vault: Vault) -> None:
    vault.client.flushdb()
    vault.store_cycle(_cycle(1, 1))
    for i in range(2, 5):
        vault.client.script_flush()
        vault.store_cycle(_cycle(i, i))
    for symbol in ("WINZ25", "WDOF26"):
        records = sum(s.trades for s in vault.stats(symbol))
        assert records == len(vault.range(symbol)) == 1_200  # stored once: no repeat
        assert vault.bridge_cursor(symbol, f"p:trade.{symbol}") == 4
