"""ProfitDLL 4.x structures, callback prototypes and error codes (ctypes, x64 layouts).

Strings are ``wchar_t*`` (``c_wchar_p``): 2 bytes on Windows, 4 elsewhere, which
is why a stand-in library must use ``wchar_t`` too. Sizes and field offsets are
those of Nelogica's own x64 declarations (the Delphi records of
``ProfitDataTypesU.pas`` and the Python example's ``profitTypes.py``): natural
alignment, except ``TAssetID``, a packed record (20 bytes).
``tests/unit/test_profitdll_layout.py`` holds the reference offsets.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import (
    POINTER,
    Structure,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_ubyte,
    c_uint,
    c_uint16,
    c_uint32,
    c_void_p,
    c_wchar_p,
)
from typing import Any

WINDOWS = sys.platform == "win32"
FUNCTYPE: Any = ctypes.WINFUNCTYPE if WINDOWS else ctypes.CFUNCTYPE  # type: ignore[attr-defined]
"""stdcall on Windows (the real DLL); cdecl elsewhere (a stand-in with the same exports)."""


class TAssetID(Structure):
    """``TAssetIDRec``, a Delphi packed record: 20 bytes, no trailing padding."""

    _pack_ = 1
    _layout_ = "ms"  # Python 3.14+ wants the layout of a packed structure named
    _fields_ = (("ticker", c_wchar_p), ("exchange", c_wchar_p), ("feed", c_int))


class TConnectorAssetIdentifier(Structure):
    _fields_ = (
        ("version", c_ubyte),
        ("ticker", c_wchar_p),
        ("exchange", c_wchar_p),
        ("feed_type", c_ubyte),
    )


class SYSTEMTIME(Structure):
    _fields_ = (
        ("year", c_uint16),
        ("month", c_uint16),
        ("day_of_week", c_uint16),
        ("day", c_uint16),
        ("hour", c_uint16),
        ("minute", c_uint16),
        ("second", c_uint16),
        ("milliseconds", c_uint16),
    )


class TConnectorTrade(Structure):
    """Filled by ``TranslateTrade``; ``version`` must be 0 before the call."""

    _fields_ = (
        ("version", c_ubyte),
        ("trade_date", SYSTEMTIME),
        ("trade_number", c_uint32),
        ("price", c_double),
        ("quantity", c_int64),
        ("volume", c_double),
        ("buy_agent", c_int32),
        ("sell_agent", c_int32),
        ("trade_type", c_ubyte),
    )


class TConnectorAccountIdentifier(Structure):
    _fields_ = (
        ("version", c_ubyte),
        ("broker_id", c_int32),
        ("account_id", c_wchar_p),
        ("sub_account_id", c_wchar_p),
        ("reserved", c_int64),
    )


class TConnectorSendOrder(Structure):
    """Version 1: order_type 1 market, 2 limit, 4 stop-limit; side 1 buy, 2 sell; market
    orders carry price -1 and non-stop orders stop_price -1."""

    _fields_ = (
        ("version", c_ubyte),
        ("account", TConnectorAccountIdentifier),
        ("asset", TConnectorAssetIdentifier),
        ("password", c_wchar_p),
        ("order_type", c_ubyte),
        ("order_side", c_ubyte),
        ("price", c_double),
        ("stop_price", c_double),
        ("quantity", c_int64),
    )


class TConnectorOrderIdentifier(Structure):
    _fields_ = (("version", c_ubyte), ("local_order_id", c_int64), ("cl_order_id", c_wchar_p))


class TConnectorCancelOrder(Structure):
    _fields_ = (
        ("version", c_ubyte),
        ("account", TConnectorAccountIdentifier),
        ("order", TConnectorOrderIdentifier),
        ("password", c_wchar_p),
    )


class TConnectorCancelAllOrders(Structure):
    _fields_ = (
        ("version", c_ubyte),
        ("account", TConnectorAccountIdentifier),
        ("password", c_wchar_p),
    )


class TConnectorAccountIdentifierOut(Structure):
    _fields_ = (
        ("version", c_ubyte),
        ("broker_id", c_int32),
        ("account_id", ctypes.c_wchar * 100),
        ("account_id_length", c_int32),
        ("sub_account_id", ctypes.c_wchar * 100),
        ("sub_account_id_length", c_int32),
        ("reserved", c_int64),
    )


class TConnectorAssetIdentifierOut(Structure):
    """The strings are buffers the caller supplies (NULL on the first call, which
    fills the lengths)."""

    _fields_ = (
        ("version", c_ubyte),
        ("ticker", c_void_p),
        ("ticker_length", c_int32),
        ("exchange", c_void_p),
        ("exchange_length", c_int32),
        ("feed_type", c_ubyte),
    )


class TConnectorOrderOut(Structure):
    """Filled by ``GetOrderDetails`` for ``order_id`` (the input): version 0, called
    twice (first with NULL strings for their lengths, then with buffers)."""

    _fields_ = (
        ("version", c_ubyte),
        ("order_id", TConnectorOrderIdentifier),
        ("account", TConnectorAccountIdentifierOut),
        ("asset", TConnectorAssetIdentifierOut),
        ("quantity", c_int64),
        ("traded_quantity", c_int64),
        ("leaves_quantity", c_int64),
        ("price", c_double),
        ("stop_price", c_double),
        ("average_price", c_double),
        ("order_side", c_ubyte),
        ("order_type", c_ubyte),
        ("order_status", c_ubyte),
        ("validity_type", c_ubyte),
        ("date", SYSTEMTIME),
        ("last_update", SYSTEMTIME),
        ("close_date", SYSTEMTIME),
        ("validity_date", SYSTEMTIME),
        ("text_message", c_void_p),
        ("text_message_length", c_int32),
        ("event_id", c_int64),
    )


ORDER_STATUS: dict[int, str] = {
    0: "new", 1: "partially filled", 2: "filled", 3: "done for day", 4: "canceled",
    5: "replaced", 6: "pending cancel", 7: "stopped", 8: "rejected", 9: "suspended",
    10: "pending new", 11: "calculated", 12: "expired", 13: "accepted for bidding",
    14: "pending replace", 15: "partially filled canceled", 16: "received",
    17: "partially filled expired", 18: "partially filled rejected", 200: "unknown",
    201: "hades created", 202: "broker sent", 203: "client created", 204: "order not created",
    205: "canceled by admin", 206: "delay fix gateway", 207: "scheduled order",
}  # fmt: skip
"""``TConnectorOrderStatus`` (the manual's list)."""
ORDER_DONE = frozenset({2, 3, 4, 7, 8, 12, 15, 17, 18, 204, 205})
"""Statuses after which an order changes no more."""
ORDER_FAILED = frozenset({8, 18, 204})
"""Rejected (also after a partial fill) or never created."""

POSITION_DAY_TRADE, POSITION_CONSOLIDATED = 1, 2
"""``TConnectorPositionType``: set in ``position_type`` before ``GetPositionV2`` (version >= 1)."""


class TConnectorTradingAccountPosition(Structure):
    """Filled by ``GetPositionV2``; 216 bytes. Version 1 adds ``position_type`` (an input,
    required), version 2 ``event_id``. The DLL writes up to the last field of the version
    asked, so the structure must have every field."""

    _fields_ = (
        ("version", c_ubyte),
        ("account", TConnectorAccountIdentifier),
        ("asset", TConnectorAssetIdentifier),
        ("open_quantity", c_int64),
        ("open_average_price", c_double),
        ("open_side", c_ubyte),
        ("daily_average_sell_price", c_double),
        ("daily_sell_quantity", c_int64),
        ("daily_average_buy_price", c_double),
        ("daily_buy_quantity", c_int64),
        ("daily_quantity_d1", c_int64),
        ("daily_quantity_d2", c_int64),
        ("daily_quantity_d3", c_int64),
        ("daily_quantity_blocked", c_int64),
        ("daily_quantity_pending", c_int64),
        ("daily_quantity_alloc", c_int64),
        ("daily_quantity_provision", c_int64),
        ("daily_quantity", c_int64),
        ("daily_quantity_available", c_int64),
        ("position_type", c_ubyte),
        ("event_id", c_int64),
    )


# ---------------------------------------------------------------------- callbacks
StateCallback = FUNCTYPE(None, c_int, c_int)
ProgressCallback = FUNCTYPE(None, TAssetID, c_int)
TradeCallbackV2 = FUNCTYPE(None, TConnectorAssetIdentifier, c_size_t, c_uint)
OfferBookCallbackV2 = FUNCTYPE(
    None,
    TAssetID,
    c_int,  # action
    c_int,  # position
    c_int,  # side
    c_int64,  # qty
    c_int,  # agent
    c_int64,  # offer id
    c_double,  # price
    c_ubyte,  # has price
    c_ubyte,  # has qty
    c_ubyte,  # has date
    c_ubyte,  # has offer id
    c_ubyte,  # has agent
    c_wchar_p,  # date
    c_void_p,  # sell array
    c_void_p,  # buy array
)
OrderCallback = FUNCTYPE(None, TConnectorOrderIdentifier)
InvalidTickerCallback = FUNCTYPE(None, TConnectorAssetIdentifier)
"""A subscription named a ticker the DLL does not know (mistyped, expired, wrong exchange)."""

TRADE_FLAG_EDIT = 1
TRADE_FLAG_LAST_PACKET = 2
BOOK_ARRAY_LAST_PACKET = 1
BOOK_ARRAY_FIRST_PACKET = 2

TRADE_TYPES: dict[int, str] = {
    1: "cross",
    2: "aggressor buy",
    3: "aggressor sell",
    4: "auction",
    5: "surveillance",
    6: "expit",
    7: "options exercise",
    8: "over the counter",
    9: "derivative term",
    10: "index",
    11: "BTC",
    12: "on behalf",
    13: "RLP",
    **{code: f"type {code} (4.0.0.41)" for code in (14, 15, 16, 17, 18)},
    32: "unknown",
    **{code: f"type {code} (4.0.0.41)" for code in (33, 34, 35)},
}
"""``tradeType`` codes. 1-13 and 32 are named in the manual and the Delphi ``TTradeType``;
14-18 and 33-35 appear in 4.0.0.41 without a name in Nelogica's published examples, so
they are kept as codes (stored as they come) and named by number."""


def trade_type_name(code: int) -> str:
    return TRADE_TYPES.get(code, f"undocumented type {code}")


# ---------------------------------------------------------------------- functions
# name -> (restype, argtypes). int64 for order ids; every other call returns an NL code.
_CB = c_void_p  # callback slots passed as NULL at initialization and set later
_STRINGS3 = (c_wchar_p, c_wchar_p, c_wchar_p)  # activation key, user, password
PROTOTYPES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    # key, user, password, state, 5 data callbacks (NULL), progress, tiny book (NULL)
    "DLLInitializeMarketLogin": (
        c_int,
        (*_STRINGS3, StateCallback, *(_CB,) * 5, ProgressCallback, _CB),
    ),
    # key, user, password, state, history, order, account, 5 data callbacks, progress, tiny book
    "DLLInitializeLogin": (
        c_int,
        (*_STRINGS3, StateCallback, *(_CB,) * 8, ProgressCallback, _CB),
    ),
    "DLLFinalize": (c_int, ()),
    "SetStateCallback": (c_int, (StateCallback,)),
    "SetSerieProgressCallback": (c_int, (ProgressCallback,)),
    "SetTradeCallbackV2": (c_int, (TradeCallbackV2,)),
    "SetHistoryTradeCallbackV2": (c_int, (TradeCallbackV2,)),
    "SetOfferBookCallbackV2": (c_int, (OfferBookCallbackV2,)),
    "SetOrderCallback": (c_int, (OrderCallback,)),
    "SetInvalidTickerCallback": (c_int, (InvalidTickerCallback,)),
    "SubscribeTicker": (c_int, (c_wchar_p, c_wchar_p)),
    "UnsubscribeTicker": (c_int, (c_wchar_p, c_wchar_p)),
    "SubscribeOfferBook": (c_int, (c_wchar_p, c_wchar_p)),
    "UnsubscribeOfferBook": (c_int, (c_wchar_p, c_wchar_p)),
    "GetHistoryTrades": (c_int, (c_wchar_p, c_wchar_p, c_wchar_p, c_wchar_p)),
    # a full-book array and its size (the header's total-size field): the caller frees it
    "FreePointer": (c_int, (c_void_p, c_int)),
    "TranslateTrade": (c_int, (c_size_t, POINTER(TConnectorTrade))),
    "GetAgentNameLength": (c_int, (c_int, c_int)),
    "GetAgentName": (c_int, (c_int, c_int, c_wchar_p, c_int)),
    "SendOrder": (c_int64, (POINTER(TConnectorSendOrder),)),
    "SendCancelOrderV2": (c_int, (POINTER(TConnectorCancelOrder),)),
    "SendCancelAllOrdersV2": (c_int, (POINTER(TConnectorCancelAllOrders),)),
    "GetPositionV2": (c_int, (POINTER(TConnectorTradingAccountPosition),)),
    "GetOrderDetails": (c_int, (POINTER(TConnectorOrderOut),)),
}

# ---------------------------------------------------------------------- error codes
NL_OK = 0
NL_ERRORS: dict[int, str] = {
    0x80000001: "NL_INTERNAL_ERROR",
    0x80000002: "NL_NOT_INITIALIZED",
    0x80000003: "NL_INVALID_ARGS",
    0x80000004: "NL_WAITING_SERVER",
    0x80000005: "NL_NO_LOGIN",
    0x80000006: "NL_NO_LICENSE",
    0x80000007: "NL_PASSWORD_HASH_SHA1",
    0x80000008: "NL_PASSWORD_HASH_MD5",
    0x80000009: "NL_OUT_OF_RANGE",
    0x8000000A: "NL_MARKET_ONLY",
    0x8000000B: "NL_NO_POSITION",
    0x8000000C: "NL_NOT_FOUND",
    0x8000000D: "NL_VERSION_NOT_SUPPORTED",
    0x8000000E: "NL_OCO_NO_RULES",
    0x8000000F: "NL_EXCHANGE_UNKNOWN",
    0x80000010: "NL_NO_OCO_DEFINED",
    0x80000011: "NL_INVALID_SERIE",
    0x80000012: "NL_LICENSE_NOT_ALLOWED",
    0x80000013: "NL_NOT_HARD_LOGOUT",
    0x80000014: "NL_SERIE_NO_HISTORY",
    0x80000015: "NL_ASSET_NO_DATA",
    0x80000016: "NL_SERIE_NO_DATA",
    0x80000017: "NL_HAS_STRATEGY_RUNNING",
    0x80000018: "NL_SERIE_NO_MORE_HISTORY",
    0x80000019: "NL_SERIE_MAX_COUNT",
    0x8000001A: "NL_DUPLICATE_RESOURCE",
    0x8000001B: "NL_UNSIGNED_CONTRACT",
    0x8000001C: "NL_NO_PASSWORD",
    0x8000001D: "NL_NO_USER",
    0x8000001E: "NL_FILE_ALREADY_EXISTS",
    0x8000001F: "NL_INVALID_TICKER",
    0x80000020: "NL_NOT_MASTER_ACCOUNT",
    0x8000002E: "NL_HISTORY_PERIOD_LIMIT",
}
"""Every NL code of Nelogica's constants (``ProfitConstantsU.pas``, the manual's table),
plus ``NL_HISTORY_PERIOD_LIMIT`` of 4.0.0.41."""
NL_HISTORY_PERIOD_LIMIT = 0x8000002E


def error_name(code: int) -> str:
    """The NL_* name of a (signed or unsigned) return code."""
    return NL_ERRORS.get(code & 0xFFFFFFFF, f"unknown error 0x{code & 0xFFFFFFFF:08X}")
