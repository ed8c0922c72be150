"""Contract facts (pure): a symbol's tick size and point value on B3.

    contract("WINZ25")   # Contract(root="WIN", tick_size=5.0, point_value=0.2)

Mini index (WIN, IND full: 5 points a tick; BRL 0.20 / 1.00 a point), mini dollar
(WDO, DOL full: half a point a tick; BRL 10 / 50 a point), equities (BRL 0.01 a tick,
one share = BRL 1 a point). The simulator (``feeds.sim.generator.CONTRACTS``) uses the
same WIN and WDO figures (a test checks they agree). Anything else raises
``QueryError``: pass the facts yourself (``Contract(...)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tickvault.errors import QueryError

_EQUITY_RE = re.compile(r"^[A-Z]{4}\d{1,2}F?$")


@dataclass(frozen=True, slots=True)
class Contract:
    """The price grid and the money value of one point, per contract (or share)."""

    root: str
    tick_size: float
    """The smallest price step, in price points."""
    point_value: float
    """BRL per price point per contract: PnL = price change * qty * point_value."""

    def __post_init__(self) -> None:
        if not self.tick_size > 0 or not self.point_value > 0:
            raise QueryError(
                f"contract {self.root}: tick_size and point_value must be > 0, got "
                f"{self.tick_size} and {self.point_value}"
            )


FUTURES: dict[str, Contract] = {
    "WIN": Contract("WIN", 5.0, 0.2),
    "IND": Contract("IND", 5.0, 1.0),
    "WDO": Contract("WDO", 0.5, 10.0),
    "DOL": Contract("DOL", 0.5, 50.0),
}


def contract(symbol: str) -> Contract:
    """The contract facts of ``symbol`` (futures by their three-letter root, any maturity;
    equities such as PETR4)."""
    s = symbol.strip().upper() if isinstance(symbol, str) else ""
    got = FUTURES.get(s[:3])
    if got is not None:
        return got
    if _EQUITY_RE.match(s):
        return Contract(s, 0.01, 1.0)
    raise QueryError(
        f"no contract facts (tick size, point value) for symbol {symbol!r}: known are the "
        f"futures roots {', '.join(sorted(FUTURES))} and equities such as PETR4"
    )
