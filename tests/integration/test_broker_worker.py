"""The broker process on the real store: stored signals with the model worker's
cursor (``SignalStore.append_decided``: signals and cursor in one atomic call, as
the model worker writes them, design rule 5) and stored trades -> fills
never at the triggering trade, equal to EventOrder in-process; a restart neither
doubles nor loses an order or fill; bad settings are a ConfigError."""

from __future__ import annotations

import pytest

from tickvault.config import Settings
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.signals import SignalStore
from tickvault.errors import ConfigError
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import PaperBroker
from tickvault.live.broker import BrokerWorker, broker_params, check_routing
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import Trade
from tickvault.timeutil import trading_day
from tickvault.vault import Vault

S = 1_000_000_000
SYM = "WINZ25"
T0 = 1_762_174_800 * S  # 2025-11-03 10:00 (São Paulo)


def session(n: int = 60, symbol: str = SYM) -> tuple[list[Trade], list[Signal]]:
    """``n`` trades 250 ms apart and a signal 1 ns after every 9th (from the 6th)."""
    trades = [Trade(T0 + i * S // 4, 1000 + i, 125_000.0 + 5 * ((i * 7) % 11), 1)
              for i in range(n)]  # fmt: skip
    sides = [Side.LONG, Side.FLAT, Side.SHORT, Side.LONG, Side.FLAT]
    signals = [Signal(symbol, t.ts_event + 1, t.ts_event + 1, sides[k % len(sides)], 0.1, 0.6,
                      60 * S, "m1", Mode.FAST) for k, t in enumerate(trades[5::9])]  # fmt: skip
    return trades, signals


def decide(vault: Vault, signals: list[Signal], t: int, symbol: str = SYM) -> None:
    """What the model worker stores: ``signals`` and its cursor T = ``t``, atomically."""
    SignalStore(vault).append_decided(symbol, signals, {"T": str(t), "side": 0})


def expected(
    s: Settings, trades: list[Trade], signals: list[Signal], symbol: str = SYM
) -> list[Order | Fill]:
    """EventOrder in-process: the backtest's order of the same trades and signals."""
    ev = EventOrder(PaperBroker(symbol, broker_params(s, symbol)),
                    round(s.paper_latency_ms * 1e6))  # fmt: skip
    out: list[Order | Fill] = []
    pending = list(signals)
    for t in trades:
        while pending and pending[0].ts_event <= t.ts_event:
            ev.signal(pending.pop(0))
        out += ev.trade(t.ts_event, t.trade_id, t.price, trading_day(t.ts_event, s.tz))
    return out


def test_broker_worker_fills_equal_event_order_in_process_and_never_the_trigger(
    vault: Vault,
) -> None:
    trades, signals = session()
    vault.write_trades(SYM, trades)
    want = expected(vault.settings, trades, signals)
    store = ExecutionStore(vault)
    w = BrokerWorker(vault, [SYM], publish=False)
    try:
        # the model has decided nothing yet: no trade may be applied
        assert w.step() == 0
        # it decides in two parts; the signals are stored before the cursor moves
        half = len(signals) // 2
        decide(vault, signals[:half], signals[half - 1].ts_event)
        w.step()
        decide(vault, signals[half:], trades[-1].ts_event + 1)
        w.step()
    finally:
        w.close()
    orders = store.orders(SYM, 0, 1 << 62)
    fills = store.fills(SYM, 0, 1 << 62)
    assert orders == [x for x in want if isinstance(x, Order)]
    assert fills == [x for x in want if isinstance(x, Fill)]
    assert fills  # the session does trade
    by_id = {o.order_id: o for o in orders}
    for f in fills:
        sig_t = by_id[f.order_id].signal_ts
        assert sig_t is not None and f.ts_event > sig_t  # after T, so never its trigger
        assert f.trade_id != next(t.trade_id for t in trades if t.ts_event == sig_t - 1)
    pos = store.position(SYM)
    assert int(pos["position"]) == sum(f.qty for f in fills)


def test_broker_worker_restarted_after_any_step_neither_doubles_nor_loses_anything(
    vault: Vault,
) -> None:
    trades, signals = session()
    vault.write_trades(SYM, trades)
    want = expected(vault.settings, trades, signals)
    store = ExecutionStore(vault)
    for k, sig in enumerate(signals):  # the model advances; a new broker each time
        decide(vault, [sig], sig.ts_event if k < len(signals) - 1 else 1 << 61)
        w = BrokerWorker(vault, [SYM], publish=False)
        try:
            w.step()
            assert w.step() == 0  # nothing new: nothing done twice
        finally:
            w.close()
    got = store.orders(SYM, 0, 1 << 62) + store.fills(SYM, 0, 1 << 62)
    assert sorted(map(repr, got)) == sorted(map(repr, want))


def test_broker_settings_that_are_wrong_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="paper_fee_per_contract"):
        Settings(paper_fee_per_contract=-0.5)
    with pytest.raises(ConfigError, match="order_routing"):
        Settings(order_routing="ib")
    with pytest.raises(ConfigError, match="--live-orders"):
        check_routing(Settings(order_routing="profitdll"), live_orders=False)
    with pytest.raises(ConfigError, match="order_routing"):
        check_routing(Settings(), live_orders=True)
    assert check_routing(Settings(), live_orders=False) == "paper"
