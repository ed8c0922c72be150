"""Orders and fills of ``orders:{SYMBOL}`` and ``fills:{SYMBOL}``, typed
(``ExecutionStore(vault)``): what the paper broker (or a live router) did, each with
the store's receive time, so "what had been filled by K, as known at K" is a query.
Layout: ``storage.recordstreams``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from tickvault.engine.signals import read_window
from tickvault.records.orders import FILL_DTYPE, ORDER_DTYPE, Fill, Order
from tickvault.records.validate import check_symbol
from tickvault.storage import recordstreams as rs
from tickvault.storage.connection import translate
from tickvault.storage.recordstreams import RecordStream
from tickvault.timeutil import TimeLike
from tickvault.vault import Vault


class ExecutionStore:
    """Append and read orders and fills (see the module docstring)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._orders = RecordStream(vault.client, "orders")
        self._fills = RecordStream(vault.client, "fills")

    @translate
    def append(self, items: Sequence[Order | Fill]) -> int:
        """Store orders and fills (any symbols; one atomic call per symbol and kind)."""
        groups: dict[tuple[str, bool], list[np.void]] = {}
        for it in items:
            groups.setdefault((check_symbol(it.symbol), isinstance(it, Order)), []).append(
                it.to_record()
            )
        for (symbol, is_order), recs in groups.items():
            if is_order:
                self._orders.append(symbol, np.array(recs, dtype=ORDER_DTYPE))
            else:
                self._fills.append(symbol, np.array(recs, dtype=FILL_DTYPE))
        return len(items)

    @translate
    def orders(
        self, symbol: str, start: TimeLike, end: TimeLike, *, known_at: TimeLike | None = None
    ) -> list[Order]:
        """The orders placed in [start, end), as known at ``known_at``."""
        recs, _ = read_window(self.vault, self._orders, symbol, start, end, known_at)
        return [Order.from_record(symbol, r) for r in recs]

    @translate
    def fills(
        self, symbol: str, start: TimeLike, end: TimeLike, *, known_at: TimeLike | None = None
    ) -> list[Fill]:
        """The fills at trades in [start, end), as known at ``known_at``."""
        recs, _ = read_window(self.vault, self._fills, symbol, start, end, known_at)
        return [Fill.from_record(symbol, r) for r in recs]

    @translate
    def commit(
        self,
        symbol: str,
        items: Sequence[Order | Fill],
        state: dict[str, Any],
        position: dict[str, Any],
        routing_done: Sequence[int] = (),
    ) -> None:
        """Store ``items`` (one symbol's orders and fills), the broker's ``state`` and
        its position summary, and clear the routing entries ``routing_done``, in one
        transaction (see ``recordstreams.commit_execution``)."""
        orders = [it.to_record() for it in items if isinstance(it, Order)]
        fills = [it.to_record() for it in items if isinstance(it, Fill)]
        rs.commit_execution(
            self.vault.client, check_symbol(symbol), np.array(orders, dtype=ORDER_DTYPE),
            np.array(fills, dtype=FILL_DTYPE), json.dumps(state),
            {k: str(v) for k, v in position.items()}, list(routing_done),
        )  # fmt: skip

    @translate
    def routing_put(self, symbol: str, order_id: int, entry: dict[str, Any]) -> None:
        """Write an order's live-routing entry ahead (``broker:{SYMBOL}:routing``)."""
        rs.routing_put(self.vault.client, check_symbol(symbol), order_id, json.dumps(entry))

    @translate
    def routing_entries(self, symbol: str) -> dict[int, dict[str, Any]]:
        """The routing entries not cleared by a commit (left by a kill), by order id."""
        raw = rs.routing_entries(self.vault.client, check_symbol(symbol))
        return {k: dict(json.loads(v)) for k, v in raw.items()}

    @translate
    def state(self, symbol: str) -> dict[str, Any] | None:
        """The broker state last committed for ``symbol`` (None: never ran)."""
        raw = rs.broker_state(self.vault.client, check_symbol(symbol))
        return None if raw is None else dict(json.loads(raw))

    @translate
    def position(self, symbol: str) -> dict[str, str]:
        """The hash ``positions:{SYMBOL}`` (position, avg_price, realized, ...)."""
        return rs.position_of(self.vault.client, check_symbol(symbol))

    @translate
    def watermark(self, symbol: str) -> int | None:
        """W: the T up to which the model worker has decided every row (design rule 5)."""
        return rs.signals_cursor_t(self.vault.client, check_symbol(symbol))
