"""The models of one symbol, loaded, and one-row predictions (pure: no Valkey, no ZeroMQ).

    models = ModelSet([LoadedModel.of(model, meta, "all"), LoadedModel.of(fast, meta2, "all")])
    m = models.pick("high_up", Mode.HISTORY)     # the regime's full model, else "all"'s
    p_up, p_down = m.predict(row)                # row: a mapping name -> value

- A **kind** is ``"full"`` (trained on every feature: the intraday set and the history
  features) or ``"fast"`` (the intraday set only), from the model's ``meta.json``
  field ``feature_set`` (``"full"`` when absent: models trained before it existed).
  ``Mode.HISTORY`` predicts with a full model, ``Mode.FAST`` with a fast one.
- **Promotion keys** in the registry: ``<regime>`` for a full model, ``<regime>/fast``
  for a fast one (``promotion_key``); ``"all"`` is the default regime.
- ``pick(regime, mode)``: the model promoted for the row's regime (``features.regime``
  labels such as ``high_up``) of the mode's kind, else the ``"all"`` one, else None.
- A row is a mapping from column name to value: a dict, a ``pandas.Series``, a numpy
  record. ``volatility_regime`` is its label (``"low"``, ``"normal"``, ``"high"`` or
  None), as ``FeatureRows.range`` gives it; the model sees it encoded as in the
  training frame (``REGIME_CODES``, used by ``engine.training.frame_dataset`` too).
- ``predict`` returns ``(p_up, p_down)`` from ``predict_proba``, columns matched by the
  estimator's ``classes_`` to ``models.labels`` (``DOWN``, ``FLAT``, ``UP``); a class
  the model never saw has probability 0.
- History numbers are **ready** in a row when at least one of them is a number (all
  NaN: the row carries no history refresh: outside a session, or before the first).

``ModelSet`` satisfies ``signals.coordinator.Predictor`` (the Decider calls it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tickvault.errors import ModelError, ValidationError
from tickvault.features.history import HISTORY_FEATURES
from tickvault.features.regime import UNKNOWN, regime_of
from tickvault.models.labels import DOWN, UP
from tickvault.models.registry import ALL_REGIMES, FAST, FULL, promotion_key
from tickvault.records.signals import Mode
from tickvault.signals.coordinator import Prediction

Kind = Literal["fast", "full"]
REGIME_CODES = {"low": -1.0, "normal": 0.0, "high": 1.0}
"""``volatility_regime`` as a number for the estimators (None: NaN); the training frame
(``engine.training.frame_dataset``) and one-row predictions share it."""
HISTORY_NUMBERS = tuple(n for n in HISTORY_FEATURES if n != "volatility_regime")

__all__ = ["FAST", "FULL", "REGIME_CODES", "LoadedModel", "ModelSet", "encode_regime",
           "promotion_key", "row_x"]  # fmt: skip


def kind_of_mode(mode: Mode) -> Kind:
    return FULL if mode == Mode.HISTORY else FAST


def encode_regime(value: Any) -> float:
    """A ``volatility_regime`` label (or None/NaN) as the training frame encodes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise ValidationError(
            f"volatility_regime must be a label ('low', 'normal', 'high') or None, got "
            f"{value!r}; convert stored int8 codes with engine.rows.REGIME_LABELS",
            field="volatility_regime",
        )
    return REGIME_CODES.get(value, math.nan)


def row_x(row: Mapping[str, Any], names: Iterable[str]) -> npt.NDArray[np.float64]:
    """The model input of one row: shape (1, len(names)), in ``names``' order."""
    out = []
    for name in names:
        try:
            v = row[name]
        except (KeyError, ValueError, IndexError):
            raise ValidationError(
                f"the row has no column {name!r} the model needs", field=name
            ) from None
        out.append(encode_regime(v) if name == "volatility_regime" else _float(v))
    return np.array([out], dtype=np.float64)


def _float(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)


def history_ready(row: Mapping[str, Any]) -> bool:
    """True when the row carries history numbers (module docstring)."""
    for name in HISTORY_NUMBERS:
        try:
            v = row[name]
        except (KeyError, ValueError, IndexError):
            continue
        if v is not None and not math.isnan(float(v)):
            return True
    return False


def row_regime(row: Mapping[str, Any]) -> str:
    """The regime label of a row (``features.regime.regime_of``), ``unknown`` without it."""
    try:
        vol = row["volatility_regime"]
        mom, rv = _float(row["momentum_30min"]), _float(row["rv_30min"])
    except (KeyError, ValueError, IndexError):
        return UNKNOWN
    if isinstance(vol, bytes):
        vol = vol.decode()
    return regime_of(vol if isinstance(vol, str) else None, mom, rv)


@dataclass(frozen=True)
class LoadedModel:
    """A fitted estimator with what predicting needs from its metadata."""

    version: str
    kind: Kind
    regime: str
    feature_names: tuple[str, ...]
    horizon_ns: int
    estimator: Any
    meta: Mapping[str, Any] = field(repr=False)
    _up: int | None = field(repr=False, default=None)
    _down: int | None = field(repr=False, default=None)

    @classmethod
    def of(cls, estimator: Any, meta: Mapping[str, Any], regime: str = ALL_REGIMES) -> LoadedModel:
        """From ``Registry.load`` / ``engine.training.load_model``'s (model, meta)."""
        kind = str(meta.get("feature_set", FULL))
        if kind not in (FAST, FULL):
            raise ModelError(
                f"model version {meta.get('version')}: feature_set must be 'fast' or 'full', "
                f"got {kind!r}"
            )
        names = tuple(str(f["name"]) for f in meta.get("features", []))
        if not names:
            raise ModelError(f"model version {meta.get('version')}: its metadata lists no features")
        if not hasattr(estimator, "predict_proba"):
            raise ModelError(
                f"model version {meta.get('version')}: {type(estimator).__name__} has no "
                "predict_proba; retrain it (tickvault ml train)"
            )
        classes = [int(c) for c in getattr(estimator, "classes_", (0, 1, 2))]
        up = classes.index(UP) if UP in classes else None
        down = classes.index(DOWN) if DOWN in classes else None
        return cls(str(meta.get("version", "?")), kind, regime, names,  # type: ignore[arg-type]
                   int(meta.get("horizon_ns", 0)), estimator, meta, up, down)  # fmt: skip

    def x(self, row: Mapping[str, Any]) -> npt.NDArray[np.float64]:
        return row_x(row, self.feature_names)

    def predict(self, row: Mapping[str, Any]) -> tuple[float, float]:
        """(p_up, p_down) of one row."""
        proba = np.asarray(self.estimator.predict_proba(self.x(row)), dtype=np.float64)[0]
        up = float(proba[self._up]) if self._up is not None else 0.0
        down = float(proba[self._down]) if self._down is not None else 0.0
        return min(max(up, 0.0), 1.0), min(max(down, 0.0), 1.0)


class ModelSet:
    """The models of one symbol by (regime key, kind); a ``Predictor`` for the Decider."""

    def __init__(self, models: Iterable[LoadedModel]) -> None:
        self.models: dict[tuple[str, Kind], LoadedModel] = {}
        for m in models:
            self.models[(m.regime, m.kind)] = m

    @classmethod
    def promoted(
        cls,
        promotions: Mapping[str, list[str]],
        load: Callable[[str], tuple[Any, Mapping[str, Any]]],
    ) -> ModelSet:
        """The current version of every promotion key (``Registry.promotions(symbol)``),
        each loaded with ``load(version) -> (model, meta)`` (``engine.training.load_model``
        bound to a registry and an engine, so the feature checks apply)."""
        out = []
        for key, chain in sorted(promotions.items()):
            if not chain:
                continue
            regime, _, suffix = key.partition("/")
            model, meta = load(chain[-1])
            m = LoadedModel.of(model, meta, regime)
            want: Kind = FAST if suffix == FAST else FULL
            if m.kind != want:
                raise ModelError(
                    f"model version {m.version} is a {m.kind} model but is promoted under key "
                    f"{key!r} (a {want} key); promote it again (tickvault ml promote "
                    f"{m.version} --regime {regime})"
                )
            out.append(m)
        return cls(out)

    def __len__(self) -> int:
        return len(self.models)

    def has(self, mode: Mode) -> bool:
        kind = kind_of_mode(mode)
        return any(k == kind for _, k in self.models)

    def pick(self, regime: str, mode: Mode) -> LoadedModel | None:
        """The model of ``regime`` of the mode's kind, else the ``"all"`` one, else None."""
        kind = kind_of_mode(mode)
        return self.models.get((regime, kind)) or self.models.get((ALL_REGIMES, kind))

    def versions(self) -> dict[str, str]:
        """promotion key -> version."""
        return {promotion_key(r, k): m.version for (r, k), m in sorted(self.models.items())}

    # ------------------------------------------------------------------ Predictor
    def ready(self, row: Mapping[str, Any]) -> bool:
        return history_ready(row)

    def available(self, mode: Mode) -> bool:
        return self.has(mode)

    def predict(self, row: Mapping[str, Any], mode: Mode) -> Prediction | None:
        m = self.pick(row_regime(row), mode)
        if m is None:
            return None
        p_up, p_down = m.predict(row)
        return Prediction(p_up, p_down, m.version, m.horizon_ns)
