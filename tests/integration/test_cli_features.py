"""``tickvault features list|show|frame`` against a real embedded server."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.engine import FeatureEngine
from tickvault.features import HISTORY_FEATURES, FeatureSet
from tickvault.feeds.sim.generator import generate_day
from tickvault.venue import b3

SYMBOL = "WINZ25"
LAST = dt.date(2025, 11, 25)


@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    with Vault.open(data_dir=own_data_dir) as vault:
        price = None
        for i, day in enumerate([*b3.previous_sessions(SYMBOL, LAST, 6), LAST]):
            batch = generate_day(SYMBOL, day, 500, seed=i, start_price=price)
            price = float(batch.price[-1])
            vault.store_batch(SYMBOL, batch)
    return CliRunner()


def test_features_list_names_every_feature_in_a_table_and_as_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["features", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [*FeatureSet().names, *HISTORY_FEATURES]
    assert all({"version", "windows", "units", "definition"} <= set(r) for r in rows)
    table = runner.invoke(cli, ["features", "list"], terminal_width=250)
    assert table.exit_code == 0 and "volatility_regime_score" in table.output


def test_features_show_prints_the_row_of_the_engine_at_t(
    runner: CliRunner, own_data_dir: Path
) -> None:
    at = "25/11/2025 14:30"
    result = runner.invoke(cli, ["features", "show", "winz25", "--at", at, "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    with Vault.open(data_dir=own_data_dir) as vault:
        want = FeatureEngine(vault).at(SYMBOL, "2025-11-25T14:30")
    for k, v in want.items():
        if isinstance(v, float) and math.isnan(v):
            assert got[k] is None, k
        else:
            assert got[k] == v, k
    table = runner.invoke(cli, ["features", "show", SYMBOL, "--at", at], terminal_width=200)
    assert table.exit_code == 0 and "rv_30min" in table.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_features_frame_writes_the_engines_frame(
    runner: CliRunner, own_data_dir: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"f{suffix}"
    args = ["features", "frame", SYMBOL, "--start", "2025-11-24", "--end", "2025-11-26",
            "--every", "15min", "--label", "5min", "--out", str(out)]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "2 sessions" in result.stderr
    got = pd.read_csv(out, index_col=0) if suffix == ".csv" else pd.read_parquet(out)
    with Vault.open(data_dir=own_data_dir) as vault:
        want = FeatureEngine(vault).frame(SYMBOL, "2025-11-24", "2025-11-26", every="15min",
                                          labels=("5min",))  # fmt: skip
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) == 2 * 38
    pd.testing.assert_series_equal(
        got["rv_30min"].reset_index(drop=True), want["rv_30min"].reset_index(drop=True)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "WINZ25", "--at", "2025-11-22T12:00"], "outside every WINZ25 session"),
        (["show", "WINF26", "--at", "2025-11-25T12:00"], "no trades stored for WINF26"),
        (["show", "WINZ25", "--at", "yesterday-ish"], "cannot read"),
        (["frame", "WINZ25", "--start", "2025-11-24", "--end", "2025-11-25", "--out", "x.xlsx"],
         "unknown extension"),
        (["frame", "WINZ25", "--start", "2025-11-25", "--end", "2025-11-24", "--out", "x.csv"],
         "before end"),
        (["frame", "WINZ25", "--start", "2025-11-24", "--end", "2025-11-25", "--every", "-1min",
          "--out", "x.csv"], "duration must be > 0"),
    ],
)  # fmt: skip
def test_features_bad_input_is_one_line_on_stderr_and_exit_2(
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["features", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
