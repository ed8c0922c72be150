"""The block codec: exact round trips for any valid batch; corrupt input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import sim_trades
from tickvault import FormatError, TradeBatch
from tickvault.storage import codec
from tickvault.storage.blocks import sort_by_time
from tickvault.testing import trade_batches


def assert_batches_equal(a: TradeBatch, b: TradeBatch) -> None:
    for name, col in a.items():
        np.testing.assert_array_equal(getattr(b, name), col, err_msg=name)
        assert getattr(b, name).dtype == col.dtype


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_codec_simulated_block_round_trips_exactly(compression: str) -> None:
    batch = sim_trades(5000)
    block = codec.encode_block(batch, 20_000, compression=compression)
    assert_batches_equal(batch, codec.decode_block(block))
    header = codec.read_header(block)
    assert (header.n, header.trading_day) == (5000, 20_000)
    assert header.ts_first == batch.ts_event[0] and header.ts_last == batch.ts_event[-1]


def test_codec_simulated_trades_compress_below_sixteen_bytes_per_trade() -> None:
    batch = sim_trades(16_384)
    assert len(codec.encode_block(batch, 1)) / len(batch) < 16


@given(trade_batches(max_size=300), st.sampled_from(["lz4", "zstd"]))
@settings(max_examples=200, deadline=None)
def test_codec_any_valid_batch_round_trips_exactly(batch: TradeBatch, compression: str) -> None:
    batch = sort_by_time(batch)
    decoded = codec.decode_block(codec.encode_block(batch, 7, compression=compression))
    assert_batches_equal(batch, decoded)


def test_codec_decode_blocks_concatenates_in_order_with_threads() -> None:
    parts = [sim_trades(3000, seed=s) for s in range(6)]
    blocks = [codec.encode_block(p, 1) for p in parts]
    cols = codec.decode_blocks(blocks, threads=2)
    assert_batches_equal(TradeBatch.concat(parts), TradeBatch(**cols))


@given(st.lists(trade_batches(max_size=60), min_size=1, max_size=12), st.data())
@settings(max_examples=100, deadline=None)
def test_codec_mixed_blocks_decode_together_in_order(
    batches: list[TradeBatch], data: st.DataObject
) -> None:
    """Row, small columnar and large blocks of different layouts, decoded in one call."""
    parts = [sort_by_time(b) for b in batches]
    if data.draw(st.booleans(), label="with a large block"):
        parts.insert(data.draw(st.integers(0, len(parts))), sim_trades(2500))
    blocks = [
        codec.encode_block(p, 3, compression=data.draw(st.sampled_from(["lz4", "zstd"])))
        for p in parts
    ]
    cols = codec.decode_blocks(blocks)
    assert_batches_equal(TradeBatch.concat(parts), TradeBatch(**cols))


def test_codec_raw_float_prices_round_trip() -> None:
    batch = sim_trades(100)
    odd = TradeBatch(
        **{**batch.columns(), "price": batch.price + np.pi, "volume": batch.volume * np.e}
    )
    assert_batches_equal(odd, codec.decode_block(codec.encode_block(odd, 1)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:10], "shorter than"),
        (lambda b: b"XXX" + b[3:], "not a tickvault block"),
        (lambda b: b[:3] + bytes([99]) + b[4:], "version 99"),
        (lambda b: b[: codec.HEADER_SIZE] + b"\x00garbage", "corrupt|payload"),
    ],
)
def test_codec_corrupt_block_raises_format_error(mutate: object, message: str) -> None:
    block = codec.encode_block(sim_trades(1000), 1)
    with pytest.raises(FormatError, match=message):
        codec.decode_block(mutate(block))  # type: ignore[operator]


def test_codec_small_blocks_store_rows_and_stay_small() -> None:
    batch = sim_trades(3)
    block = codec.encode_block(batch.take(slice(0, 1)), 1)
    assert len(block) < 80  # a lone trade: 13-byte header + one 58-byte row
    assert_batches_equal(batch.take(slice(0, 1)), codec.decode_block(block))
    with pytest.raises(FormatError, match="row block"):
        codec.decode_block(block[:-1])


def test_codec_empty_batch_is_refused() -> None:
    with pytest.raises(FormatError, match="empty"):
        codec.encode_block(TradeBatch.empty(), 1)
