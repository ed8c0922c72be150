"""Training with walk-forward evaluation over the store (the I/O edge of ``models``).

    from tickvault.engine.training import train
    result = train(vault, "WINZ25", "2025-10-01", "2025-11-26", horizon="1min",
                   dead_zone_ticks=0, folds=4)            # LightGBM by default
    result.evaluation.overall["model"]["auc"]              # out of sample, all folds
    result.model                                          # refitted on every labelled row

Reads a point-in-time frame through ``FeatureEngine.frame`` (one row per step T,
``every`` apart, labels from the trades after T), turns the forward return into
DOWN / FLAT / UP classes with a dead zone in ticks (``models.labels``; the price at
T is ``vwap * (1 + vwap_dist_bps / 1e4)``, the last trade before T), and runs the
pure walk-forward evaluation (``models.evaluation``) beside the naive baselines.
The estimator is ``"lightgbm"`` (``LGBMClassifier``, the extra ``ml``) or the
dotted path of any scikit-learn-compatible classifier class
(``sklearn.linear_model.LogisticRegression``), built with no arguments, behind a
median imputer and a standard scaler (LightGBM takes NaN as it is). docs/ml.md.
"""

from __future__ import annotations

import datetime as dt
import importlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tickvault.engine.features import FeatureEngine, parse_duration
from tickvault.errors import ModelError, QueryError
from tickvault.features.labels import label_name
from tickvault.models.evaluation import Dataset, Evaluation, evaluate_walk_forward
from tickvault.models.labels import NO_LABEL, future_classes, future_move_ticks
from tickvault.models.manager import ModelSet, encode_regime  # encoding shared with predict
from tickvault.models.metrics import Costs
from tickvault.models.registry import FAST, FEATURE_SETS, FULL
from tickvault.models.splits import Window
from tickvault.timeutil import TimeLike, format_ns
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ
from tickvault.venue.contracts import Contract, contract

DEFAULT_ESTIMATOR = "lightgbm"


def lightgbm_classifier() -> Any:
    """The default model: a small, regularised LightGBM classifier (deterministic)."""
    lgb = _import("lightgbm")
    return lgb.LGBMClassifier(
        n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=50,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0,
        random_state=0, n_jobs=1, verbose=-1,
    )  # fmt: skip


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = (
            "install the ml extra: pip install 'tickvault[ml]'"
            if module.split(".", maxsplit=1)[0] in ("lightgbm", "sklearn")
            else "check the dotted path"
        )
        raise QueryError(f"estimator: cannot import {module!r} ({exc}); {hint}") from None


def estimator_factory(spec: str) -> Callable[[], Any]:
    """A function returning a fresh, unfitted classifier for ``spec`` (module docstring)."""
    if spec == DEFAULT_ESTIMATOR:
        lightgbm_classifier()  # fails now, clearly, when lightgbm is missing
        return lightgbm_classifier
    sep = ":" if ":" in spec else "."
    module, _, name = spec.rpartition(sep)
    if not module or not name:
        raise QueryError(
            f"estimator {spec!r}: use 'lightgbm' or a dotted class path such as "
            "sklearn.linear_model.LogisticRegression"
        )
    cls = getattr(_import(module), name, None)
    if cls is None or not callable(cls):
        raise QueryError(f"estimator {spec!r}: {module} has no class {name!r}")
    probe = cls()
    if not (hasattr(probe, "fit") and hasattr(probe, "predict_proba")):
        raise QueryError(
            f"estimator {spec!r} is not a scikit-learn-compatible classifier: it needs "
            "fit(X, y) and predict_proba(X)"
        )
    pipeline = _import("sklearn.pipeline")
    impute = _import("sklearn.impute")
    scale = _import("sklearn.preprocessing")

    def make() -> Any:
        return pipeline.Pipeline(
            [
                ("impute", impute.SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", scale.StandardScaler()),
                ("model", cls()),
            ]
        )

    return make


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("tickvault", "numpy", "pandas", "lightgbm", "sklearn"):
        try:
            out[mod] = str(importlib.import_module(mod).__dict__.get("__version__", "?"))
        except ImportError:
            continue
    return out


def frame_dataset(
    frame: pd.DataFrame,
    feature_names: tuple[str, ...],
    horizon_ns: int,
    dead_zone_ticks: int,
    facts: Contract,
) -> Dataset:
    """A ``Dataset`` (all rows, labelled or not) from a ``FeatureEngine.frame``
    (``volatility_regime`` encoded as one-row predictions do: ``models.manager``)."""
    idx = pd.DatetimeIndex(frame.index)
    times = np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)
    local = idx.tz_convert(B3_TZ)
    sessions = np.array([d.toordinal() for d in local.date], dtype=np.int64)
    clock = np.asarray((local - local.normalize()).as_unit("ns").asi8, dtype=np.int64)
    cols = []
    for name in feature_names:
        col = frame[name]
        if name == "volatility_regime":
            cols.append(np.array([encode_regime(v) for v in col.tolist()], dtype=np.float64))
        else:
            cols.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
    xs = np.column_stack(cols) if cols else np.empty((len(frame), 0))
    fwd = frame[label_name(horizon_ns)].to_numpy(dtype=np.float64, na_value=np.nan)
    vwap = frame["vwap"].to_numpy(dtype=np.float64, na_value=np.nan)
    dist = frame["vwap_dist_bps"].to_numpy(dtype=np.float64, na_value=np.nan)
    price = vwap * (1.0 + dist / 1e4)  # p(T), the last trade before T
    y = future_classes(fwd, price, facts.tick_size, dead_zone_ticks)
    move = future_move_ticks(fwd, price, facts.tick_size)
    ret1 = frame["ret_1min"].to_numpy(dtype=np.float64, na_value=np.nan)
    return Dataset(times, sessions, clock, xs, feature_names, y, fwd, move, ret1)


@dataclass
class TrainResult:
    symbol: str
    start_ns: int
    end_ns: int
    horizon: str
    horizon_ns: int
    dead_zone_ticks: int
    estimator: str
    every: str
    evaluation: Evaluation
    dataset: Dataset
    """The labelled rows evaluated (features and FUTURE labels)."""
    features: list[dict[str, object]]
    """``FeatureEngine.describe()`` of the engine that built the frame."""
    model: Any
    """The estimator refitted on every labelled row (what the registry stores)."""
    costs: Costs
    contract: Contract
    libraries: dict[str, str] = field(default_factory=dict)
    feature_set: str = FULL
    """``"full"`` (every feature) or ``"fast"`` (the intraday set only)."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.dataset.feature_names

    def window_text(self) -> str:
        return f"{_minute(self.start_ns)} to {_minute(self.end_ns)}"


def train(
    vault: Vault,
    symbol: str,
    start: TimeLike,
    end: TimeLike,
    horizon: str = "1min",
    *,
    dead_zone_ticks: int = 0,
    folds: int = 4,
    estimator: str = DEFAULT_ESTIMATOR,
    every: str = "1min",
    embargo: str | None = None,
    window: Window = "expanding",
    train_sessions: int | None = None,
    costs: Costs | None = None,
    facts: Contract | None = None,
    engine: FeatureEngine | None = None,
    progress: Callable[[int, int], None] | None = None,
    features: str = FULL,
) -> TrainResult:
    """Build the frame, evaluate walk-forward beside the baselines, refit on everything
    (module docstring). ``features="fast"``: the model sees the intraday set only (the
    coordinator's FAST mode); ``"full"``: every feature."""
    symbol = symbol.strip().upper()
    if features not in FEATURE_SETS:
        raise QueryError(f"features must be 'fast' or 'full', got {features!r}")
    make = estimator_factory(estimator)
    fe = engine or FeatureEngine(vault)
    facts = facts or contract(symbol)
    costs = costs or Costs()
    h_ns = parse_duration(horizon, "horizon")
    emb_ns = None if embargo is None else parse_duration(embargo, "embargo")
    start_ns = fe._time(start, "start")
    end_ns = fe._time(end, "end")
    frame = fe.frame(symbol, start_ns, end_ns, every=every, labels=(h_ns,), progress=progress)
    if frame.empty:
        raise QueryError(
            f"no training rows for {symbol} from {format_ns(start_ns, B3_TZ)} to "
            f"{format_ns(end_ns, B3_TZ)}: the range holds no session step; widen it"
        )
    names = fe.feature_set.names if features == FAST else fe.names
    described = fe.describe()
    if features == FAST:
        described = [f for f in described if f.get("kind") == "intraday"]
    data = frame_dataset(frame, names, h_ns, dead_zone_ticks, facts).labelled()
    if data.y.size == 0 or not bool((data.y != NO_LABEL).any()):
        raise QueryError(
            f"no labelled rows for {symbol} in the range: no trades before T or after "
            "T + horizon; check that trades are stored for it (tickvault status)"
        )
    ev = evaluate_walk_forward(
        data, h_ns, folds, make, contract=facts, costs=costs, embargo_ns=emb_ns,
        window=window, train_sessions=train_sessions,
    )  # fmt: skip
    model = make()
    model.fit(data.X, data.y)
    return TrainResult(
        symbol=symbol, start_ns=start_ns, end_ns=end_ns, horizon=horizon, horizon_ns=h_ns,
        dead_zone_ticks=dead_zone_ticks, estimator=estimator, every=every, evaluation=ev,
        dataset=data, features=described, model=model, costs=costs, contract=facts,
        libraries=library_versions(), feature_set=features,
    )  # fmt: skip


def session_dates(data: Dataset) -> list[dt.date]:
    return [dt.date.fromordinal(int(d)) for d in np.unique(data.session_ids)]


def _minute(t_ns: int) -> str:
    """A time as exchange-local ``YYYY-MM-DD HH:MM``."""
    return format_ns(t_ns, B3_TZ)[:16]


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not np.isfinite(value) else value


def metadata(result: TrainResult) -> dict[str, object]:
    """The registry's ``meta.json`` of a training result (models.registry)."""
    from tickvault.models.registry import feature_signature

    ev = result.evaluation

    def table(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
        return {n: {k: _clean(v) for k, v in m.items()} for n, m in rows.items()}

    return {
        "estimator": result.estimator,
        "model_class": type(result.model).__name__,
        "features": feature_signature(result.features),
        "feature_set": result.feature_set,
        "training": {
            "start_ns": result.start_ns,
            "end_ns": result.end_ns,
            "start": _minute(result.start_ns),
            "end": _minute(result.end_ns),
            "sessions": [d.isoformat() for d in session_dates(result.dataset)],
            "rows": int(result.dataset.y.size),
            "every": result.every,
        },
        "horizon": result.horizon,
        "horizon_ns": result.horizon_ns,
        "dead_zone_ticks": result.dead_zone_ticks,
        "classes": ["down", "flat", "up"],
        "contract": {"tick_size": result.contract.tick_size,
                     "point_value": result.contract.point_value},
        "costs": {"cost_brl": result.costs.cost_brl,
                  "slippage_ticks": result.costs.slippage_ticks},
        "metrics": {
            "overall": table(ev.overall),
            "folds": [
                {"fold": f.number, "train_rows": f.train_rows, "test_rows": f.test_rows,
                 "purged": f.purged, "metrics": table(f.metrics)}
                for f in ev.folds
            ],
        },
        "libraries": result.libraries,
    }  # fmt: skip


def load_model(registry: Any, version: str, engine: FeatureEngine) -> tuple[Any, dict[str, Any]]:
    """A registered model for this engine: refused (``ModelError`` naming each feature)
    when the engine computes other features or versions than the model was trained on."""
    model, meta = registry.load(version, engine.describe())
    return model, meta


def load_promoted(registry: Any, symbol: str, engine: FeatureEngine) -> ModelSet:
    """Every model promoted for ``symbol`` (full and fast, per regime key), each loaded
    through ``load_model`` (the feature checks apply). ``ModelError`` when none is
    promoted, naming the commands that make one."""
    symbol = symbol.strip().upper()
    promotions = {k: v for k, v in registry.promotions(symbol).items() if v}
    if not promotions:
        raise ModelError(
            f"no promoted model for {symbol} under {registry.root}: train one (tickvault ml "
            f"train {symbol} --start ... --end ... [--features fast]) and promote it "
            "(tickvault ml promote VERSION)"
        )
    return ModelSet.promoted(promotions, lambda v: load_model(registry, v, engine))
