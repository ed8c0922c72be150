"""What a feature is, and the two arithmetic back ends that make live and batch agree.

A feature has a name, a version, its windows (ns), its units and a definition
(its class docstring). It is written ONCE, as a formula over a *view* of the
trade stream, with an ``ops`` object for the few operations that need a
decision (division by zero, masking):

- live, the view holds Python scalars (the state after one more trade) and
  ``ops`` is ``SCALAR``;
- in batch, the view holds one numpy array per quantity (one element per row)
  and ``ops`` is ``VECTOR``.

Both views expose the same quantities, built from the same sequential sums
(``np.cumsum`` is a left fold, like ``+=``), and the formula performs the same
IEEE operations in the same order on both, so the results are bit-for-bit
identical, not merely close (tests/unit/features/test_features_parity.py
checks it on random streams).

What a view holds (see ``Snap``), for the current day only (the intraday
state restarts at each local day, America/Sao_Paulo):

- ``cur``: cumulative quantities up to the last trade before T;
- ``ref(w)``: the same quantities up to the last trade with ts_event < T - w,
  or zeros when the day has none (``has_ref(w)`` is then false);
- so ``cur.n - ref(w).n`` is the count of trades in [T - w, T) of the day;
- the book top of the last book update before T.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from tickvault.timeutil import NS_PER_S

NAN = math.nan
Value = Any
"""A float (live) or a float64 array (batch)."""


class Snap(NamedTuple):
    """Cumulative quantities of a day's trades up to and including one trade."""

    ts: int
    """ts_event of that trade."""
    price: float
    lp: float
    """ln(price)."""
    r2: float
    """Running sum of squared trade-to-trade log returns (the day's first trade adds 0)."""
    n: int
    """Trades."""
    q: int
    """Quantity (contracts or shares)."""
    qb: int
    """Quantity of AGGRESSOR_BUY trades."""
    qs: int
    """Quantity of AGGRESSOR_SELL trades."""
    ql: int
    """Quantity of trades with qty >= the large-trade threshold."""
    pq: float
    """Running sum of price * qty."""


BASE = Snap(ts=-(2**62), price=NAN, lp=NAN, r2=0.0, n=0, q=0, qb=0, qs=0, ql=0, pq=0.0)
"""The quantities before the day's first trade."""


class View(Protocol):
    """What a feature formula reads: see the module docstring."""

    cur: Any
    bid_px: Any
    bid_qty: Any
    ask_px: Any
    ask_qty: Any
    book_ok: Any
    """True where both sides of the book top have a finite price and a quantity > 0."""

    def ref(self, window_ns: int) -> Any: ...

    def has_ref(self, window_ns: int) -> Any: ...


class ScalarOps:
    """Live arithmetic on Python floats and ints."""

    @staticmethod
    def div(a: Value, b: Value) -> Value:
        return a / b if b != 0 else NAN

    @staticmethod
    def where(cond: Value, x: Value) -> Value:
        return x if cond else NAN

    @staticmethod
    def sqrt(x: Value) -> Value:
        return math.sqrt(x)


class VectorOps:
    """Batch arithmetic on numpy arrays, element by element the same IEEE operations."""

    @staticmethod
    def div(a: Value, b: Value) -> Value:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.true_divide(a, b)
        return np.where(np.asarray(b) != 0, out, NAN)

    @staticmethod
    def where(cond: Value, x: Value) -> Value:
        return np.where(cond, x, NAN)

    @staticmethod
    def sqrt(x: Value) -> Value:
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)


Ops = ScalarOps | VectorOps
SCALAR = ScalarOps()
VECTOR = VectorOps()


class Feature(ABC):
    """A named, versioned formula over a ``View``; its docstring is its definition."""

    name: str
    version: int = 1
    units: str = ""
    windows_ns: tuple[int, ...] = ()

    @abstractmethod
    def compute(self, v: View, ops: Ops) -> Value:
        """The value at T from the view (scalars live, arrays in batch)."""

    @property
    def definition(self) -> str:
        return inspect.getdoc(type(self)) or ""

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "units": self.units,
            "windows": [window_label(w) for w in self.windows_ns],
            "definition": self.definition,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} v{self.version}>"


def window_label(ns: int) -> str:
    """A window as a short label: 1s, 500ms, 1min, 5min, 2h (used in feature names)."""
    for unit, size in (("h", 3600 * NS_PER_S), ("min", 60 * NS_PER_S), ("s", NS_PER_S)):
        if ns >= size and ns % size == 0:
            return f"{ns // size}{unit}"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"


def log_prices(price: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """ln(price), the one transcendental function of the intraday set, in numpy for both paths.

    The live state calls it on one-element arrays (and caches per price), so live
    and batch use the same implementation of log.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(price, dtype=np.float64))
