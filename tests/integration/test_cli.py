"""The command line against a real embedded server: output, exports and clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import sim_trades
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.storage.server import read_state


@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    return CliRunner()


def test_query_exports_csv_and_parquet(
    runner: CliRunner, own_data_dir: Path, tmp_path: Path
) -> None:
    batch = sim_trades(2000, days=1)
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", batch)
    start, end = "2025-11-03T10:00", "2025-11-03T12:00"
    result = runner.invoke(
        cli, ["query", "WINZ25", "--start", start, "--end", end, "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    with Vault.open(data_dir=own_data_dir) as vault:
        expected = vault.range("WINZ25", start, end)
    assert len(frame) == len(expected) > 0
    assert frame["trade_id"].tolist() == expected["trade_id"].tolist()
    out = tmp_path / "t.parquet"
    result = runner.invoke(cli, ["query", "WINZ25", "--format", "parquet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 2000


def test_status_and_server_commands(runner: CliRunner, own_data_dir: Path) -> None:
    assert runner.invoke(cli, ["server", "status"]).exit_code == 1
    started = runner.invoke(cli, ["server", "start"])
    assert started.exit_code == 0 and "started" in started.output
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WDOZ25", sim_trades(300, symbol="WDOZ25"))
    status = runner.invoke(cli, ["status"], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert "WDOZ25" in status.output and "300" in status.output
    text = " ".join(status.output.split())  # rich wraps lines at the terminal width
    assert "AOF on (appendfsync everysec)" in text and "noeviction" in text
    assert runner.invoke(cli, ["server", "stop"]).exit_code == 0
    assert read_state(own_data_dir.resolve()) is None


def test_bad_config_is_one_clear_line(runner: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("retension_days = 1\n")
    result = runner.invoke(cli, ["--config", str(cfg), "status"])
    assert result.exit_code == 2
    assert "unknown setting 'retension_days'" in result.output
    assert "Traceback" not in result.output


def test_unreachable_server_is_one_clear_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", "valkey://127.0.0.1:1/0")
    monkeypatch.setenv("TICKVAULT_CONNECT_TIMEOUT_S", "0.5")
    result = runner.invoke(cli, ["status"])
    assert result.exit_code == 2
    assert "cannot reach Valkey at valkey://127.0.0.1:1/0" in result.output


def test_bench_store_json_reports_both_layouts(runner: CliRunner) -> None:
    import json

    result = runner.invoke(
        cli,
        [
            "bench",
            "store",
            "--trades",
            "20000",
            "--seed-trades",
            "2000",
            "--repeats",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["trades"] == 20000
    for layout in ("tickvault", "original_design"):
        assert set(figures[layout]) == {
            "ingest_trades_per_s",
            "read_trades_per_s",
            "bytes_per_trade",
        }
        assert all(v > 0 for v in figures[layout].values())
    assert set(figures["ratio"]) == {"ingest", "read", "bytes"}


def test_query_known_at_hides_later_corrections(runner: CliRunner, own_data_dir: Path) -> None:
    import numpy as np

    from tickvault import TradeBatch, TradeFlag

    batch = sim_trades(100, days=1)
    t0 = int(batch.ts_recv.max())
    fix = batch.take(np.array([10]))
    edit = TradeBatch(
        **{
            **fix.columns(),
            "price": fix.price + 100,
            "ts_recv": np.array([t0 + 1_000_000_000]),
            "flags": np.array([TradeFlag.EDIT], dtype=np.uint8),
        }
    )
    with Vault.open(data_dir=own_data_dir) as vault:
        vault.write_trades("WINZ25", batch)
        vault.write_trades("WINZ25", edit)
    before = runner.invoke(cli, ["query", "WINZ25", "--format", "csv", "--known-at", str(t0)])
    after = runner.invoke(cli, ["query", "WINZ25", "--format", "csv"])
    assert before.exit_code == after.exit_code == 0, before.output
    old = pd.read_csv(io.StringIO(before.stdout)).set_index("trade_id")["price"]
    new = pd.read_csv(io.StringIO(after.stdout)).set_index("trade_id")["price"]
    tid = int(fix.trade_id[0])
    assert old[tid] == fix.price[0] and new[tid] == fix.price[0] + 100
    assert (old.drop(tid) == new.drop(tid)).all()
