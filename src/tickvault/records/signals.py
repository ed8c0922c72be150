"""Model signal records (pure): what a prediction became, with everything needed to
audit it later (the T of the features it used, the model version, the mode).

A signal is emitted only when the side a symbol should hold changes (a state
machine: ``tickvault.signals.policy``), so a stream of signals is a stream of
target positions: LONG, SHORT, or FLAT (close what is open).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from tickvault.errors import ValidationError


class Side(enum.IntEnum):
    SHORT = -1
    FLAT = 0
    LONG = 1


class Mode(enum.IntEnum):
    """Which feature set the model used (chosen per prediction by the latency budget)."""

    FAST = 0
    """The intraday set only (history features were not ready within the deadline)."""
    HISTORY = 1
    """The intraday set and the history features."""


MODEL_VERSION_BYTES = 16
"""A model version id is at most 16 ASCII characters (the registry's hash prefix)."""

SIGNAL_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("t_features", "<i8"),
        ("horizon_ns", "<i8"),
        ("strength", "<f8"),
        ("confidence", "<f8"),
        ("side", "i1"),
        ("mode", "u1"),
        ("model_version", f"S{MODEL_VERSION_BYTES}"),
    ]
)
"""One signal. ``ts_event``: when it was made (ns UTC); ``t_features``: the T of the
feature row it used (features at T see only trades with ts_event < T); ``horizon_ns``:
the model's label horizon; ``strength`` in [-1, 1] (p_up - p_down); ``confidence`` in
[0, 1] (the larger of p_up, p_down); ``side`` -1/0/1; ``mode`` 0 fast / 1 history;
``model_version`` ASCII, NUL-padded."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal (see ``SIGNAL_DTYPE`` for the fields)."""

    symbol: str
    ts_event: int
    t_features: int
    side: Side
    strength: float
    confidence: float
    horizon_ns: int
    model_version: str
    mode: Mode

    def __post_init__(self) -> None:
        if not -1.0 <= self.strength <= 1.0:
            raise ValidationError(f"signal strength must be in [-1, 1], got {self.strength}",
                                  field="strength")  # fmt: skip
        if not 0.0 <= self.confidence <= 1.0:
            raise ValidationError(f"signal confidence must be in [0, 1], got {self.confidence}",
                                  field="confidence")  # fmt: skip
        if self.t_features > self.ts_event:
            raise ValidationError(
                f"a signal made at {self.ts_event} cannot use features of a later T "
                f"({self.t_features})",
                field="t_features",
            )
        raw = self.model_version.encode("ascii", errors="replace")
        if not raw or len(raw) > MODEL_VERSION_BYTES:
            raise ValidationError(
                f"model version must be 1 to {MODEL_VERSION_BYTES} ASCII characters, "
                f"got {self.model_version!r}",
                field="model_version",
            )

    def to_record(self) -> np.void:
        out = np.zeros(1, dtype=SIGNAL_DTYPE)
        out[0] = (self.ts_event, self.t_features, self.horizon_ns, self.strength,
                  self.confidence, int(self.side), int(self.mode),
                  self.model_version.encode("ascii"))  # fmt: skip
        rec: np.void = out[0]
        return rec

    @classmethod
    def from_record(cls, symbol: str, rec: np.void) -> Signal:
        return cls(
            symbol=symbol,
            ts_event=int(rec["ts_event"]),
            t_features=int(rec["t_features"]),
            side=Side(int(rec["side"])),
            strength=float(rec["strength"]),
            confidence=float(rec["confidence"]),
            horizon_ns=int(rec["horizon_ns"]),
            model_version=bytes(rec["model_version"]).rstrip(b"\0").decode("ascii"),
            mode=Mode(int(rec["mode"])),
        )
