"""ProfitDLL connection states in words, and when a session is ready.

The codes themselves (``CONN_*``, ``MARKET_*``) are the wire's vocabulary of feeder
states and are defined once in ``records.events``; this module adds what only the
ProfitDLL feeder needs: their texts and the readiness rule.
"""

from __future__ import annotations

from collections.abc import Mapping

from tickvault.records.events import (
    CONN_ACTIVATION,
    CONN_LOGIN,
    CONN_MARKET,
    CONN_ROUTING,
    CONN_SUBSCRIPTION,
    MARKET_CONNECTED,
    SUBSCRIPTION_UNKNOWN_TICKER,
)

ROUTING_READY = frozenset({2, 5})
"""Routing is usable at (1, 2), as the manual says, or (1, 5), as the examples treat it."""
STATE_TEXT: dict[tuple[int, int], str] = {
    (0, 0): "logged in",
    (0, 1): "login refused: invalid login",
    (0, 2): "login refused: wrong password",
    (0, 3): "login refused: account blocked",
    (0, 4): "login refused: password expired",
    (0, 200): "login failed: internal error",
    (1, 0): "routing disconnected",
    (1, 1): "routing connecting",
    (1, 2): "routing connected",
    (1, 3): "broker disconnected",
    (1, 4): "broker connecting",
    (1, 5): "routing connected (broker connected)",
    (2, 0): "market data disconnected",
    (2, 1): "market data connecting",
    (2, 2): "market data waiting",
    (2, 3): "market data: not logged in",
    (2, 4): "market data connected",
    (2, 5): "market data: performance warning",
    (2, 6): "market data partially connected: callbacks are not drained fast enough",
    (3, 0): "activation valid",
    (CONN_SUBSCRIPTION, SUBSCRIPTION_UNKNOWN_TICKER): "a subscribed ticker is unknown to ProfitDLL",
}

CONNECTION_NAMES: dict[int, str] = {
    CONN_LOGIN: "login",
    CONN_ROUTING: "routing",
    CONN_MARKET: "market data",
    CONN_ACTIVATION: "activation",
}


def state_text(conn_type: int, result: int) -> str:
    return STATE_TEXT.get((conn_type, result), f"state type {conn_type} result {result}")


def session_ready(states: Mapping[int, int], routing: bool) -> bool:
    """Logged in, market data connected and, with routing, routing connected: (1, 2)
    as the manual says, or (1, 5) as Nelogica's examples treat it."""
    if states.get(CONN_LOGIN) != 0 or states.get(CONN_MARKET) != MARKET_CONNECTED:
        return False
    return not routing or states.get(CONN_ROUTING) in ROUTING_READY


def waiting_for(states: Mapping[int, int]) -> str:
    """What a session that is not ready still waits for."""
    if states.get(CONN_LOGIN) != 0:
        return "login"
    if states.get(CONN_MARKET) != MARKET_CONNECTED:
        return "market data"
    return "routing"
