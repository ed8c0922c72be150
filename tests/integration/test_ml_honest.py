"""Honest evaluation over the real store: no edge on a random walk, the planted edge found.

Both markets come from ``feeds.sim.planted``: the same trades process, with
``effect=0`` a pure random walk, with ``effect>0`` the last minute's aggressor
imbalance drifting the next minute's price. The AUC band: under no edge the
out-of-sample AUC of n directional test rows has a standard deviation of about
sqrt(1 / (3 n)) = 0.58 / sqrt(n); the band 4 / sqrt(n) is about seven of them, so
a pass is no luck, and a leak (a label seen in training) would land far outside it.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from tickvault import Vault
from tickvault.engine.training import train
from tickvault.errors import QueryError
from tickvault.feeds.sim.planted import planted_sessions
from tickvault.models.evaluation import MODEL

SYMBOL = "WINZ25"
END = dt.date(2025, 11, 28)
N_SESSIONS = 10


def _store(vault: Vault, effect: float) -> tuple[str, str]:
    days = planted_sessions(SYMBOL, N_SESSIONS, end=END, effect=effect, seed=7)
    for batch in days.values():
        vault.store_batch(SYMBOL, batch, stream="historical")
    first = min(days)
    return first.isoformat(), (END + dt.timedelta(days=1)).isoformat()


def _directional_rows(result_share: dict[str, float], rows: float) -> float:
    return rows * (result_share["up"] + result_share["down"])


def test_training_on_a_pure_random_walk_finds_no_edge_out_of_sample(vault: Vault) -> None:
    start, end = _store(vault, effect=0.0)
    result = train(vault, SYMBOL, start, end, "1min", folds=4)
    ev = result.evaluation
    m = ev.overall[MODEL]
    n = _directional_rows(ev.class_share, m["rows"])
    assert n > 2000
    assert abs(m["auc"] - 0.5) < 4 / math.sqrt(n), m
    assert abs(m["ic"]) < 4 / math.sqrt(m["rows"]), m
    assert len(ev.folds) == 4 and all(f.test_rows > 0 for f in ev.folds)


def test_training_finds_the_planted_imbalance_effect_above_the_baselines(vault: Vault) -> None:
    start, end = _store(vault, effect=1.5)
    result = train(vault, SYMBOL, start, end, "1min", folds=4)
    ev = result.evaluation
    m = ev.overall[MODEL]
    n = _directional_rows(ev.class_share, m["rows"])
    band = 4 / math.sqrt(n)
    assert m["auc"] > 0.5 + 2 * band, m
    for name in ("always_flat", "last_1min", "prev_session"):
        assert m["auc"] > ev.overall[name]["auc"] + band, (name, ev.overall[name])
    assert m["ic"] > 4 / math.sqrt(m["rows"])
    assert all(f.metrics[MODEL]["auc"] > 0.55 for f in ev.folds)  # in every fold


def test_training_over_a_range_without_sessions_is_a_clear_error(vault: Vault) -> None:
    _store(vault, effect=0.0)
    with pytest.raises(QueryError, match="no training rows"):
        train(vault, SYMBOL, "2025-11-29", "2025-11-30", "1min")  # a weekend


def test_training_an_unknown_symbol_is_a_clear_error(vault: Vault) -> None:
    with pytest.raises(QueryError, match="no trades stored for WINF26"):
        train(vault, "WINF26", "2025-11-24", "2025-11-26", "1min")


def test_baselines_trade_their_own_calls_always_flat_never(vault: Vault) -> None:
    start, end = _store(vault, effect=0.0)
    ev = train(vault, SYMBOL, start, end, "1min", folds=2).evaluation
    assert ev.overall["always_flat"]["trades"] == 0 and ev.overall["always_flat"]["pnl_brl"] == 0
    assert ev.overall["last_1min"]["trades"] > 0
    assert (ev.pnl["always_flat"] == 0).all()


def test_a_leaking_feature_on_the_random_walk_lands_far_outside_the_band(vault: Vault) -> None:
    """The band has power: a feature that peeks at the label (the forward return
    itself) gives an AUC far above it, on the same random walk."""
    import numpy as np

    from tickvault.engine import FeatureEngine
    from tickvault.engine.training import frame_dataset, lightgbm_classifier
    from tickvault.models.evaluation import Dataset, evaluate_walk_forward
    from tickvault.venue.contracts import contract

    start, end = _store(vault, effect=0.0)
    fe = FeatureEngine(vault)
    frame = fe.frame(SYMBOL, start, end, labels=("1min",))
    d = frame_dataset(frame, fe.names, 60_000_000_000, 0, contract(SYMBOL)).labelled()
    x = np.column_stack([d.X, d.fwd_ret])
    names = (*d.feature_names, "peek")
    leak = Dataset(d.times_ns, d.session_ids, d.clock_ns, x, names, d.y, d.fwd_ret,
                   d.move_ticks, d.ret_1min)  # fmt: skip
    ev = evaluate_walk_forward(
        leak, 60_000_000_000, 4, lightgbm_classifier, contract=contract(SYMBOL)
    )
    m = ev.overall[MODEL]
    n = _directional_rows(ev.class_share, m["rows"])
    assert m["auc"] > 0.5 + 5 * (4 / math.sqrt(n)), m
