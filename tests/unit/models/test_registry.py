"""The model registry on disk: versions, promotion, rollback and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickvault.errors import ModelError
from tickvault.models.registry import Registry, feature_signature

FEATURES = [{"name": "ret_1min", "version": 1, "kind": "intraday"},
            {"name": "rv_30min", "version": 1, "kind": "history"}]  # fmt: skip


def _save(reg: Registry, model: object, symbol: str = "WINZ25") -> str:
    return reg.save(symbol, model, {"features": feature_signature(FEATURES), "horizon": "1min"})


def test_registry_version_is_the_artifact_hash_and_loads_back(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v = _save(reg, {"weights": [1, 2, 3]})
    assert _save(reg, {"weights": [1, 2, 3]}) == v  # the same artifact, the same version
    assert _save(reg, {"weights": [1, 2, 4]}) != v
    model, meta = reg.load(v, FEATURES)
    assert model == {"weights": [1, 2, 3]}
    assert meta["symbol"] == "WINZ25" and meta["sha256"].startswith(v)
    assert (tmp_path / "WINZ25" / v / "model.pkl").exists()
    assert [m["version"] for m in reg.versions("winz25")].count(v) == 1


def test_registry_promote_and_rollback_keep_exactly_one_current(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    a, b = _save(reg, "a"), _save(reg, "b")
    assert reg.promoted("WINZ25") is None
    reg.promote(a)
    reg.promote(b)
    assert reg.promoted("WINZ25") == b
    assert reg.rollback("WINZ25") == a
    assert reg.promoted("WINZ25") == a
    assert reg.rollback("WINZ25") is None
    with pytest.raises(ModelError, match="nothing to roll back"):
        reg.rollback("WINZ25")


def test_registry_unknown_version_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model version 'deadbeef'"):
        Registry(tmp_path).load("deadbeef")


def test_registry_refuses_a_changed_or_unloadable_model_file(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v = _save(reg, [1, 2])
    (tmp_path / "WINZ25" / v / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="does not match its recorded SHA-256"):
        reg.load(v)


def test_registry_names_every_feature_that_differs(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v = _save(reg, [1])
    engine = [{"name": "ret_1min", "version": 2, "kind": "intraday"},
              {"name": "vwap", "version": 1, "kind": "intraday"}]  # fmt: skip
    with pytest.raises(ModelError) as err:
        reg.load(v, engine)
    msg = str(err.value)
    assert "rv_30min (the engine does not compute it)" in msg
    assert "vwap (computed by the engine, not in the model)" in msg
    assert "ret_1min (model version 1, engine version 2)" in msg


def test_registry_refuses_a_model_file_that_does_not_unpickle(tmp_path: Path) -> None:
    import hashlib
    import json

    reg = Registry(tmp_path)
    v = _save(reg, [1, 2])
    d = tmp_path / "WINZ25" / v
    (d / "model.pkl").write_bytes(b"\x80\x05garbage")
    meta = json.loads((d / "meta.json").read_text())
    meta["sha256"] = hashlib.sha256(b"\x80\x05garbage").hexdigest()
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"does not load \(UnpicklingError"):
        reg.load(v)


def test_registry_promotes_per_regime_independently(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    a, b = _save(reg, "a"), _save(reg, "b")
    reg.promote(a)
    reg.promote(b, regime="high")
    assert reg.promoted("WINZ25") == a and reg.promoted("WINZ25", "high") == b
    reg.rollback("WINZ25", "high")
    assert reg.promoted("WINZ25") == a and reg.promoted("WINZ25", "high") is None
