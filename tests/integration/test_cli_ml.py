"""``tickvault ml train|list|show|promote|rollback`` against a real embedded server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.engine import FeatureEngine
from tickvault.engine.training import load_model
from tickvault.errors import ModelError
from tickvault.features import FeatureSet
from tickvault.features.intraday import MINUTE, LogReturn
from tickvault.feeds.sim.planted import planted_sessions
from tickvault.models.registry import Registry

SYMBOL = "WINZ25"
END = dt.date(2025, 11, 28)
RANGE = ["--start", "2025-11-21", "--end", "2025-11-29"]


@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    with Vault.open(data_dir=own_data_dir) as vault:
        days = planted_sessions(SYMBOL, 5, end=END, effect=1.5, trades_per_minute=8, seed=3)
        for batch in days.values():
            vault.store_batch(SYMBOL, batch, stream="historical")
    return CliRunner()


def _train(runner: CliRunner, *extra: str) -> str:
    result = runner.invoke(cli, ["ml", "train", SYMBOL, *RANGE, "--folds", "2", *extra],
                           terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    assert "overall, out of sample" in result.output and "prev_session" in result.output
    return result.output.strip().splitlines()[-1].split()[2]


def test_ml_train_reports_folds_writes_the_plot_and_registers_a_version(
    runner: CliRunner, own_data_dir: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "report.html"
    version = _train(runner, "--plot", str(plot))
    page = plot.read_text()
    assert "<svg" in page and "always_flat" in page and "fold 2" in page
    meta = json.loads(runner.invoke(cli, ["ml", "show", version]).output)
    assert meta["version"] == version and meta["horizon"] == "1min"
    assert meta["training"]["sessions"] == [
        "2025-11-24",
        "2025-11-25",
        "2025-11-26",
        "2025-11-27",
        "2025-11-28",
    ]
    assert [f["name"] for f in meta["features"]] == _engine_names(own_data_dir)
    assert meta["metrics"]["overall"]["model"]["rows"] > 0
    assert (own_data_dir / "models" / SYMBOL / version / "model.pkl").exists()


def _engine_names(data_dir: Path) -> list[str]:
    with Vault.open(data_dir=data_dir) as vault:
        return list(FeatureEngine(vault).names)


def test_ml_promote_list_and_rollback_keep_one_promoted_version(runner: CliRunner) -> None:
    a = _train(runner)
    b = _train(runner, "--estimator", "sklearn.linear_model.LogisticRegression")
    assert a != b
    assert runner.invoke(cli, ["ml", "promote", a]).exit_code == 0
    assert runner.invoke(cli, ["ml", "promote", b]).exit_code == 0
    listed = json.loads(runner.invoke(cli, ["ml", "list", "--json"]).output)
    assert {m["version"]: m["promoted"] for m in listed} == {a: False, b: True}
    out = runner.invoke(cli, ["ml", "rollback", SYMBOL])
    assert out.exit_code == 0 and f"promoted now {a}" in out.output
    table = runner.invoke(cli, ["ml", "list"], terminal_width=200)
    assert table.exit_code == 0 and a in table.output


def test_loading_a_model_for_an_engine_with_other_features_names_them(
    runner: CliRunner, own_data_dir: Path
) -> None:
    version = _train(runner)
    reg = Registry.of_data_dir(own_data_dir)
    with Vault.open(data_dir=own_data_dir) as vault:
        model, meta = load_model(reg, version, FeatureEngine(vault))
        assert hasattr(model, "predict_proba") and meta["version"] == version
        other = FeatureEngine(vault, feature_set=FeatureSet([LogReturn(MINUTE)]))
        with pytest.raises(ModelError, match=r"ret_5min \(the engine does not compute it\)"):
            load_model(reg, version, other)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "0123456789abcdef"], "unknown model version '0123456789abcdef'"),
        (["promote", "nope"], "unknown model version 'nope'"),
        (["rollback", SYMBOL], "nothing to roll back"),
        (["train", SYMBOL, "--start", "2025-11-29", "--end", "2025-11-30"], "no training rows"),
        (["train", SYMBOL, *RANGE, "--folds", "9"], "need at least 10 sessions"),
        (["train", SYMBOL, *RANGE, "--estimator", "sklearn.nothing.Here"], "cannot import"),
        (["train", SYMBOL, *RANGE, "--estimator", "collections.OrderedDict"],
         "not a scikit-learn-compatible classifier"),
    ],
)  # fmt: skip
def test_ml_bad_input_is_one_line_on_stderr_and_exit_2(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["ml", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_ml_a_corrupt_model_file_is_refused(runner: CliRunner, own_data_dir: Path) -> None:
    version = _train(runner)
    (own_data_dir / "models" / SYMBOL / version / "model.pkl").write_bytes(b"broken")
    with pytest.raises(ModelError, match="does not match its recorded SHA-256"):
        Registry.of_data_dir(own_data_dir).load(version)


def test_ml_train_no_save_stores_no_version(runner: CliRunner, own_data_dir: Path) -> None:
    result = runner.invoke(cli, ["ml", "train", SYMBOL, *RANGE, "--folds", "2", "--no-save"])
    assert result.exit_code == 0, result.stderr
    assert "model version" not in result.output
    assert Registry.of_data_dir(own_data_dir).versions() == []


def test_ml_train_fast_uses_the_intraday_set_and_promotes_under_the_fast_key(
    runner: CliRunner, own_data_dir: Path
) -> None:
    from tickvault.engine.training import load_promoted
    from tickvault.records.signals import Mode

    fast = _train(runner, "--features", "fast")
    full = _train(runner)
    meta = json.loads(runner.invoke(cli, ["ml", "show", fast]).output)
    assert meta["feature_set"] == "fast"
    with Vault.open(data_dir=own_data_dir) as vault:
        engine = FeatureEngine(vault)
        assert [f["name"] for f in meta["features"]] == list(engine.feature_set.names)
        reg = Registry.of_data_dir(own_data_dir)
        with pytest.raises(ModelError, match=r"no promoted model for WINZ25.*ml promote"):
            load_promoted(reg, SYMBOL, engine)
        out = runner.invoke(cli, ["ml", "promote", fast])
        assert out.exit_code == 0 and "key all/fast" in out.output, out.output
        assert runner.invoke(cli, ["ml", "promote", full]).exit_code == 0
        assert reg.promoted(SYMBOL, feature_set="fast") == fast and reg.promoted(SYMBOL) == full
        models = load_promoted(reg, SYMBOL, engine)  # the feature checks pass for both kinds
        assert models.versions() == {"all": full, "all/fast": fast}
        frame = engine.frame(SYMBOL, "2025-11-28 10:00", "2025-11-28 10:05", labels=())
        row = frame.iloc[-1]
        for mode, version in ((Mode.FAST, fast), (Mode.HISTORY, full)):
            pred = models.predict(row, mode)
            assert pred is not None and pred.version == version
            assert 0.0 <= pred.p_up <= 1.0 and 0.0 <= pred.p_down <= 1.0
            assert pred.p_up + pred.p_down <= 1.0 + 1e-9
        # a fast model is checked against the engine's intraday set
        other = FeatureEngine(vault, feature_set=FeatureSet([LogReturn(MINUTE)]))
        with pytest.raises(ModelError, match=r"ret_5min \(the engine does not compute it\)"):
            load_model(reg, fast, other)
    listed = json.loads(runner.invoke(cli, ["ml", "list", "--json"]).output)
    assert {m["version"]: (m["promoted"], m["feature_set"]) for m in listed} == {
        fast: (True, "fast"), full: (True, "full")}  # fmt: skip
    back = runner.invoke(cli, ["ml", "rollback", SYMBOL, "--features", "fast"])
    assert back.exit_code == 0 and "promoted now none" in back.output
