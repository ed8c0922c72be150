"""From predictions to signals (pure): thresholds, hysteresis and a cooldown.

A model gives, per step, the probabilities of the next horizon's move being up
and down (``p_up``, ``p_down``; flat is the rest). The policy keeps the side the
symbol should hold and emits a ``Signal`` only when that side changes:

- ``strength = p_up - p_down`` (in [-1, 1]) and ``confidence = max(p_up, p_down)``;
- from FLAT: LONG when ``strength >= enter`` and ``confidence >= min_confidence``,
  SHORT when ``strength <= -enter`` and the same confidence;
- hysteresis: a LONG is held while ``strength > exit`` (``exit < enter``), then it
  goes FLAT, or straight to SHORT when the step also meets SHORT's entry rule (a
  reversal); symmetrically for SHORT. So a score wandering around ``enter`` does
  not flip the position on every step;
- cooldown: no entry or reversal within ``cooldown_ns`` of the last side change
  (by the step's time). Exits to FLAT are always allowed: reducing risk never
  waits.

Causal by construction: a step's decision depends only on that step and the
state left by the earlier ones, so running the policy on a prefix of a stream
gives exactly the prefix of its signals (a property test checks it). Steps must
come in non-decreasing time order.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickvault.errors import ConfigError, ValidationError
from tickvault.records.signals import Mode, Side, Signal


@dataclass(frozen=True, slots=True)
class PolicyParams:
    enter: float = 0.2
    """Strength needed to enter (LONG at >= enter, SHORT at <= -enter)."""
    exit: float = 0.05
    """A LONG is held while strength > exit, a SHORT while strength < -exit."""
    min_confidence: float = 0.4
    """Least max(p_up, p_down) to enter."""
    cooldown_ns: int = 30_000_000_000
    """No entry or reversal within this long after the last side change (30 s)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.enter <= 1.0:
            raise ConfigError(f"signal policy: enter must be in (0, 1], got {self.enter}")
        if not -self.enter < self.exit < self.enter:
            raise ConfigError(
                f"signal policy: exit must be strictly between -enter and enter "
                f"({-self.enter}, {self.enter}) for hysteresis, got {self.exit}"
            )
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(
                f"signal policy: min_confidence must be in [0, 1], got {self.min_confidence}"
            )
        if self.cooldown_ns < 0:
            raise ConfigError(f"signal policy: cooldown_ns must be >= 0, got {self.cooldown_ns}")


class SignalPolicy:
    """The side state machine of one symbol (see the module docstring)."""

    __slots__ = ("_last_change", "_last_ts", "horizon_ns", "model_version", "params", "side",
                 "symbol")  # fmt: skip

    def __init__(
        self, symbol: str, model_version: str, horizon_ns: int, params: PolicyParams | None = None
    ) -> None:
        self.symbol = symbol
        self.model_version = model_version
        self.horizon_ns = horizon_ns
        self.params = params or PolicyParams()
        self.side = Side.FLAT
        self._last_change: int | None = None
        self._last_ts: int | None = None

    @property
    def last_change(self) -> int | None:
        """The time of the last side change (None: never changed)."""
        return self._last_change

    def restore(self, side: Side, last_change: int | None, last_ts: int | None) -> None:
        """Go on from a stored state: the side held, when it last changed, the last
        step's time (a restarted model worker; ``signals.coordinator``)."""
        self.side = Side(side)
        self._last_change = last_change
        self._last_ts = last_ts

    def _target(self, strength: float, confidence: float, ts: int) -> Side:
        p = self.params
        cooled = self._last_change is None or ts - self._last_change >= p.cooldown_ns
        sure = confidence >= p.min_confidence
        long_entry = cooled and sure and strength >= p.enter
        short_entry = cooled and sure and strength <= -p.enter
        if self.side == Side.LONG:
            if strength > p.exit:
                return Side.LONG
            return Side.SHORT if short_entry else Side.FLAT
        if self.side == Side.SHORT:
            if strength < -p.exit:
                return Side.SHORT
            return Side.LONG if long_entry else Side.FLAT
        if long_entry:
            return Side.LONG
        if short_entry:
            return Side.SHORT
        return Side.FLAT

    def step(
        self, ts_ns: int, t_features: int, p_up: float, p_down: float, mode: Mode
    ) -> Signal | None:
        """The signal of this step, or None when the side stays. ``ts_ns``: when the
        prediction is made; ``t_features``: the T of the features it used."""
        if not (0.0 <= p_up <= 1.0 and 0.0 <= p_down <= 1.0 and p_up + p_down <= 1.0 + 1e-9):
            raise ValidationError(
                f"{self.symbol}: probabilities must be in [0, 1] with p_up + p_down <= 1, "
                f"got p_up={p_up}, p_down={p_down}",
                field="probabilities",
            )
        if self._last_ts is not None and ts_ns < self._last_ts:
            raise ValidationError(
                f"{self.symbol}: policy steps must come in time order ({ts_ns} after "
                f"{self._last_ts})",
                field="ts",
            )
        self._last_ts = ts_ns
        strength = max(-1.0, min(1.0, p_up - p_down))
        confidence = max(p_up, p_down)
        target = self._target(strength, confidence, ts_ns)
        if target == self.side:
            return None
        self.side = target
        self._last_change = ts_ns
        return Signal(
            symbol=self.symbol,
            ts_event=ts_ns,
            t_features=t_features,
            side=target,
            strength=strength,
            confidence=min(1.0, confidence),
            horizon_ns=self.horizon_ns,
            model_version=self.model_version,
            mode=mode,
        )
