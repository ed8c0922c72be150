"""Nelogica ProfitDLL: ctypes binding (``binding``), structures (``types``), conversions
(``convert``), states (``states``), credentials and subscriptions (``credentials``),
history requests (``history``) and the feeder (``feeder``)."""

from tickvault.feeds.profitdll.binding import ProfitDLL, ProfitDLLError
from tickvault.feeds.profitdll.credentials import (
    ProfitCredentials,
    Subscription,
    parse_subscriptions,
)
from tickvault.feeds.profitdll.feeder import ProfitDLLFeeder

__all__ = [
    "ProfitCredentials",
    "ProfitDLL",
    "ProfitDLLError",
    "ProfitDLLFeeder",
    "Subscription",
    "parse_subscriptions",
]
