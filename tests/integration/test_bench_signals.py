"""``tickvault bench signals`` at a tiny size: every figure of its table is there and
consistent (no assertion on speed); that it leaves a user's store alone is checked with
every other benchmark in test_bench.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from tests.integration.test_bench import RUNS, bench_tmp, valkey_servers_using  # noqa: F401
from tickvault.bench.tables import signals_table
from tickvault.cli.main import cli


def test_bench_signals_at_a_tiny_size_reports_every_figure_of_its_table(
    bench_tmp: Path,  # noqa: F811 (the fixture)
    own_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    result = CliRunner().invoke(cli, ["bench", "signals", *RUNS["signals"], "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["symbol"] == "WINZ25" and r["deadline_ms"] == 2.0 and "eager policy" in r["policy"]
    assert set(r["models"]) == {"full", "fast"} and r["models"]["full"] != r["models"]["fast"]
    for (layout, pace), rate in zip([(lay, p) for lay in ("separate", "inline")
                                     for p in ("realistic", "fast")], [None, 3000] * 2,
                                    strict=True):  # fmt: skip
        ph = r[pace] if layout == "separate" else r["inline"][pace]
        lat, worker = ph["latency_ms"], ph["worker"]
        assert ph["trades"] == (6000 if rate is None else rate)  # 1k + 5k, then 3k for 1 s
        assert set(lat) == {"p50", "p99", "max", "n"} and lat["n"] == ph["signals"]
        assert ph["signal_modes"]["fast"] + ph["signal_modes"]["history"] == ph["signals"]
        if lat["n"]:
            assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]  # received after published
        assert 0 < worker["rows"] <= ph["trades"]  # a row per event time
        assert worker["predictions"] + worker["skipped"] <= worker["rows"]
        assert worker["fast"] + worker["history"] == worker["predictions"]
        assert worker["misses"] <= worker["predictions"]
        assert worker["signals"] >= ph["signals"]  # (a signal's message could come late)
        stages = ph["stages_ms"]
        assert list(stages) == ["publish_to_row_computed", "row_computed_to_model_received",
                                "model_received_to_decided", "decided_to_stored",
                                "stored_to_published", "published_to_received"]  # fmt: skip
        assert all(st["n"] <= ph["signals"] for st in stages.values())
    for kind in ("full", "fast"):
        assert r["predict_us"][kind]["n"] > 0 and r["predict_us"][kind]["p50"] > 0
        st = r["predict_us"][f"{kind}_strength"]
        assert -1 <= st["p5"] <= st["p50"] <= st["p95"] <= 1 and 0 <= st["positive_share"] <= 1
    orig = r["original_design"]["request_ms"]
    assert orig["n"] == 2 and 0 < orig["p50"] <= orig["p99"]
    assert set(r["ratio"]) == {"p50", "p99"} and set(r["met"]) == {
        "realistic_p99",
        "inline_realistic_p99",
    }
    bt = r["backtest"]
    assert bt["trades"] > 0 and bt["trades_per_s"] > 0 and bt["predictions"] > 0
    assert len(r["load_average_start"]) == 3 and len(r["load_average_end"]) == 3
    assert any(s.startswith("models stopped: WINZ25") for s in r["worker_summary"])
    assert any(s.startswith("features stopped") for s in r["worker_summary"])
    # the inline worker ran too (its model part's stop line)
    assert sum(s.startswith("models stopped: WINZ25") for s in r["worker_summary"]) == 2
    console = Console(width=250, record=True)
    for shown in signals_table(r):
        console.print(shown)
    text = console.export_text()
    labels = ("tick -> signal, feature and model workers, realistic WIN pace",
              "tick -> signal, feature and model workers, fast pace",
              "tick -> signal, inline (features run --models), realistic WIN pace",
              "one-row predict, full model", "one-row predict, fast model", "its strength",
              "backtest, one simulated WIN session", "load average", "p99 <= 2 ms")  # fmt: skip
    for label in labels:
        assert label in text, label
    assert list(bench_tmp.iterdir()) == []
    assert valkey_servers_using(bench_tmp) == []
