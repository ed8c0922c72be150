"""GET /metrics of the dashboard app (FastAPI's test client over the real embedded
Valkey): the Prometheus text parses and holds what the processes keep in the store."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard_seed import SYMBOL, seed
from tickvault import Vault
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.signals import SignalStore
from tickvault.records.signals import Mode, Side, Signal
from tickvault.web.app import create_app

TOKEN = "t0ken-for-metrics"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def store(vault: Vault, tmp_path: Path) -> Iterator[tuple[Vault, Path]]:
    seed(vault)  # 18000 trades, 8 FAST signals, 8 fills, one quarantined message
    t = int(time.time_ns())
    SignalStore(vault).append_decided(
        SYMBOL,
        [Signal(SYMBOL, t, t, Side.LONG, 0.5, 0.7, 60_000_000_000, "m1", Mode.HISTORY)],
        {"T": t, "rows": 40, "predictions": 30, "fast": 21, "history": 9, "signals": 9,
         "misses": 3, "skipped": 2, "p99_fast_ns": 250_000, "p99_history_ns": 1_500_000,
         "updated_ns": t},
    )  # fmt: skip
    ExecutionStore(vault).commit(SYMBOL, [], {"x": 1}, {
        "position": -2, "avg_price": 120000.0, "realized": 15.5, "fees": 1.25,
        "open_pnl": -4.0, "day_pnl": 11.5, "last_price": 120010.0})  # fmt: skip
    vault.put_status("bridge:h:1", {
        "updated_ns": time.time_ns(), "trades_per_s": 1234.0, "lag_p50_ms": 0.8,
        "lag_p99_ms": 3.5, "messages": 500, "gaps_detected": 2, "recovered_messages": 7,
        "journal_messages": 1, "lost_messages": 4, "gaps_unrecovered": 1,
        "rejected": json.dumps({"decode": 3, "schema": 1}), "held_bytes": 10,
        "max_held_bytes": 100})  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "up.json").write_text(json.dumps({"pid": os.getpid(), "components": [
        {"name": "bridge", "state": "ready", "pid": 11, "started_ns": time.time_ns(),
         "restarts": 2},
        {"name": "model", "state": "backoff", "pid": None, "started_ns": 0, "restarts": 5},
    ]}))  # fmt: skip
    yield vault, tmp_path


def test_metrics_over_a_store_with_data_parse_and_hold_the_stored_figures(store) -> None:
    vault, data_dir = store
    with TestClient(create_app(vault, data_dir=data_dir)) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    sym = (("symbol", SYMBOL),)
    assert m[("tickvault_trades_stored_total", sym)] == 18000
    assert m[("tickvault_signals_total", (("mode", "fast"), ("symbol", SYMBOL)))] == 8
    assert m[("tickvault_signals_total", (("mode", "history"), ("symbol", SYMBOL)))] == 1
    assert m[("tickvault_predictions_total", (("mode", "fast"), ("symbol", SYMBOL)))] == 21
    assert m[("tickvault_deadline_misses_total", sym)] == 3
    assert m[("tickvault_rows_skipped_total", sym)] == 2
    q99 = (("mode", "history"), ("quantile", "0.99"), ("symbol", SYMBOL))
    assert m[("tickvault_predict_seconds", q99)] == pytest.approx(0.0015)
    assert m[("tickvault_position_contracts", sym)] == -2
    assert m[("tickvault_pnl_brl", (("kind", "realized"), ("symbol", SYMBOL)))] == 15.5
    assert m[("tickvault_pnl_brl", (("kind", "open"), ("symbol", SYMBOL)))] == -4.0
    assert m[("tickvault_pnl_brl", (("kind", "day"), ("symbol", SYMBOL)))] == 11.5
    assert m[("tickvault_fees_brl_total", sym)] == 1.25
    b = (("bridge", "bridge:h:1"),)
    assert m[("tickvault_bridge_up", b)] == 1
    assert m[("tickvault_bridge_trades_per_second", b)] == 1234.0
    lag99 = (("bridge", "bridge:h:1"), ("quantile", "0.99"))
    assert m[("tickvault_bridge_lag_seconds", lag99)] == pytest.approx(0.0035)
    assert m[("tickvault_gaps_total", (("state", "detected"),))] == 2
    assert m[("tickvault_gaps_total", (("state", "unrecovered"),))] == 1
    assert m[("tickvault_gap_messages_total", (("state", "recovered"),))] == 8
    assert m[("tickvault_gap_messages_total", (("state", "lost"),))] == 4
    assert m[("tickvault_quarantined_total", (("reason", "decode"),))] == 3
    assert m[("tickvault_quarantined_total", (("reason", "schema"),))] == 1
    assert m[("tickvault_process_up", (("name", "bridge"),))] == 1
    assert m[("tickvault_process_up", (("name", "model"),))] == 0
    assert m[("tickvault_process_restarts_total", (("name", "model"),))] == 5
    assert m[("tickvault_valkey_memory_bytes", ())] > 0
    assert m[("tickvault_stream_memory_bytes", sym)] > 0
    assert m[("tickvault_store_up", ())] == 1


def test_metrics_of_an_empty_store_without_up_have_no_symbol_or_process_samples(
    vault: Vault, tmp_path: Path
) -> None:
    with TestClient(create_app(vault, data_dir=tmp_path)) as c:
        m = _samples(c.get("/metrics").text)
    assert not any(name == "tickvault_trades_stored_total" for name, _ in m)
    assert not any(name == "tickvault_process_up" for name, _ in m)
    assert m[("tickvault_store_up", ())] == 1


def test_metrics_with_a_token_refuse_a_scrape_without_it(store) -> None:
    vault, data_dir = store
    with TestClient(create_app(vault, token=TOKEN, data_dir=data_dir)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", params={"token": "wrong"}).status_code == 401
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "tickvault_trades_stored_total" in ok.text
