"""``tickvault paper run|status``: the broker process (paper, or live ProfitDLL orders
when configured and confirmed) and what it holds."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from tickvault.cli.common import open_vault, parse_symbols, stop_on_signals
from tickvault.cli.output import console, err_console
from tickvault.errors import ConfigError


@click.group("paper")
def paper() -> None:
    """The paper broker: signals become orders, trades fill them (docs/execution.md)."""


def _live_routers(vault: Any, symbols: list[str]) -> tuple[Any, dict[str, Any]]:
    from tickvault.execution.ordering import EventOrder
    from tickvault.execution.paper import PaperBroker
    from tickvault.feeds.profitdll import ProfitDLL
    from tickvault.live.broker import broker_params
    from tickvault.live.routing import ProfitDLLRouter, ProfitDLLSession, RoutingAccount

    s = vault.settings
    missing = [n for n in ("profitdll_key", "profitdll_user", "profitdll_password",
                           "profitdll_broker_id", "profitdll_account",
                           "profitdll_routing_password") if getattr(s, n) is None]  # fmt: skip
    if missing:
        raise ConfigError("live routing needs the settings " + ", ".join(missing) + " (config "
                          "file or TICKVAULT_* environment variables)")  # fmt: skip
    session = ProfitDLLSession(ProfitDLL(s.profitdll_path))
    try:
        session.login(s.profitdll_key.get_secret_value(), s.profitdll_user.get_secret_value(),
                      s.profitdll_password.get_secret_value(), 30.0)  # fmt: skip
    except Exception:
        session.close()
        raise
    account = RoutingAccount(int(s.profitdll_broker_id), str(s.profitdll_account),
                             s.profitdll_routing_password.get_secret_value())  # fmt: skip
    latency = round(s.paper_latency_ms * 1_000_000)
    routers = {sym: ProfitDLLRouter(EventOrder(PaperBroker(sym, broker_params(s, sym)), latency),
                                    session, account) for sym in symbols}  # fmt: skip
    return session, routers


@paper.command("run")
@click.option("--symbols", required=True, help="Symbols to trade (comma-separated).")
@click.option(
    "--live-orders",
    is_flag=True,
    help='Confirm live ProfitDLL orders (needs order_routing = "profitdll").',
)
@click.pass_context
def run(ctx: click.Context, symbols: str, live_orders: bool) -> None:
    """Consume stored signals and trades, store orders, fills and positions, publish
    them on zmq_orders_port, until SIGINT/SIGTERM. Restarted, it continues from its
    stored state."""
    import logging

    from tickvault.live.broker import BrokerWorker, check_routing

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    wanted = parse_symbols(symbols) or []
    with open_vault(ctx) as vault:
        routing = check_routing(vault.settings, live_orders)
        for sym in wanted:
            from tickvault.live.broker import broker_params

            broker_params(vault.settings, sym)  # a bad contract or setting fails here
        session, routers = (None, None)
        if routing == "profitdll":
            session, routers = _live_routers(vault, wanted)
        worker = BrokerWorker(vault, wanted, routers=routers)
        stop_on_signals(worker.stop)
        err_console.print(
            f"paper broker ({routing}): {', '.join(wanted)}; orders and fills on port "
            f"{vault.settings.zmq_orders_port}; SIGINT/SIGTERM stop it",
            highlight=False,
        )
        try:
            worker.run()
        finally:
            worker.close()
            if session is not None:
                session.close()


@paper.command("status")
@click.option("--symbols", help="Symbols (comma-separated; default: every stored one).")
@click.pass_context
def status(ctx: click.Context, symbols: str | None) -> None:
    """Positions, PnL, fills, refused orders and the kill switch, per symbol; then
    routing errors, broker rejections and orders unconfirmed after a restart."""
    from tickvault.engine.orders import ExecutionStore

    with open_vault(ctx) as vault:
        store = ExecutionStore(vault)
        wanted = parse_symbols(symbols) if symbols else vault.symbols()
        table = Table("symbol", "routing", "position", "avg price", "realized", "open PnL",
                      "day PnL", "fees", "fills", "refused", "pending", "kill switch",
                      "errors", "rejected", "unconfirmed")  # fmt: skip
        shown = 0
        notes: list[str] = []
        for sym in wanted or []:
            pos = store.position(sym)
            if not pos:
                continue
            fills = len(store.fills(sym, 0, 1 << 62))
            killed = pos.get("killed_day", "")
            table.add_row(sym, pos.get("routing", ""), pos["position"],
                          f"{float(pos['avg_price']):.2f}", f"{float(pos['realized']):.2f}",
                          f"{float(pos['open_pnl']):.2f}", f"{float(pos['day_pnl']):.2f}",
                          f"{float(pos['fees']):.2f}", str(fills), pos["refused"],
                          pos["pending"], "ON" if killed else "off",
                          pos.get("routing_errors", "0"), pos.get("rejected", "0"),
                          pos.get("unconfirmed", "0"))  # fmt: skip
            shown += 1
            notes += _notes(sym, (store.state(sym) or {}).get("router", {}))
        if not shown:
            err_console.print("no paper broker state stored (run `tickvault paper run`)")
            return
        console.print(table)
        for line in notes:
            console.print(line, highlight=False, markup=False, soft_wrap=True)


def _notes(symbol: str, router: dict[str, Any]) -> list[str]:
    """One line per routing error, rejection and unconfirmed order (the latest kept)."""
    out = [f"{symbol}: routing error: {e}" for e in router.get("errors", [])]
    out += [f"{symbol}: order {oid} rejected by the broker: {text}"
            for oid, text in router.get("rejections", [])]  # fmt: skip
    out += [f"{symbol}: order {u['order_id']} UNCONFIRMED: {u['text']}"
            for u in router.get("unconfirmed", [])]  # fmt: skip
    return out
