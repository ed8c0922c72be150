"""The signal policy: thresholds, hysteresis, cooldown, causality; the signal record."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given
from hypothesis import strategies as st
from tickvault.errors import ConfigError, ValidationError
from tickvault.records.signals import SIGNAL_DTYPE, Mode, Side, Signal
from tickvault.signals.policy import PolicyParams, SignalPolicy

S = 1_000_000_000
PARAMS = PolicyParams(enter=0.3, exit=0.1, min_confidence=0.4, cooldown_ns=10 * S)


def _indexed(steps: list[tuple[int, float, float]]) -> list[tuple[int, Signal]]:
    """(index of the step that emitted it, signal) for each signal of ``steps``."""
    policy = SignalPolicy("WINZ25", "abc123", 60 * S, PARAMS)
    out = []
    for i, (ts, up, down) in enumerate(steps):
        sig = policy.step(ts, ts - 1, up, down, Mode.HISTORY)
        if sig is not None:
            out.append((i, sig))
    return out


def _run(steps: list[tuple[int, float, float]]) -> list[Signal]:
    return [sig for _, sig in _indexed(steps)]


def test_policy_enters_at_the_threshold_and_holds_inside_the_hysteresis_band() -> None:
    sigs = _run([(0, 0.5, 0.3), (1 * S, 0.6, 0.25), (2 * S, 0.45, 0.3), (3 * S, 0.4, 0.35)])
    assert [(s.ts_event, s.side) for s in sigs] == [(1 * S, Side.LONG), (3 * S, Side.FLAT)]
    assert sigs[0].strength == pytest.approx(0.35) and sigs[0].confidence == 0.6


def test_policy_does_not_enter_without_enough_confidence() -> None:
    assert _run([(0, 0.35, 0.0)]) == []  # strength 0.35 >= enter, confidence 0.35 < 0.4


def test_policy_cooldown_blocks_reentry_but_never_an_exit() -> None:
    sigs = _run([(0, 0.7, 0.1), (1 * S, 0.2, 0.5), (2 * S, 0.1, 0.7), (11 * S, 0.1, 0.7)])
    # long at 0, the exit at 1 s is allowed, the short at 2 s waits for the cooldown
    assert [(s.ts_event, s.side) for s in sigs] == [
        (0, Side.LONG),
        (1 * S, Side.FLAT),
        (11 * S, Side.SHORT),
    ]


def test_policy_reverses_in_one_signal_when_the_cooldown_has_passed() -> None:
    sigs = _run([(0, 0.7, 0.1), (20 * S, 0.1, 0.7)])
    assert [s.side for s in sigs] == [Side.LONG, Side.SHORT]


def test_policy_refuses_bad_probabilities_and_steps_back_in_time() -> None:
    policy = SignalPolicy("WINZ25", "abc123", 60 * S, PARAMS)
    with pytest.raises(ValidationError, match="probabilities"):
        policy.step(0, 0, 0.8, 0.5, Mode.FAST)
    policy.step(5 * S, 0, 0.5, 0.5, Mode.FAST)
    with pytest.raises(ValidationError, match="time order"):
        policy.step(4 * S, 0, 0.5, 0.5, Mode.FAST)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enter": 0.0},
        {"enter": 0.2, "exit": 0.3},
        {"min_confidence": 1.5},
        {"cooldown_ns": -1},
    ],
)
def test_policy_params_out_of_range_are_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="signal policy"):
        PolicyParams(**kwargs)  # type: ignore[arg-type]


probs = st.tuples(st.floats(0, 1), st.floats(0, 1)).map(
    lambda t: (t[0], t[1] * (1 - t[0]))
)  # p_up + p_down <= 1
streams = st.lists(st.tuples(st.integers(0, 5 * S), probs), max_size=80).map(
    lambda xs: [(ts, up, down) for ts, (up, down) in zip(np.cumsum([x[0] for x in xs]).tolist(),
                                                         [x[1] for x in xs], strict=True)]
)  # fmt: skip


@given(streams, st.integers(0, 80))
def test_policy_on_a_prefix_gives_the_prefix_of_the_signals(
    steps: list[tuple[int, float, float]], cut: int
) -> None:
    # no look-ahead: what the policy says at a step never depends on later steps
    assert _indexed(steps[:cut]) == [(i, sig) for i, sig in _indexed(steps) if i < cut]


@given(streams)
def test_policy_signals_alternate_sides_and_respect_the_cooldown(
    steps: list[tuple[int, float, float]],
) -> None:
    sigs = _run(steps)
    side = Side.FLAT
    last_change: int | None = None
    for s in sigs:
        assert s.side != side  # a signal is a change of side
        if s.side != Side.FLAT:  # entries and reversals wait for the cooldown
            assert last_change is None or s.ts_event - last_change >= PARAMS.cooldown_ns
            assert abs(s.strength) >= PARAMS.enter and s.confidence >= PARAMS.min_confidence
        side, last_change = s.side, s.ts_event


def test_signal_record_round_trips_and_bad_signals_are_refused() -> None:
    sig = Signal("WINZ25", 10, 9, Side.SHORT, -0.4, 0.6, 60 * S, "abc123", Mode.FAST)
    rec = sig.to_record()
    assert rec.dtype == SIGNAL_DTYPE
    assert Signal.from_record("WINZ25", rec) == sig
    with pytest.raises(ValidationError, match="later T"):
        Signal("WINZ25", 10, 11, Side.LONG, 0.4, 0.6, 60 * S, "abc123", Mode.FAST)
    with pytest.raises(ValidationError, match="model version"):
        Signal("WINZ25", 10, 9, Side.LONG, 0.4, 0.6, 60 * S, "x" * 17, Mode.FAST)
    with pytest.raises(ValidationError, match="strength"):
        Signal("WINZ25", 10, 9, Side.LONG, 1.4, 0.6, 60 * S, "abc123", Mode.FAST)
