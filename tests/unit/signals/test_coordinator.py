"""The latency-budget coordinator: grid, mode by budget, misses and skips, causality."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import ConfigError, ValidationError
from tickvault.records.signals import Mode
from tickvault.signals.coordinator import (
    NO_MODEL,
    OFF_GRID,
    PREDICTED,
    SKIPPED,
    CoordinatorParams,
    Decider,
    Decision,
    Prediction,
)
from tickvault.signals.policy import PolicyParams

S = 1_000_000_000
POLICY = PolicyParams(enter=0.2, exit=0.05, min_confidence=0.3, cooldown_ns=2 * S)


class Models:
    """A deterministic predictor: p_up/p_down from the row's ``x``; history ready when
    ``h`` is a number. ``kinds`` says which models exist."""

    def __init__(self, kinds: tuple[Mode, ...] = (Mode.FAST, Mode.HISTORY)) -> None:
        self.kinds = kinds

    def ready(self, row: Mapping[str, Any]) -> bool:
        return not math.isnan(row["h"])

    def available(self, mode: Mode) -> bool:
        return mode in self.kinds

    def predict(self, row: Mapping[str, Any], mode: Mode) -> Prediction | None:
        if mode not in self.kinds:
            return None
        x = row["x"] if mode == Mode.FAST else (row["x"] + row["h"]) / 2
        up = min(max(0.5 + x / 2, 0.0), 1.0)
        return Prediction(up, 1.0 - up, "fast0" if mode == Mode.FAST else "full0", 60 * S)


class Clock:
    """A clock that moves ``step`` ns each reading."""

    def __init__(self, start: int, step: int) -> None:
        self.now, self.step = start, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 3 * S),  # T step
        st.floats(-1, 1),  # x
        st.one_of(st.just(math.nan), st.floats(-1, 1)),  # h
    ),
    max_size=60,
)


def _rows(spec: list[tuple[int, float, float]]) -> list[tuple[dict[str, float], int, int]]:
    out, t = [], 1_700_000_000 * S
    for step, x, h in spec:
        t += step
        out.append(({"x": x, "h": h}, t, t - 1))
    return out


def _key(d: Decision) -> tuple[Any, ...]:
    return (d.T, d.outcome, d.mode, d.prediction, d.signal, d.miss)


@settings(max_examples=80, deadline=None)
@given(rows_strategy, st.integers(0, 60), st.sampled_from([0, S, 5 * S]))
def test_decisions_on_a_prefix_are_the_prefix_of_the_decisions(
    spec: list[tuple[int, float, float]], cut: int, every: int
) -> None:
    rows = _rows(spec)
    params = CoordinatorParams(predict_every_ns=every)
    full = Decider("WINZ25", Models(), params, POLICY).on_rows(rows)
    part = Decider("WINZ25", Models(), params, POLICY).on_rows(rows[:cut])
    assert [_key(d) for d in part] == [_key(d) for d in full[:cut]]


@settings(max_examples=80, deadline=None)
@given(rows_strategy, st.lists(st.integers(1, 8), max_size=20), st.sampled_from([0, 2 * S]))
def test_without_a_clock_the_decisions_do_not_depend_on_the_batches(
    spec: list[tuple[int, float, float]], sizes: list[int], every: int
) -> None:
    rows = _rows(spec)
    params = CoordinatorParams(predict_every_ns=every)
    whole = Decider("WINZ25", Models(), params, POLICY).on_rows(rows)
    batched, d, at = [], Decider("WINZ25", Models(), params, POLICY), 0
    for n in [*sizes, len(rows)]:
        batched += d.on_rows(rows[at : at + n])
        at += n
    assert [_key(x) for x in batched] == [_key(x) for x in whole]
    # without a clock: HISTORY exactly where the history numbers are ready
    for (values, _, _), dec in zip(rows, whole, strict=True):
        if dec.outcome == PREDICTED:
            assert dec.mode == (Mode.FAST if math.isnan(values["h"]) else Mode.HISTORY)
            assert not dec.miss


@settings(max_examples=40, deadline=None)
@given(rows_strategy, st.integers(1, 59))
def test_a_decider_restored_from_its_state_goes_on_as_if_never_stopped(
    spec: list[tuple[int, float, float]], cut: int
) -> None:
    rows = _rows(spec)
    params = CoordinatorParams(predict_every_ns=S)
    full = Decider("WINZ25", Models(), params, POLICY).on_rows(rows)
    first = Decider("WINZ25", Models(), params, POLICY)
    first.on_rows(rows[:cut])
    state = {k: str(v) for k, v in first.state().items()}  # as a Valkey hash gives them
    again = Decider("WINZ25", Models(), params, POLICY)
    again.restore(state)
    assert [_key(d) for d in again.on_rows(rows[cut:])] == [_key(d) for d in full[cut:]]
    assert again.stats.rows == len(rows)


def test_the_grid_predicts_on_the_first_row_at_or_after_each_grid_point() -> None:
    t0 = 1_700_000_000 * S
    ts = [t0 + 100, t0 + S // 2, t0 + S, t0 + S + 1, t0 + 3 * S + 7, t0 + 3 * S + 7]
    rows = [({"x": 0.0, "h": math.nan}, t, t) for t in ts]
    got = Decider("W", Models(), CoordinatorParams(predict_every_ns=S)).on_rows(rows)
    assert [d.outcome for d in got] == [PREDICTED, OFF_GRID, PREDICTED, OFF_GRID, PREDICTED,
                                        OFF_GRID]  # fmt: skip
    every = Decider("W", Models(), CoordinatorParams()).on_rows(rows)
    assert [d.outcome for d in every] == [PREDICTED] * len(rows)  # equal T: each a step


def test_deadline_zero_makes_every_prediction_fast_and_a_miss() -> None:
    rows = _rows([(S, 0.9, 0.5), (S, -0.9, 0.5), (S, 0.9, math.nan)])
    start = rows[-1][1] + 10  # every row received before the clock reads
    d = Decider("W", Models(), CoordinatorParams(deadline_ns=0), POLICY, clock=Clock(start, 1000))
    got = [d.on_row(v, t, r, d.clock()) for v, t, r in rows]
    assert [x.mode for x in got] == [Mode.FAST] * 3
    assert all(x.miss for x in got) and d.stats.misses == 3 and d.stats.fast == 3
    assert got[0].signal is not None and got[0].signal.mode == Mode.FAST
    assert got[0].signal.model_version == "fast0"


def test_a_generous_deadline_uses_history_where_ready_and_counts_the_cost() -> None:
    rows = _rows([(S, 0.9, 0.5), (S, -0.9, math.nan), (S, 0.9, 0.9)])
    clock = Clock(rows[0][1], 1000)
    d = Decider("W", Models(), CoordinatorParams(deadline_ns=10**15), POLICY, clock=clock)
    got = d.on_rows(rows, live=True)
    assert [x.mode for x in got] == [Mode.HISTORY, Mode.FAST, Mode.HISTORY]
    assert d.stats.misses == 0 and d.stats.skipped == 0
    assert d.p99_ns(Mode.HISTORY) == 1000 and d.p99_ns(Mode.FAST) == 1000
    assert got[0].signal is not None and got[0].signal.model_version == "full0"
    assert got[0].signal.ts_event == got[0].signal.t_features == rows[0][1]


def test_history_goes_fast_when_its_p99_cost_does_not_fit_the_budget() -> None:
    t = 1_700_000_000 * S
    clock = Clock(t, 600_000)  # each reading 0.6 ms later: a predict costs 0.6 ms
    d = Decider("W", Models(), CoordinatorParams(deadline_ns=2_000_000), POLICY, clock=clock)
    first = d.on_row({"x": 0.1, "h": 0.1}, t, t, t)  # no cost known yet: history
    assert first.mode == Mode.HISTORY and d.p99_ns(Mode.HISTORY) == 600_000
    # 1.5 ms of the 2 ms budget used: 0.6 ms of history predict no longer fits
    late = d.on_row({"x": 0.1, "h": 0.1}, t + 1, t + 1, t + 1 + 1_500_000)
    assert late.mode == Mode.FAST


def test_a_late_row_with_a_newer_one_pending_is_skipped_and_its_grid_point_kept() -> None:
    t = 1_700_000_000 * S
    d = Decider("W", Models(), CoordinatorParams(deadline_ns=1000, predict_every_ns=S),
                clock=Clock(t, 1))  # fmt: skip
    skipped = d.on_row({"x": 0.0, "h": 0.0}, t, t, t + 5000, newer_pending=True)
    taken = d.on_row({"x": 0.0, "h": 0.0}, t + 10, t + 10, t + 20, newer_pending=False)
    assert (skipped.outcome, taken.outcome) == (SKIPPED, PREDICTED)
    assert d.stats.skipped == 1 and d.stats.predictions == 1


def test_without_a_fast_model_it_is_history_or_nothing() -> None:
    t = 1_700_000_000 * S
    d = Decider("W", Models((Mode.HISTORY,)), CoordinatorParams(deadline_ns=0), clock=Clock(t, 1))
    late = d.on_row({"x": 0.5, "h": 0.5}, t, t, t + 10)
    nothing = d.on_row({"x": 0.5, "h": math.nan}, t + 1, t + 1, t + 10)
    assert (late.outcome, late.mode, late.miss) == (PREDICTED, Mode.HISTORY, True)
    assert nothing.outcome == NO_MODEL and d.stats.no_model == 1
    only_fast = Decider("W", Models((Mode.FAST,))).on_row({"x": 0.5, "h": 0.5}, t, t)
    assert only_fast.mode == Mode.FAST


def test_rows_out_of_t_order_and_bad_params_are_refused() -> None:
    d = Decider("W", Models())
    d.on_row({"x": 0.0, "h": 0.0}, 10, 10)
    with pytest.raises(ValidationError, match="T order"):
        d.on_row({"x": 0.0, "h": 0.0}, 9, 9)
    with pytest.raises(ConfigError, match="deadline_ns"):
        CoordinatorParams(deadline_ns=-1)
    with pytest.raises(ConfigError, match="predict_every_ns"):
        CoordinatorParams(predict_every_ns=-5)
