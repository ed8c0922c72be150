"""Every ProfitDLL ctypes structure against Nelogica's own x64 layout, field by field.

The table below was derived by hand from Nelogica's official declarations in the
public repository ``rlquilez/nelogica-profitdll``:

- ``Exemplo Delphi/Types/ProfitDataTypesU.pas`` (records with natural alignment),
- ``Exemplo Delphi/Types/LegacyProfitDataTypesU.pas`` (``TAssetIDRec``, a packed record),
- ``Exemplo Python/profitTypes.py`` (the same structures in ctypes),
- ``Exemplo C#/ProfitDataTypes.cs`` (``LayoutKind.Sequential``),
- ``manual_dll.md`` (the record declarations of the manual, 4.0.0.31).

Offsets are for x64 (Windows x64 and Linux x86-64 agree: pointers are 8 bytes and
no field here is a C ``long``). Each row is (reference name, binding name, offset,
size); nested records are checked as fields of their own rows too. A drift in the
binding (a field added, removed, retyped or reordered) fails here.

``TAssetIDRec`` is a ``packed record`` in Delphi (20 bytes); the Python example declares
it without packing (24 bytes, the same offsets). The DLL is built from the Delphi
declaration, so the binding follows it; passed by value on x64 either size goes by
reference to a copy, so only the offsets matter to the DLL.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from tickvault.feeds.profitdll import types as t

_W = ctypes.sizeof(ctypes.c_wchar)
_D = 200 * (_W - 4)

# reference record -> (binding class, size, [(reference field, binding field, offset, size)])
REFERENCE: dict[str, tuple[Any, int, list[tuple[str, str, int, int]]]] = {
    "TAssetIDRec": (t.TAssetID, 20, [
        ("pchTicker", "ticker", 0, 8),
        ("pchBolsa", "exchange", 8, 8),
        ("nFeed", "feed", 16, 4),
    ]),
    "TConnectorAssetIdentifier": (t.TConnectorAssetIdentifier, 32, [
        ("Version", "version", 0, 1),
        ("Ticker", "ticker", 8, 8),
        ("Exchange", "exchange", 16, 8),
        ("FeedType", "feed_type", 24, 1),
    ]),
    "TSystemTime": (t.SYSTEMTIME, 16, [
        ("wYear", "year", 0, 2),
        ("wMonth", "month", 2, 2),
        ("wDayOfWeek", "day_of_week", 4, 2),
        ("wDay", "day", 6, 2),
        ("wHour", "hour", 8, 2),
        ("wMinute", "minute", 10, 2),
        ("wSecond", "second", 12, 2),
        ("wMilliseconds", "milliseconds", 14, 2),
    ]),
    "TConnectorTrade": (t.TConnectorTrade, 64, [
        ("Version", "version", 0, 1),
        ("TradeDate", "trade_date", 2, 16),
        ("TradeNumber", "trade_number", 20, 4),
        ("Price", "price", 24, 8),
        ("Quantity", "quantity", 32, 8),
        ("Volume", "volume", 40, 8),
        ("BuyAgent", "buy_agent", 48, 4),
        ("SellAgent", "sell_agent", 52, 4),
        ("TradeType", "trade_type", 56, 1),
    ]),
    "TConnectorAccountIdentifier": (t.TConnectorAccountIdentifier, 32, [
        ("Version", "version", 0, 1),
        ("BrokerID", "broker_id", 4, 4),
        ("AccountID", "account_id", 8, 8),
        ("SubAccountID", "sub_account_id", 16, 8),
        ("Reserved", "reserved", 24, 8),
    ]),
    "TConnectorOrderIdentifier": (t.TConnectorOrderIdentifier, 24, [
        ("Version", "version", 0, 1),
        ("LocalOrderID", "local_order_id", 8, 8),
        ("ClOrderID", "cl_order_id", 16, 8),
    ]),
    "TConnectorSendOrder": (t.TConnectorSendOrder, 112, [
        ("Version", "version", 0, 1),
        ("AccountID", "account", 8, 32),
        ("AssetID", "asset", 40, 32),
        ("Password", "password", 72, 8),
        ("OrderType", "order_type", 80, 1),
        ("OrderSide", "order_side", 81, 1),
        ("Price", "price", 88, 8),
        ("StopPrice", "stop_price", 96, 8),
        ("Quantity", "quantity", 104, 8),
    ]),
    "TConnectorCancelOrder": (t.TConnectorCancelOrder, 72, [
        ("Version", "version", 0, 1),
        ("AccountID", "account", 8, 32),
        ("OrderID", "order", 40, 24),
        ("Password", "password", 64, 8),
    ]),
    "TConnectorCancelAllOrders": (t.TConnectorCancelAllOrders, 48, [
        ("Version", "version", 0, 1),
        ("AccountID", "account", 8, 32),
        ("Password", "password", 40, 8),
    ]),
    "TConnectorTradingAccountPosition": (t.TConnectorTradingAccountPosition, 216, [
        ("Version", "version", 0, 1),
        ("AccountID", "account", 8, 32),
        ("AssetID", "asset", 40, 32),
        ("OpenQuantity", "open_quantity", 72, 8),
        ("OpenAveragePrice", "open_average_price", 80, 8),
        ("OpenSide", "open_side", 88, 1),
        ("DailyAverageSellPrice", "daily_average_sell_price", 96, 8),
        ("DailySellQuantity", "daily_sell_quantity", 104, 8),
        ("DailyAverageBuyPrice", "daily_average_buy_price", 112, 8),
        ("DailyBuyQuantity", "daily_buy_quantity", 120, 8),
        ("DailyQuantityD1", "daily_quantity_d1", 128, 8),
        ("DailyQuantityD2", "daily_quantity_d2", 136, 8),
        ("DailyQuantityD3", "daily_quantity_d3", 144, 8),
        ("DailyQuantityBlocked", "daily_quantity_blocked", 152, 8),
        ("DailyQuantityPending", "daily_quantity_pending", 160, 8),
        ("DailyQuantityAlloc", "daily_quantity_alloc", 168, 8),
        ("DailyQuantityProvision", "daily_quantity_provision", 176, 8),
        ("DailyQuantity", "daily_quantity", 184, 8),
        ("DailyQuantityAvailable", "daily_quantity_available", 192, 8),
        ("PositionType", "position_type", 200, 1),  # V1
        ("EventID", "event_id", 208, 8),  # V2
    ]),
    # GetOrderDetails: WideChar[100] arrays, so these sizes follow wchar_t (2 bytes on
    # Windows as in Delphi, 4 in the Linux stand-in): _D = 0 with 4-byte wchar_t
    "TConnectorAccountIdentifierOut": (t.TConnectorAccountIdentifierOut, 824 + _D, [
        ("Version", "version", 0, 1),
        ("BrokerID", "broker_id", 4, 4),
        ("AccountID", "account_id", 8, 100 * _W),
        ("AccountIDLength", "account_id_length", 408 + _D // 2, 4),
        ("SubAccountID", "sub_account_id", 412 + _D // 2, 100 * _W),
        ("SubAccountIDLength", "sub_account_id_length", 812 + _D, 4),
        ("Reserved", "reserved", 816 + _D, 8),
    ]),
    "TConnectorAssetIdentifierOut": (t.TConnectorAssetIdentifierOut, 40, [
        ("Version", "version", 0, 1),
        ("Ticker", "ticker", 8, 8),
        ("TickerLength", "ticker_length", 16, 4),
        ("Exchange", "exchange", 24, 8),
        ("ExchangeLength", "exchange_length", 32, 4),
        ("FeedType", "feed_type", 36, 1),
    ]),
    "TConnectorOrderOut": (t.TConnectorOrderOut, 1040 + _D, [
        ("Version", "version", 0, 1),
        ("OrderID", "order_id", 8, 24),
        ("AccountID", "account", 32, 824 + _D),
        ("AssetID", "asset", 856 + _D, 40),
        ("Quantity", "quantity", 896 + _D, 8),
        ("TradedQuantity", "traded_quantity", 904 + _D, 8),
        ("LeavesQuantity", "leaves_quantity", 912 + _D, 8),
        ("Price", "price", 920 + _D, 8),
        ("StopPrice", "stop_price", 928 + _D, 8),
        ("AveragePrice", "average_price", 936 + _D, 8),
        ("OrderSide", "order_side", 944 + _D, 1),
        ("OrderType", "order_type", 945 + _D, 1),
        ("OrderStatus", "order_status", 946 + _D, 1),
        ("ValidityType", "validity_type", 947 + _D, 1),
        ("Date", "date", 948 + _D, 16),
        ("LastUpdate", "last_update", 964 + _D, 16),
        ("CloseDate", "close_date", 980 + _D, 16),
        ("ValidityDate", "validity_date", 996 + _D, 16),
        ("TextMessage", "text_message", 1016 + _D, 8),
        ("TextMessageLength", "text_message_length", 1024 + _D, 4),
        ("EventID", "event_id", 1032 + _D, 8),  # V1
    ]),
}  # fmt: skip

BINDING_STRUCTURES = {
    obj
    for obj in vars(t).values()
    if isinstance(obj, type) and issubclass(obj, ctypes.Structure) and obj is not ctypes.Structure
}

pytestmark = pytest.mark.skipif(
    ctypes.sizeof(ctypes.c_void_p) != 8, reason="the reference layouts are x64"
)


@pytest.mark.parametrize("record", sorted(REFERENCE))
def test_structure_matches_the_reference_layout(record: str) -> None:
    cls, size, rows = REFERENCE[record]
    assert ctypes.sizeof(cls) == size, record
    names = [name for name, *_ in cls._fields_]
    assert names == [ours for _, ours, _, _ in rows], f"{record}: fields or their order differ"
    for ref_name, ours, offset, width in rows:
        field = getattr(cls, ours)
        assert (field.offset, field.size) == (offset, width), f"{record}.{ref_name}"


def test_every_binding_structure_is_in_the_table() -> None:
    assert {cls for cls, _, _ in REFERENCE.values()} == BINDING_STRUCTURES
