"""The feature-row block codec: columns round-trip exactly; a damaged block is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis.extra import numpy as hnp

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import FormatError
from tickvault.storage.featurerows import decode_block, encode_block

COLUMNS = [("T", "int64"), ("x", "float64"), ("code", "int8")]


@given(n=st.integers(0, 300), data=st.data())
def test_a_block_decodes_to_the_columns_it_was_encoded_from(n: int, data: st.DataObject) -> None:
    values = {
        "T": data.draw(hnp.arrays(np.int64, n)),
        "x": data.draw(hnp.arrays(np.float64, n)),  # NaN, inf and -0.0 included
        "code": data.draw(hnp.arrays(np.int8, n)),
    }
    rows, raw = encode_block(COLUMNS, values)
    assert rows == n
    out = decode_block(COLUMNS, n, raw)
    for name, _ in COLUMNS:
        assert out[name].dtype == values[name].dtype
        assert out[name].tobytes() == values[name].tobytes()  # bit for bit


def test_a_block_of_other_length_or_columns_is_refused() -> None:
    values = {"T": np.arange(5), "x": np.ones(5), "code": np.zeros(5, np.int8)}
    _, raw = encode_block(COLUMNS, values)
    with pytest.raises(FormatError, match="too short"):
        decode_block(COLUMNS, 6, raw)
    with pytest.raises(FormatError, match="after its columns"):
        decode_block(COLUMNS[:2], 5, raw)
    with pytest.raises(Exception, match="rows"):
        encode_block(COLUMNS, {**values, "x": np.ones(4)})
