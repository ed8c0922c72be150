"""Nelogica ProfitDLL: ctypes binding (``binding``), structures (``types``), conversions
(``convert``) and the feeder (``feeder``)."""

from tickvault.feeds.profitdll.binding import ProfitDLL, ProfitDLLError
from tickvault.feeds.profitdll.feeder import (
    ProfitCredentials,
    ProfitDLLFeeder,
    Subscription,
    parse_subscriptions,
)

__all__ = [
    "ProfitCredentials",
    "ProfitDLL",
    "ProfitDLLError",
    "ProfitDLLFeeder",
    "Subscription",
    "parse_subscriptions",
]
