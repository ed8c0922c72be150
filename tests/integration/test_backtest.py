"""``backtest`` and ``lookahead`` over a real embedded server: planted sessions, models
trained by the real pipeline, the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.engine.backtest import BacktestResult, backtest
from tickvault.engine.lookahead import lookahead
from tickvault.engine.signals import SignalStore
from tickvault.engine.training import metadata, train
from tickvault.errors import ModelError, QueryError
from tickvault.feeds.sim.planted import planted_sessions
from tickvault.models.labels import DOWN, FLAT, UP
from tickvault.models.manager import LoadedModel, ModelSet
from tickvault.models.registry import Registry
from tickvault.records.orders import OrderReason

SYMBOL = "WINZ25"
END = dt.date(2025, 11, 28)
DAY = "2025-11-27"
NEXT = "2025-11-28"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vault, str, str]]:
    """Planted sessions, a full and a fast model trained on them."""
    from tickvault.storage.server import stop_server

    data_dir = tmp_path_factory.mktemp("backtest")
    vault = Vault.open(data_dir=data_dir)
    try:
        days = planted_sessions(SYMBOL, 5, end=END, effect=1.5, trades_per_minute=8, seed=3)
        for batch in days.values():
            vault.store_batch(SYMBOL, batch, stream="historical")
        reg = Registry.of_data_dir(data_dir)
        full = train(vault, SYMBOL, "2025-11-21", "2025-11-29", folds=2)
        fast = train(vault, SYMBOL, "2025-11-21", "2025-11-29", folds=2, features="fast")
        yield (
            vault,
            reg.save(SYMBOL, full.model, metadata(full)),
            reg.save(SYMBOL, fast.model, metadata(fast)),
        )
    finally:
        vault.close()
        stop_server(data_dir)


def _run(store: tuple[Vault, str, str], **kw: Any) -> BacktestResult:
    vault, full, fast = store
    return backtest(vault, SYMBOL, DAY, NEXT, model=full, fast_model=fast, **kw)


def test_backtest_fills_each_order_at_a_trade_strictly_after_its_placement(
    store: tuple[Vault, str, str],
) -> None:
    r = _run(store, predict_every="1s")
    assert len(r.signals) > 10 and r.fills
    lat = int(store[0].settings.paper_latency_ms * 1_000_000)
    placed = {o.order_id: o for o in r.orders}
    for f in r.fills:
        o = placed[f.order_id]
        assert f.ts_event > o.ts_placed
        if o.reason == OrderReason.SIGNAL:
            assert o.ts_placed == o.signal_ts + lat  # P = T + paper_latency_ms
    by_t = {s.ts_event: s for s in r.signals}
    assert all(o.signal_ts in by_t for o in r.orders if o.reason == OrderReason.SIGNAL)
    assert [s.ts_event for s in r.signals] == sorted(s.ts_event for s in r.signals)
    assert all(s.t_features == s.ts_event for s in r.signals)
    # the metrics agree with the broker and the equity curve
    m = r.metrics
    assert m["fills"] == len(r.fills)
    assert m["turnover"] == sum(abs(f.qty) for f in r.fills)
    assert r.equity.size and r.equity[-1] == pytest.approx(m["pnl_brl"], abs=1e-6)
    assert sum(r.sessions.values()) == pytest.approx(m["pnl_brl"], abs=1e-6)
    peak = np.maximum.accumulate(np.concatenate([[0.0], r.equity]))[1:]
    assert m["max_drawdown_brl"] == pytest.approx(float((peak - r.equity).max()))
    assert 0.0 <= m["hit_rate"] <= 1.0
    assert m["trades_per_s"] > 0 and r.decider["predictions"] > len(r.signals)


def test_backtest_batched_predictions_equal_one_row_predictions(
    store: tuple[Vault, str, str],
) -> None:
    a = _run(store, predict_every="5s")
    b = _run(store, predict_every="5s", batch_predict=False)
    assert a.signals == b.signals and a.fills == b.fills and a.orders == b.orders
    assert a.signals


def test_backtest_every_row_and_a_grid_decide_on_the_same_rows_there(
    store: tuple[Vault, str, str],
) -> None:
    every = _run(store, predict_every="0")
    grid = _run(store, predict_every="10s")
    assert every.decider["predictions"] > grid.decider["predictions"] > 0
    assert every.stream["rows"] == every.decider["rows"]


def test_lookahead_on_the_default_features_reports_no_change(
    store: tuple[Vault, str, str],
) -> None:
    vault, full, fast = store
    report = lookahead(vault, SYMBOL, DAY, NEXT, model=full, fast_model=fast,
                       predict_every="1s")  # fmt: skip
    assert report.source == "backtest" and report.checked > 10
    assert report.ok, report.changes.head()
    # the same on the stored signals (what a live worker would have said)
    r = _run(store, predict_every="1s")
    SignalStore(vault).append(r.signals)
    try:
        stored = lookahead(vault, SYMBOL, DAY, NEXT, model=full, fast_model=fast)
        assert stored.source == "stored" and stored.checked == len(r.signals) and stored.ok
    finally:
        vault.client.delete(f"signals:{{{SYMBOL}}}")


class _OnFirstColumn:
    """A real estimator of the sklearn protocol: up when its first input is positive."""

    classes_ = np.array([DOWN, FLAT, UP])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        v = np.nan_to_num(np.asarray(x, dtype=np.float64)[:, 0])
        up = np.where(v > 0, 0.8, 0.1)
        down = np.where(v < 0, 0.8, 0.1)
        return np.column_stack([down, 1.0 - up - down, up])


def _models(name: str) -> ModelSet:
    meta = {"version": f"on-{name}"[:16], "features": [{"name": name}], "horizon_ns": 60 * 10**9}
    return ModelSet([LoadedModel.of(_OnFirstColumn(), {**meta, "feature_set": kind})
                     for kind in ("full", "fast")])  # fmt: skip


def _peek(df: pd.DataFrame) -> np.ndarray:
    """The move over the next 20 trades: reads trades after T."""
    p = df["price"]
    return (p.shift(-20) - p).to_numpy()


def _past(df: pd.DataFrame) -> np.ndarray:
    """The move over the last 20 trades: causal."""
    p = df["price"]
    return (p - p.shift(20)).to_numpy()


def test_lookahead_catches_a_feature_that_peeks_after_t(store: tuple[Vault, str, str]) -> None:
    vault = store[0]
    leak = lookahead(vault, SYMBOL, DAY, NEXT, models=_models("peek"), extra={"peek": _peek},
                     predict_every="1s")  # fmt: skip
    assert leak.checked > 10 and not leak.ok
    assert len(leak.changes) > leak.checked // 2
    honest = lookahead(vault, SYMBOL, DAY, NEXT, models=_models("past"), extra={"past": _past},
                       predict_every="1s")  # fmt: skip
    assert honest.checked > 10 and honest.ok, honest.changes.head()


def test_backtest_and_lookahead_bad_input_get_clear_errors(
    store: tuple[Vault, str, str],
) -> None:
    vault, full, _ = store
    with pytest.raises(ModelError, match="nosuchversion"):
        backtest(vault, SYMBOL, DAY, NEXT, model="nosuchversion")
    with pytest.raises(QueryError, match="before"):
        backtest(vault, SYMBOL, NEXT, DAY, model=full)
    with pytest.raises(QueryError, match="one value per trade"):
        backtest(vault, SYMBOL, DAY, NEXT, models=_models("x"), extra={"x": lambda df: [1.0]})
    with pytest.raises(ModelError, match="no promoted model"):
        backtest(vault, SYMBOL, DAY, NEXT)


def test_cli_backtest_prints_the_table_and_writes_the_equity_plot(
    store: tuple[Vault, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, full, fast = store
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(vault.settings.data_dir))
    runner = CliRunner()
    plot = tmp_path / "equity.html"
    out = runner.invoke(cli, ["backtest", SYMBOL, "--start", DAY, "--end", NEXT, "--model", full,
                              "--fast-model", fast, "--predict-every", "1s", "--plot",
                              str(plot)], terminal_width=200)  # fmt: skip
    assert out.exit_code == 0, out.output + out.stderr
    for label in ("PnL (BRL, after costs)", "Sharpe", "hit rate", "turnover", "max drawdown"):
        assert label in out.output
    page = plot.read_text()
    assert "<svg" in page and "<polyline" in page and DAY in page
    ok = runner.invoke(
        cli,
        [
            "ml",
            "lookahead",
            SYMBOL,
            "--start",
            DAY,
            "--end",
            NEXT,
            "--model",
            full,
            "--fast-model",
            fast,
            "--predict-every",
            "1s",
        ],
    )
    assert ok.exit_code == 0 and "none changes" in ok.output, ok.output + ok.stderr  # fmt: skip
    bad = runner.invoke(cli, ["backtest", SYMBOL, "--start", DAY, "--end", NEXT, "--model",
                              "nosuchversion"])  # fmt: skip
    assert bad.exit_code != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "nosuchversion" in bad.stderr
