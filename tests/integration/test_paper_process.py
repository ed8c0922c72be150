"""``tickvault paper run`` and ``paper status`` as real processes on the real embedded
Valkey, with real ZeroMQ: the test plays the model worker (signals and its cursor
stored in one atomic call) over stored trades; the broker process must store exactly
the orders and fills of EventOrder run in-process on the same data, through a kill -9,
publish them in sequence, apply the limits and the kill switch, and show them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import zmq

from tests.integration.test_broker_worker import SYM, T0, S, decide, expected, session
from tests.integration.test_live import GUARD_S, free_ports, wait_for
from tickvault import Vault
from tickvault.config import Settings
from tickvault.engine.orders import ExecutionStore
from tickvault.records.orders import Fill, Order, OrderReason
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import Trade

END = 1 << 62


def _env(data_dir: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "TICKVAULT_DATA_DIR": str(data_dir),
            "TICKVAULT_ZMQ_ORDERS_PORT": str(port), **(extra or {})}  # fmt: skip


def _broker(env: dict[str, str], *symbols: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "paper", "run", "--symbols",
         ",".join(symbols)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=GUARD_S)
    return proc.returncode, (out + err).decode()


def _status(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "tickvault.cli.main", "paper", "status"],
                          env={**env, "COLUMNS": "250"}, capture_output=True, check=False,
                          timeout=GUARD_S)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _caught_up(store: ExecutionStore, symbol: str, last: Trade) -> bool:
    return store.position(symbol).get("last_trade_ts") == str(last.ts_event)


def _stored(store: ExecutionStore, symbol: str = SYM) -> list[Order | Fill]:
    return [*store.orders(symbol, 0, END), *store.fills(symbol, 0, END)]


def _split(items: list[Order | Fill]) -> tuple[list[Order], list[Fill]]:
    return ([x for x in items if isinstance(x, Order)], [x for x in items if isinstance(x, Fill)])


def test_paper_run_killed_and_restarted_stores_the_in_process_orders_and_fills_once(
    own_data_dir: Path,
) -> None:
    trades, signals = session(240)
    port = free_ports()["ticks"]
    env = _env(own_data_dir, port)
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades(SYM, trades)
        want = _split(expected(vault.settings, trades, signals))
        assert len(want[1]) > 10
        store = ExecutionStore(vault)
        first = _broker(env, SYM)
        second = None
        try:
            third = len(signals) // 3
            for k in range(0, third):  # the model decides one signal at a time
                decide(vault, [signals[k]], signals[k].ts_event)
            wait_for(lambda: len(store.fills(SYM, 0, END)) >= 2, "the first broker's fills")
            for k in range(third, 2 * third):  # still deciding while the broker is killed
                decide(vault, [signals[k]], signals[k].ts_event)
                if k == third + 2:
                    first.send_signal(signal.SIGKILL)
            first.wait(timeout=GUARD_S)
            assert first.returncode == -signal.SIGKILL
            killed_at = _stored(store)
            decide(vault, signals[2 * third :], trades[-1].ts_event + 1)
            second = _broker(env, SYM)
            wait_for(lambda: _caught_up(store, SYM, trades[-1]), "the restarted broker")
            code, text = _stop(second)
            assert code == 0, text
            assert "restored" in text, text
        finally:
            first.kill()
            if second is not None:
                second.kill()
        got = _split(_stored(store))
        assert got == want  # nothing lost, nothing doubled, the backtest's own
        assert set(map(repr, killed_at)) <= set(map(repr, [*got[0], *got[1]]))
        assert int(store.position(SYM)["position"]) == sum(f.qty for f in got[1])


def _subscriber(ctx: zmq.Context[Any], port: int) -> zmq.Socket[Any]:
    """A SUB to order./fill. whose handshake with the broker is done."""
    sub = ctx.socket(zmq.SUB)
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sub.setsockopt(zmq.SUBSCRIBE, b"order.")
    sub.setsockopt(zmq.SUBSCRIBE, b"fill.")
    sub.connect(f"tcp://127.0.0.1:{port}")
    assert monitor.poll(GUARD_S * 1000), "the broker's publisher never answered"
    monitor.recv_multipart()
    sub.disable_monitor()
    monitor.close(linger=0)
    return sub


def test_paper_run_publishes_every_stored_order_and_fill_in_sequence_per_topic(
    own_data_dir: Path,
) -> None:
    trades, signals = session(120)
    port = free_ports()["ticks"]
    env = _env(own_data_dir, port)
    ctx: zmq.Context[Any] = zmq.Context()
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades(SYM, trades)
        store = ExecutionStore(vault)
        proc = _broker(env, SYM)
        sub = _subscriber(ctx, port)
        try:
            decide(vault, signals, trades[-1].ts_event + 1)
            wait_for(lambda: _caught_up(store, SYM, trades[-1]), "the broker")
            orders, fills = _split(_stored(store))
            got: dict[str, list[tuple[int, bytes]]] = {"order": [], "fill": []}
            while len(got["order"]) < len(orders) or len(got["fill"]) < len(fills):
                assert sub.poll(GUARD_S * 1000), f"messages missing: {got}"
                topic, seq, body = sub.recv_multipart()
                kind, _, symbol = topic.decode().partition(".")
                assert symbol == SYM
                got[kind].append((int.from_bytes(seq, "little", signed=True), body))
            assert not sub.poll(200)  # and nothing more
            code, text = _stop(proc)
            assert code == 0, text
        finally:
            proc.kill()
            sub.close(linger=0)
            ctx.term()
    assert orders and fills
    for kind, items in (("order", orders), ("fill", fills)):
        assert [q for q, _ in got[kind]] == list(range(1, len(items) + 1))
        assert [b for _, b in got[kind]] == [it.to_record().tobytes() for it in items]


LIMITS = {"TICKVAULT_PAPER_ORDER_QTY": "3", "TICKVAULT_PAPER_MAX_POSITION": "2",
          "TICKVAULT_PAPER_MAX_ORDERS_PER_MINUTE": "3",
          "TICKVAULT_PAPER_MAX_DAILY_LOSS": "50"}  # fmt: skip
DROP = "WDOZ25"  # 10 BRL a point: a 5-point drop on 2 contracts loses 100 BRL


def _limits_data() -> dict[str, tuple[list[Trade], list[Signal]]]:
    def sig(symbol: str, t: int, side: Side) -> Signal:
        return Signal(symbol, t, t, side, 0.1, 0.6, 60 * S, "m1", Mode.FAST)

    flat = [Trade(T0 + i * S // 2, 100 + i, 125_000.0 + 5 * (i % 2), 1) for i in range(60)]
    sides = [Side.LONG, Side.SHORT, Side.LONG, Side.SHORT, Side.LONG, Side.FLAT]
    a = [sig(SYM, flat[4 + 6 * k].ts_event + 1, side) for k, side in enumerate(sides)]
    drop = [Trade(T0 + i * S // 2, 500 + i, 5_000.0 - (0.5 * i if i > 10 else 0), 1)
            for i in range(60)]  # fmt: skip
    b = [sig(DROP, drop[2].ts_event + 1, Side.LONG), sig(DROP, drop[40].ts_event + 1, Side.SHORT)]
    return {SYM: (flat, a), DROP: (drop, b)}


def test_paper_run_applies_the_limits_and_the_kill_switch_and_status_shows_them(
    own_data_dir: Path,
) -> None:
    data = _limits_data()
    port = free_ports()["ticks"]
    env = _env(own_data_dir, port, LIMITS)
    settings = Settings(paper_order_qty=3, paper_max_position=2, paper_max_orders_per_minute=3,
                        paper_max_daily_loss=50)  # fmt: skip
    with Vault.open(data_dir=own_data_dir) as vault:
        for symbol, (trades, _) in data.items():
            vault.write_trades(symbol, trades)
        store = ExecutionStore(vault)
        proc = _broker(env, *data)
        try:
            for symbol, (trades, sigs) in data.items():
                decide(vault, sigs, trades[-1].ts_event + 1, symbol)
            for symbol, (trades, _) in data.items():
                wait_for(lambda s=symbol, t=trades: _caught_up(store, s, t[-1]), symbol)
            text = _status(env)
            code, log = _stop(proc)
            assert code == 0, log
        finally:
            proc.kill()
        for symbol, (trades, sigs) in data.items():
            want = _split(expected(settings, trades, sigs, symbol))
            assert _split(_stored(store, symbol)) == want
        orders, fills = _split(_stored(store, SYM))
        held = [sum(f.qty for f in fills[: i + 1]) for i in range(len(fills))]
        assert max(map(abs, held)) == 2 and orders[0].qty == 2  # 3 asked, clipped to 2
        pos = store.position(SYM)
        # LONG, SHORT, LONG fill the minute's 3 orders; the next SHORT is refused,
        # the LONG after it needs no order, the FLAT reduces and passes
        assert int(pos["refused"]) == 1 and len(orders) == 4 and orders[-1].qty == -2
        assert pos["killed_day"] == "" and int(pos["position"]) == 0
        d_orders, d_fills = _split(_stored(store, DROP))
        d_pos = store.position(DROP)
        assert [o.reason for o in d_orders] == [OrderReason.SIGNAL, OrderReason.KILL_SWITCH]
        assert d_pos["killed_day"] != "" and int(d_pos["position"]) == 0
        assert int(d_pos["refused"]) == 1  # the SHORT after the kill switch
        assert float(d_pos["day_pnl"]) <= -50
    rows, header = _table(text)
    assert set(rows) == set(data), text
    for col in ("position", "realized", "day PnL", "fills", "refused", "kill switch"):
        assert col in header, text
    a, b = (dict(zip(header, rows[sym], strict=True)) for sym in (SYM, DROP))
    assert (a["routing"], a["position"], a["refused"]) == ("paper", "0", "1")
    assert a["kill switch"] == "off"
    assert a["realized"] == f"{float(pos['realized']):.2f}" and a["fills"] == str(len(fills))
    assert (b["kill switch"], b["refused"], b["fills"]) == ("ON", "1", str(len(d_fills)))
    assert b["day PnL"] == f"{float(d_pos['day_pnl']):.2f}"


def _table(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """The rows (by symbol) and the header of a rich table."""

    def cells(line: str, bar: str) -> list[str]:
        return [c.strip() for c in line.strip().strip(bar).split(bar)]

    header = next(cells(x, "┃") for x in text.splitlines() if x.startswith("┃"))
    rows = [cells(x, "│") for x in text.splitlines() if x.startswith("│")]
    return {r[0]: r for r in rows}, header
