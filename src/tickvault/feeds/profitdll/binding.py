"""The ctypes binding of ProfitDLL: loading, prototypes, and NL codes turned into exceptions.

``ProfitDLL(path)`` loads ``ProfitDLL64.dll`` with stdcall on Windows, or any shared
library with the same exports (cdecl) elsewhere. Every call checks its return
code: a negative one raises ``ProfitDLLError`` naming the NL code and the call.
Callback objects handed to the DLL are kept in ``self.keep`` for the life of the
session, since the DLL calling a collected one crashes the process.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickvault.errors import FeedError
from tickvault.feeds.profitdll import types as t


class ProfitDLLError(FeedError):
    """A ProfitDLL call returned an NL error code."""

    def __init__(self, call: str, code: int):
        self.call = call
        self.code = code & 0xFFFFFFFF
        self.name = t.error_name(code)
        super().__init__(f"ProfitDLL {call} failed: {self.name} (0x{self.code:08X})")


class ProfitDLL:
    """One loaded library. Not thread-safe for requests: call from one thread."""

    def __init__(self, path: str | Path):
        loader: Any = ctypes.WinDLL if t.WINDOWS else ctypes.CDLL  # type: ignore[attr-defined]
        try:
            self.lib = loader(str(path))
        except OSError as exc:
            raise FeedError(
                f"cannot load ProfitDLL from {path}: {exc}. Set profitdll_path to the "
                "full path of ProfitDLL64.dll (or TICKVAULT_PROFITDLL_PATH)"
            ) from exc
        self.path = str(path)
        self.keep: list[Any] = []
        """Every callback object given to the DLL, referenced until the process ends."""
        for name, (restype, argtypes) in t.PROTOTYPES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError as exc:
                raise FeedError(f"{path} does not export {name}: is it ProfitDLL 4.x?") from exc
            fn.restype = restype
            fn.argtypes = argtypes

    def _check(self, call: str, rc: int) -> int:
        if rc < 0:
            raise ProfitDLLError(call, rc)
        return rc

    def call(self, name: str, *args: Any) -> int:
        return self._check(name, int(getattr(self.lib, name)(*args)))

    def callback(self, prototype: Any, fn: Any) -> Any:
        """A ctypes callback for ``fn``, kept alive for the session."""
        cb = prototype(fn)
        self.keep.append(cb)
        return cb

    # ------------------------------------------------------------------ session
    def initialize(
        self, key: str, user: str, password: str, state: Any, progress: Any, *, routing: bool
    ) -> None:
        """Log in (market data, plus routing when ``routing``); data callbacks are set
        afterwards with the V2 setters."""
        if routing:
            self.call("DLLInitializeLogin", key, user, password, state,
                      *([None] * 8), progress, None)  # fmt: skip
        else:
            self.call("DLLInitializeMarketLogin", key, user, password, state,
                      *([None] * 5), progress, None)  # fmt: skip

    def finalize(self) -> None:
        self.call("DLLFinalize")

    # ------------------------------------------------------------------ market data
    def translate_trade(self, p_trade: int) -> t.TConnectorTrade:
        """Decode the opaque trade pointer of a V2 trade callback (call inside it)."""
        trade = t.TConnectorTrade()
        trade.version = 0
        self.call("TranslateTrade", p_trade, ctypes.byref(trade))
        return trade

    def free_pointer(self, pointer: int, size: int) -> None:
        """Free a full-book array the offer-book callback handed over (``size``: the
        array header's total-size field). Call it once per array, after copying."""
        self.call("FreePointer", pointer, size)

    def agent_name(self, agent_id: int, *, short: bool = False) -> str:
        length = self.call("GetAgentNameLength", agent_id, int(short))
        buffer = ctypes.create_unicode_buffer(length + 1)
        self.call("GetAgentName", length, agent_id, buffer, int(short))
        return buffer.value

    # ------------------------------------------------------------------ routing
    @staticmethod
    def _account(broker_id: int, account: str, sub_account: str = "") -> Any:
        return t.TConnectorAccountIdentifier(0, broker_id, account, sub_account or None, 0)

    def send_order(
        self,
        *,
        broker_id: int,
        account: str,
        password: str,
        ticker: str,
        exchange: str,
        side: int,
        quantity: int,
        order_type: int = 2,
        price: float = -1.0,
        stop_price: float = -1.0,
    ) -> int:
        """Send an order; returns the local order id (int64)."""
        order = t.TConnectorSendOrder()
        order.version = 1
        order.account = self._account(broker_id, account)
        order.asset = t.TConnectorAssetIdentifier(0, ticker, exchange, 0)
        order.password = password
        order.order_type, order.order_side = order_type, side
        order.price = -1.0 if order_type == 1 else price
        order.stop_price = stop_price if order_type == 4 else -1.0
        order.quantity = quantity
        return self.call("SendOrder", ctypes.byref(order))

    def cancel_order(self, *, broker_id: int, account: str, password: str, order_id: int) -> None:
        cancel = t.TConnectorCancelOrder()
        cancel.version = 0
        cancel.account = self._account(broker_id, account)
        cancel.order = t.TConnectorOrderIdentifier(0, order_id, None)
        cancel.password = password
        self.call("SendCancelOrderV2", ctypes.byref(cancel))

    def cancel_all_orders(self, *, broker_id: int, account: str, password: str) -> None:
        cancel = t.TConnectorCancelAllOrders()
        cancel.version = 0
        cancel.account = self._account(broker_id, account)
        cancel.password = password
        self.call("SendCancelAllOrdersV2", ctypes.byref(cancel))

    def position(
        self,
        *,
        broker_id: int,
        account: str,
        ticker: str,
        exchange: str,
        position_type: int = t.POSITION_CONSOLIDATED,
        version: int = 1,
    ) -> t.TConnectorTradingAccountPosition:
        """The position of an account in a ticker: ``position_type`` 1 day trade, 2
        consolidated. Version 1 (the Python and C# examples) needs the position type;
        version 2 (the Delphi example) also fills ``event_id``."""
        if position_type not in (t.POSITION_DAY_TRADE, t.POSITION_CONSOLIDATED):
            raise FeedError(f"ProfitDLL position: position_type must be 1 (day trade) or 2 "
                            f"(consolidated), got {position_type}")  # fmt: skip
        if version not in (1, 2):
            raise FeedError(f"ProfitDLL position: version must be 1 or 2, got {version}")
        pos = t.TConnectorTradingAccountPosition()
        pos.version = version
        pos.account = self._account(broker_id, account)
        pos.asset = t.TConnectorAssetIdentifier(0, ticker, exchange, 0)
        pos.position_type = position_type
        self.call("GetPositionV2", ctypes.byref(pos))
        return pos

    def order_details(
        self, local_order_id: int = -1, *, cl_order_id: str | None = None
    ) -> OrderDetails:
        """The state of an order (``GetOrderDetails``, twice: lengths, then strings),
        named by its local id, or (``local_order_id`` -1) by its ClOrdID, which unlike
        the local id outlives the DLL session. Meant for the order-change callback, as
        Nelogica's examples use it, and for reconciling orders after a restart."""
        out = t.TConnectorOrderOut()
        out.version = 0
        out.order_id = t.TConnectorOrderIdentifier(0, local_order_id, cl_order_id)
        self.call("GetOrderDetails", ctypes.byref(out))
        bufs = [ctypes.create_unicode_buffer(max(n, 0) + 1)
                for n in (out.asset.ticker_length, out.asset.exchange_length,
                          out.text_message_length)]  # fmt: skip
        out.asset.ticker, out.asset.exchange, out.text_message = (
            ctypes.cast(b, ctypes.c_void_p).value for b in bufs
        )
        self.call("GetOrderDetails", ctypes.byref(out))
        return OrderDetails(
            local_order_id=int(out.order_id.local_order_id),
            cl_order_id=out.order_id.cl_order_id,
            ticker=bufs[0].value,
            exchange=bufs[1].value,
            account=out.account.account_id,
            side=int(out.order_side),
            order_type=int(out.order_type),
            status=int(out.order_status),
            quantity=int(out.quantity),
            traded=int(out.traded_quantity),
            leaves=int(out.leaves_quantity),
            price=float(out.price),
            average_price=float(out.average_price),
            text=bufs[2].value,
        )


@dataclass(frozen=True, slots=True)
class OrderDetails:
    """What ``GetOrderDetails`` said about an order (side 1 buy, 2 sell; status:
    ``types.ORDER_STATUS``)."""

    local_order_id: int
    cl_order_id: str | None
    ticker: str
    exchange: str
    account: str
    side: int
    order_type: int
    status: int
    quantity: int
    traded: int
    leaves: int
    price: float
    average_price: float
    text: str

    @property
    def status_name(self) -> str:
        return t.ORDER_STATUS.get(self.status, f"status {self.status}")
