"""What docs/storage-format.md says a plain Valkey client finds, checked on a real server."""

from __future__ import annotations

import numpy as np

from tests.conftest import sim_trades
from tickvault import TradeBatch, Vault
from tickvault.storage.keys import late_key, trades_key
from tickvault.timeutil import NS_PER_MS


def test_xrange_of_one_millisecond_finds_what_the_storage_doc_says_and_the_late_set_the_rest(
    vault: Vault,
) -> None:
    base = sim_trades(9, days=1)
    t0 = (int(base.ts_event[0]) // NS_PER_MS) * NS_PER_MS
    ms0 = t0 // NS_PER_MS

    def at(ms: list[int], first_id: int) -> TradeBatch:
        cols = base.take(slice(0, len(ms))).columns()
        cols["ts_event"] = np.array([t0 + m * NS_PER_MS for m in ms], dtype=np.int64)
        cols["trade_id"] = np.arange(first_id, first_id + len(ms), dtype=np.int64)
        return TradeBatch(**cols)

    vault.write_trades("WINZ25", at([0, 3, 5], 1))  # in order, starts at +0, runs into +3
    vault.write_trades("WINZ25", at([10, 10], 4))  # in order, starts at +10 (wm = +10)
    vault.write_trades("WINZ25", at([3, 4], 6))  # late: trades at +3, written at wm +10
    r = vault.client
    key, late = trades_key("WINZ25", "realtime"), late_key("WINZ25", "realtime")

    def xrange_ms(ms: int) -> list[dict[bytes, bytes]]:
        return [fields for _, fields in r.xrange(key, f"{ms0 + ms}", f"{ms0 + ms}")]

    # +3: no entry starts there; its trades are in the block before and in a late block
    assert xrange_ms(3) == []
    ((before_id, _),) = r.xrevrange(key, f"({ms0 + 3}-0", "-", count=1)
    assert before_id.decode().startswith(f"{ms0}-")
    members = [m.decode() for m in r.zrangebyscore(late, ms0 + 3, "+inf")]
    found = [m.split("@")[0] for m in members if int(m.split("@")[1]) <= ms0 + 3]
    assert len(found) == 1 and found[0].startswith(f"{ms0 + 10}-")
    # +10: the in-order block that starts there and the late block written at wm +10,
    # which carries `l` (its first trade ms) and holds trades from before +10
    at10 = xrange_ms(10)
    assert len(at10) == 2
    assert b"l" not in at10[0] and at10[1][b"l"] == str(ms0 + 3).encode()
    # and the reader's own range finds every trade of +3 exactly
    stored = vault.range_columns("WINZ25", t0 + 3 * NS_PER_MS, t0 + 4 * NS_PER_MS)
    assert sorted(stored["trade_id"].tolist()) == [2, 6]
