"""The lag split into stages (``live.stats.lag_stages``): every message goes to the write
cycle that took it, and the stages of every trade add up to its lag."""

from __future__ import annotations

from typing import Any

import numpy as np

from hypothesis import given
from hypothesis import strategies as st
from tickvault.live.stats import STAGES, LagTrace, lag_stages


def test_each_stage_is_measured_between_its_two_moments() -> None:
    trace = LagTrace(
        # recv, sent, arrived, handed off, trades (ns)
        messages=[(0, 1_000_000, 3_000_000, 3_100_000, 1)],
        cycles=[(500_000, 900_000), (4_100_000, 6_100_000)],  # the first took nothing of it
        gc_pauses=[(10, 2_000_000, 2), (20, 500_000, 0)],
    )
    got: Any = lag_stages(trace)
    stages = {name: row["p50"] for name, row in got["stages_ms"].items()}
    assert stages == {"publisher_queue": 1.0, "send_and_receive": 2.0, "handoff": 0.1,
                      "wait_for_writer": 1.0, "write": 2.0}  # fmt: skip
    assert got["lag_ms"]["p50"] == 6.1
    assert got["gc"] == {"collections": 2, "longest_ms": 2.0, "total_ms": 2.5}


def test_a_message_not_yet_written_and_an_empty_trace_are_left_out() -> None:
    assert lag_stages(LagTrace()) == {"messages": 0}
    trace = LagTrace(messages=[(0, 1, 2, 3, 5), (10, 11, 12, 99, 5)], cycles=[(4, 8)])
    assert lag_stages(trace)["messages"] == 1


@st.composite
def traces(draw: st.DrawFn) -> LagTrace:
    n = draw(st.integers(1, 40))
    t, messages, cycles = 0, [], []
    for _ in range(n):
        steps = draw(st.lists(st.integers(0, 10_000_000), min_size=4, max_size=4))
        recv = t + steps[0]
        sent, arrived = recv + steps[1], recv + steps[1] + steps[2]
        handed = arrived + steps[3]
        messages.append((recv, sent, arrived, handed, draw(st.integers(1, 60))))
        start = handed + draw(st.integers(1, 5_000_000))
        cycles.append((start, start + draw(st.integers(0, 5_000_000))))
        t = cycles[-1][1] + 1
    return LagTrace(messages=messages, cycles=cycles)


@given(traces())
def test_the_stage_means_of_the_tail_add_up_to_the_tail_lag(trace: LagTrace) -> None:
    got: Any = lag_stages(trace)
    assert got["messages"] == len(trace.messages) and set(got["stages_ms"]) == set(STAGES)
    total = sum(row["tail_mean"] for row in got["stages_ms"].values())
    # each trade's stages are consecutive spans from its publish call to its cycle's end
    lags = np.array([(c[1] - m[0]) / 1e6 for m, c in zip(trace.messages, trace.cycles,
                     strict=True) for _ in range(m[4])])  # fmt: skip
    tail = lags[lags >= np.percentile(lags, 99)]
    assert abs(total - tail.mean()) <= 0.003  # five stages rounded to 0.001 ms
