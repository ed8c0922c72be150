"""The stored aggregate record: bytes in, the same arrays and scalars out."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis.extra import numpy as hnp

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import ServerError
from tickvault.storage import aggregates as agg

_DTYPES = st.sampled_from([np.int64, np.float64, np.int32, np.uint8])


@given(
    arrays=st.dictionaries(
        st.text("abcdefgh_", min_size=1, max_size=8),
        _DTYPES.flatmap(lambda d: hnp.arrays(d, st.integers(0, 600))),
        max_size=8,
    ),
    records=st.integers(0, 2**40),
    first=st.one_of(st.none(), st.integers(-(2**62), 2**62)),
)
def test_encode_then_decode_gives_back_every_array_and_scalar(
    arrays: dict[str, np.ndarray], records: int, first: int | None
) -> None:
    scalars = {"first_ts": first, "symbol": "WINZ25", "copies_agree": True}
    got = agg.decode(agg.encode(arrays, scalars, records))
    assert got.records == records
    assert got.scalars == scalars
    assert list(got.arrays) == list(arrays)
    for name, a in arrays.items():
        assert got.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(got.arrays[name], a)


def test_decode_of_foreign_bytes_is_a_server_error_that_says_what_to_do() -> None:
    for raw in (b"", b"XXXX\x01\x00\x00\x00\x00", agg.encode({}, {}, 0)[:3]):
        with pytest.raises(ServerError, match="agg:"):
            agg.decode(raw)


def test_keys_carry_the_symbols_hash_tag_and_the_session_date() -> None:
    assert agg.aggregate_key("WINZ25", dt.date(2025, 11, 3)) == "agg:{WINZ25}:20251103"
    assert agg.day_number(dt.date(1970, 1, 2)) == 1
