"""The latency-budget coordinator (pure): per symbol, which feature rows are predicted on,
with which model kind, and the policy step that may turn the prediction into a signal.

    decider = Decider("WINZ25", models, CoordinatorParams(deadline_ns=2_000_000))
    d = decider.on_row(values, T, ts_recv, now_ns=time.time_ns())   # live
    d = decider.on_row(values, T, ts_recv)                           # backtest: no clock
    d.signal                                                         # a Signal or None

The rules (docs/ml.md, "Running models live"; issue 15's design):

- **Rows in T order.** Each feature row of the symbol is one call, in non-decreasing T
  (rows with the same T are each a step). ``Signal.ts_event = t_features = T``.
- **Grid.** With ``predict_every_ns = 0`` every row is a prediction point; with
  ``P > 0`` a row is one when its T >= the next grid point ``k * P`` (UTC ns), which
  then moves to the first grid point after T. Other rows are ``off_grid``.
- **Mode.** ``deadline = ts_recv + deadline_ns`` (``ts_recv``: when the row's last trade
  was received). HISTORY when the row's history numbers are ready
  (``Predictor.ready``), a history (full) model exists and, live, ``now_ns`` plus the
  running p99 of the history model's predict cost is at most the deadline; otherwise
  FAST. Without a fast model: HISTORY when ready (late or not), else nothing
  (``no_model``); without a full model: always FAST. A backtest (``now_ns=None``) has
  no clock: HISTORY when ready, else FAST (the same rule with an infinite budget).
- **Deadline miss.** Live, a decision finished (prediction and policy step done, by
  ``clock``) after its deadline is a miss (counted; the signal is still made).
- **Skipped.** Live, a prediction point whose deadline has passed while a newer row of
  the symbol is already pending (``newer_pending``) is skipped (counted); the grid
  point stays for the newer row. Never in a backtest, never under a generous deadline.
- **Policy.** ``SignalPolicy.step(T, T, p_up, p_down, mode)``; the signal carries the
  version and horizon of the model that made the prediction.

Causal: a decision depends only on the rows before it and on the clock (live), so
decisions on a prefix of the rows are the prefix of the decisions, and without a clock
they do not depend on how rows are batched (property tests check both). ``state()`` and
``restore()`` carry what the model worker stores in its cursor, so a restarted worker
goes on exactly where the stored cursor says.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tickvault.errors import ConfigError, ValidationError
from tickvault.records.signals import Mode, Side, Signal
from tickvault.signals.policy import PolicyParams, SignalPolicy

Outcome = Literal["predicted", "off_grid", "skipped", "no_model"]
PREDICTED: Outcome = "predicted"
OFF_GRID: Outcome = "off_grid"
SKIPPED: Outcome = "skipped"
NO_MODEL: Outcome = "no_model"
_P99_EVERY = 16
"""The running p99 is recomputed after this many new cost samples."""


@dataclass(frozen=True, slots=True)
class CoordinatorParams:
    deadline_ns: int = 2_000_000
    """Budget after the row's ts_recv (setting ``signal_deadline_ms``)."""
    predict_every_ns: int = 0
    """0: every row is a prediction point; P > 0: the first row at or after each k * P."""
    cost_window: int = 256
    """Predict-cost samples per kind in the running p99."""

    def __post_init__(self) -> None:
        if self.deadline_ns < 0:
            raise ConfigError(f"coordinator: deadline_ns must be >= 0, got {self.deadline_ns}")
        if self.predict_every_ns < 0:
            raise ConfigError(
                f"coordinator: predict_every_ns must be >= 0, got {self.predict_every_ns}"
            )
        if self.cost_window < 1:
            raise ConfigError(f"coordinator: cost_window must be >= 1, got {self.cost_window}")


@dataclass(frozen=True, slots=True)
class Prediction:
    p_up: float
    p_down: float
    version: str
    """The model version that made it (goes into the signal)."""
    horizon_ns: int


class Predictor(Protocol):
    """What the Decider needs of the models (``models.manager.ModelSet`` is one)."""

    def ready(self, row: Mapping[str, Any]) -> bool:
        """The row's history numbers are ready."""
        ...

    def available(self, mode: Mode) -> bool:
        """A model of this mode's kind exists."""
        ...

    def predict(self, row: Mapping[str, Any], mode: Mode) -> Prediction | None:
        """The row's prediction with a model of the mode's kind (None: no such model)."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    T: int
    outcome: Outcome
    mode: Mode | None = None
    prediction: Prediction | None = None
    signal: Signal | None = None
    miss: bool = False
    """Live: finished after the deadline."""


@dataclass
class DeciderStats:
    rows: int = 0
    predictions: int = 0
    signals: int = 0
    fast: int = 0
    """Predictions in FAST mode."""
    history: int = 0
    """Predictions in HISTORY mode."""
    misses: int = 0
    skipped: int = 0
    off_grid: int = 0
    no_model: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass
class _Costs:
    samples: deque[int]
    p99: int = 0
    new: int = 0

    def add(self, ns: int) -> None:
        self.samples.append(ns)
        self.new += 1
        if self.new >= _P99_EVERY or len(self.samples) <= _P99_EVERY:
            ordered = sorted(self.samples)
            self.p99 = ordered[min(len(ordered) - 1, (99 * len(ordered)) // 100)]
            self.new = 0


@dataclass
class _State:
    last_t: int | None = None
    next_grid: int | None = None
    costs: dict[Mode, _Costs] = field(default_factory=dict)


class Decider:
    """The coordinator of one symbol (see the module docstring)."""

    def __init__(
        self,
        symbol: str,
        predictor: Predictor,
        params: CoordinatorParams | None = None,
        policy: PolicyParams | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.symbol = symbol
        self.predictor = predictor
        self.params = params or CoordinatorParams()
        self.policy = SignalPolicy(symbol, "-", 0, policy)
        self.clock = clock
        self.stats = DeciderStats()
        self._st = _State()
        self._st.costs = {m: _Costs(deque(maxlen=self.params.cost_window)) for m in Mode}

    # ------------------------------------------------------------------ state
    @property
    def last_t(self) -> int | None:
        """T of the last row decided (None: none yet)."""
        return self._st.last_t

    def p99_ns(self, mode: Mode) -> int:
        """The running p99 predict cost of the mode's model (0 before any sample)."""
        return self._st.costs[mode].p99

    def state(self) -> dict[str, int | str]:
        """What a restart needs (the model worker stores it in its cursor hash)."""
        st = self._st
        changed = self.policy.last_change
        return {
            "T": "" if st.last_t is None else st.last_t,
            "side": int(self.policy.side),
            "changed": "" if changed is None else changed,
            "rows": self.stats.rows,
            "grid": "" if st.next_grid is None else st.next_grid,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Go on from a ``state()`` (values as stored: str or int; empty = none)."""

        def opt(key: str) -> int | None:
            v = state.get(key, "")
            if isinstance(v, bytes):
                v = v.decode()
            return None if v in ("", None) else int(v)

        self._st.last_t = opt("T")
        self._st.next_grid = opt("grid")
        self.stats.rows = opt("rows") or 0
        self.policy.restore(Side(opt("side") or 0), opt("changed"), self._st.last_t)

    # ------------------------------------------------------------------ decisions
    def on_rows(
        self, rows: Iterable[tuple[Mapping[str, Any], int, int]], *, live: bool = False
    ) -> list[Decision]:
        """Decide on ``(values, T, ts_recv)`` rows, in order. ``live``: with the clock
        (each row's ``now_ns`` taken when its turn comes; every row but the last has a
        newer row pending)."""
        todo = list(rows)
        out = []
        last = len(todo) - 1
        for i, (values, t, ts_recv) in enumerate(todo):
            now = self.clock() if live else None
            out.append(self.on_row(values, t, ts_recv, now, newer_pending=i < last))
        return out

    def on_row(
        self,
        values: Mapping[str, Any],
        t: int,
        ts_recv: int,
        now_ns: int | None = None,
        *,
        newer_pending: bool = False,
    ) -> Decision:
        """Decide on the row of time ``t`` (its T; see the module docstring). ``now_ns``
        None: a backtest."""
        st, stats, p = self._st, self.stats, self.params
        T = t  # noqa: N806 (the design's name)
        if st.last_t is not None and st.last_t > T:
            raise ValidationError(
                f"{self.symbol}: feature rows must come in T order ({T} after {st.last_t})",
                field="T",
            )
        st.last_t = T
        stats.rows += 1
        if p.predict_every_ns and st.next_grid is not None and st.next_grid > T:
            stats.off_grid += 1
            return Decision(T, OFF_GRID)
        live = now_ns is not None
        deadline = ts_recv + p.deadline_ns
        if live and newer_pending and now_ns > deadline:  # type: ignore[operator]
            stats.skipped += 1
            return Decision(T, SKIPPED)
        if p.predict_every_ns:
            st.next_grid = (T // p.predict_every_ns + 1) * p.predict_every_ns
        mode = self._mode(values, now_ns, deadline)
        if mode is None:
            stats.no_model += 1
            return Decision(T, NO_MODEL)
        t0 = self.clock() if live else 0
        pred = self.predictor.predict(values, mode)
        if live:
            st.costs[mode].add(self.clock() - t0)
        if pred is None:
            stats.no_model += 1
            return Decision(T, NO_MODEL, mode)
        pol = self.policy
        pol.model_version, pol.horizon_ns = pred.version, pred.horizon_ns
        sig = pol.step(T, T, pred.p_up, pred.p_down, mode)
        miss = live and self.clock() > deadline
        stats.predictions += 1
        if mode == Mode.HISTORY:
            stats.history += 1
        else:
            stats.fast += 1
        if sig is not None:
            stats.signals += 1
        if miss:
            stats.misses += 1
        return Decision(T, PREDICTED, mode, pred, sig, miss)

    def _mode(self, values: Mapping[str, Any], now_ns: int | None, deadline: int) -> Mode | None:
        pr = self.predictor
        ready = pr.ready(values) and pr.available(Mode.HISTORY)
        has_fast = pr.available(Mode.FAST)
        if ready:
            if now_ns is None or not has_fast:
                return Mode.HISTORY
            if now_ns + self._st.costs[Mode.HISTORY].p99 <= deadline:
                return Mode.HISTORY
        return Mode.FAST if has_fast else None


__all__ = ["CoordinatorParams", "Decider", "DeciderStats", "Decision", "Prediction",
           "Predictor"]  # fmt: skip
