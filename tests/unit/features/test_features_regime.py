"""The regime analyzer: labels from the volatility regime and the trend strength."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import ValidationError
from tickvault.features.regime import REGIMES, UNKNOWN, add_regime, regime_of


def test_regime_labels_follow_the_definition() -> None:
    assert regime_of("high", 0.004, 0.002) == "high_up"  # trend strength +2
    assert regime_of("low", -0.003, 0.002) == "low_down"  # -1.5
    assert regime_of("normal", 0.001, 0.002) == "normal_range"  # +0.5
    assert regime_of("normal", 0.002, 0.002) == "normal_up"  # exactly at the threshold
    assert regime_of(None, 0.004, 0.002) == UNKNOWN
    assert regime_of("high", math.nan, 0.002) == UNKNOWN
    assert regime_of("high", 0.001, 0.0) == UNKNOWN
    with pytest.raises(ValidationError, match="threshold"):
        regime_of("high", 0.1, 0.1, threshold=0)


rows = st.lists(
    st.tuples(
        st.sampled_from([None, "low", "normal", "high"]),
        st.one_of(st.just(math.nan), st.floats(-0.05, 0.05)),
        st.one_of(st.just(math.nan), st.just(0.0), st.floats(1e-6, 0.05)),
    ),
    max_size=50,
)


@given(rows, st.floats(0.1, 3.0))
def test_the_frame_version_equals_the_row_version(
    data: list[tuple[str | None, float, float]], threshold: float
) -> None:
    frame = pd.DataFrame(data, columns=["volatility_regime", "momentum_30min", "rv_30min"])
    out = add_regime(frame, threshold)
    expected = [regime_of(v, m, r, threshold) for v, m, r in data]
    assert list(out["regime"]) == expected
    assert set(expected) <= {*REGIMES, UNKNOWN}


def test_add_regime_names_the_missing_columns() -> None:
    with pytest.raises(ValidationError, match="rv_30min"):
        add_regime(pd.DataFrame({"momentum_30min": [0.1], "volatility_regime": ["low"]}))
