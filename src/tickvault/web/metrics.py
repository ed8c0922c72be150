"""Prometheus metrics of the whole system: ``GET /metrics`` of the dashboard app.

``StoreCollector(data)`` reads, on each scrape, what the processes already keep in the
store and the state file of ``tickvault up``: the bridges' status hashes
(``status:bridge:*``), the model worker's cursor hashes (``signals:{SYMBOL}:cursor``),
the broker's positions (``positions:{SYMBOL}``), the stored streams' counts, the
quarantine and gap markers, ``<data_dir>/run/up.json`` and Valkey's INFO memory. No
process keeps any state for it. Names follow the Prometheus conventions (base units in
the name, ``_total`` for counters); the README's "Metrics" section lists them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tickvault.errors import TickvaultError
from tickvault.records.signals import Mode
from tickvault.timeutil import NS_PER_S, now_ns
from tickvault.web import views
from tickvault.web.data import FAR_NS, UP_STATES, DashboardData


def _num(fields: dict[str, str], key: str) -> float | None:
    raw = fields.get(key)
    if raw in (None, "", "None", "nan"):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class StoreCollector(Collector):
    """The custom collector behind ``/metrics`` (see the module docstring)."""

    def __init__(self, data: DashboardData) -> None:
        self.data = data

    def describe(self) -> list[Metric]:  # no samples at registration (no store reads)
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._store()
        except TickvaultError:
            yield GaugeMetricFamily(
                "tickvault_store_up", "1 when the store answered the scrape, else 0", value=0
            )
        else:
            yield GaugeMetricFamily(
                "tickvault_store_up", "1 when the store answered the scrape, else 0", value=1
            )
        yield from self._processes()

    # ------------------------------------------------------------------ store reads
    def _store(self) -> Iterator[Metric]:
        d = self.data
        symbols = d.symbols()
        trades = CounterMetricFamily(
            "tickvault_trades_stored",
            "Trade records stored (repeats and corrections included)",
            labels=["symbol"],
        )
        stream_mem = GaugeMetricFamily(
            "tickvault_stream_memory_bytes",
            "Memory of the symbol's stored streams",
            labels=["symbol"],
        )
        markers = GaugeMetricFamily(
            "tickvault_gap_markers", "Unrecovered gaps marked in the store", labels=["symbol"]
        )
        signals = CounterMetricFamily(
            "tickvault_signals", "Signals stored by the model worker", labels=["symbol", "mode"]
        )
        predictions = CounterMetricFamily(
            "tickvault_predictions",
            "Predictions made by the model worker",
            labels=["symbol", "mode"],
        )
        misses = CounterMetricFamily(
            "tickvault_deadline_misses",
            "Decisions that finished after the signal deadline",
            labels=["symbol"],
        )
        skipped = CounterMetricFamily(
            "tickvault_rows_skipped", "Feature rows the model worker skipped", labels=["symbol"]
        )
        predict_p99 = GaugeMetricFamily(
            "tickvault_predict_seconds",
            "Running predict cost of the model worker",
            labels=["symbol", "mode", "quantile"],
        )
        model_at = GaugeMetricFamily(
            "tickvault_model_updated_timestamp_seconds",
            "When the model worker last stored its cursor (Unix time)",
            labels=["symbol"],
        )
        position = GaugeMetricFamily(
            "tickvault_position_contracts",
            "The paper broker's position (negative: short)",
            labels=["symbol"],
        )
        pnl = GaugeMetricFamily(
            "tickvault_pnl_brl", "The paper broker's PnL in BRL", labels=["symbol", "kind"]
        )
        fees = CounterMetricFamily(
            "tickvault_fees_brl", "Fees paid by the paper broker in BRL", labels=["symbol"]
        )
        for sym in symbols:
            stats = d.vault.stats(sym)
            trades.add_metric([sym], float(sum(s.trades for s in stats)))
            stream_mem.add_metric([sym], float(sum(s.memory_bytes for s in stats)))
            markers.add_metric([sym], float(len(d.vault.gaps(sym))))
            cur = d.signals.cursor(sym)
            if cur:
                by_mode = {m.name.lower(): 0 for m in Mode}
                for s in d.signals.signals(sym, 0, FAR_NS):
                    by_mode[s.mode.name.lower()] = by_mode.get(s.mode.name.lower(), 0) + 1
                for mode, n in sorted(by_mode.items()):
                    signals.add_metric([sym, mode], float(n))
                for mode in ("fast", "history"):
                    predictions.add_metric([sym, mode], _num(cur, mode) or 0.0)
                    p99 = _num(cur, f"p99_{mode}_ns")
                    if p99 is not None:
                        predict_p99.add_metric([sym, mode, "0.99"], p99 / NS_PER_S)
                misses.add_metric([sym], _num(cur, "misses") or 0.0)
                skipped.add_metric([sym], _num(cur, "skipped") or 0.0)
                updated = _num(cur, "updated_ns")
                if updated:
                    model_at.add_metric([sym], updated / NS_PER_S)
            pos = d.execution.position(sym)
            if pos:
                position.add_metric([sym], _num(pos, "position") or 0.0)
                for kind in ("realized", "open", "day"):
                    key = "realized" if kind == "realized" else f"{kind}_pnl"
                    value = _num(pos, key)
                    if value is not None:
                        pnl.add_metric([sym, kind], value)
                fees.add_metric([sym], _num(pos, "fees") or 0.0)
        yield from (
            trades,
            stream_mem,
            markers,
            signals,
            predictions,
            misses,
            skipped,
            predict_p99,
            model_at,
            position,
            pnl,
            fees,
        )
        yield from self._bridges()
        yield from self._publishers()
        yield from self._proxies()
        memory = d.vault.server_status().get("used_memory")
        yield GaugeMetricFamily(
            "tickvault_valkey_memory_bytes",
            "Memory the Valkey server uses (INFO memory used_memory)",
            value=float(memory or 0),
        )

    def _bridges(self) -> Iterator[Metric]:
        now = now_ns()
        statuses = self.data.vault.statuses("bridge:")
        rows = {b["name"]: b for b in views.bridges(statuses, now)}
        up = GaugeMetricFamily(
            "tickvault_bridge_up",
            "1 while the bridge reports (its last report is recent), else 0",
            labels=["bridge"],
        )
        rate = GaugeMetricFamily(
            "tickvault_bridge_trades_per_second",
            "Trades the bridge stored per second since its previous report",
            labels=["bridge"],
        )
        lag = GaugeMetricFamily(
            "tickvault_bridge_lag_seconds",
            "Publish-to-stored lag of the bridge's recent trades",
            labels=["bridge", "quantile"],
        )
        messages = CounterMetricFamily(
            "tickvault_bridge_messages", "Messages the bridge received", labels=["bridge"]
        )
        held = GaugeMetricFamily(
            "tickvault_bridge_buffer_bytes",
            "Bytes the bridge holds before they are stored",
            labels=["bridge"],
        )
        gaps = CounterMetricFamily(
            "tickvault_gaps",
            "Sequence gaps the bridges saw: detected, and those left unrecovered",
            labels=["state"],
        )
        gap_msgs = CounterMetricFamily(
            "tickvault_gap_messages",
            "Messages of the gaps: recovered (replay or journal) or lost",
            labels=["state"],
        )
        quarantined = CounterMetricFamily(
            "tickvault_quarantined",
            "Messages the bridges rejected (kept in the quarantine stream)",
            labels=["reason"],
        )
        totals = {"detected": 0.0, "unrecovered": 0.0}
        msg_totals = {"recovered": 0.0, "lost": 0.0}
        reasons: dict[str, float] = {}
        for name, fields in sorted(statuses.items()):
            row: dict[str, Any] = rows.get(name, {})
            label = [name]
            up.add_metric(label, 0.0 if row.get("stale", True) else 1.0)
            rate.add_metric(label, _num(fields, "trades_per_s") or 0.0)
            for q, key in (("0.5", "lag_p50_ms"), ("0.99", "lag_p99_ms")):
                ms = _num(fields, key)
                if ms is not None:
                    lag.add_metric([name, q], ms / 1e3)
            messages.add_metric(label, _num(fields, "messages") or 0.0)
            held.add_metric(label, _num(fields, "held_bytes") or 0.0)
            totals["detected"] += _num(fields, "gaps_detected") or 0.0
            totals["unrecovered"] += _num(fields, "gaps_unrecovered") or 0.0
            msg_totals["recovered"] += (_num(fields, "recovered_messages") or 0.0) + (
                _num(fields, "journal_messages") or 0.0
            )
            msg_totals["lost"] += _num(fields, "lost_messages") or 0.0
            try:
                rejected = json.loads(fields.get("rejected") or "{}")
            except ValueError:
                rejected = {}
            for reason, n in rejected.items():
                reasons[str(reason)] = reasons.get(str(reason), 0.0) + float(n)
        for state, n in totals.items():
            gaps.add_metric([state], n)
        for state, n in msg_totals.items():
            gap_msgs.add_metric([state], n)
        for reason, n in sorted(reasons.items()):
            quarantined.add_metric([reason], n)
        yield from (up, rate, lag, messages, held, gaps, gap_msgs, quarantined)

    def _publishers(self) -> Iterator[Metric]:
        rows = views.publishers(self.data.vault.statuses("publisher:"), now_ns())
        up = GaugeMetricFamily(
            "tickvault_publisher_up",
            "1 while the publisher reports (its last report is recent), else 0",
            labels=["publisher"],
        )
        held = GaugeMetricFamily(
            "tickvault_publisher_replay_buffer_bytes",
            "Bytes of messages the publisher's replay buffer holds",
            labels=["publisher"],
        )
        cap = GaugeMetricFamily(
            "tickvault_publisher_replay_buffer_max_bytes",
            "The replay buffer's bound (zmq_replay_buffer_mb)",
            labels=["publisher"],
        )
        messages = GaugeMetricFamily(
            "tickvault_publisher_replay_buffer_messages",
            "Messages the publisher's replay buffer holds",
            labels=["publisher"],
        )
        evicted = CounterMetricFamily(
            "tickvault_publisher_replay_evicted_messages",
            "Messages dropped from the replay buffer (oldest first) to stay within its bound",
            labels=["publisher"],
        )
        oldest = GaugeMetricFamily(
            "tickvault_publisher_replay_oldest_seq",
            "Sequence number of the oldest message of the topic the replay buffer holds",
            labels=["publisher", "topic"],
        )
        for row in rows:
            label = [row["name"]]
            up.add_metric(label, 0.0 if row["stale"] else 1.0)
            held.add_metric(label, row["replay_bytes"] or 0.0)
            cap.add_metric(label, row["replay_max_bytes"] or 0.0)
            messages.add_metric(label, row["replay_messages"] or 0.0)
            evicted.add_metric(label, row["replay_evicted"] or 0.0)
            for t in row["topics"]:
                if t["first_seq"]:
                    oldest.add_metric([row["name"], t["topic"]], t["first_seq"])
        yield from (up, held, cap, messages, evicted, oldest)

    def _proxies(self) -> Iterator[Metric]:
        """The ``tickvault proxy`` processes' reports (``status:proxy:...``)."""
        statuses = self.data.vault.statuses("proxy:")
        now = now_ns()
        up = GaugeMetricFamily(
            "tickvault_proxy_up", "1 while the proxy reports (its last report is recent), else 0",
            labels=["proxy"],
        )  # fmt: skip
        subscribers = GaugeMetricFamily(
            "tickvault_proxy_subscribers",
            "Subscribers heard from recently on the proxy's replay endpoint",
            labels=["proxy"],
        )
        messages = CounterMetricFamily(
            "tickvault_proxy_forwarded_messages",
            "Messages forwarded from the publisher to the proxy's subscribers",
            labels=["proxy", "socket"],
        )
        nbytes = CounterMetricFamily(
            "tickvault_proxy_forwarded_bytes",
            "Bytes forwarded from the publisher to the proxy's subscribers",
            labels=["proxy"],
        )
        requests = CounterMetricFamily(
            "tickvault_proxy_replay_requests",
            "Replay requests relayed to the publisher's replay service",
            labels=["proxy"],
        )
        replayed = CounterMetricFamily(
            "tickvault_proxy_replayed_messages",
            "Messages in the replay answers relayed to the subscribers",
            labels=["proxy"],
        )
        for name, fields in sorted(statuses.items()):
            label = [name]
            age_s = (now - (_num(fields, "updated_ns") or 0)) / NS_PER_S
            up.add_metric(label, 1.0 if age_s < views.STALE_S else 0.0)
            subscribers.add_metric(label, _num(fields, "subscribers") or 0.0)
            try:
                by_socket = json.loads(fields.get("messages_by_socket") or "{}")
            except ValueError:
                by_socket = {}
            for sock, n in sorted(by_socket.items()):
                messages.add_metric([name, str(sock)], float(n))
            nbytes.add_metric(label, _num(fields, "bytes") or 0.0)
            requests.add_metric(label, _num(fields, "replay_requests") or 0.0)
            replayed.add_metric(label, _num(fields, "replayed_messages") or 0.0)
        yield from (up, subscribers, messages, nbytes, requests, replayed)

    # ------------------------------------------------------------------ up.json
    def _processes(self) -> Iterator[Metric]:
        state = self.data.up_state()
        up = GaugeMetricFamily(
            "tickvault_process_up",
            "1 while the component of tickvault up runs (starting or ready), else 0",
            labels=["name"],
        )
        ready = GaugeMetricFamily(
            "tickvault_process_ready",
            "1 once the component passed its readiness check, else 0",
            labels=["name"],
        )
        restarts = CounterMetricFamily(
            "tickvault_process_restarts",
            "Restarts of the component by tickvault up",
            labels=["name"],
        )
        started = GaugeMetricFamily(
            "tickvault_process_start_time_seconds",
            "When the component last started (Unix time)",
            labels=["name"],
        )
        for c in (state or {}).get("components", []):
            name = str(c.get("name"))
            running = c.get("state") in UP_STATES
            up.add_metric([name], 1.0 if running else 0.0)
            ready.add_metric([name], 1.0 if c.get("state") == "ready" else 0.0)
            restarts.add_metric([name], float(c.get("restarts") or 0))
            if running and c.get("started_ns"):
                started.add_metric([name], int(c["started_ns"]) / NS_PER_S)
        yield from (up, ready, restarts, started)


def registry_of(data: DashboardData) -> CollectorRegistry:
    """A registry holding only the store collector (no process metrics of the dashboard)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(data))
    return registry


__all__ = ["StoreCollector", "registry_of"]
