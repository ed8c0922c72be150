"""ProfitDLL credentials (activation key, user, password; never shown) and the
subscriptions a feeder asks for (ticker and exchange)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tickvault.config import Settings
from tickvault.errors import ConfigError
from tickvault.records.validate import check_symbol

FUTURES_PREFIXES = ("WIN", "WDO", "IND", "DOL", "BIT", "DI1", "CCM", "BGI", "ICF", "SFI")
"""Roots of B3 futures (exchange F, BMF); other tickers default to B (Bovespa)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    ticker: str
    exchange: str
    """"F" BMF (futures) or "B" Bovespa (equities)."""


def parse_subscriptions(spec: str) -> list[Subscription]:
    """``WINZ25:F,PETR4:B`` (the exchange defaults to F for B3 futures roots, else B)."""
    subs = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        ticker, _, exchange = item.partition(":")
        ticker = check_symbol(ticker)
        exchange = (exchange or ("F" if ticker.startswith(FUTURES_PREFIXES) else "B")).upper()
        if exchange not in ("F", "B"):
            raise ConfigError(
                f"--symbols: exchange {exchange!r} of {item!r} must be F (BMF) or B (Bovespa)"
            )
        subs.append(Subscription(ticker, exchange))
    if not subs:
        raise ConfigError("--symbols: name at least one ticker, such as WINZ25:F,PETR4:B")
    return subs


class ProfitCredentials:
    """Activation key, user and password. Never shown: not in repr, logs or errors."""

    __slots__ = ("_key", "_password", "_user")

    def __init__(self, key: str, user: str, password: str):
        self._key, self._user, self._password = key, user, password

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfitCredentials:
        values = {
            "profitdll_key": settings.profitdll_key,
            "profitdll_user": settings.profitdll_user,
            "profitdll_password": settings.profitdll_password,
        }
        missing = [name for name, v in values.items() if v is None or not _secret(v)]
        if missing:
            envs = ", ".join(f"TICKVAULT_{m.upper()}" for m in missing)
            raise ConfigError(
                f"ProfitDLL credentials missing: set {envs} in the environment, or "
                f"{', '.join(missing)} in the config file (never on the command line)"
            )
        return cls(*(_secret(v) for v in values.values()))

    def __repr__(self) -> str:
        return "ProfitCredentials(<hidden>)"

    def reveal(self) -> tuple[str, str, str]:
        return self._key, self._user, self._password


def _secret(value: Any) -> str:
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
