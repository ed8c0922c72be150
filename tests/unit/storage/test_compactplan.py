"""The compaction planner (pure): chunks partition the entries, are bounded, and the
blocks of different chunks do not overlap in time unless a cap split a component."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from tickvault.storage.compactplan import COMPONENT_MAX_BLOCKS, EntrySpan, block_cuts, plan_chunks


@st.composite
def spans(draw: st.DrawFn) -> list[EntrySpan]:
    out = []
    for _ in range(draw(st.integers(0, 60))):
        first = (draw(st.integers(0, 1000)), draw(st.integers(0, 50)))
        last = max(first, (first[0] + draw(st.integers(0, 100)), draw(st.integers(0, 50))))
        out.append(EntrySpan(first, last, draw(st.integers(1, 40))))
    return out


@given(spans(), st.integers(1, 200), st.integers(1, 30))
def test_chunks_partition_the_entries_within_their_bounds(
    entries: list[EntrySpan], max_trades: int, max_entries: int
) -> None:
    chunks = plan_chunks(entries, max_trades, max_entries)
    taken = [i for c in chunks for i in c.entries]
    assert sorted(taken) == list(range(len(entries)))
    cap = COMPONENT_MAX_BLOCKS * max_trades
    for c in chunks:
        assert c.trades == sum(entries[i].n for i in c.entries)
        assert len(c.entries) <= max_entries or len(c.entries) == 1
        assert c.trades <= max(cap + max(e.n for e in entries), max_trades)
    assert all(c.full for c in chunks[:-1]) and (not chunks or not chunks[-1].full)


@given(spans())
def test_without_caps_chunks_do_not_overlap_in_time(entries: list[EntrySpan]) -> None:
    chunks = plan_chunks(entries, 10**9, 10**9)
    ranges = [(min(entries[i].first for i in c.entries), max(entries[i].last for i in c.entries))
              for c in chunks]  # fmt: skip
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end < start


@given(spans(), st.integers(1, 50))
def test_chunks_close_before_they_pass_the_block_size(
    entries: list[EntrySpan], max_trades: int
) -> None:
    """Entries that overlap nothing (in order) pack into chunks of at most one block,
    unless one entry alone is larger."""
    ordered, t = [], 0
    for e in entries:
        ordered.append(EntrySpan((t, 0), (t + 1, 0), e.n))
        t += 2
    for c in plan_chunks(ordered, max_trades, 10**9):
        assert c.trades <= max_trades or len(c.entries) == 1


@given(st.integers(0, 100_000), st.integers(1, 20_000))
def test_block_cuts_cover_the_records_in_even_blocks(n: int, max_trades: int) -> None:
    cuts = block_cuts(n, max_trades)
    assert [lo for lo, _ in cuts] == ([0, *(hi for _, hi in cuts[:-1])] if n else [])
    assert (cuts[-1][1] if cuts else 0) == n
    sizes = [hi - lo for lo, hi in cuts]
    assert all(0 < s <= max_trades for s in sizes)
    assert len(sizes) == -(-n // max_trades)
    assert not sizes or max(sizes) - min(sizes) <= 1
