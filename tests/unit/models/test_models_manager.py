"""models.manager: one-row inputs in the model's feature order, class order from the
estimator, picking by regime and kind, loading the promoted models of a registry."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import ModelError, ValidationError
from tickvault.models.labels import DOWN, FLAT, UP
from tickvault.models.manager import (
    REGIME_CODES,
    LoadedModel,
    ModelSet,
    RowBlock,
    RowLayout,
    encode_regime,
    history_ready,
    row_regime,
    row_x,
)
from tickvault.models.registry import Registry, feature_signature
from tickvault.records.signals import Mode

NAMES = ("ret_1min", "momentum_30min", "rv_30min", "volatility_regime")
FEATURES = [{"name": n, "version": 1, "kind": "intraday" if n == "ret_1min" else "history"}
            for n in NAMES]  # fmt: skip


class Fixed:
    """A fitted-estimator stand-in with known classes and probabilities (a plain object:
    the registry pickles it)."""

    def __init__(self, classes: list[int], proba: list[float]) -> None:
        self.classes_ = np.array(classes)
        self.proba = proba
        self.seen: list[np.ndarray] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x)
        return np.array([self.proba])


def _meta(version: str, names: tuple[str, ...] = NAMES, kind: str = "full") -> dict[str, Any]:
    feats = [f for f in FEATURES if f["name"] in names]
    return {"version": version, "features": feature_signature(feats), "horizon_ns": 60,
            "feature_set": kind}  # fmt: skip


ROW = {"ret_1min": 0.5, "momentum_30min": 0.02, "rv_30min": 0.01, "volatility_regime": "high",
       "extra": 9.0}  # fmt: skip


def test_row_x_follows_the_model_feature_order_and_encodes_the_regime_as_training() -> None:
    x = row_x(ROW, ("volatility_regime", "rv_30min", "ret_1min"))
    assert x.shape == (1, 3)
    assert x[0].tolist() == [REGIME_CODES["high"], 0.01, 0.5]
    assert math.isnan(row_x({"volatility_regime": None}, ["volatility_regime"])[0, 0])
    with pytest.raises(ValidationError, match="no column 'vwap'"):
        row_x(ROW, ["vwap"])
    with pytest.raises(ValidationError, match="REGIME_LABELS"):
        encode_regime(2)  # a stored int8 code must be turned into its label first


def test_a_numpy_record_row_gives_the_same_input_as_a_dict() -> None:
    rec = np.array([(0.5, 0.02, 0.01)], dtype=[("ret_1min", "f8"), ("momentum_30min", "f8"),
                                               ("rv_30min", "f8")])[0]  # fmt: skip
    names = ("rv_30min", "ret_1min")
    assert row_x(rec, names).tolist() == row_x(ROW, names).tolist()


def test_predict_maps_columns_by_the_estimator_classes() -> None:
    m = LoadedModel.of(Fixed([DOWN, FLAT, UP], [0.1, 0.3, 0.6]), _meta("a"))
    assert m.predict(ROW) == pytest.approx((0.6, 0.1))
    reordered = LoadedModel.of(Fixed([UP, DOWN], [0.7, 0.3]), _meta("b"))
    assert reordered.predict(ROW) == pytest.approx((0.7, 0.3))
    no_down = LoadedModel.of(Fixed([FLAT, UP], [0.8, 0.2]), _meta("c"))
    assert no_down.predict(ROW) == pytest.approx((0.2, 0.0))


def test_pick_prefers_the_regime_model_of_the_kind_then_all() -> None:
    full_all = LoadedModel.of(Fixed([0, 1, 2], [0.2, 0.2, 0.6]), _meta("fullall"), "all")
    full_hi = LoadedModel.of(Fixed([0, 1, 2], [0.6, 0.2, 0.2]), _meta("fullhi"), "high_up")
    fast = LoadedModel.of(Fixed([0, 1, 2], [0.3, 0.4, 0.3]), _meta("fast", ("ret_1min",), "fast"))
    models = ModelSet([full_all, full_hi, fast])
    assert models.pick("high_up", Mode.HISTORY) is full_hi
    assert models.pick("low_range", Mode.HISTORY) is full_all
    assert models.pick("high_up", Mode.FAST) is fast
    assert ModelSet([full_all]).pick("all", Mode.FAST) is None
    assert models.versions() == {"all": "fullall", "all/fast": "fast", "high_up": "fullhi"}
    assert row_regime(ROW) == "high_up"  # momentum / rv = 2 >= 1
    pred = models.predict(ROW, Mode.HISTORY)
    assert pred is not None and pred.version == "fullhi" and pred.p_down == pytest.approx(0.6)
    pred = models.predict(ROW, Mode.FAST)
    assert pred is not None and pred.version == "fast"
    assert fast.estimator.seen[-1].shape == (1, 1)  # the fast model sees its own features


def test_history_is_ready_when_any_history_number_is_known() -> None:
    assert history_ready(ROW)
    nan = dict.fromkeys(("momentum_30min", "rv_30min", "volume_pattern_similarity"), math.nan)
    assert not history_ready({"ret_1min": 1.0, **nan})
    assert history_ready({**nan, "volume_pattern_similarity": 0.3})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=False), min_size=3, max_size=3),
       st.sampled_from(["low", "normal", "high", None]))  # fmt: skip
def test_row_x_is_the_row_values_in_order(values: list[float], regime: str | None) -> None:
    row = dict(zip(NAMES[:3], values, strict=True)) | {"volatility_regime": regime}
    x = row_x(row, NAMES)[0]
    expected = [*values, REGIME_CODES.get(regime, math.nan) if regime else math.nan]
    np.testing.assert_array_equal(x, np.array(expected))


def test_model_set_loads_the_promoted_version_of_every_key(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    full = reg.save("WINZ25", Fixed([0, 1, 2], [0.1, 0.1, 0.8]), _meta("x"))
    fast = reg.save("WINZ25", Fixed([0, 1, 2], [0.8, 0.1, 0.1]), _meta("y", ("ret_1min",), "fast"))
    reg.promote(full)
    reg.promote(fast)
    reg.promote(full, "low_up")
    assert set(reg.promotions("WINZ25")) == {"all", "all/fast", "low_up"}
    models = ModelSet.promoted(reg.promotions("WINZ25"), lambda v: reg.load(v, FEATURES))
    assert models.versions() == {"all": full, "all/fast": fast, "low_up": full}
    assert models.has(Mode.FAST) and models.has(Mode.HISTORY)
    # a full model promoted under a fast key by hand is refused
    with pytest.raises(ModelError, match="promoted under key 'all/fast'"):
        ModelSet.promoted({"all/fast": [full]}, lambda v: reg.load(v, FEATURES))
    with pytest.raises(ModelError, match="feature_set must be"):
        LoadedModel.of(Fixed([0], [1.0]), {**_meta("z"), "feature_set": "half"})
    with pytest.raises(ModelError, match="no predict_proba"):
        LoadedModel.of(object(), _meta("z"))


# ---------------------------------------------------------------- the LightGBM booster path
def _lgbm(n_classes: int) -> Any:
    from lightgbm import LGBMClassifier

    rng = np.random.default_rng(n_classes)
    x = rng.normal(size=(600, len(NAMES)))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.digitize(x[:, 0] + rng.normal(scale=0.5, size=600), [-0.4, 0.4][: n_classes - 1])
    return LGBMClassifier(n_estimators=25, num_leaves=7, verbose=-1).fit(x, y)


_LGBM = {k: _lgbm(k) for k in (2, 3)}
_ROWS = st.lists(st.one_of(st.floats(-3, 3), st.just(math.nan)), min_size=3, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([2, 3]), _ROWS, st.sampled_from(["low", "normal", "high", None]))
def test_lightgbm_models_predict_by_the_booster_exactly_what_predict_proba_gives(
    n_classes: int, values: list[float], regime: str | None
) -> None:
    est = _LGBM[n_classes]
    m = LoadedModel.of(est, _meta(f"lgbm{n_classes}"))
    assert m._booster is est.booster_  # the booster path, not predict_proba
    row = dict(zip(NAMES[:3], values, strict=True)) | {"volatility_regime": regime}
    proba = est.predict_proba(row_x(row, NAMES))[0]
    classes = est.classes_.tolist()
    up = proba[classes.index(UP)] if UP in classes else 0.0
    down = proba[classes.index(DOWN)] if DOWN in classes else 0.0
    assert m.predict(row) == (float(up), float(down))
    batch = np.array([row_x(row, NAMES)[0]] * 3)
    assert np.array_equal(m.proba(batch), est.predict_proba(batch))


def test_lightgbm_booster_path_equals_predict_proba_on_many_rows() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2_000, len(NAMES)))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 3] = rng.choice([-1.0, 0.0, 1.0, np.nan], size=len(x))  # regime codes
    for est in _LGBM.values():
        m = LoadedModel.of(est, _meta("many"))
        one_row = np.vstack([m.proba(x[i : i + 1]) for i in range(len(x))])
        assert np.array_equal(one_row, est.predict_proba(x))


def test_other_estimators_keep_predict_proba_and_get_their_own_input() -> None:
    est = Fixed([DOWN, FLAT, UP], [0.1, 0.3, 0.6])
    m = LoadedModel.of(est, _meta("fixed"))
    assert m._booster is None
    m.predict(ROW)
    m.predict({**ROW, "ret_1min": 7.0})
    assert est.seen[0][0, 0] == 0.5 and est.seen[1][0, 0] == 7.0  # not one shared buffer
    assert m.x(ROW) is not m.x(ROW)


# ---------------------------------------------------------------- rows without a dict
@settings(max_examples=100, deadline=None)
@given(st.lists(_ROWS, min_size=1, max_size=5), st.data())
def test_a_row_view_gives_what_the_same_row_as_a_dict_gives(
    rows: list[list[float]], data: st.DataObject
) -> None:
    regimes = data.draw(st.lists(st.sampled_from(["low", "normal", "high", None]),
                                 min_size=len(rows), max_size=len(rows)))  # fmt: skip
    layout = RowLayout(("extra", *NAMES))
    cols = [[9.0] * len(rows), *map(list, zip(*rows, strict=True)),
            [encode_regime(r) for r in regimes]]  # fmt: skip
    block = RowBlock(layout, cols)
    est = _LGBM[3]
    m = LoadedModel.of(est, _meta("view"))
    for i, (values, regime) in enumerate(zip(rows, regimes, strict=True)):
        d = {"extra": 9.0, **dict(zip(NAMES[:3], values, strict=True)),
             "volatility_regime": regime}  # fmt: skip
        view = block.row(i)
        assert view["volatility_regime"] == regime and list(view) == list(d)
        np.testing.assert_array_equal(m.x(view), row_x(d, NAMES))
        assert history_ready(view) == history_ready(d)
        assert row_regime(view) == row_regime(d)
        assert m.predict(view) == m.predict(d)
    with pytest.raises(ValidationError, match="no column 'vwap'"):
        LoadedModel.of(est, {**_meta("v"), "features": [{"name": "vwap"}]}).predict(block.row(0))
