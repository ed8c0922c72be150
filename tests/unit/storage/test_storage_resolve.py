"""Resolution (``storage.resolve``, pure): the answer of a query from decoded records,
checked against a plain per-identity reference."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.records.trades import TRADE_FIELDS, TradeBatch, TradeFlag
from tickvault.storage.blocks import plan_blocks
from tickvault.storage.resolve import Decoded, _is_sorted_unique, resolve
from tickvault.testing import BASE_NS, trade_batches
from tickvault.timeutil import NS_PER_S

SP = ZoneInfo("America/Sao_Paulo")
DAY_NS = 86_400 * NS_PER_S


def _decoded(batch: TradeBatch, max_trades: int) -> Decoded:
    """The records as the store decodes them: in blocks of one trading day."""
    blocks = plan_blocks(batch, SP, max_trades)
    joined = TradeBatch.concat([b.trades for b in blocks])
    return Decoded(
        columns=joined.columns(),
        days=np.array([b.trading_day for b in blocks], dtype=np.int64),
        counts=np.array([len(b.trades) for b in blocks], dtype=np.int64),
        flags_or=int(np.bitwise_or.reduce(batch.flags)) if len(batch) else 0,
        recv_max=int(batch.ts_recv.max()) if len(batch) else 0,
    )


def _reference(d: Decoded, start: int, end: int, known: int | None) -> list[tuple[Any, ...]]:
    """Per identity (day, trade_id): a visible CANCEL removes the trade, else the latest
    visible EDIT is it, else the earliest-received copy (the live one on a tie)."""
    cols = d.columns
    days = np.repeat(d.days, d.counts)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(cols["ts_event"])):
        ts = int(cols["ts_event"][i])
        if not start <= ts < end or (known is not None and int(cols["ts_recv"][i]) > known):
            continue
        groups.setdefault((int(days[i]), int(cols["trade_id"][i])), []).append(i)
    rows = []
    for members in groups.values():
        flags = [int(cols["flags"][i]) for i in members]
        if any(f & TradeFlag.CANCEL for f in flags):
            continue
        edits = [i for i, f in zip(members, flags, strict=True) if f & TradeFlag.EDIT]
        if edits:
            row = max(edits, key=lambda i: int(cols["ts_recv"][i]))
        else:
            history = cols["flags"] & TradeFlag.HISTORY
            row = min(members, key=lambda i: (int(cols["ts_recv"][i]), bool(history[i])))
        rows.append(row)
    rows.sort(key=lambda i: (int(cols["ts_event"][i]), int(cols["trade_id"][i])))
    return [tuple(cols[n][i].item() for n in TRADE_FIELDS) for i in rows]


def _as_rows(cols: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(cols[n][i].item() for n in TRADE_FIELDS) for i in range(len(cols["ts_event"]))]


def _distinct_recv(batch: TradeBatch) -> TradeBatch:
    """ts_recv unique per record (order kept), so 'latest' and 'earliest' have one answer."""
    cols = batch.columns()
    rank = np.argsort(np.argsort(cols["ts_recv"], kind="stable"), kind="stable")
    cols["ts_recv"] = cols["ts_recv"] + rank
    return TradeBatch(**cols)


@given(
    trade_batches(max_size=150),
    st.integers(1, 40),
    st.integers(-DAY_NS, 3 * DAY_NS),
    st.integers(0, 4 * DAY_NS),
    st.one_of(st.none(), st.integers(0, 3 * DAY_NS)),
)
def test_resolve_any_records_matches_the_reference(
    batch: TradeBatch, max_trades: int, start_off: int, length: int, known_off: int | None
) -> None:
    batch = _distinct_recv(batch)
    d = _decoded(batch, max_trades)
    start = BASE_NS + start_off
    end = start + length
    known = None if known_off is None else BASE_NS + known_off
    assert _as_rows(resolve(d, start, end, known)) == _reference(d, start, end, known)


@given(trade_batches(max_size=150, unique_ids=True, flags=False), st.integers(1, 40))
def test_resolve_sorted_unique_records_whole_range_returns_every_record(
    batch: TradeBatch, max_trades: int
) -> None:
    d = _decoded(batch, max_trades)
    cols = resolve(d, 0, 2**62, None)
    assert len(cols["ts_event"]) == len(batch)
    assert _as_rows(cols) == _reference(d, 0, 2**62, None)


@given(
    trade_batches(max_size=150, unique_ids=True, flags=False),
    st.integers(1, 40),
    st.integers(-DAY_NS, 3 * DAY_NS),
    st.integers(0, 4 * DAY_NS),
    st.integers(0, 3 * DAY_NS),
)
def test_resolve_sorted_unique_records_as_known_at_matches_the_reference(
    batch: TradeBatch, max_trades: int, start_off: int, length: int, known_off: int
) -> None:
    # the fast path of one record per trade: known_at only filters by ts_recv
    cols = batch.columns()
    order = np.argsort(cols["ts_event"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    cols["trade_id"] = np.arange(1, len(order) + 1, dtype=np.int64)  # rising with time
    d = _decoded(TradeBatch(**cols), max_trades)
    assert _is_sorted_unique(d)
    start, known = BASE_NS + start_off, BASE_NS + known_off
    assert _as_rows(resolve(d, start, start + length, known)) == _reference(
        d, start, start + length, known
    )


def test_resolve_same_trade_live_and_history_equal_recv_live_copy_wins() -> None:
    record = np.zeros(2, dtype=TradeBatch.empty().to_structured().dtype)
    record["ts_event"] = BASE_NS
    record["ts_recv"] = BASE_NS + 5
    record["trade_id"] = 7
    record["price"] = [100.0, 101.0]
    record["flags"] = [int(TradeFlag.HISTORY), 0]
    d = _decoded(TradeBatch.from_structured(record), 10)
    cols = resolve(d, BASE_NS, BASE_NS + 1, None)
    assert cols["price"].tolist() == [101.0] and cols["flags"].tolist() == [0]


def test_resolve_edit_not_yet_known_keeps_the_original() -> None:
    record = np.zeros(2, dtype=TradeBatch.empty().to_structured().dtype)
    record["ts_event"] = BASE_NS
    record["ts_recv"] = [BASE_NS + 1, BASE_NS + 100]
    record["trade_id"] = 7
    record["price"] = [100.0, 99.0]
    record["flags"] = [0, int(TradeFlag.EDIT)]
    d = _decoded(TradeBatch.from_structured(record), 10)
    assert resolve(d, BASE_NS, BASE_NS + 1, BASE_NS + 50)["price"].tolist() == [100.0]
    assert resolve(d, BASE_NS, BASE_NS + 1, None)["price"].tolist() == [99.0]
