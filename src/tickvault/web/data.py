"""The dashboard's store reads: ``DashboardData(vault)`` turns the Vault's (and the
signal, execution and feature-row stores') point-in-time reads into the view models of
``web.views``. Every page read takes ``known_at``: None is "now", an instant K shows
the store as it was known at K (``Vault.range(known_at=K)``, signals, fills and feature
rows by their receive / computed times).

Live pages get ``MarketFeed`` deltas: only the candles of the minutes that changed, the
markers that are new, and the small panels (metrics, ladder, features, position).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tickvault.engine.aggregates import AggregateStore
from tickvault.engine.orders import ExecutionStore
from tickvault.engine.rows import FeatureRows
from tickvault.engine.signals import SignalStore
from tickvault.errors import QueryError, TickvaultError
from tickvault.features.aggregates import MINUTE_NS, SessionAggregates, build_session_aggregates
from tickvault.features.regime import add_regime, regime_of
from tickvault.records.orders import Fill
from tickvault.records.trades import TradeBatch, TradeFlag
from tickvault.storage.resolve import Columns
from tickvault.timeutil import NS_PER_S, format_ns, now_ns
from tickvault.vault import Vault
from tickvault.venue.b3 import B3_TZ, previous_sessions, session
from tickvault.venue.contracts import contract
from tickvault.web import views

FAR_NS = 2**62
UP_STATES = ("starting", "ready", "running")
"""States of a component in up.json that mean its process is alive."""
BARS_1M_NS = views.MAX_BARS_1M * MINUTE_NS
BARS_1S_NS = views.MAX_BARS_1S * NS_PER_S
METRICS_EVERY_S = 0.25
"""Live pages get the panels (5-minute metrics, ladder, features, position) again at
most four times a second (they read 5 minutes of trades and the book); the candles and
markers go out on every change."""
FEATURE_SHOWN = 16
"""The Market page lists the first features of the stored row."""


def _cols_slice(cols: Columns, keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in cols.items()}


class DashboardData:
    """Reads for the pages (see the module docstring). Thread-safe for reads."""

    def __init__(self, vault: Vault, *, data_dir: Path | None = None) -> None:
        self.vault = vault
        self.tz = vault.settings.tz
        self.data_dir = data_dir if data_dir is not None else vault.settings.data_dir
        self.signals = SignalStore(vault)
        self.execution = ExecutionStore(vault)
        self.rows = FeatureRows(vault)
        self._aggs = AggregateStore(vault)
        self._aggs_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def symbols(self) -> list[str]:
        return self.vault.symbols()

    def _point_value(self, symbol: str) -> float:
        try:
            return contract(symbol).point_value
        except TickvaultError:
            return 1.0

    def last_trade(self, symbol: str, known_at: int | None = None) -> tuple[int, int] | None:
        """(ts_event, ts_recv) of the latest trade by event time, as known at K."""
        cols = self.vault.last_columns(symbol, 1, known_at=known_at)
        if not cols["ts_event"].size:
            return None
        return int(cols["ts_event"][-1]), int(cols["ts_recv"][-1])

    def _trades(self, symbol: str, start: int, end: int, known_at: int | None) -> Columns:
        return self.vault.range_columns(symbol, start, end, known_at=known_at)

    def _fills(self, symbol: str, known_at: int | None) -> list[Fill]:
        return self.execution.fills(symbol, 0, FAR_NS, known_at=known_at)

    def _feature_row(self, symbol: str, known_at: int | None, end: int) -> dict[str, Any] | None:
        if known_at is None:
            row = self.rows.last(symbol)
            if row is None:
                return None
            out = {str(k): v for k, v in row.items()}
            out["T"] = int(row.name)  # type: ignore[call-overload]
        else:
            frame = self.rows.range(symbol, end - 10 * MINUTE_NS, end + 1, known_at=known_at)
            if frame.empty:
                return None
            out = {str(k): v for k, v in frame.iloc[-1].items()}
            out["T"] = int(frame.index[-1])
        try:
            out["regime"] = regime_of(out.get("volatility_regime"),
                                      float(out.get("momentum_30min", math.nan)),
                                      float(out.get("rv_30min", math.nan)))  # fmt: skip
        except (TypeError, ValueError, TickvaultError):
            out["regime"] = None
        return out

    def _ladder(self, symbol: str, known_at: int | None) -> dict[str, Any]:
        view = self.vault.book(symbol, known_at, depth=None)
        bids, asks = view.levels(10)
        return views.ladder(bids.to_dict("records"), asks.to_dict("records"))

    def _panels(
        self,
        symbol: str,
        cols: Columns | None,
        end: int,
        known_at: int | None,
        fills: list[Fill],
        metrics: dict[str, Any] | None = None,
        cache: PanelCache | None = None,
    ) -> dict[str, Any]:
        """The small panels; ``metrics`` given (a live page's ``SecondWindow``): no
        trades are read for them (``cols`` None). ``cache`` (a live page's): the ladder
        and the feature row are rebuilt only when the stored book or feature rows moved
        (rebuilding an unchanged book four times a second cost the dashboard ~15 ms of CPU
        each time, which slowed the bridge on a small machine)."""
        if metrics is None:
            assert cols is not None
            metrics = views.five_minute_metrics(cols["ts_event"], cols["price"], cols["qty"],
                                                cols["trade_type"], end)  # fmt: skip
            last_price = float(cols["price"][-1]) if cols["price"].size else None
        else:
            last_price = metrics["last_price"]
        if cache is None:
            row = self._feature_row(symbol, known_at, end)
            ladder = self._ladder(symbol, known_at)
        else:
            row, ladder = cache.row_and_ladder(self, symbol)
        names = [c for c in self.rows.feature_set.names][:FEATURE_SHOWN]
        return {
            "metrics": metrics,
            "ladder": ladder,
            "features": views.features_dict(row, names),
            "position": views.position_dict(
                views.position(fills, last_price, self._point_value(symbol))
            ),
            "last_price": last_price,
        }

    # ------------------------------------------------------------------ market
    def market(self, symbol: str, known_at: int | None = None) -> dict[str, Any]:
        """The Market page of ``symbol`` whole (as known at ``known_at``, None: now)."""
        last = self.last_trade(symbol, known_at)
        base: dict[str, Any] = {"symbol": symbol, "known_at_ns": known_at, "live": known_at is None}
        if last is None:
            return {**base, "empty": True, "bars_1s": [], "bars_1m": [], "markers": [],
                    "last_ts_ns": None, **self._empty_panels(symbol, known_at)}  # fmt: skip
        end = last[0] + 1
        cols = self._trades(symbol, end - BARS_1M_NS, FAR_NS if known_at is None else end,
                            known_at)  # fmt: skip
        ts = cols["ts_event"]
        recent = ts >= end - BARS_1S_NS
        fills = self._fills(symbol, known_at)
        sig = self.signals.signals(symbol, end - BARS_1M_NS, FAR_NS, known_at=known_at)
        win_fills = [f for f in fills if f.ts_event >= end - BARS_1M_NS]
        return {
            **base,
            "empty": False,
            "last_ts_ns": last[0],
            "last_ts": format_ns(last[0], self.tz),
            "bars_1s": views.bars(
                ts[recent], cols["price"][recent], cols["qty"][recent], NS_PER_S, self.tz
            ),
            "bars_1m": views.bars(ts, cols["price"], cols["qty"], MINUTE_NS, self.tz),
            "markers": views.signal_markers(sig, self.tz) + views.fill_markers(win_fills, self.tz),
            **self._panels(symbol, cols, end, known_at, fills),
        }

    def _empty_panels(self, symbol: str, known_at: int | None) -> dict[str, Any]:
        return {
            "metrics": views.five_minute_metrics(
                np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.uint8), 0
            ),
            "ladder": self._ladder(symbol, known_at),
            "features": views.features_dict(None, []),
            "position": views.position_dict(views.position([], None, 1.0)),
            "last_price": None,
        }

    # ------------------------------------------------------------------ pipeline
    def up_state(self) -> dict[str, Any] | None:
        """``<data_dir>/run/up.json`` of a running ``tickvault up`` (None: none runs)."""
        path = Path(self.data_dir) / "run" / "up.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return state

    def pipeline(self) -> dict[str, Any]:
        """The Pipeline page whole."""
        now = now_ns()
        up = self.up_state()
        processes = []
        if up is not None:
            for c in up.get("components", []):
                started = int(c.get("started_ns") or 0)
                running = c.get("state") in UP_STATES
                processes.append({
                    "name": c.get("name"), "state": c.get("state"), "up": running,
                    "pid": c.get("pid"), "restarts": int(c.get("restarts") or 0),
                    "uptime_s": (now - started) / NS_PER_S if running and started else None,
                    "message": c.get("message", ""),
                })  # fmt: skip
        statuses = self.vault.statuses("bridge:")
        bridge_rows = views.bridges(statuses, now)
        live = [b for b in bridge_rows if not b["stale"]]
        if up is None:
            for b in bridge_rows:
                processes.append({"name": b["name"], "state": "reporting" if not b["stale"]
                                  else "silent", "up": not b["stale"], "pid": None,
                                  "restarts": None, "uptime_s": None,
                                  "message": f"last report {b['age_s']:.1f} s ago"})  # fmt: skip
        symbols = self.symbols()
        workers, stored, memory, gaps_stored = [], 0, 0, 0
        for sym in symbols:
            for st in self.vault.stats(sym):
                stored += st.trades
                memory += st.memory_bytes
            gaps_stored += len(self.vault.gaps(sym))
            cur = self.signals.cursor(sym)
            if cur:
                fcur = self.rows.cursor(sym)
                t_sig = int(cur.get("T") or 0)
                t_feat = int(fcur.get("T") or 0) if fcur else 0
                workers.append({
                    "symbol": sym,
                    "misses": int(cur.get("misses") or 0),
                    "predictions": int(cur.get("predictions") or 0),
                    "signals": int(cur.get("signals") or 0),
                    "skipped": int(cur.get("skipped") or 0),
                    "p99_fast_us": int(cur.get("p99_fast_ns") or 0) / 1e3,
                    "p99_history_us": int(cur.get("p99_history_ns") or 0) / 1e3,
                    "updated_ns": int(cur.get("updated_ns") or 0),
                    "behind_s": (t_feat - t_sig) / NS_PER_S if t_feat and t_sig else None,
                })  # fmt: skip
        quarantined = self.vault.quarantined(200)
        by_reason: dict[str, int] = {}
        for q in quarantined:
            by_reason[q["reason"]] = by_reason.get(q["reason"], 0) + 1
        server = self.vault.server_status()
        p99s = [b["lag_p99_ms"] for b in live if b["lag_p99_ms"] is not None]
        p50s = [b["lag_p50_ms"] for b in live if b["lag_p50_ms"] is not None]
        return {
            "now_ns": now,
            "up": up is not None,
            "processes": processes,
            "bridges": bridge_rows,
            "trades_per_s": sum(b["trades_per_s"] or 0 for b in live),
            "lag_p50_ms": max(p50s) if p50s else None,
            "lag_p99_ms": max(p99s) if p99s else None,
            "gaps": {
                "detected": sum(b["gaps_detected"] or 0 for b in bridge_rows),
                "recovered_messages": sum(
                    (b["recovered_messages"] or 0) + (b["journal_messages"] or 0)
                    for b in bridge_rows
                ),
                "lost_messages": sum(b["lost_messages"] or 0 for b in bridge_rows),
                "unrecovered_markers": gaps_stored,
            },
            "quarantine": {
                "by_reason": by_reason,
                "latest": [
                    {
                        "reason": q["reason"],
                        "detail": q["detail"][:300],
                        "ts": format_ns(q["ts"], self.tz),
                        "bytes": sum(
                            len(v)
                            for k, v in q.items()
                            if k.startswith("f") and isinstance(v, bytes)
                        ),
                    }
                    for q in quarantined[:10]
                ],
            },
            "buffers": [
                {
                    "name": b["name"],
                    "held_bytes": b["held_bytes"],
                    "max_held_bytes": b["max_held_bytes"],
                }
                for b in live
            ],
            "replay_buffers": views.publishers(self.vault.statuses("publisher:"), now),
            "valkey": {
                **server,
                "stored_trades": stored,
                "stream_bytes": memory,
                "bytes_per_trade": memory / stored if stored else None,
            },
            "workers": workers,
            "warnings": views.warnings(bridge_rows, workers, server.get("writes_refused")),
        }

    # ------------------------------------------------------------------ history
    def history(
        self, symbol: str, sessions: int = 30, known_at: int | None = None
    ) -> dict[str, Any]:
        """The History page: ``sessions`` sessions up to the last trade (as known at K)."""
        if not 1 <= sessions <= 250:
            raise QueryError(f"sessions must be 1..250, got {sessions}")
        last = self.last_trade(symbol, known_at)
        base = {"symbol": symbol, "known_at_ns": known_at, "n_sessions": sessions}
        if last is None:
            return {**base, **views.history([]), "regimes": [], "empty": True}
        day = dt.datetime.fromtimestamp(last[0] / NS_PER_S, B3_TZ).date()
        days = previous_sessions(symbol, day + dt.timedelta(days=1), sessions)
        aggs = self._sessions(symbol, days, known_at)
        out = views.history(aggs)
        regimes: list[dict[str, Any]] = []
        if days:
            start = session(symbol, days[0]).open_ns
            frame = self.rows.range(symbol, start, last[0] + 1, known_at=known_at)
            if not frame.empty and "rv_30min" in frame.columns:
                frame = add_regime(frame)
                regimes = views.regime_changes(frame.index.to_numpy(np.int64),
                                               frame["regime"].tolist())  # fmt: skip
                for r in regimes:
                    r["time"] = format_ns(r["T_ns"], self.tz)
        return {**base, **out, "regimes": regimes, "empty": False,
                "last_ts": format_ns(last[0], self.tz)}  # fmt: skip

    def _sessions(self, symbol: str, days: list[dt.date], known_at: int | None
                  ) -> list[SessionAggregates]:  # fmt: skip
        """Each day's aggregates as known at K: the stored (materialised) one when every
        record of it was known at K (or K is None), else rebuilt from the records known
        at K."""
        with self._aggs_lock:
            _, found = self._aggs.sessions(symbol, days, mode="store")
        out = []
        for d in days:
            ms = found.get(d)
            if ms is None:
                continue
            if known_at is None or ms.known_by(known_at, "store", 0):
                out.append(ms.aggs)
                continue
            s = session(symbol, d)
            if s.open_ns > known_at:
                continue
            cols = self._trades(symbol, s.open_ns - MINUTE_NS, s.close_ns + MINUTE_NS, known_at)
            batch = TradeBatch(**cols)
            plain = (batch.flags & np.uint8(TradeFlag.EDIT | TradeFlag.CANCEL)) == 0
            if not plain.all():
                batch = batch.take(np.flatnonzero(plain))
            out.append(build_session_aggregates(symbol, d, batch))
        return out


class PanelCache:
    """A live page's latest ladder and feature row, each with the store version it was
    built from (the book's last entry id, the feature cursor's T)."""

    def __init__(self) -> None:
        self.book: tuple[bytes | None, dict[str, Any]] | None = None
        self.row: tuple[Any, dict[str, Any] | None] | None = None

    def row_and_ladder(
        self, data: DashboardData, symbol: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        book_v = data.vault.book_version(symbol)
        if self.book is None or self.book[0] != book_v:
            self.book = (book_v, data._ladder(symbol, None))
        row_v = data.rows.cursor(symbol).get("T")
        if self.row is None or row_v is None or self.row[0] != row_v:
            self.row = (row_v, data._feature_row(symbol, None, 0))
        return self.row[1], self.book[1]


class MarketFeed:
    """One live Market page's position in the store: ``delta()`` returns what changed
    since the last call (None: nothing), ``snapshot()`` the page whole."""

    def __init__(self, data: DashboardData, symbol: str) -> None:
        self.data = data
        self.symbol = symbol
        self.last: tuple[int, int] | None = None
        self.signal_ns = -1
        self.fill_ns = -1
        self.feature_T: Any = None
        self.metrics_at = 0.0
        self.fills: list[Fill] = []
        """The symbol's paper fills so far (read once whole, then only the new ones)."""
        self.window = views.SecondWindow()
        """The latest 5 minutes by second: each check reads only the trades after the last
        one seen (a late trade, older than it, shows on the next page load)."""
        self.seen: tuple[int, frozenset[int]] = (-1, frozenset())
        """The latest event time read and the trade ids read at it."""
        self.panels_due = False
        """A change came while the panels were throttled: send them on a later call
        even if nothing else changed by then (else they would stay stale)."""
        self.cache = PanelCache()
        self.book_v: bytes | None = None

    def snapshot(self) -> dict[str, Any]:
        page = self.data.market(self.symbol)
        self.last = self.data.last_trade(self.symbol)
        marks = page["markers"]
        self.signal_ns = max((m["ts_ns"] for m in marks if m["kind"] == "signal"), default=-1)
        self.fill_ns = max((m["ts_ns"] for m in marks if m["kind"] == "fill"), default=-1)
        self.fills = self.data._fills(self.symbol, None)
        self.fill_ns = max([self.fill_ns] + [f.ts_event for f in self.fills])
        self.window = views.SecondWindow()
        self.seen = (-1, frozenset())
        if self.last is not None:
            start = self.last[0] + 1 - views.METRICS_WINDOW_NS - MINUTE_NS
            self._read_new(self.data._trades(self.symbol, start, FAR_NS, None))
        self.feature_T = page["features"]["T_ns"]
        self.book_v = self.data.vault.book_version(self.symbol)
        self.cache = PanelCache()
        self.metrics_at = time.monotonic()
        return page

    def delta(self) -> dict[str, Any] | None:
        d = self.data
        # One read for both the change check and the new trades: the trades from the
        # latest event time seen on hold the latest trade (a read of the last trade
        # first doubled the page's cost per check).
        recent = d._trades(self.symbol, self.seen[0], FAR_NS, None) if self.seen[0] >= 0 else None
        if recent is not None and recent["ts_event"].size:
            last: tuple[int, int] | None = (int(recent["ts_event"][-1]),
                                            int(recent["ts_recv"][-1]))  # fmt: skip
        else:
            last, recent = d.last_trade(self.symbol), None
        sig = d.signals.signals(self.symbol, self.signal_ns + 1, FAR_NS)
        new_fills = d.execution.fills(self.symbol, self.fill_ns + 1, FAR_NS)
        self.fills.extend(new_fills)
        fills = self.fills
        row = d.rows.cursor(self.symbol).get("T")
        book_v = d.vault.book_version(self.symbol)
        changed = (last != self.last or bool(sig) or bool(new_fills) or row != self.feature_T
                   or book_v != self.book_v)  # fmt: skip
        panels_now = time.monotonic() - self.metrics_at >= METRICS_EVERY_S
        if not changed and not (self.panels_due and panels_now):
            return None
        out: dict[str, Any] = {"symbol": self.symbol, "delta": True}
        if last is not None and last != self.last:
            if recent is None:
                recent = d._trades(self.symbol, last[0], FAR_NS, None)
            touched, last_price = self._read_new(recent)
            out["bars_1s"], out["bars_1m"] = self.window.bars(touched, d.tz)
            out["last_ts_ns"] = last[0]
            out["last_ts"] = format_ns(last[0], d.tz)
            if last_price is not None:
                out["last_price"] = last_price
        markers = views.signal_markers(sig, d.tz) + views.fill_markers(new_fills, d.tz)
        if markers:
            out["markers"] = markers
            self.signal_ns = max([self.signal_ns] + [s.ts_event for s in sig])
            self.fill_ns = max([self.fill_ns] + [f.ts_event for f in new_fills])
        self.last = last
        self.feature_T = row
        self.book_v = book_v
        self.panels_due = True
        if panels_now or markers:
            self.panels_due = False
            self.metrics_at = time.monotonic()
            end = (last[0] + 1) if last else 0
            out.update(d._panels(self.symbol, None, end, None, fills, self.window.metrics(end),
                                 self.cache))  # fmt: skip
        return out

    def _read_new(self, cols: Columns) -> tuple[set[int], float | None]:
        """Add the trades of ``cols`` not read before to the window; (the seconds they
        touched, the last one's price)."""
        ts, tid = cols["ts_event"], cols["trade_id"]
        at, ids = self.seen
        new = (ts > at) | ((ts == at) & ~np.isin(tid, np.fromiter(ids, np.int64, len(ids))))
        if not new.any():
            return set(), None
        keep = np.flatnonzero(new)
        ts_n = ts[keep]
        touched = self.window.add(ts_n, cols["price"][keep], cols["qty"][keep],
                                  cols["trade_type"][keep])  # fmt: skip
        newest = int(ts_n.max())
        same = tid[ts == newest].tolist()
        self.seen = (newest, frozenset(same) | (ids if newest == at else frozenset()))
        return touched, float(cols["price"][keep][-1])
