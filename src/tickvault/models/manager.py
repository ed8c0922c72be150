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
  the model never saw has probability 0. A LightGBM classifier is predicted by its
  booster directly (``booster_.predict(x, num_threads=1)``: what ``predict_proba``
  returns, without scikit-learn's input checks, which cost 10-30 times the booster call
  on one row), on a preallocated float64 input row.
- A row can also be a ``RowView``: row ``i`` of a ``RowBlock`` (a float64 matrix of
  columns laid out by a ``RowLayout``, e.g. a feature message's), read without a dict
  per row; a model's column positions in a layout are computed once per layout.
- History numbers are **ready** in a row when at least one of them is a number (all
  NaN: the row carries no history refresh: outside a session, or before the first).

``ModelSet`` satisfies ``signals.coordinator.Predictor`` (the Decider calls it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

_REGIME_OF_CODE = {code: label for label, code in REGIME_CODES.items()}
F64 = npt.NDArray[np.float64]

__all__ = ["FAST", "FULL", "REGIME_CODES", "LoadedModel", "ModelSet", "RowBlock", "RowLayout",
           "RowView", "encode_regime", "promotion_key", "row_x"]  # fmt: skip


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
    if isinstance(row, RowView):
        lay = row.block.layout
        if not lay.history:
            return False
        values = row.block.matrix[row.i, lay.history]
        return not bool(np.isnan(values).all())
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


def lightgbm_booster(estimator: Any) -> Any:
    """A fitted LightGBM classifier's booster (predicted directly), else None."""
    if not type(estimator).__module__.startswith("lightgbm."):
        return None
    if not hasattr(estimator, "classes_") or callable(getattr(estimator, "objective", None)):
        return None  # a regressor, or a custom objective (predict_proba's own rules)
    try:
        return estimator.booster_
    except Exception:  # not fitted: predict_proba says so
        return None


class RowLayout:
    """The columns of a ``RowBlock``: names, name -> position, the positions of the history
    numbers and of ``volatility_regime``. Make one per schema and reuse it: models cache
    their column positions per layout object."""

    __slots__ = ("history", "index", "names", "regime")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.index = {n: j for j, n in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValidationError(f"row layout: duplicate column names in {self.names}",
                                  field="columns")  # fmt: skip
        self.history = [self.index[n] for n in HISTORY_NUMBERS if n in self.index]
        self.regime = self.index.get("volatility_regime")

    def positions(self, names: Iterable[str]) -> npt.NDArray[np.intp]:
        """The positions of ``names`` (ValidationError when one is not a column)."""
        out = []
        for name in names:
            j = self.index.get(name)
            if j is None:
                raise ValidationError(f"the row has no column {name!r} the model needs",
                                      field=name)  # fmt: skip
            out.append(j)
        return np.asarray(out, dtype=np.intp)


class RowBlock:
    """Rows as float64 columns in a ``RowLayout``'s order, ``volatility_regime`` encoded
    as the training frame does (``REGIME_CODES``, NaN: none). ``columns``: one array per
    layout name; the (rows, columns) matrix is built on first use (only when a row of the
    block is read), once for the block."""

    __slots__ = ("_columns", "_matrix", "layout")

    def __init__(self, layout: RowLayout, columns: Sequence[npt.ArrayLike]) -> None:
        if len(columns) != len(layout.names):
            raise ValidationError(f"row block: {len(columns)} columns for the layout's "
                                  f"{len(layout.names)}", field="columns")  # fmt: skip
        self.layout = layout
        self._columns: Sequence[npt.ArrayLike] | None = columns
        self._matrix: F64 | None = None

    @property
    def matrix(self) -> F64:
        if self._matrix is None:
            assert self._columns is not None
            cols = [np.asarray(c, dtype=np.float64).reshape(-1) for c in self._columns]
            n = len(cols[0]) if cols else 0
            m = np.empty((n, len(cols)), dtype=np.float64)
            for j, c in enumerate(cols):
                m[:, j] = c
            self._matrix, self._columns = m, None
        return self._matrix

    def row(self, i: int) -> RowView:
        return RowView(self, i)


class RowView(Mapping[str, Any]):
    """Row ``i`` of a ``RowBlock`` as a mapping (no dict): numbers as floats,
    ``volatility_regime`` as its label (or None), as ``FeatureRows.range`` gives it."""

    __slots__ = ("block", "i")

    def __init__(self, block: RowBlock, i: int) -> None:
        self.block = block
        self.i = i

    def __getitem__(self, name: str) -> Any:
        lay = self.block.layout
        j = lay.index[name]
        v = float(self.block.matrix[self.i, j])
        if j == lay.regime:
            return None if math.isnan(v) else _REGIME_OF_CODE.get(v)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self.block.layout.names)

    def __len__(self) -> int:
        return len(self.block.layout.names)


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
    _booster: Any = field(repr=False, default=None, compare=False)
    """The LightGBM booster predicted directly (None: ``predict_proba``)."""
    _row: F64 = field(repr=False, default_factory=lambda: np.empty((1, 0)), compare=False)
    """The preallocated one-row input (one thread predicts with a model at a time)."""
    _positions: dict[RowLayout, npt.NDArray[np.intp]] = field(
        repr=False, default_factory=dict, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_booster", lightgbm_booster(self.estimator))
        object.__setattr__(self, "_row", np.empty((1, len(self.feature_names)), np.float64))

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
        """The model input of one row, shape (1, features): a new array."""
        return self._fill(row).copy()

    def _fill(self, row: Mapping[str, Any]) -> F64:
        """The row's input in the preallocated buffer."""
        buf = self._row
        if isinstance(row, RowView):
            block = row.block
            pos = self._positions.get(block.layout)
            if pos is None:
                pos = self._positions[block.layout] = block.layout.positions(self.feature_names)
            np.take(block.matrix[row.i], pos, out=buf[0])
            return buf
        out = buf[0]
        for j, name in enumerate(self.feature_names):
            try:
                v = row[name]
            except (KeyError, ValueError, IndexError):
                raise ValidationError(
                    f"the row has no column {name!r} the model needs", field=name
                ) from None
            out[j] = encode_regime(v) if name == "volatility_regime" else _float(v)
        return buf

    def proba(self, x: F64) -> F64:
        """Class probabilities of the input rows ``x`` (rows, features), in ``classes_``
        order: the booster's for LightGBM (``predict_proba``'s numbers), else
        ``predict_proba``."""
        booster = self._booster
        if booster is None:  # its own copy: an estimator may keep what it is given
            return np.asarray(self.estimator.predict_proba(x.copy()), dtype=np.float64)
        p = np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)
        if p.ndim == 1:  # binary: the positive class's, as predict_proba stacks them
            return np.vstack((1.0 - p, p)).transpose()
        return p

    def predict(self, row: Mapping[str, Any]) -> tuple[float, float]:
        """(p_up, p_down) of one row."""
        proba = self.proba(self._fill(row))[0]
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
