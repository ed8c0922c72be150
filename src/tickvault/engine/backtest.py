"""``backtest``: a replay of the store through the objects that run live.

    from tickvault.engine.backtest import backtest
    r = backtest(vault, "WINZ25", "2025-12-01", "2025-12-02", model="3f2a...",
                 fast_model="9c1b...", predict_every="1s")
    r.metrics            # pnl_brl, sharpe, hit_rate, turnover, max_drawdown_brl, ...
    r.signals, r.orders, r.fills

The same code as live, in the same order (issue 15's design rules 1-4):

- **Input, as the live worker saw it.** Per session day, every stored record of the
  symbol (both streams, unresolved: corrections and later copies included), in the
  order a live system knew them (``features.known.knowledge_time``: a live record at
  its ``ts_recv``, an imported trade at ``ts_event`` + the feed latency; ties in
  (ts_event, trade_id) order), the stored book updates merged in by their
  ``ts_recv`` (after the trades of the same instant, as the feeders publish them).
  Nothing later than a record's knowledge time is used for it: a cancel counts from
  when it arrived, exactly as live.
- **Features**: ``features.stream``, the live worker's compute (rows at T = e + 1 ns,
  its skip rules, the history refresh by minute, the previous sessions' aggregates
  from ``engine.parity.previous_aggregates``, as the worker reads them), in its
  vectorised form ``replay`` (the same rows, value for value, at a cost per row).
  With ``predict_every`` > 0 only the rows at the prediction points are computed (the
  first row at or after each grid point), the rows the model layer predicts on.
- **Decisions**: ``signals.coordinator.Decider`` with ``now_ns=None`` (no wall clock:
  HISTORY when the row's history numbers are ready, else FAST), the ``SignalPolicy``
  inside it, the models loaded through ``engine.training.load_model`` (feature
  checks apply) into a ``models.manager.ModelSet``.
- **Broker**: ``execution.ordering.EventOrder`` over ``execution.paper.PaperBroker``:
  the signals of a row are queued before the trade that completed the row (the first
  trade after its T), then the trades are applied in order, so an order placed at
  P = T + ``paper_latency_ms`` fills at the first trade with ts_event > P. The broker
  sees the trades the stream took (corrections, duplicates and late trades left out).
  While nothing is pending or queued a trade can only mark the account to market, so
  those trades are not applied one by one (``_broker_day``: the same result).

Metrics (``BacktestResult.metrics``), all in BRL after costs (fees and slippage):
``pnl_brl`` (final equity: realized plus open, marked at the last trade),
``sharpe`` (mean / sample std of the per-session PnL, times sqrt(252): a Sharpe of
session returns in BRL, annualised with 252 sessions a year; NaN with fewer than 2
sessions or no variation), ``hit_rate`` (share of fills that closed contracts with a
positive PnL after the fill's fee), ``turnover`` (contracts traded), ``max_drawdown_brl``
(largest fall of the equity marked at every trade from its running peak), and the
speed of the replay (``trades_per_s``: records replayed per second of compute, the
store read excluded; ``read_s`` is the read).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickvault.engine.aggregates import AggregateStore
from tickvault.engine.features import FeatureEngine, parse_duration
from tickvault.engine.parity import day_start_ns, previous_aggregates
from tickvault.engine.training import load_model, load_promoted
from tickvault.errors import ModelError, QueryError
from tickvault.execution.ordering import EventOrder
from tickvault.execution.paper import BrokerParams, PaperBroker
from tickvault.features import FeatureSet, HistoryParams
from tickvault.features.known import DEFAULT_FEED_LATENCY_NS, knowledge_time
from tickvault.features.stream import HISTORY_NUMBERS, Row, StreamStats, replay
from tickvault.features.user import trades_frame
from tickvault.models.manager import LoadedModel, ModelSet, encode_regime, row_regime
from tickvault.models.registry import ALL_REGIMES, Registry
from tickvault.records.book import BookState
from tickvault.records.orders import Fill, Order
from tickvault.records.signals import Mode, Signal
from tickvault.records.trades import TradeBatch
from tickvault.records.validate import check_symbol
from tickvault.signals.coordinator import CoordinatorParams, Decider, Prediction
from tickvault.signals.policy import PolicyParams
from tickvault.timeutil import NS_PER_DAY, NS_PER_MS, NS_PER_S, TimeLike, to_ns, trading_day
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ, default_hours, sessions
from tickvault.venue.contracts import contract

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
ANNUALISE = 252
"""Sessions a year for the Sharpe ratio."""
_REGIME_LABELS = {-1: None, 0: "low", 1: "normal", 2: "high"}
ExtraFn = Callable[[pd.DataFrame], Any]
"""An extra feature column: the trades so far (a ``trades_frame``) -> one value per trade."""


@dataclass(frozen=True)
class BacktestResult:
    symbol: str
    start_ns: int
    end_ns: int
    signals: list[Signal]
    orders: list[Order]
    fills: list[Fill]
    metrics: dict[str, float]
    equity_t: I64
    """Times of the equity curve (ns UTC), one point per applied trade at most."""
    equity: F64
    """Equity (BRL, after costs) at ``equity_t``."""
    sessions: dict[dt.date, float] = field(default_factory=dict)
    """PnL (BRL, after costs) per session."""
    decider: dict[str, int] = field(default_factory=dict)
    """The Decider's counts (predictions, fast, history, signals...)."""
    models: dict[str, str] = field(default_factory=dict)
    """promotion key -> version used."""
    stream: dict[str, int] = field(default_factory=dict)
    """The feature stream's counts (trades taken, rows computed, skips...)."""
    signal_known: list[int] = field(default_factory=list)
    """Per signal, when its row's last trade was known (its information time K)."""


def policy_params(settings: Any) -> PolicyParams:
    """The signal policy of the settings (the model worker's)."""
    return PolicyParams(
        enter=float(settings.signal_enter),
        exit=float(settings.signal_exit),
        min_confidence=float(settings.signal_min_confidence),
        cooldown_ns=int(float(settings.signal_cooldown_s)
                        * NS_PER_S),
    )  # fmt: skip


def broker_params(settings: Any, symbol: str) -> BrokerParams:
    """The paper broker of the settings (the broker process's)."""
    c = contract(symbol)
    return BrokerParams(
        tick_size=c.tick_size,
        point_value=c.point_value,
        order_qty=int(settings.paper_order_qty),
        slippage_ticks=float(settings.paper_slippage_ticks),
        fee_per_contract=float(settings.paper_fee_per_contract),
        max_position=int(settings.paper_max_position),
        max_orders_per_minute=int(settings.paper_max_orders_per_minute),
        max_daily_loss=float(settings.paper_max_daily_loss),
    )


def load_models(
    vault: Vault,
    symbol: str,
    model: str | None,
    fast_model: str | None = None,
    *,
    engine: FeatureEngine | None = None,
    registry: Registry | None = None,
) -> ModelSet:
    """The models of a run: ``model`` (and ``fast_model``) by version, each under the
    "all" regime, or, with neither, the symbol's promoted models."""
    reg = registry or Registry.of_data_dir(vault.settings.data_dir)
    fe = engine or FeatureEngine(vault)

    def load(version: str) -> tuple[Any, Mapping[str, Any]]:
        return load_model(reg, version, fe)

    if model is None and fast_model is None:
        return load_promoted(reg, symbol, fe)
    loaded = []
    for version in (model, fast_model):
        if version is not None:
            est, meta = load(version)
            loaded.append(LoadedModel.of(est, meta, ALL_REGIMES))
    if fast_model is not None and loaded[-1].kind != "fast":
        raise ModelError(
            f"--fast-model {fast_model} is a {loaded[-1].kind} model; train one on the "
            "intraday set (tickvault ml train ... --features fast)"
        )
    return ModelSet(loaded)


def day_records(vault: Vault, symbol: str, day: dt.date,
                feed_latency_ns: int) -> tuple[TradeBatch, I64]:  # fmt: skip
    """A day's raw records in the order a live system knew them, and those times."""
    raw = AggregateStore(vault).records(symbol, day)
    known = knowledge_time(raw, feed_latency_ns)
    order = np.lexsort((raw.trade_id, raw.ts_event, known))
    return raw.take(order), known[order]


ROW_EXACT_MODULES = ("lightgbm.",)
"""Estimators whose batch ``predict_proba`` gives each row bit for bit what a one-row
call gives (each row is predicted on its own: tree sums). A linear model's batch is a
matrix product whose rounding can differ from a one-row product in the last bits, so
those are predicted one row at a time, as the live model worker does."""


def row_exact(estimator: Any) -> bool:
    return type(estimator).__module__.startswith(ROW_EXACT_MODULES)


class BatchPredictor:
    """A ``signals.coordinator.Predictor`` that answers from predictions made in batch.

    ``prepare(rows)`` predicts every row with the model the Decider will ask for when
    it has no clock (HISTORY when the history numbers are ready and a full model
    exists, else FAST; the row's regime picks the model, as ``ModelSet.predict``),
    one ``predict_proba`` per model whose batches are exact per row (``row_exact``);
    ``predict(row, mode)`` then returns the one made for that row object, or predicts
    on the spot (another mode, or a model predicted one row at a time)."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self._made: dict[int, tuple[Mode, Prediction | None]] = {}

    def ready(self, row: Mapping[str, Any]) -> bool:
        return self.models.ready(row)

    def available(self, mode: Mode) -> bool:
        return self.models.available(mode)

    def predict(self, row: Mapping[str, Any], mode: Mode) -> Prediction | None:
        made = self._made.pop(id(row), None)
        if made is not None and made[0] == mode:
            return made[1]
        return self.models.predict(row, mode)

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._made.clear()
        ms = self.models
        full, fast = ms.available(Mode.HISTORY), ms.available(Mode.FAST)
        groups: dict[int, tuple[LoadedModel, Mode, list[int]]] = {}
        for i, row in enumerate(rows):
            mode = Mode.HISTORY if full and ms.ready(row) else Mode.FAST if fast else None
            if mode is None:
                continue
            m = ms.pick(row_regime(row), mode)
            if m is None:
                self._made[id(row)] = (mode, None)
                continue
            groups.setdefault(id(m), (m, mode, []))[2].append(i)
        for m, mode, idx in groups.values():
            if not row_exact(m.estimator):
                continue  # predicted one row at a time, as live
            x = np.array([[encode_regime(rows[i][n]) if n == "volatility_regime" else
                           float(rows[i][n]) for n in m.feature_names] for i in idx],
                         dtype=np.float64)  # fmt: skip
            proba = np.asarray(m.estimator.predict_proba(x), dtype=np.float64)
            for k, i in enumerate(idx):
                up = float(proba[k, m._up]) if m._up is not None else 0.0
                down = float(proba[k, m._down]) if m._down is not None else 0.0
                p = Prediction(min(max(up, 0.0), 1.0), min(max(down, 0.0), 1.0), m.version,
                               m.horizon_ns)  # fmt: skip
                self._made[id(rows[i])] = (mode, p)


def _extra_columns(
    extra: Mapping[str, ExtraFn] | None, trades: TradeBatch, last: I64
) -> dict[str, list[float]]:
    """Each extra column at the rows' last trades (``backtest``'s ``extra``)."""
    out: dict[str, list[float]] = {}
    if not extra:
        return out
    frame = trades_frame(trades.ts_event, trades.price, trades.qty, trades.trade_type)
    for name, fn in extra.items():
        col = extra_column(name, fn, frame)
        out[name] = np.where(last >= 0, col[np.maximum(last, 0)], np.nan).tolist()
    return out


def extra_column(name: str, fn: ExtraFn, frame: pd.DataFrame) -> F64:
    """``fn(frame)`` as one float per trade; a clear error when it is not that."""
    try:
        col = np.asarray(fn(frame), dtype=np.float64).reshape(-1)
    except Exception as exc:
        raise QueryError(f"extra feature {name!r} failed: {type(exc).__name__}: {exc}") from exc
    if col.size != len(frame):
        raise QueryError(
            f"extra feature {name!r} returned {col.size} values for {len(frame)} trades: "
            "return one value per trade"
        )
    return col


def _row_dict(names: Sequence[str], row: Row) -> dict[str, Any]:
    values: dict[str, Any] = dict(zip(names, row[3], strict=True))
    values.update(zip(HISTORY_NUMBERS, row[4], strict=True))
    values["volatility_regime"] = _REGIME_LABELS.get(row[5])
    return values


def backtest(
    vault: Vault,
    symbol: str,
    start: TimeLike,
    end: TimeLike,
    *,
    model: str | None = None,
    fast_model: str | None = None,
    models: ModelSet | None = None,
    predict_every: Any = None,
    feature_set: FeatureSet | None = None,
    params: HistoryParams | None = None,
    policy: PolicyParams | None = None,
    broker: BrokerParams | None = None,
    latency_ns: int | None = None,
    feed_latency_ns: int = DEFAULT_FEED_LATENCY_NS,
    book: bool = True,
    extra: Mapping[str, ExtraFn] | None = None,
    batch_predict: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay [start, end) of ``symbol`` (module docstring). Models: ``models`` (a
    ``ModelSet``), else ``model`` / ``fast_model`` versions, else the promoted ones.
    Settings (policy, broker, latency, ``predict_every_ms``) default to the vault's.
    ``extra``: more feature columns, name -> ``fn(trades)``: ``trades`` is a day of the
    trades the stream took (``features.user.trades_frame``), the function returns one
    value per trade, and a row takes the value at its last trade. It sees the whole
    day, so it must be causal (value i from trades up to i only, as a rolling
    indicator): ``engine.lookahead`` checks that. ``batch_predict``: predict each day's
    rows with one ``predict_proba`` call per model (``BatchPredictor``) instead of one
    per row, for the models whose batches give each row's numbers bit for bit
    (``row_exact``: LightGBM); others are predicted one row at a time."""
    symbol = check_symbol(symbol)
    default_hours(symbol)
    st = vault.settings
    tz = st.tz
    start_ns, end_ns = to_ns(start, tz, name="start"), to_ns(end, tz, name="end")
    if start_ns >= end_ns:
        raise QueryError(f"--start {start} must be before --end {end}")
    fs = feature_set or FeatureSet()
    hp = params or HistoryParams()
    if models is None:
        models = load_models(vault, symbol, model, fast_model,
                             engine=FeatureEngine(vault, fs, hp))  # fmt: skip
    if predict_every is None:
        every_ns = int(st.predict_every_ms) * NS_PER_MS
    elif predict_every in (0, "0"):
        every_ns = 0
    else:
        every_ns = parse_duration(predict_every, "--predict-every")
    if latency_ns is None:
        latency_ns = int(float(st.paper_latency_ms) * NS_PER_MS)
    deadline_ns = int(float(st.signal_deadline_ms) * NS_PER_MS)
    batched = BatchPredictor(models)
    decider = Decider(symbol, batched if batch_predict else models,
                      CoordinatorParams(deadline_ns=deadline_ns, predict_every_ns=every_ns),
                      policy or policy_params(st))  # fmt: skip
    bp = broker or broker_params(st, symbol)
    pb = PaperBroker(symbol, bp)
    eo = EventOrder(pb, latency_ns)

    def previous(sym: str, day: dt.date) -> Any:
        return previous_aggregates(vault, sym, day, hp)

    names = fs.names
    d0 = dt.datetime.fromtimestamp(start_ns / NS_PER_S, B3_TZ).date()
    d1 = dt.datetime.fromtimestamp((end_ns - 1) / NS_PER_S, B3_TZ).date()
    days = sessions(symbol, d0, d1)
    stats = StreamStats()
    book_state = BookState()
    after: tuple[int, int] = (-(2**62), -1)
    emit_from = start_ns
    signals: list[Signal] = []
    signal_known: list[int] = []
    events: list[Order | Fill] = []
    fill_at: list[tuple[int, int]] = []  # (index of the trade in its day, index in events)
    curve_t: list[I64] = []
    curve_eq: list[F64] = []
    session_pnl: dict[dt.date, float] = {}
    replayed = 0
    read_s = compute_s = 0.0
    pv = bp.point_value
    cash = last_eq = 0.0
    pos = 0
    for di, day in enumerate(days):
        t0 = time.perf_counter()
        batch, known = day_records(vault, symbol, day, feed_latency_ns)
        keep = np.flatnonzero(batch.ts_event < end_ns)
        batch, known = batch.take(keep), known[keep]
        msgs = _book_messages(vault, symbol, batch, known) if book and len(batch) else []
        t1 = time.perf_counter()
        read_s += t1 - t0
        if not len(batch):
            continue
        replayed += len(batch)
        rep = replay(symbol, batch, previous, feature_set=fs, params=hp, every_ns=every_ns,
                     emit_from=emit_from, after=after, book=msgs, book_state=book_state,
                     stats=stats)  # fmt: skip
        after, emit_from = rep.last, rep.emit_from
        # decisions, in T order; a row's signal is queued before the trade after its T
        queue: list[tuple[int, Signal]] = []
        took = np.flatnonzero(rep.taken)
        row_t = np.array([r[0] for r in rep.rows], dtype=np.int64)
        last = np.searchsorted(batch.ts_event[took], row_t, side="left") - 1  # row's last trade
        row_known = known[took][last].tolist()
        cols = _extra_columns(extra, batch.take(took), last)
        n_rows = int(np.searchsorted(row_t, end_ns, side="left"))
        all_values = []
        for r in range(n_rows):
            values = _row_dict(names, rep.rows[r])
            for name, col in cols.items():
                values[name] = col[r]
            all_values.append(values)
        if batch_predict:
            batched.prepare(all_values)
        for r, (row, j) in enumerate(zip(rep.rows[:n_rows], rep.at, strict=False)):
            d = decider.on_row(all_values[r], row[0], row[2], None)
            if d.signal is not None:
                signals.append(d.signal)
                signal_known.append(int(row_known[r]))
                queue.append((j, d.signal))
        # the broker: the taken trades in [start, end), the signals before their trade
        taken = np.flatnonzero(rep.taken & (batch.ts_event >= start_ns))
        day_fills = len(fill_at)
        _broker_day(eo, batch, taken, queue, trading_day(int(batch.ts_event[0]), tz), events,
                    fill_at)  # fmt: skip
        # the equity curve, marked at every taken trade of the day (vectorised): cash
        # plus position at the trade's price equals realized plus open PnL
        if taken.size:
            dq = np.zeros(len(batch), dtype=np.int64)
            dc = np.zeros(len(batch), dtype=np.float64)
            for j, i in fill_at[day_fills:]:
                f = events[i]
                assert isinstance(f, Fill)
                dq[j] += f.qty
                dc[j] -= f.qty * f.price * pv + f.fee
            p_after = pos + np.cumsum(dq[taken])
            c_after = cash + np.cumsum(dc[taken])
            equity_day = c_after + p_after * batch.price[taken] * pv
            session_pnl[day] = float(equity_day[-1]) - last_eq
            last_eq = float(equity_day[-1])
            cash, pos = float(c_after[-1]), int(p_after[-1])
            curve_t.append(batch.ts_event[taken])
            curve_eq.append(equity_day)
        compute_s += time.perf_counter() - t1
        if progress is not None:
            progress(di + 1, len(days))
    orders = [e for e in events if isinstance(e, Order)]
    fills = [e for e in events if isinstance(e, Fill)]
    eq_t = np.concatenate(curve_t) if curve_t else np.empty(0, np.int64)
    eq = np.concatenate(curve_eq) if curve_eq else np.empty(0)
    metrics = _metrics(eq, session_pnl, fills, pv, replayed, read_s, compute_s)
    metrics["pnl_brl"] = pb.equity()
    return BacktestResult(symbol, start_ns, end_ns, signals, orders, fills, metrics, eq_t, eq,
                          session_pnl, decider.stats.as_dict(), models.versions(),
                          asdict(stats), signal_known)  # fmt: skip


def _broker_day(
    eo: EventOrder,
    batch: TradeBatch,
    taken: I64,
    queue: Sequence[tuple[int, Signal]],
    day: int,
    events: list[Order | Fill],
    fill_at: list[tuple[int, int]],
) -> None:
    """Apply the day's taken trades (indices ``taken``) and queued signals (each before
    its trade) to the broker, in order. Stretches where a trade can only mark the
    account to market (nothing pending or queued) are not applied one by one, with the
    same result: flat, a trade changes nothing; holding a position, only the trade
    that trips the kill switch (found by the broker's own day-PnL formula, vectorised)
    and the stretch's last trade (the mark) are applied."""
    pb = eo.broker
    ts, tid, px = batch.ts_event, batch.trade_id, batch.price
    p = pb.params
    qi, k, nq, nt = 0, 0, len(queue), int(taken.size)

    def apply(j: int) -> None:
        for ev in eo.trade(int(ts[j]), int(tid[j]), float(px[j]), day):
            if isinstance(ev, Fill):
                fill_at.append((j, len(events)))
            events.append(ev)

    while k < nt:
        if not pb.pending and not eo.queued:
            stop = int(np.searchsorted(taken, queue[qi][0])) if qi < nq else nt
            if stop > k and pb.position == 0:
                k = stop  # flat: nothing to mark
                continue
            if stop > k + 1:
                apply(int(taken[k]))  # the day's start, a mark, maybe the kill switch
                k += 1
                if pb.pending:
                    continue
                last = stop - 1
                if pb.killed_day != day:  # the first trade at which it trips, if any
                    prices = px[taken[k:stop]]
                    open_pnl = (prices - pb.avg_price) * pb.position * p.point_value
                    day_pnl = (pb.realized + open_pnl) - pb._day_start_equity
                    hit = np.flatnonzero(day_pnl <= -p.max_daily_loss)
                    if hit.size:
                        last = k + int(hit[0])
                apply(int(taken[last]))
                k = last + 1
                continue
            if k >= nt:
                break
        j = int(taken[k])
        while qi < nq and queue[qi][0] <= j:
            eo.signal(queue[qi][1])
            qi += 1
        apply(j)
        k += 1
    for _, sig in queue[qi:]:  # after the day's last trade: applied at the next one
        eo.signal(sig)


def _book_messages(
    vault: Vault, symbol: str, batch: TradeBatch, known: I64
) -> list[tuple[int, npt.NDArray[np.void]]]:
    """The day's stored book updates as messages between the trades: each goes after
    the trades known at or before its ``ts_recv`` (records with no trade between them
    form one message)."""
    lo = day_start_ns(int(batch.ts_event[0]), vault)
    recs = vault.book_updates(symbol, lo, lo + NS_PER_DAY)
    if not len(recs):
        return []
    recv = np.asarray(recs["ts_recv"], dtype=np.int64)
    order = np.argsort(recv, kind="stable")
    recs, recv = recs[order], recv[order]
    cut = np.searchsorted(known, recv, side="right")
    starts = np.flatnonzero(np.concatenate([[True], cut[1:] != cut[:-1]]))
    ends = [*starts[1:].tolist(), len(recs)]
    return [(int(cut[a]), recs[a:b]) for a, b in zip(starts.tolist(), ends, strict=True)]


def _metrics(
    equity: F64,
    session_pnl: Mapping[dt.date, float],
    fills: Sequence[Fill],
    pv: float,
    replayed: int,
    read_s: float,
    compute_s: float,
) -> dict[str, float]:
    pnl = np.array(list(session_pnl.values()), dtype=np.float64)
    sharpe = math.nan
    if pnl.size >= 2 and float(pnl.std(ddof=1)) > 0:
        sharpe = float(pnl.mean() / pnl.std(ddof=1) * math.sqrt(ANNUALISE))
    # hit rate: fills that closed contracts, with their PnL after the fee
    pos, avg = 0, 0.0
    wins = closes = 0
    for f in fills:
        if pos and (pos > 0) != (f.qty > 0):
            closed = min(abs(f.qty), abs(pos))
            gain = (f.price - avg) * closed * (1 if pos > 0 else -1) * pv - f.fee
            closes += 1
            wins += gain > 0
            new = pos + f.qty
            if new == 0:
                avg = 0.0
            elif (new > 0) != (pos > 0):
                avg = f.price
            pos = new
        else:
            new = pos + f.qty
            avg = (avg * abs(pos) + f.price * abs(f.qty)) / abs(new)
            pos = new
    mdd = 0.0
    if equity.size:
        peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:]
        mdd = float((peak - equity).max())
    return {
        "pnl_brl": math.nan,
        "sharpe": sharpe,
        "hit_rate": wins / closes if closes else math.nan,
        "turnover": float(sum(abs(f.qty) for f in fills)),
        "fees_brl": float(sum(f.fee for f in fills)),
        "max_drawdown_brl": mdd,
        "fills": float(len(fills)),
        "sessions": float(len(session_pnl)),
        "trades": float(replayed),
        "read_s": read_s,
        "compute_s": compute_s,
        "trades_per_s": replayed / compute_s if compute_s > 0 else math.nan,
    }


__all__ = ["ANNUALISE", "BacktestResult", "backtest", "broker_params", "load_models",
           "policy_params"]  # fmt: skip
