"""tickvault: the market-data backbone for B3 trading systems.

The public surface is what this module exports; everything else is internal.
``Vault`` and ``attach`` (with what comes with them) are loaded on first use, so
importing a lower layer (a feeder, the records, the wire format) never loads the
store's client library: ``import tickvault.feeds.files`` does not import valkey.
"""

import importlib
from typing import TYPE_CHECKING, Any

from tickvault.config import Settings, load_settings
from tickvault.errors import (
    ConfigError,
    EmbeddedServerError,
    FormatError,
    QueryError,
    ServerError,
    ServerUnreachable,
    TickvaultError,
    ValidationError,
)
from tickvault.records.events import Gap
from tickvault.records.trades import (
    TRADE_DTYPE,
    TRADE_FIELDS,
    Trade,
    TradeBatch,
    TradeFlag,
    TradeType,
)

if TYPE_CHECKING:
    from tickvault.feeds.attach import Attachment, attach, detach
    from tickvault.vault import CompactReport, GapMarker, StreamStats, TrimReport, Vault

_LAZY = {
    "Attachment": "tickvault.feeds.attach",
    "attach": "tickvault.feeds.attach",
    "detach": "tickvault.feeds.attach",
    "CompactReport": "tickvault.vault",
    "GapMarker": "tickvault.vault",
    "StreamStats": "tickvault.vault",
    "TrimReport": "tickvault.vault",
    "Vault": "tickvault.vault",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tickvault' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "TRADE_DTYPE",
    "TRADE_FIELDS",
    "Attachment",
    "CompactReport",
    "ConfigError",
    "EmbeddedServerError",
    "FormatError",
    "Gap",
    "GapMarker",
    "QueryError",
    "ServerError",
    "ServerUnreachable",
    "Settings",
    "StreamStats",
    "TickvaultError",
    "Trade",
    "TradeBatch",
    "TradeFlag",
    "TradeType",
    "TrimReport",
    "ValidationError",
    "Vault",
    "__version__",
    "attach",
    "detach",
    "load_settings",
]
