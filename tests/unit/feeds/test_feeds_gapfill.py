"""The gap filler's rules (``feeds.gapfill.GapTracker``, ``gap_reason``; pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import FeedError, ServerError
from tickvault.feeds.gapfill import FillJob, GapTracker, gap_reason
from tickvault.records.events import (
    CONN_LOGIN,
    CONN_MARKET,
    GAP_REASONS,
    MARKET_CONNECTED,
    MARKET_PARTIAL,
)

DISCONNECTED = 0


def test_gap_tracker_reconnect_backfills_from_after_the_last_trade_to_the_first_new_one() -> None:
    t = GapTracker()
    t.on_state(CONN_MARKET, MARKET_CONNECTED)
    assert t.on_trades("WINZ25", 100, 200) is None
    t.on_state(CONN_MARKET, DISCONNECTED)
    t.on_state(CONN_MARKET, MARKET_CONNECTED)
    assert t.on_trades("WINZ25", 500, 600) == FillJob("WINZ25", 201, 500, partial=False)
    assert t.on_trades("WINZ25", 700, 800) is None  # one backfill per reconnect


def test_gap_tracker_partial_state_backfills_from_the_last_trade_included() -> None:
    t = GapTracker()
    t.on_trades("WINZ25", 100, 200)
    t.on_state(CONN_MARKET, MARKET_PARTIAL)
    t.on_trades("WINZ25", 300, 400)  # still partial: callbacks may be lost
    t.on_state(CONN_MARKET, MARKET_CONNECTED)
    assert t.on_trades("WINZ25", 900, 950) == FillJob("WINZ25", 200, 900, partial=True)


def test_gap_tracker_symbol_without_trades_before_the_outage_asks_nothing() -> None:
    t = GapTracker()
    t.on_state(CONN_MARKET, DISCONNECTED)
    t.on_state(CONN_MARKET, MARKET_CONNECTED)
    assert t.on_trades("PETR4", 10, 20) is None


def test_gap_tracker_other_connection_types_change_nothing() -> None:
    t = GapTracker()
    t.on_trades("WINZ25", 100, 200)
    t.on_state(CONN_LOGIN, DISCONNECTED)
    t.on_state(CONN_LOGIN, 0)
    assert t.on_trades("WINZ25", 300, 400) is None


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("state"), st.sampled_from([0, 1, 2, 3, 4, 5, 6])),
            st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 10**6)),
        ),
        max_size=60,
    )
)
def test_gap_tracker_any_sequence_spans_end_at_a_new_trade_and_start_before_it(
    steps: list[tuple[str, int]],
) -> None:
    t = GapTracker()
    last: dict[str, int] = {}
    for kind, value in steps:
        if kind == "state":
            t.on_state(CONN_MARKET, value)
            continue
        job = t.on_trades(kind, value, value)
        if job is not None:
            assert job.symbol == kind
            assert job.end_ns == value
            assert job.start_ns < job.end_ns
            # the span starts at the symbol's last trade seen (state 6) or just after it
            assert job.start_ns <= last[kind] + 1
        last[kind] = max(last.get(kind, value), value)


def test_gap_reason_each_failure_names_a_known_reason() -> None:
    cases = {
        (NotImplementedError("no history API"), False): 2,
        (FeedError("NL_HISTORY_PERIOD_LIMIT"), False): 1,
        (FeedError("the request failed"), False): 3,
        (ServerError("down"), False): 3,
        (NotImplementedError("no history API"), True): 5,
        (FeedError("period limit"), True): 4,
        (FeedError("failed"), True): 6,
    }
    for (error, partial), code in cases.items():
        assert gap_reason(error, partial=partial) == code
        assert code in GAP_REASONS
    assert "partially connected" in GAP_REASONS[gap_reason(FeedError("x"), partial=True)]
