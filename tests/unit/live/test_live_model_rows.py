"""live.models.message_rows: a feature message's rows as views of one block, reading
what the former dict per row held (regime codes made labels, meta columns as ints)."""

from __future__ import annotations

import math

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.engine.rows import REGIME_LABELS
from tickvault.live.models import message_layout, message_rows
from tickvault.models.manager import HISTORY_NUMBERS, history_ready, row_regime, row_x

NUMBERS = ("ret_1min", *HISTORY_NUMBERS)
NAMES = ("T", "computed_ns", "last_trade_id", "ts_recv", *NUMBERS, "volatility_regime")


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)),
                      min_size=len(NUMBERS), max_size=len(NUMBERS)), min_size=n, max_size=n),
    st.lists(st.integers(-1, 4), min_size=n, max_size=n))))  # fmt: skip
def test_message_rows_read_what_a_dict_per_row_held(
    data: tuple[list[list[float]], list[int]],
) -> None:
    numbers, codes = data
    n = len(codes)
    cols = {"T": np.arange(n, dtype=np.int64) + 2**60, "computed_ns": np.zeros(n, np.int64),
            "last_trade_id": np.arange(n, dtype=np.int64) * 7,
            "ts_recv": np.arange(n, dtype=np.int64) + 2**59}  # fmt: skip
    for j, name in enumerate(NUMBERS):
        cols[name] = np.array([r[j] for r in numbers], dtype=np.float64)
    cols["volatility_regime"] = np.array(codes, dtype=np.int8)
    rows = message_rows(cols)
    assert message_layout(NAMES) is message_layout(NAMES)  # one layout per schema
    model_names = ("volatility_regime", *NUMBERS[::-1])
    for i, (view, t, tid, recv) in enumerate(rows):
        assert (t, tid, recv) == (2**60 + i, 7 * i, 2**59 + i)  # exact ints, not floats
        expected = {name: numbers[i][j] for j, name in enumerate(NUMBERS)}
        expected["volatility_regime"] = REGIME_LABELS.get(codes[i])
        assert view["volatility_regime"] == expected["volatility_regime"]
        np.testing.assert_array_equal(row_x(view, model_names), row_x(expected, model_names))
        assert history_ready(view) == history_ready(expected)
        assert row_regime(view) == row_regime(expected)
