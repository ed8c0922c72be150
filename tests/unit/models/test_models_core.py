"""The pure ML core: labels, metrics, baselines and the splits' bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.errors import QueryError
from tickvault.feeds.sim.generator import CONTRACTS
from tickvault.models.baselines import calibrated_proba, previous_session_window, sign_call
from tickvault.models.labels import DOWN, FLAT, NO_LABEL, UP, future_classes
from tickvault.models.metrics import Costs, auc, evaluate, spearman
from tickvault.models.splits import walk_forward
from tickvault.venue.contracts import contract

WIN = contract("WINZ25")


def test_future_classes_use_the_dead_zone_in_whole_ticks() -> None:
    p = np.full(7, 128_000.0)
    moves = np.array([-3, -2, -1, 0, 1, 2, 3]) * WIN.tick_size
    r = np.log((p + moves) / p)
    assert future_classes(r, p, WIN.tick_size, 0).tolist() == [DOWN] * 3 + [FLAT] + [UP] * 3
    assert future_classes(r, p, WIN.tick_size, 2).tolist() == [DOWN, FLAT, FLAT, FLAT, FLAT,
                                                                FLAT, UP]  # fmt: skip


def test_future_classes_without_return_or_price_are_no_label() -> None:
    got = future_classes([np.nan, 0.001, 0.001], [128_000.0, np.nan, 128_000.0], 5.0, 0)
    assert got.tolist() == [NO_LABEL, NO_LABEL, UP]


@pytest.mark.parametrize("dz", [-1, 1.5])
def test_future_classes_with_a_bad_dead_zone_are_refused(dz: float) -> None:
    with pytest.raises(QueryError, match="dead_zone_ticks"):
        future_classes([0.0], [1.0], 5.0, dz)  # type: ignore[arg-type]


def test_venue_contract_facts_agree_with_the_simulator() -> None:
    for root, spec in CONTRACTS.items():
        c = contract(root + "Z25")
        assert (c.tick_size, c.point_value) == (spec.tick_size, spec.point_value)
    assert contract("PETR4").tick_size == 0.01
    with pytest.raises(QueryError, match="no contract facts"):
        contract("XYZ")


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=60), st.data())
@settings(max_examples=200, deadline=None)
def test_auc_equals_the_pairwise_definition(scores: list[float], data: st.DataObject) -> None:
    pos = np.array(data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores))))
    s = np.array(scores)
    got = auc(s, pos)
    if pos.all() or not pos.any():
        assert math.isnan(got)
        return
    a, b = s[pos][:, None], s[~pos][None, :]
    want = ((a > b).sum() + 0.5 * (a == b).sum()) / (pos.sum() * (~pos).sum())
    assert got == pytest.approx(want)


def test_spearman_is_one_for_a_monotone_relation_and_nan_for_a_constant() -> None:
    x = np.arange(10.0)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))


def test_evaluate_prices_the_predicted_side_after_costs() -> None:
    proba = np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2]])
    y = np.array([UP, UP, FLAT])
    move = np.array([3.0, 2.0, 0.0])
    ret = move * 5.0 / 128_000.0
    costs = Costs(cost_brl=0.5, slippage_ticks=1.0)
    m = evaluate(proba, y, ret, move, WIN, costs)
    round_trip = 2 * (0.5 + 1.0 * 5.0 * 0.2)
    assert m["trades"] == 2
    assert m["pnl_brl"] == pytest.approx(3 * 1.0 - 2 * 1.0 - 2 * round_trip)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.1) + math.log(0.6)) / 3)
    assert math.isnan(m["auc"])  # no row went down


def test_baseline_calls_and_their_calibrated_probabilities() -> None:
    assert sign_call([0.1, -0.2, 0.0, np.nan]).tolist() == [UP, DOWN, FLAT, FLAT]
    p = calibrated_proba(np.array([UP, UP, DOWN]), np.array([UP, DOWN, DOWN]), np.array([UP]))
    assert p.tolist() == [[2 / 5, 1 / 5, 2 / 5]]  # add-one smoothed frequencies


def test_previous_session_window_reads_the_same_clock_time_of_the_session_before() -> None:
    sid = np.array([1, 1, 2, 2, 2])
    clock = np.array([10, 20, 10, 20, 30])
    ret = np.array([0.1, -0.2, 0.3, 0.4, 0.5])
    got = previous_session_window(sid, clock, ret)
    assert np.isnan(got[:2]).all() and got[2:4].tolist() == [0.1, -0.2] and np.isnan(got[4])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 3}, "need at least 4 sessions"),
        ({"folds": 1, "embargo_ns": 10}, "at least the horizon"),
        ({"folds": 0}, "folds must be >= 1"),
        ({"folds": 1, "window": "rolling"}, "train_sessions"),
    ],
)
def test_walk_forward_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    t = np.array([0, 100, 200, 300], dtype=np.int64)
    sid = np.array([0, 0, 1, 2])
    with pytest.raises(QueryError, match=message):
        walk_forward(t, sid, 60, **kwargs)  # type: ignore[arg-type]
