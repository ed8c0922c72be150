"""First models for a store that has none: what ``tickvault up`` runs (``tickvault ml
first-models``, a process of its own) so a new user sees signals soon after starting.

For each symbol without a promoted model of a kind, train it on the stored sessions
before a date and promote it, the **fast** models of every symbol first (intraday
features only, on the last ``FAST_SESSIONS`` of those sessions: cheap, and what the
model worker needs to start), then the **full** ones (every feature, on all of them).
The history features of a session need earlier sessions (``docs/features.md``, section
5: the previous one, five of the previous 20 and 30), so the full model is trained on
every session given; the fast one does not read them.

The sessions themselves come from ``live.seed`` (``up`` seeds simulated ones first,
with the simulator feed).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence

from tickvault.engine.training import metadata, train
from tickvault.errors import QueryError
from tickvault.models.registry import FAST, FULL, Registry
from tickvault.vault import Vault
from tickvault.venue.b3 import previous_sessions

FAST_SESSIONS = 2
"""Sessions the first fast model is trained on (the latest of those given)."""
KINDS = (FAST, FULL)


def missing_kinds(registry: Registry, symbol: str) -> list[str]:
    """The kinds (``fast``, ``full``) with no model promoted for ``symbol`` (any regime
    key of that kind counts)."""
    keys = [k for k, chain in registry.promotions(symbol).items() if chain]
    has_fast = any(k.endswith(f"/{FAST}") for k in keys)
    has_full = any(not k.endswith(f"/{FAST}") for k in keys)
    return [k for k, has in ((FAST, has_fast), (FULL, has_full)) if not has]


def has_model(registry: Registry, symbol: str) -> bool:
    """Whether some model (fast or full) is promoted for ``symbol``: the model worker
    can start."""
    return len(missing_kinds(registry, symbol)) < len(KINDS)


def train_first_models(
    vault: Vault,
    symbols: Sequence[str],
    *,
    before: dt.date,
    sessions: int,
    say: Callable[[str], None],
    registry: Registry | None = None,
    stop: threading.Event | None = None,
) -> dict[str, dict[str, str]]:
    """Train and promote the missing first models of ``symbols`` (module docstring) on
    the ``sessions`` B3 sessions before ``before``; symbol -> kind -> version promoted.
    ``QueryError`` when the sessions hold nothing to train on."""
    reg = registry or Registry.of_data_dir(vault.settings.data_dir)
    todo = {s: missing_kinds(reg, s) for s in symbols}
    done: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        for symbol in symbols:
            if kind not in todo[symbol] or (stop is not None and stop.is_set()):
                continue
            days = previous_sessions(symbol, before, sessions)
            if kind == FAST:
                days = days[-FAST_SESSIONS:]
            if len(days) < 2:
                raise QueryError(f"first {kind} model of {symbol}: needs at least 2 sessions "
                                 f"before {before}, got {len(days)}")  # fmt: skip
            start, end = days[0], days[-1] + dt.timedelta(days=1)
            say(f"{symbol}: training a first {kind} model on {len(days)} sessions "
                f"({days[0]} to {days[-1]})")  # fmt: skip
            result = train(vault, symbol, start.isoformat(), end.isoformat(),
                           folds=min(2, len(days) - 1), features=kind)  # fmt: skip
            version = reg.save(result.symbol, result.model, metadata(result))
            reg.promote(version)
            done.setdefault(symbol, {})[kind] = version
            auc = result.evaluation.overall.get("model", {}).get("auc")
            shown = f", out-of-sample AUC {auc:.3f}" if isinstance(auc, float) else ""
            say(f"{symbol}: promoted the first {kind} model {version} "
                f"({result.dataset.y.size:,} rows{shown})")  # fmt: skip
    return done


__all__ = ["FAST_SESSIONS", "has_model", "missing_kinds", "train_first_models"]
