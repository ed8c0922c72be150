"""The model registry: versions on disk, one promoted version per symbol (and regime).

Layout under ``<data_dir>/models`` (the directory is the whole truth; nothing is
kept in Valkey)::

    models/<SYMBOL>/<version>/model.pkl       the fitted estimator (pickle)
    models/<SYMBOL>/<version>/meta.json       what it is (below)
    models/<SYMBOL>/promoted.json             {"<regime>": [oldest, ..., current]}

- A **version id** is the first 16 hex digits of the SHA-256 of ``model.pkl``: the
  same artifact is the same version; ``meta.json`` holds the full hash and
  ``load`` checks it, so a changed or truncated file is refused.
- ``meta.json``: symbol, version, sha256, created (ns UTC), estimator, the
  features (name, version, kind, from ``FeatureEngine.describe()``, in column
  order), the training window, horizon, dead zone, every, costs, the metrics
  (overall and per fold, model and baselines) and the library versions.
- **Promotion** is per symbol and key; the key is the regime (``"all"`` by default,
  or a label of ``features.regime``) for a full model, ``<regime>/fast`` for a fast
  one (meta ``feature_set``: ``"full"``, every feature, the default; ``"fast"``, the
  intraday set only: ``tickvault ml train --features fast``). ``promote`` appends to
  the key's list, ``rollback`` drops its last entry (the previous one becomes current
  again). Exactly one version is current per (symbol, key).
- ``load(version, features)`` refuses a model whose feature names or versions
  differ from the running engine's, naming each difference (for a fast model, from
  the engine's intraday features: ``kind`` ``"intraday"``).

Pickles run code when loaded: load only artifacts this registry wrote.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tickvault.errors import ModelError

ARTIFACT = "model.pkl"
META = "meta.json"
PROMOTED = "promoted.json"
ALL_REGIMES = "all"
VERSION_LEN = 16
FAST: Final = "fast"
FULL: Final = "full"
FEATURE_SETS = (FAST, FULL)


def promotion_key(regime: str, feature_set: str = FULL) -> str:
    """The promotion key of a model: ``<regime>`` (full) or ``<regime>/fast`` (fast)."""
    if feature_set not in FEATURE_SETS:
        raise ModelError(f"feature set must be 'fast' or 'full', got {feature_set!r}")
    if not regime or "/" in regime:
        raise ModelError(f"regime {regime!r}: a regime key is a non-empty name without '/'")
    return regime if feature_set == FULL else f"{regime}/{FAST}"


def feature_set_of(meta: Mapping[str, Any]) -> str:
    """``"fast"`` or ``"full"`` (models without the field are full)."""
    return str(meta.get("feature_set", FULL))


def feature_signature(features: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """The part of ``describe()`` a model depends on: name, version, kind, in order."""
    return [
        {"name": str(f["name"]), "version": f.get("version"), "kind": f.get("kind")}
        for f in features
    ]


def feature_differences(
    model: Sequence[Mapping[str, object]], engine: Sequence[Mapping[str, object]]
) -> list[str]:
    """What differs between the model's features and the engine's, one line each."""
    mv = {str(f["name"]): f.get("version") for f in model}
    ev = {str(f["name"]): f.get("version") for f in engine}
    out = [f"{n} (the engine does not compute it)" for n in mv if n not in ev]
    out += [f"{n} (computed by the engine, not in the model)" for n in ev if n not in mv]
    out += [
        f"{n} (model version {mv[n]}, engine version {ev[n]})"
        for n in mv
        if n in ev and mv[n] != ev[n]
    ]
    if not out and list(mv) != list(ev):
        out.append("the feature order differs: " + ", ".join(mv) + " vs " + ", ".join(ev))
    return out


class Registry:
    """The model versions under ``root`` (``<data_dir>/models``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def of_data_dir(cls, data_dir: Path) -> Registry:
        return cls(Path(data_dir) / "models")

    # ------------------------------------------------------------------ writing
    def save(self, symbol: str, model: Any, meta: Mapping[str, Any]) -> str:
        """Store ``model`` (pickled) with ``meta``; returns the version id."""
        symbol = symbol.upper()
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.sha256(blob).hexdigest()
        version = digest[:VERSION_LEN]
        target = self.root / symbol / version
        full = {**meta, "symbol": symbol, "version": version, "sha256": digest,
                "created_ns": time.time_ns(), "artifact": ARTIFACT}  # fmt: skip
        if target.exists():
            return version  # the same artifact is already this version
        try:
            (self.root / symbol).mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root / symbol, prefix=".new-"))
            (tmp / ARTIFACT).write_bytes(blob)
            (tmp / META).write_text(json.dumps(full, indent=1, default=_json_default))
            tmp.rename(target)
        except OSError as exc:
            raise ModelError(f"cannot write model version {version} under {target}: {exc}") from exc
        return version

    # ------------------------------------------------------------------ reading
    def versions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """The metadata of every version (of ``symbol``), oldest first."""
        pattern = f"{symbol.upper()}/*/{META}" if symbol else f"*/*/{META}"
        out = []
        for p in self.root.glob(pattern):
            if p.parent.name.startswith("."):
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue  # a damaged entry is reported by show/load, not by list
        return sorted(out, key=lambda m: (m.get("symbol", ""), m.get("created_ns", 0)))

    def _dir(self, version: str) -> Path:
        ok = re.fullmatch(f"[0-9a-f]{{{VERSION_LEN}}}", version or "") is not None
        hits = [p for p in self.root.glob(f"*/{version}") if p.is_dir()] if ok else []
        if not hits:
            known = ", ".join(m["version"] for m in self.versions()[-5:]) or "none"
            raise ModelError(
                f"unknown model version {version!r} under {self.root} (a version is "
                f"{VERSION_LEN} hex digits; latest: {known}); tickvault ml list shows them"
            )
        return hits[0]

    def show(self, version: str) -> dict[str, Any]:
        d = self._dir(version)
        try:
            meta: dict[str, Any] = json.loads((d / META).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"model version {version}: {d / META} cannot be read: {exc}") from None
        return meta

    def load(
        self, version: str, features: Sequence[Mapping[str, object]] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The fitted model and its metadata. With ``features`` (the running engine's
        ``describe()``), refuses a model trained on other features, naming them."""
        meta = self.show(version)
        if features is not None:
            if feature_set_of(meta) == FAST:  # a fast model: the intraday set only
                features = [f for f in features if f.get("kind", "intraday") == "intraday"]
            diff = feature_differences(meta.get("features", []), feature_signature(features))
            if diff:
                raise ModelError(
                    f"model version {version} was trained on other features than the engine "
                    f"computes: {'; '.join(diff)}; retrain it (tickvault ml train) or run "
                    "the engine with the model's features"
                )
        path = self._dir(version) / ARTIFACT
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"model version {version}: cannot read {path}: {exc}") from None
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            raise ModelError(
                f"model version {version}: {path} does not match its recorded SHA-256 (changed "
                "or damaged); retrain it"
            )
        try:
            model = pickle.loads(blob)
        except Exception as exc:  # any unpickling failure is a model that does not load
            raise ModelError(
                f"model version {version}: {path} does not load ({type(exc).__name__}: {exc}); "
                "check that the ml extra is installed (pip install 'tickvault[ml]') or retrain it"
            ) from None
        return model, meta

    # ------------------------------------------------------------------ promotion
    def _promoted_path(self, symbol: str) -> Path:
        return self.root / symbol.upper() / PROMOTED

    def promotions(self, symbol: str) -> dict[str, list[str]]:
        p = self._promoted_path(symbol)
        if not p.exists():
            return {}
        try:
            data: dict[str, list[str]] = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{p} cannot be read: {exc}; fix or delete it") from None
        return data

    def promoted(
        self, symbol: str, regime: str = ALL_REGIMES, feature_set: str = FULL
    ) -> str | None:
        chain = self.promotions(symbol).get(promotion_key(regime, feature_set), [])
        return chain[-1] if chain else None

    def current(self, symbol: str) -> set[str]:
        """Every version promoted now under some key of ``symbol``."""
        return {chain[-1] for chain in self.promotions(symbol).values() if chain}

    def _write_promotions(self, symbol: str, data: dict[str, list[str]]) -> None:
        p = self._promoted_path(symbol)
        tmp = p.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(p)
        except OSError as exc:
            raise ModelError(f"cannot write {p}: {exc}") from exc

    def promote(self, version: str, regime: str = ALL_REGIMES) -> str:
        """Make ``version`` the current one of its symbol (and regime; a fast model under
        ``<regime>/fast``); returns the symbol."""
        meta = self.show(version)
        symbol = str(meta["symbol"])
        key = promotion_key(regime, feature_set_of(meta))
        data = self.promotions(symbol)
        chain = data.setdefault(key, [])
        if not chain or chain[-1] != version:
            chain.append(version)
        self._write_promotions(symbol, data)
        return symbol

    def rollback(
        self, symbol: str, regime: str = ALL_REGIMES, feature_set: str = FULL
    ) -> str | None:
        """Drop the current promotion; returns the version current again (or None)."""
        data = self.promotions(symbol)
        key = promotion_key(regime, feature_set)
        chain = data.get(key, [])
        if not chain:
            raise ModelError(
                f"no promoted {feature_set} model for {symbol.upper()} (regime {regime}): "
                "nothing to roll back"
            )
        chain.pop()
        self._write_promotions(symbol, data)
        return chain[-1] if chain else None


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    if isinstance(value, float):
        return None
    return str(value)
