"""``FeatureStream``: the live feature worker's per-symbol compute, pure (no I/O).

Trades and book updates of one symbol go in, in arrival order; feature rows come
out. The live worker (``live.features.FeatureWorker``) feeds it what it receives
and stores and publishes the rows; a backtest (``engine.backtest``) feeds it the
stored records in the order the worker saw them. Both get the same rows, because
this is the one place the rows are computed:

- a book update changes the book (``records.book.BookState``) and the intraday
  state's book top (best price and the quantity at it, per side);
- a trade updates the intraday set (``IntradayState.add``, O(1) amortised) and the
  current session's aggregates (``SessionAggregatesBuilder``); corrections
  (EDIT/CANCEL), trades already handled (same or older (ts_event, trade_id): a
  replay, a second publisher) and trades older than the last one (a late trade:
  the state moves forward only) are skipped and counted;
- after the last trade of an event time e it emits the row of T = e + 1 ns (every
  trade with ts_event < T). The row of the last event time seen stays open (more
  trades of that nanosecond may come) until a later trade arrives or the caller
  ``flush``-es it (the worker does at the end of each cycle; a later trade of the
  same nanosecond then gives a second row for the same T, which supersedes);
- the history features are refreshed at T when T enters a new minute of the
  session or ``step_ns`` of event time has passed since the last refresh, not per
  trade; between refreshes a row carries the values of the last one (they are
  defined on the session's minute grid, so a refresh per minute makes them exact).
  Outside a session they are NaN. The previous sessions' aggregates come from the
  caller's ``previous(symbol, day)`` (the worker reads the aggregate store).

Rows only at chosen points: with ``every_ns = P > 0`` the stream emits only the
first row whose T is at or after the next grid point k * P (UTC ns), then the next
grid point is the first one after that T: the prediction points of the model layer
(design rule 1), so a backtest that predicts once per second computes about one row
per second instead of one per event time. A row with T < ``emit_from`` is neither
computed nor emitted. The values of the rows it does emit do not depend on which
rows were skipped (the intraday state is updated per trade; the history values
depend on T's minute only), so they equal the rows of ``every_ns = 0`` at those T.

The same rows in one vectorised pass: ``replay`` takes a whole day of records in
arrival order (and the book messages between them) and gives the rows the stream
would emit for them, equal value for value (a property test checks it), at a cost
per row instead of per trade: the intraday values by the batch path
(``features.batch``: the same sums in the same order as the live state), the history
features once per minute of the rows from prefix aggregates. A backtest uses it.

A row is a tuple ``(T, last_trade_id, ts_recv, intraday values, history numbers,
regime code)``: ``ts_recv`` is the receive time of the row's last trade; the
history numbers are ``HISTORY_NUMBERS`` in order and the regime code one of
``REGIME_CODES``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.errors import QueryError
from tickvault.features.aggregates import MINUTE_NS, SessionAggregates
from tickvault.features.aggregates_live import SessionAggregatesBuilder
from tickvault.features.batch import BookTops, _book_at, _Columns, _evaluate
from tickvault.features.featureset import FeatureSet
from tickvault.features.history import HISTORY_FEATURES, HistoryParams, history_features
from tickvault.records.book import ASK, BID, BookState
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.venue.b3 import B3_TZ, Session, session_of

REGIME_CODES: dict[str | None, int] = {None: -1, "low": 0, "normal": 1, "high": 2}
"""The int8 code of each ``volatility_regime`` label in a row (-1: none, the score is NaN)."""
HISTORY_NUMBERS = tuple(n for n in HISTORY_FEATURES if n != "volatility_regime")
"""The history features that are numbers, in a row's order."""

_CORRECTION = int(TradeFlag.EDIT | TradeFlag.CANCEL)
_NAN = math.nan
_HIST_NAN = [_NAN] * len(HISTORY_NUMBERS)
_NO_REGIME = REGIME_CODES[None]
_NEVER = -(2**62)

Row = tuple[int, int, int, list[float], list[float], int]
"""(T, last_trade_id, ts_recv, intraday values, history numbers, regime code)."""
PreviousFn = Callable[[str, dt.date], Mapping[dt.date, SessionAggregates]]
"""(symbol, session date) -> the previous sessions' complete aggregates."""


@dataclass
class StreamStats:
    """Counts of what the stream handled (one object may be shared by many streams)."""

    trades: int = 0
    rows: int = 0
    book_updates: int = 0
    history_refreshes: int = 0
    skipped_duplicates: int = 0
    skipped_late: int = 0
    skipped_corrections: int = 0


def book_top(book: BookState) -> tuple[float, int, float, int]:
    """(bid_px, bid_qty, ask_px, ask_qty): best price per side and the quantity at it."""
    out: list[float | int] = []
    for side, better in ((BID, max), (ASK, min)):
        offers = [o for o in book.sides[side].offers if o[1] > 0 and o[0] > 0]
        if not offers:
            out += [_NAN, 0]
            continue
        best = better(o[0] for o in offers)
        out += [best, sum(o[1] for o in offers if o[0] == best)]
    return float(out[0]), int(out[1]), float(out[2]), int(out[3])


class FeatureStream:
    """The rows of one symbol from its trades and book updates (see the module docstring)."""

    def __init__(
        self,
        symbol: str,
        previous: PreviousFn,
        *,
        feature_set: FeatureSet | None = None,
        params: HistoryParams | None = None,
        step_ns: int = MINUTE_NS,
        every_ns: int = 0,
        stats: StreamStats | None = None,
    ) -> None:
        self.symbol = symbol
        self.fs = feature_set or FeatureSet()
        self.params = params or HistoryParams()
        self.step_ns = step_ns
        if every_ns < 0:
            raise QueryError(f"every_ns must be >= 0 (0: every row), got {every_ns}")
        self.every_ns = every_ns
        self.stats = stats or StreamStats()
        self._previous_fn = previous
        self.state = self.fs.new_state()
        self.book = BookState()
        self.session: Session | None = None
        self.builder: SessionAggregatesBuilder | None = None
        self.previous: Mapping[dt.date, SessionAggregates] = {}
        self.last_ts = _NEVER
        self.last_tid = -1
        self.last_recv = 0
        self.open = False
        """The row of the last event time seen is not emitted yet."""
        self.emit_from = _NEVER
        """Rows with T below this are neither computed nor emitted."""
        self.hist: list[float] = list(_HIST_NAN)
        self.regime = _NO_REGIME
        self._hist_minute = -1
        self._hist_t = _NEVER
        self._hist_day: dt.date | None = None

    # ------------------------------------------------------------------ trades
    def trades(
        self,
        ts: Sequence[int],
        tid: Sequence[int],
        price: Sequence[float],
        qty: Sequence[int],
        trade_type: Sequence[int],
        flags: Sequence[int],
        recv: Sequence[int],
        out: list[Row],
        at: list[int] | None = None,
    ) -> int:
        """Handle trades in arrival order (plain lists are fastest); append every row
        completed by them to ``out`` (and to ``at`` the index, in these sequences, of
        the trade that completed it: the first trade after the row's T). Returns the
        number of trades taken (not skipped). The last event time's row stays open
        (``flush``)."""
        st = self.stats
        add = self.state.add
        builder = self.builder
        badd = builder.add if builder is not None else None
        lo, hi = (self.session.open_ns, self.session.close_ns) if self.session else (1, 0)
        last_ts, last_tid, last_recv = self.last_ts, self.last_tid, self.last_recv
        is_open = self.open
        emit = self.emit_from - 1  # a row is wanted when its last ts_event >= emit
        n = 0
        cols = zip(ts, tid, price, qty, trade_type, flags, recv, strict=True)
        for j, (t, i, p, q, tt, f, r) in enumerate(cols):
            if f & _CORRECTION:
                st.skipped_corrections += 1
                continue
            if t <= last_ts:
                if t < last_ts:
                    st.skipped_late += 1  # the state only moves forward
                    continue
                if i <= last_tid:
                    st.skipped_duplicates += 1
                    continue
            elif is_open and last_ts >= emit:  # a new event time: the previous row is complete
                self.last_ts, self.last_tid, self.last_recv = last_ts, last_tid, last_recv
                out.append(self._row())
                if at is not None:
                    at.append(j)
                emit = self.emit_from - 1
            if not lo <= t <= hi:
                self._enter_session(t)
                builder = self.builder
                badd = builder.add if builder is not None else None
                lo, hi = (self.session.open_ns, self.session.close_ns) if self.session else (1, 0)
            add(t, p, q, tt)
            if badd is not None:
                badd(t, p, q)
            last_ts, last_tid, last_recv = t, i, r
            is_open = True
            n += 1
        self.last_ts, self.last_tid, self.last_recv = last_ts, last_tid, last_recv
        self.open = is_open
        st.trades += n
        return n

    def trade_columns(self, records: npt.NDArray[np.void] | Mapping[str, Any],
                      out: list[Row]) -> int:  # fmt: skip
        """``trades`` of a structured array (or mapping of columns) of trade records."""
        return self.trades(
            records["ts_event"].tolist(), records["trade_id"].tolist(), records["price"].tolist(),
            records["qty"].tolist(), records["trade_type"].tolist(), records["flags"].tolist(),
            records["ts_recv"].tolist(), out,
        )  # fmt: skip

    def flush(self, out: list[Row]) -> None:
        """Emit the open row (if any and wanted): the value at T = last ts_event + 1."""
        if self.open:
            if self.last_ts + 1 >= self.emit_from:
                out.append(self._row())
            self.open = False

    def warm(self, ts: int, tid: int, price: float, qty: int, trade_type: int,
             recv: int = 0) -> None:  # fmt: skip
        """One trade already handled before a restart: the same updates, no row."""
        s = self.session
        if s is None or not s.open_ns <= ts <= s.close_ns:
            self._enter_session(ts)
        self.state.add(ts, price, qty, trade_type)
        if self.builder is not None:
            self.builder.add(ts, price, qty)
        self.last_ts, self.last_tid, self.last_recv = ts, tid, recv

    def _enter_session(self, ts: int) -> None:
        """A trade outside the current session: a new session starts its aggregates."""
        s = session_of(self.symbol, ts)
        if s is not None and (self.session is None or s.date != self.session.date):
            self.session = s
            self.builder = SessionAggregatesBuilder(self.symbol, s.date)
            self.previous = self._previous_fn(self.symbol, s.date)

    def _row(self) -> Row:
        """The row after the last trade handled: T = its ts_event + 1."""
        t = self.last_ts + 1
        s = self.session
        if s is None or not s.open_ns <= t <= s.close_ns or self.builder is None:
            self.hist, self.regime, self._hist_minute = list(_HIST_NAN), _NO_REGIME, -1
        else:
            minute = (t - s.open_ns) // MINUTE_NS
            if (minute != self._hist_minute or t - self._hist_t >= self.step_ns
                    or t == self._hist_t or self._hist_day != s.date):  # fmt: skip
                f = history_features(self.symbol, t, self.builder.snapshot(t),
                                     dict(self.previous), self.params)  # fmt: skip
                self.hist = [float(f[n]) for n in HISTORY_NUMBERS]  # type: ignore[arg-type]
                self.regime = REGIME_CODES[f["volatility_regime"]]  # type: ignore[index]
                self._hist_minute, self._hist_t, self._hist_day = minute, t, s.date
                self.stats.history_refreshes += 1
        self.stats.rows += 1
        if self.every_ns:
            self.emit_from = (t // self.every_ns + 1) * self.every_ns
        return (t, self.last_tid, self.last_recv, self.state.values(), self.hist, self.regime)

    # ------------------------------------------------------------------ book
    def book_records(self, records: npt.NDArray[np.void]) -> None:
        """Apply one message's book updates; the state's book top follows."""
        self.book.apply(records)
        self.stats.book_updates += len(records)
        if not len(records):
            return
        ts = max(int(records["ts_event"].max()), self.state.book_ts)
        self.state.update_book(ts, *book_top(self.book))

    def set_book(self, book: BookState) -> None:
        """Restore the book (a warm-up: the book as it stood at the last trade)."""
        self.book = book
        if any(side.offers for side in book.sides):
            self.state.update_book(max(book.ts_event, self.state.book_ts), *book_top(book))


# ---------------------------------------------------------------------- vectorised replay
I64 = npt.NDArray[np.int64]


@dataclass
class Replayed:
    """What ``replay`` gives for one batch of records."""

    rows: list[Row]
    at: list[int]
    """Per row, the index (in the batch) of the trade that completed it (the first trade
    after its T); ``len(batch)`` for the last row (no trade after it in the batch)."""
    taken: npt.NDArray[np.bool_]
    """Per record, whether the stream took it (the skip rules)."""
    last: tuple[int, int]
    """(ts_event, trade_id) of the last trade taken (for the next batch)."""
    emit_from: int
    """The next ``emit_from`` (the grid goes on in the next batch)."""


def taken_mask(batch: TradeBatch, after: tuple[int, int] = (_NEVER, -1)) -> npt.NDArray[np.bool_]:
    """The records ``FeatureStream.trades`` takes, vectorised: not a correction, and
    (ts_event, trade_id) above every earlier trade's (and above ``after``)."""
    plain = (batch.flags & np.uint8(_CORRECTION)) == 0
    out = np.zeros(len(batch), dtype=bool)
    idx = np.flatnonzero(plain)
    if not idx.size:
        return out
    ts = np.concatenate([[after[0]], batch.ts_event[idx]])
    tid = np.concatenate([[after[1]], batch.trade_id[idx]])
    order = np.lexsort((tid, ts))
    new = np.ones(order.size, dtype=bool)
    new[1:] = (ts[order][1:] != ts[order][:-1]) | (tid[order][1:] != tid[order][:-1])
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.cumsum(new)  # dense rank of (ts, trade_id)
    best = np.maximum.accumulate(rank)
    out[idx] = rank[1:] > best[:-1]
    return out


def grid_points(times: I64, every_ns: int, emit_from: int) -> tuple[I64, int]:
    """Indices of the rows emitted among rows at ``times`` (increasing): those with
    T >= ``emit_from``, and with ``every_ns`` > 0 only the first of each grid step;
    and the next ``emit_from``."""
    idx = np.flatnonzero(times >= emit_from)
    if not idx.size:
        return idx, emit_from
    if every_ns:
        k = times[idx] // every_ns
        first = np.ones(idx.size, dtype=bool)
        first[1:] = k[1:] != k[:-1]
        idx = idx[first]
        return idx, int((times[idx[-1]] // every_ns + 1) * every_ns)
    return idx, emit_from


class _Prefix:
    """A session's taken trades (in time order) for aggregates as of any time."""

    def __init__(self, symbol: str, s: Session, ts: I64, qty: I64, price: npt.NDArray[np.float64]):
        import datetime as _dt

        self.symbol, self.s = symbol, s
        inside = (ts >= s.open_ns) & (ts <= s.close_ns)
        self.ts, self.price = ts[inside], price[inside]
        self.minutes = max(1, -(-(s.close_ns - s.open_ns) // MINUTE_NS))
        edges = s.open_ns + MINUTE_NS * np.arange(self.minutes + 1, dtype=np.int64)
        self.bounds = edges.copy()
        edges[-1] = s.close_ns + 1
        self.first = np.searchsorted(self.ts, edges, side="left")
        self.last = np.searchsorted(self.ts, self.bounds, side="left") - 1
        self.cq = np.concatenate([np.zeros(1, np.int64), np.cumsum(qty[inside])])
        local = _dt.datetime.fromtimestamp(s.open_ns / 1e9, B3_TZ)
        self.open_clock = local.hour * 60 + local.minute

    def as_of(self, x: int) -> SessionAggregates:
        """``build_session_aggregates`` of these trades with ``as_of_ns = x``."""
        n = int(np.searchsorted(self.ts, x, side="left"))
        first = np.minimum(self.first, n)
        volume = self.cq[first[1:]] - self.cq[first[:-1]]
        count = (first[1:] - first[:-1]).astype(np.int64)
        if n:
            prices = self.price[np.maximum(self.last, 0)]
            prices = np.where(self.bounds > x, np.nan, prices)
        else:
            prices = np.full(self.minutes + 1, np.nan)
        return SessionAggregates(self.symbol, self.s.date, self.s.open_ns, self.s.close_ns,
                                 self.open_clock, volume.astype(np.int64), count,
                                 prices.astype(np.float64), int(self.ts[0]) if n else None,
                                 x)  # fmt: skip


def replay(
    symbol: str,
    batch: TradeBatch,
    previous: PreviousFn,
    *,
    feature_set: FeatureSet | None = None,
    params: HistoryParams | None = None,
    every_ns: int = 0,
    emit_from: int = _NEVER,
    after: tuple[int, int] = (_NEVER, -1),
    book: Sequence[tuple[int, npt.NDArray[np.void]]] = (),
    book_state: BookState | None = None,
    stats: StreamStats | None = None,
) -> Replayed:
    """The rows a ``FeatureStream`` (fresh, or one whose last trade was ``after``, on an
    earlier day) emits for ``batch`` (records in arrival order) and then ``flush``:
    the same values, computed in one pass (module docstring). ``book``: the book
    messages as (number of records of ``batch`` that arrived before it, records), in
    arrival order, applied to ``book_state`` (changed in place)."""
    fs = feature_set or FeatureSet()
    hp = params or HistoryParams()
    st = stats or StreamStats()
    taken = taken_mask(batch, after)
    idx = np.flatnonzero(taken)
    n_in = len(batch)
    if not idx.size:
        return Replayed([], [], taken, after, emit_from)
    trades = batch.take(idx)
    ts = trades.ts_event
    st.trades += int(idx.size)
    flags = batch.flags
    corrections = (flags & np.uint8(_CORRECTION)) != 0
    st.skipped_corrections += int(corrections.sum())
    st.skipped_late += int((~taken & ~corrections).sum())  # late and duplicates together
    # a row per event time: after its last taken trade, completed by the next one
    last = np.ones(ts.size, dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    gi = np.flatnonzero(last)  # index (in trades) of each group's last trade
    times = ts[gi] + 1
    sel, next_from = grid_points(times, every_ns, emit_from)
    cur = gi[sel]
    t_rows = times[sel]
    nxt = cur + 1
    at = np.where(nxt < idx.size, idx[np.minimum(nxt, idx.size - 1)], n_in)
    # intraday values (the batch path: the live state's sums, in the same order)
    c = _Columns(trades, fs.large_min_qty, fs.tz)
    tops = _book_tops(book, book_state, st)
    if tops is not None:
        cuts = np.array([b[0] for b in book], dtype=np.int64)
        bidx = np.searchsorted(cuts, at, side="right").astype(np.int64) - 1
        bk = _book_at(tops, bidx)
    else:
        bk = _book_at(None, cur)
    vals = _evaluate(fs.features, fs.windows_ns, c, cur.astype(np.int64), c.day[cur], t_rows, bk)
    matrix = np.column_stack([vals[f.name] for f in fs.features]) if len(fs.features) else (
        np.empty((cur.size, 0)))  # fmt: skip
    # history: per minute of the rows, from the session's aggregates as of that minute
    hist, regime = _history(symbol, trades, t_rows, previous, hp, st)
    tid = trades.trade_id[cur].tolist()
    recv = trades.ts_recv[cur].tolist()
    rows: list[Row] = [
        (t, i, r, v, h, g)
        for t, i, r, v, h, g in zip(
            t_rows.tolist(), tid, recv, matrix.tolist(), hist, regime, strict=True
        )
    ]
    st.rows += len(rows)
    return Replayed(rows, at.tolist(), taken, (int(ts[-1]), int(trades.trade_id[-1])), next_from)


def _book_tops(
    book: Sequence[tuple[int, npt.NDArray[np.void]]], state: BookState | None, st: StreamStats
) -> BookTops | None:
    """The book top after each message (as ``FeatureStream.book_records`` sets it)."""
    if not book:
        return None
    b = state if state is not None else BookState()
    out: list[tuple[float, int, float, int]] = []
    for _, records in book:
        b.apply(records)
        st.book_updates += len(records)
        out.append(book_top(b))
    a = np.array(out, dtype=np.float64).reshape(-1, 4)
    return BookTops(np.zeros(len(out), np.int64), a[:, 0], a[:, 1].astype(np.int64), a[:, 2],
                    a[:, 3].astype(np.int64))  # fmt: skip


def _history(
    symbol: str,
    trades: TradeBatch,
    times: I64,
    previous: PreviousFn,
    p: HistoryParams,
    st: StreamStats,
) -> tuple[list[list[float]], list[int]]:
    """The history numbers and regime code of rows at ``times`` (as ``FeatureStream._row``:
    NaN outside a session or before the session's first trade)."""
    hist: list[list[float]] = []
    regime: list[int] = []
    prefix: dict[dt.date, _Prefix] = {}
    prev: dict[dt.date, Mapping[dt.date, SessionAggregates]] = {}
    memo: dict[tuple[dt.date, int], tuple[list[float], int]] = {}
    ts = trades.ts_event
    s: Session | None = None
    for t in times.tolist():
        if s is None or not s.open_ns <= t - 1 <= s.close_ns:
            s = session_of(symbol, t - 1)  # the session of the row's last trade
        if s is None or not s.open_ns <= t <= s.close_ns:
            hist.append(list(_HIST_NAN))
            regime.append(_NO_REGIME)
            continue
        minute = (t - s.open_ns) // MINUTE_NS
        got = memo.get((s.date, minute))
        if got is None:
            if s.date not in prefix:
                prefix[s.date] = _Prefix(symbol, s, ts, trades.qty, trades.price)
                prev[s.date] = previous(symbol, s.date)
            t_g = s.open_ns + minute * MINUTE_NS
            f = history_features(symbol, t, prefix[s.date].as_of(t_g), dict(prev[s.date]), p)
            got = ([float(f[n]) for n in HISTORY_NUMBERS],  # type: ignore[arg-type]
                   REGIME_CODES[f["volatility_regime"]])  # type: ignore[index]  # fmt: skip
            memo[(s.date, minute)] = got
            st.history_refreshes += 1
        hist.append(got[0])
        regime.append(got[1])
    return hist, regime


__all__ = [
    "HISTORY_NUMBERS",
    "REGIME_CODES",
    "FeatureStream",
    "PreviousFn",
    "Replayed",
    "Row",
    "StreamStats",
    "book_top",
    "grid_points",
    "replay",
    "taken_mask",
]
