"""signals:{SYMBOL} on the real embedded Valkey: round trip, bitemporal reads, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tickvault import Vault
from tickvault.engine.signals import SignalStore
from tickvault.errors import QueryError, ValidationError
from tickvault.records.signals import Mode, Side, Signal
from tickvault.storage.recordstreams import RecordStream

pytestmark = pytest.mark.store_backends  # every test: single server and cluster

S = 1_000_000_000
T0 = 1_764_000_000 * S


def _sig(ts: int, side: Side, symbol: str = "WINZ25") -> Signal:
    return Signal(symbol, ts, ts - 5, side, 0.4 * int(side), 0.55, 60 * S, "a1b2c3", Mode.HISTORY)


def test_signals_round_trip_in_time_order_per_symbol(vault: Vault) -> None:
    store = SignalStore(vault)
    sigs = [_sig(T0 + i * S, Side.LONG if i % 2 else Side.FLAT) for i in range(5)]
    store.append([*sigs, _sig(T0, Side.SHORT, "WDOF26")])
    assert store.signals("WINZ25", T0, T0 + 10 * S) == sigs
    assert store.signals("WINZ25", T0 + S, T0 + 3 * S) == sigs[1:3]
    assert [s.side for s in store.signals("WDOF26", T0, T0 + S)] == [Side.SHORT]
    frame = store.range("WINZ25", T0, T0 + 10 * S)
    assert list(frame["side"]) == ["FLAT", "LONG", "FLAT", "LONG", "FLAT"]
    assert (frame["t_features"] < frame["ts_event"]).all()
    assert set(frame["model_version"]) == {"a1b2c3"} and set(frame["mode"]) == {"HISTORY"}


def test_signals_as_known_at_leave_out_those_stored_later(vault: Vault) -> None:
    store = SignalStore(vault)
    store.append([_sig(T0, Side.LONG)])
    first_k = int(store.range("WINZ25", T0, T0 + S)["known_ns"].iloc[0])
    store.append([_sig(T0 + 100, Side.FLAT)])  # made just after, stored later
    known = store.range("WINZ25", T0, T0 + S)["known_ns"].to_numpy()
    assert known[1] >= first_k
    assert [s.side for s in store.signals("WINZ25", T0, T0 + S, known_at=first_k)] == (
        [Side.LONG] if known[1] > first_k else [Side.LONG, Side.FLAT]
    )
    assert len(store.signals("WINZ25", T0, T0 + S, known_at=first_k - 1)) == 0


def test_a_late_signal_is_kept_with_its_own_time(vault: Vault) -> None:
    store = SignalStore(vault)
    store.append([_sig(T0 + 10 * S, Side.LONG), _sig(T0 + 5 * S, Side.FLAT)])  # out of order
    got = store.signals("WINZ25", T0, T0 + 20 * S)
    assert [s.ts_event for s in got] == [T0 + 10 * S, T0 + 5 * S]  # stream order, own times


def test_bad_signal_reads_and_writes_are_clear_errors(vault: Vault) -> None:
    store = SignalStore(vault)
    with pytest.raises(QueryError, match="before end"):
        store.signals("WINZ25", T0 + S, T0)
    with pytest.raises(ValidationError):
        store.signals("not a symbol!", T0, T0 + S)
    with pytest.raises(ValidationError, match="layout"):
        RecordStream(vault.client, "signals").append("WINZ25", np.zeros(2, dtype=np.int64))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no record stream"):
        RecordStream(vault.client, "nope")


def test_orders_and_fills_round_trip_and_read_as_known_at(vault: Vault) -> None:
    from tickvault.engine.orders import ExecutionStore
    from tickvault.records.orders import Fill, Order, OrderReason

    store = ExecutionStore(vault)
    order = Order(1, "WINZ25", T0, 2, OrderReason.SIGNAL, T0 - 10)
    kill = Order(2, "WINZ25", T0 + 5 * S, -2, OrderReason.KILL_SWITCH, None)
    fill = Fill(1, "WINZ25", T0 + 1, 77, 125_005.0, 2, 1.0)
    store.append([order, fill])
    assert store.orders("WINZ25", T0, T0 + S) == [order]
    assert store.fills("WINZ25", T0, T0 + S) == [fill]
    store.append([kill])
    assert store.orders("WINZ25", T0, T0 + 10 * S) == [order, kill]
    assert store.orders("WINZ25", T0, T0 + 10 * S, known_at=T0) == []  # stored after T0
    assert store.fills("WDOF26", T0, T0 + S) == []
