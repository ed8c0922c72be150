"""tickvault: the market-data backbone for B3 trading systems.

The public surface is what this module exports; everything else is internal.
"""

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
from tickvault.feeds.attach import Attachment, attach, detach
from tickvault.records.trades import (
    TRADE_DTYPE,
    TRADE_FIELDS,
    Trade,
    TradeBatch,
    TradeFlag,
    TradeType,
)
from tickvault.vault import GapMarker, StreamStats, TrimReport, Vault

__version__ = "0.1.0"

__all__ = [
    "TRADE_DTYPE",
    "TRADE_FIELDS",
    "Attachment",
    "ConfigError",
    "EmbeddedServerError",
    "FormatError",
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
