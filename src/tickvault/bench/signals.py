"""``tickvault bench signals``: tick -> signal through the live processes, beside the
original design's per-request approach, measured in the same run (issue 15's benchmarks).

On a temporary embedded server of its own (``bench.isolation``; always, also with
``--url``: the workers need a B3 contract, ``WINZ25``, whose keys must never meet a
user's):

1. **Models.** ``sessions`` simulated past sessions are seeded (``live.seed``, imported
   history), and a full and a fast model (LightGBM by default) are trained on them
   (``engine.training.train``) and promoted in the server's registry, so both modes
   (HISTORY and FAST) are possible.
2. **tick -> signal**, separate processes as in production: a publisher process of
   paced simulated trades (``Publisher.publish_trade`` per trade, as a feed callback),
   the feature worker (``tickvault features run``), the model worker (``tickvault ml
   run``, the deadline ``signal_deadline_ms``) and this process subscribing to
   ``signal.SYMBOL`` (with the workers' 0.5 ms GIL switch interval,
   ``live.bridge.tune_for_latency``). Each trade has ``ts_recv`` = the wall clock at its
   publish call and
   ``ts_event`` = that same clock plus a constant offset that puts the run inside a B3
   session (DAY at 10:30 exchange time): the history features exist only inside a
   session, and the run must not depend on the hour it is started at. The latency of a
   signal is its receive time here minus the publish time of the feature row's last
   trade, ``(t_features - 1) - offset``. The model worker runs an eager policy
   (``signal_enter`` 0.01, ``signal_exit`` 0, ``signal_min_confidence`` 0, cooldown 0,
   through its environment) so that it flips often and gives many signals; the figures
   say so. Two paces: a realistic WIN pace (alternating seconds of 1k and 5k trades/s)
   and a flat ``fast_rate`` (50k trades/s). Per pace: p50/p99/max of the signals'
   latencies, their count, the modes, and the worker's deadline misses and skipped
   rows (from its status, the cursor hash ``signals:{SYMBOL}:cursor``), and the
   latency split into its stages (the model worker's trace file, ``TRACE_ENV`` in
   ``live.models``: row computed, received by the model worker, decided, stored,
   handed to the publisher, received here).
3. **The original design**, on the same store after the live runs (the paced trades
   stored as its bridge would have): per request a range query of the last 120 minutes
   and of the previous sessions into DataFrames, the pandas features
   (``bench.features._original_intraday`` / ``_original_history``) and a predict of the
   same full model. Its cost per request is a lower bound of its tick -> signal
   latency (a pipeline also has the transport); the ratio to ours is reported.
4. **One-row predict cost** of the full and the fast model: ``ModelSet.predict(row,
   mode)`` as the model worker's Decider calls it, on stored feature rows.
5. **The backtest row**: ``bench.backtest.run_backtest_bench`` (the ``bench backtest``
   command's function) on a temporary server of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tickvault.bench.isolation import bench_vault
from tickvault.config import Settings
from tickvault.errors import BenchmarkError
from tickvault.records.signals import SIGNAL_DTYPE, Mode
from tickvault.records.trades import TRADE_DTYPE, TradeBatch
from tickvault.transport.endpoints import Endpoints, free_tcp_ports
from tickvault.vault import Vault

SYMBOL = "WINZ25"
DAY = dt.date(2025, 12, 1)
"""The B3 session the run's event times fall in (the seeded sessions come before it)."""
START_MINUTES = 90
"""The run's first event time: this many minutes after DAY's open (10:30 exchange time)."""
TARGET_P99_MS = 2.0
REALISTIC_RATES = (1_000, 5_000)
"""The realistic WIN pace: seconds at these rates, alternating (3k trades/s on average)."""
POLICY_ENV = {"TICKVAULT_SIGNAL_ENTER": "0.01", "TICKVAULT_SIGNAL_EXIT": "0",
              "TICKVAULT_SIGNAL_MIN_CONFIDENCE": "0",
              "TICKVAULT_SIGNAL_COOLDOWN_S": "0"}  # fmt: skip
"""The model worker's eager policy: it flips often, so a run has many signals."""
POLICY_NOTE = (
    "eager policy for many samples (signal_enter 0.01, signal_exit 0, "
    "signal_min_confidence 0, signal_cooldown_s 0)"
)
_GUARD_S = 600.0
_JOIN_S = 0.5
_STATUS = ("rows", "predictions", "signals", "fast", "history", "misses", "skipped")


def _pct(values: Any, q: float) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def _stats_ms(ns: Any) -> dict[str, float | int]:
    arr = np.asarray(ns, dtype=np.float64) / 1e6
    if not arr.size:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    return {"p50": round(_pct(arr, 50), 4), "p99": round(_pct(arr, 99), 4),
            "max": round(float(arr.max()), 4), "n": int(arr.size)}  # fmt: skip


def _stats_us(ns: Any) -> dict[str, float | int]:
    arr = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50": round(_pct(arr, 50), 2), "p99": round(_pct(arr, 99), 2), "n": int(arr.size)}


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (other work competes for the CPU)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        return []


def realistic_rates(seconds: int) -> list[int]:
    """Trades/s of each second of the realistic pace."""
    return [REALISTIC_RATES[i % len(REALISTIC_RATES)] for i in range(seconds)]


# ---------------------------------------------------------------------- the publisher process
def _publisher(a: argparse.Namespace) -> None:
    """A feed's publisher: paced trades, one ``publish_trade`` call each, phases on command
    (one JSON line on stdin each: ``{"rates": [...], "out": path}``; an empty line ends)."""
    from tickvault.config import load_settings
    from tickvault.feeds.sim.generator import simulate_session
    from tickvault.transport.publisher import Publisher
    from tickvault.venue.b3 import session

    sim = simulate_session(SYMBOL, DAY, trades_per_day=a.trades)
    cols = [(sim.trade_id + a.id_offset).tolist(), sim.price.tolist(), sim.qty.tolist(),
            sim.volume.tolist(),
            sim.buy_agent.tolist(), sim.sell_agent.tolist(),
            sim.trade_type.tolist()]  # fmt: skip
    rows = list(zip(*cols, strict=True))
    pub = Publisher(load_settings(), endpoints=Endpoints(*a.endpoints.split(",")))
    publish = pub.publish_trade
    clock = time.time_ns
    start_event = max(session(SYMBOL, DAY).open_ns + START_MINUTES * 60_000_000_000,
                      a.after_ns + 1_000_000_000)  # fmt: skip
    offset = start_event - clock()
    time.sleep(_JOIN_S)
    print(json.dumps({"ready": True, "offset": offset}), flush=True)
    used = 0
    for line in sys.stdin:
        if not line.strip():
            break
        cmd = json.loads(line)
        sent_event: list[int] = []
        sent_recv: list[int] = []
        first = used
        t0 = time.perf_counter()
        t_start = clock()
        elapsed = 0.0
        for rate in cmd["rates"]:
            per_ms = max(1, round(rate / 1000))
            steps = max(1, rate // per_ms)
            for step in range(steps):
                due = t0 + elapsed + step / steps
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                for _ in range(per_ms):
                    if used >= len(rows):
                        raise SystemExit("the publisher ran out of simulated trades")
                    tid, price, qty, vol, ba, sa, tt = rows[used]
                    now = clock()
                    publish(SYMBOL, now + offset, tid, price, qty, vol, ba, sa, tt, 0, now)
                    sent_event.append(now + offset)
                    sent_recv.append(now)
                    used += 1
            elapsed += 1.0
        pub.flush()
        t_end = clock()
        arr = sim.take(slice(first, used)).to_structured()
        arr["trade_id"] += a.id_offset
        arr["ts_event"] = np.asarray(sent_event, dtype=np.int64)
        arr["ts_recv"] = np.asarray(sent_recv, dtype=np.int64)
        np.save(cmd["out"], arr)
        print(json.dumps({"t_start": t_start, "t_end": t_end, "trades": used - first,
                          "first_ts": int(arr["ts_event"][0]),
                          "last_ts": int(arr["ts_event"][-1])}), flush=True)  # fmt: skip
    pub.close()


# ---------------------------------------------------------------------- orchestration
class _Collector:
    """A subscriber handler: the receive time, T and mode of every signal."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()
        self.gaps = 0

    def resume_seq(self, publisher: int, topic: str) -> int | None:
        return None

    def on_message(self, msg: Any) -> None:
        now = time.time_ns()
        recs = np.frombuffer(msg.payload, dtype=SIGNAL_DTYPE, count=msg.count)
        with self.lock:
            self.got.extend((now, int(t), int(m)) for t, m in zip(recs["t_features"].tolist(),
                                                                  recs["mode"].tolist(),
                                                                  strict=True))  # fmt: skip

    def on_gap(self, gap: Any) -> None:
        self.gaps += 1

    def on_invalid(self, frames: Any, error: Any) -> None:
        self.gaps += 1


Procs = Mapping[str, tuple[subprocess.Popen[bytes], Path]]
"""name -> (process, its log file)."""


def _wait(cond: Callable[[], bool], what: str, procs: Procs) -> None:
    deadline = time.monotonic() + _GUARD_S
    while not cond():
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                err = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise BenchmarkError(f"the {name} exited while waiting for {what}: {err}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"bench signals: gave up waiting for {what}")
        time.sleep(0.01)


@contextmanager
def _processes(
    cmds: Mapping[str, list[str]], env: dict[str, str], logs: Path
) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    """The worker processes, their stderr in files under ``logs`` (a pipe nobody reads
    could fill and block a worker); all stopped at the end."""
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for name, args in cmds.items():
            log = logs / f"{name.replace(' ', '-')}.log"
            with log.open("wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", *args], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err)  # fmt: skip
            procs[name] = (proc, log)
        yield procs
    finally:
        for proc, _ in procs.values():  # an error or Ctrl-C: no process of the bench is left
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _train_models(vault: Vault, sessions: int, estimator: str) -> dict[str, str]:
    """A full and a fast model on the seeded sessions, both promoted; kind -> version."""
    from tickvault.engine.training import metadata, train
    from tickvault.models.registry import Registry
    from tickvault.venue.b3 import previous_sessions

    first = previous_sessions(SYMBOL, DAY, sessions)[0]
    reg = Registry.of_data_dir(vault.settings.data_dir)
    out = {}
    for kind in ("full", "fast"):
        result = train(vault, SYMBOL, first, DAY, folds=2, estimator=estimator, features=kind)
        out[kind] = reg.save(SYMBOL, result.model, metadata(result))
        reg.promote(out[kind])
    return out


def _status(vault: Vault) -> dict[str, int]:
    from tickvault.engine.signals import SignalStore

    cursor = SignalStore(vault).cursor(SYMBOL)
    return {k: int(cursor.get(k) or 0) for k in _STATUS}


def _phase(
    vault: Vault,
    pub: subprocess.Popen[str],
    procs: Procs,
    collector: _Collector,
    rates: list[int],
    out: Path,
    offset: int,
    trace_path: Path,
) -> tuple[dict[str, Any], np.ndarray]:
    """One pace: publish, wait until the model worker has decided the last row, measure."""
    from tickvault.engine.signals import SignalStore

    store = SignalStore(vault)
    before = _status(vault)
    with collector.lock:
        seen = len(collector.got)
    assert pub.stdin is not None and pub.stdout is not None
    pub.stdin.write(json.dumps({"rates": rates, "out": str(out)}) + "\n")
    pub.stdin.flush()
    line = pub.stdout.readline()
    if not line:
        raise BenchmarkError("the benchmark's publisher process exited")
    sent = json.loads(line)
    last_t = str(sent["last_ts"] + 1)
    _wait(lambda: store.cursor(SYMBOL).get("T") == last_t, "the model worker's last row", procs)
    time.sleep(0.2)  # the last signals' messages
    after = _status(vault)
    with collector.lock:
        got = collector.got[seen:]
    lo, hi = sent["first_ts"] + 1, sent["last_ts"] + 1
    mine = [(recv, t, m) for recv, t, m in got if lo <= t <= hi]
    lat = [recv - (t - 1 - offset) for recv, t, _ in mine]
    modes = {"fast": sum(m == int(Mode.FAST) for _, _, m in mine),
             "history": sum(m == int(Mode.HISTORY) for _, _, m in mine)}  # fmt: skip
    status = {k: after[k] - before[k] for k in _STATUS}
    # where the time goes: the trade's publish call (its ts_recv), the row computed by the
    # feature worker (computed_ns, before its write), the feature message received by the
    # model worker, the signal decided, its flush stored, handed to the signal publisher,
    # received here (the model worker's trace file, TV_BENCH_MODELS_TRACE)
    stages: dict[str, list[int]] = {k: [] for k in _STAGES}
    trace = _read_trace(trace_path)
    for recv, t, _ in mine:
        row = trace.get(t)
        if row is None:
            continue
        computed, received, decided, stored, handed = row
        points = [t - 1 - offset, computed, received, decided, stored, handed, recv]
        for name, a, b in zip(_STAGES, points, points[1:], strict=False):
            stages[name].append(b - a)
    seconds = (sent["t_end"] - sent["t_start"]) / 1e9
    result = {
        "trades": sent["trades"],
        "seconds": round(seconds, 3),
        "trades_per_s": round(sent["trades"] / seconds) if seconds > 0 else None,
        "latency_ms": _stats_ms(lat),
        "signals": len(mine),
        "signal_modes": modes,
        "stages_ms": {k: _stats_ms(v) for k, v in stages.items()},
        "worker": status,
    }
    return result, np.load(out)


TRACE_FILE = "model-trace.txt"
_STAGES = ("publish_to_row_computed", "row_computed_to_model_received",
           "model_received_to_decided", "decided_to_stored", "stored_to_published",
           "published_to_received")  # fmt: skip
"""The stages of one signal's latency (``_phase``)."""


def _read_trace(path: Path) -> dict[int, tuple[int, ...]]:
    """The model worker's trace lines by T (the first line of a T)."""
    out: dict[int, tuple[int, ...]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 6:
                out.setdefault(int(parts[0]), tuple(int(x) for x in parts[1:]))
    return out


def _layout_run(
    vault: Vault,
    workers: Mapping[str, list[str]],
    env: dict[str, str],
    data: Path,
    endpoints: str,
    total: int,
    collector: _Collector,
    rates: Mapping[str, list[int]],
    fast_rate: int,
    trades: list[np.ndarray],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The workers of one layout and a publisher process: a warm-up, then both paces;
    the figures by pace (the paced trades appended to ``trades``)."""
    out: dict[str, Any] = {}
    with _processes(workers, env, data) as procs:
        pub = subprocess.Popen(
            [sys.executable, "-m", "tickvault.bench.signals", "publisher",
             "--endpoints", endpoints, "--trades", str(total),
             "--after-ns", str(int(trades[-1]["ts_event"][-1]) if trades else 0),
             "--id-offset", str(max((int(t["trade_id"].max()) for t in trades), default=0))],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert pub.stdout is not None
            line = pub.stdout.readline()
            if not line:
                raise BenchmarkError("the benchmark's publisher process did not start")
            offset = int(json.loads(line)["offset"])
            say("warm-up: 1 s at 200 trades/s through the workers")
            _, warm = _phase(vault, pub, procs, collector, [200], data / "warm.npy", offset,
                             data / TRACE_FILE)  # fmt: skip
            trades.append(warm)
            for name, label in (("realistic", "realistic WIN pace (1k/5k trades/s seconds "
                                 "alternating)"), ("fast", f"{fast_rate:,} trades/s")):  # fmt: skip
                say(f"tick -> signal: {len(rates[name])} s at {label}")
                figures, arr = _phase(vault, pub, procs, collector, rates[name],
                                      data / f"{name}.npy", offset, data / TRACE_FILE)  # fmt: skip
                out[name] = figures
                trades.append(arr)
        finally:
            if pub.poll() is None:
                try:
                    pub.communicate("\n", timeout=30)
                except subprocess.TimeoutExpired:
                    pub.kill()
                    pub.wait()
    return out


def _original_request(vault: Vault, t: int, model: Any) -> int:
    """ORIGINAL DESIGN, one request at T: the range queries into DataFrames, the pandas
    features and a predict of the full model; its cost in ns."""
    from tickvault.bench.features import _original_history, _original_intraday
    from tickvault.models.manager import row_x

    t0 = time.perf_counter_ns()
    values: dict[str, Any] = {**_original_intraday(vault, SYMBOL, t),
                              **_original_history(vault, SYMBOL, t)}  # fmt: skip
    row = {name: values.get(name) for name in model.feature_names}
    model.estimator.predict_proba(row_x(row, model.feature_names))
    return time.perf_counter_ns() - t0


def _predict_costs(vault: Vault, rows_wanted: int) -> dict[str, Any]:
    """One-row predictions, as the Decider calls them, on stored feature rows."""
    from tickvault.engine.features import FeatureEngine
    from tickvault.engine.rows import FeatureRows
    from tickvault.engine.training import load_promoted
    from tickvault.live.models import frame_rows
    from tickvault.models.registry import Registry

    models = load_promoted(Registry.of_data_dir(vault.settings.data_dir), SYMBOL,
                           FeatureEngine(vault))  # fmt: skip
    rows = frame_rows(FeatureRows(vault).range(SYMBOL))
    rng = random.Random(3)
    sample = rng.sample(rows, min(rows_wanted, len(rows)))
    out: dict[str, Any] = {}
    for mode, name in ((Mode.HISTORY, "full"), (Mode.FAST, "fast")):
        todo = [r[0] for r in sample if mode == Mode.FAST or models.ready(r[0])]
        for values in todo[:20]:  # warm-up
            models.predict(values, mode)
        costs, strength = [], []
        for values in todo:
            t0 = time.perf_counter_ns()
            pred = models.predict(values, mode)
            costs.append(time.perf_counter_ns() - t0)
            if pred is not None:
                strength.append(pred.p_up - pred.p_down)
        out[name] = _stats_us(costs)
        # why signals are rare or not: the policy flips only when strength crosses +-enter
        out[f"{name}_strength"] = {
            "p5": round(_pct(strength, 5), 4), "p50": round(_pct(strength, 50), 4),
            "p95": round(_pct(strength, 95), 4),
            "positive_share": round(float(np.mean(np.asarray(strength) > 0)), 3)
            if strength else None,
        }  # fmt: skip
        booster = getattr(models.pick("all", mode), "estimator", None)
        booster = getattr(booster, "booster_", None)
        if booster is not None:  # what the LightGBM wrapper costs around the booster
            m = models.pick("all", mode)
            assert m is not None
            xs = [m.x(v) for v in todo]
            for x in xs[:20]:
                booster.predict(x, num_threads=1)
            raw = []
            for x in xs:
                t0 = time.perf_counter_ns()
                booster.predict(x, num_threads=1)
                raw.append(time.perf_counter_ns() - t0)
            out[f"{name}_booster"] = _stats_us(raw)
    return out


def run_signals_bench(
    vault: Vault,
    *,
    sessions: int = 5,
    session_trades: int = 60_000,
    realistic_seconds: int = 30,
    fast_seconds: int = 5,
    fast_rate: int = 50_000,
    original_requests: int = 30,
    predict_rows: int = 2_000,
    backtest_trades: int = 1_200_000,
    estimator: str = "lightgbm",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The figures of ``tickvault bench signals`` (module docstring); ``vault`` gives the
    settings only: everything runs on temporary servers of the benchmark's own."""
    say = progress or (lambda _msg: None)
    base = vault.settings
    names = ("ticks", "book", "history", "replay", "pub_signals", "features", "signals",
             "signals_replay")  # fmt: skip
    ports = dict(zip(names, free_tcp_ports(len(names)), strict=True))
    settings = Settings(**{**base.model_dump(), **{
        f"zmq_{n}_port": p for n, p in ports.items() if n != "pub_signals"}})  # fmt: skip
    rates = {"realistic": realistic_rates(realistic_seconds),
             "fast": [fast_rate] * fast_seconds}  # fmt: skip
    total = int((sum(sum(r) for r in rates.values()) + 1_000) * 1.5)  # the simulator's day
    result: dict[str, Any] = {
        "symbol": SYMBOL,
        "load_average_start": load_average(),
        "deadline_ms": base.signal_deadline_ms,
        "policy": POLICY_NOTE,
        "sessions": sessions,
        "session_trades": session_trades,
        "estimator": estimator,
        "target_p99_ms": TARGET_P99_MS,
    }
    with bench_vault(settings) as sv:
        from tickvault.live.models import TRACE_ENV, signal_endpoints
        from tickvault.live.seed import seed_sessions
        from tickvault.transport.subscriber import Subscriber
        from tickvault.transport.wire import Kind

        say(f"seeding {sessions} simulated WIN sessions of {session_trades:,} trades")
        seed_sessions(sv, SYMBOL, sessions, before=DAY, trades_per_day=session_trades)
        say(f"training a full and a fast model ({estimator}) on them; promoting both")
        result["models"] = _train_models(sv, sessions, estimator)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TICKVAULT_DATA_DIR": str(sv.settings.data_dir),
            "TICKVAULT_VALKEY_URL": sv.connection_url,
            **{f"TICKVAULT_ZMQ_{n.upper()}_PORT": str(p) for n, p in ports.items()
               if n != "pub_signals"},
            "TICKVAULT_SIGNAL_DEADLINE_MS": str(base.signal_deadline_ms),
            "TICKVAULT_PREDICT_EVERY_MS": "0",
            TRACE_ENV: str(sv.settings.data_dir / TRACE_FILE),
            **POLICY_ENV,
        }  # fmt: skip
        endpoints = ",".join(f"tcp://127.0.0.1:{ports[n]}" for n in
                             ("ticks", "book", "history", "pub_signals", "replay"))  # fmt: skip
        layouts = {
            "separate": {
                "feature worker": ["tickvault.cli.main", "features", "run", "--symbols", SYMBOL],
                "model worker": ["tickvault.cli.main", "ml", "run", "--symbols", SYMBOL],
            },
            "inline": {
                "inline worker": ["tickvault.cli.main", "features", "run", "--symbols", SYMBOL,
                                  "--models"],
            },
        }  # fmt: skip
        collector = _Collector()
        # this process is the signals' subscriber: tuned as a latency-critical one should
        # be (the GIL switch interval; the workers run with it too)
        from tickvault.live.bridge import tune_for_latency

        tune_for_latency()
        sub = Subscriber(sv.settings, handler=collector, endpoints=[signal_endpoints(sv.settings)],
                         kinds=[Kind.SIGNAL], symbols=[SYMBOL], recover_from_start=False,
                         recover_since_ns=time.time_ns()).start()  # fmt: skip
        data = sv.settings.data_dir
        trades: list[np.ndarray] = []
        summary: list[str] = []
        try:
            for layout, workers in layouts.items():
                say(f"workers: {layout} ({', '.join(workers)})")
                figures = _layout_run(sv, workers, env, data, endpoints, total, collector,
                                      rates, fast_rate, trades, say)  # fmt: skip
                if layout == "separate":
                    result.update(figures)
                else:
                    result[layout] = figures
                summary += [
                    ln.strip() for name in workers
                    for ln in (data / f"{name.replace(' ', '-')}.log").read_text(
                        errors="replace").splitlines() if "stopped" in ln
                ]  # fmt: skip
        finally:
            sub.stop()
            sub.close()
        result["subscriber_gaps"] = collector.gaps
        result["worker_summary"] = summary

        # one-row predictions, as the model worker makes them
        say(f"one-row predict cost of the full and the fast model ({predict_rows:,} rows)")
        result["predict_us"] = _predict_costs(sv, predict_rows)

        # the original design, on the same store
        say(f"original design: {original_requests} requests (range query + pandas + predict)")
        for arr in trades:
            sv.store_batch(SYMBOL, TradeBatch.from_structured(arr.astype(TRADE_DTYPE)),
                           stream="realtime")  # fmt: skip
        from tickvault.engine.features import FeatureEngine
        from tickvault.engine.training import load_promoted
        from tickvault.models.registry import Registry

        models = load_promoted(Registry.of_data_dir(sv.settings.data_dir), SYMBOL,
                               FeatureEngine(sv))  # fmt: skip
        full = models.pick("all", Mode.HISTORY)
        assert full is not None
        real = trades[1]["ts_event"]
        rng = random.Random(5)
        picks = sorted(
            rng.sample(range(len(real) // 2, len(real)), min(original_requests, len(real) // 2))
        )
        _original_request(sv, int(real[picks[0]]) + 1, full)  # warm-up (imports, caches)
        costs = [_original_request(sv, int(real[i]) + 1, full) for i in picks]
        result["original_design"] = {
            "request_ms": _stats_ms(costs),
            "note": "per request: Vault.range of the last 120 minutes and of the previous "
            "sessions into DataFrames, pandas features (bench.features' original-design "
            "code) and a predict of the same full model; a lower bound of its tick -> "
            "signal latency",
        }
    ours = result["realistic"]["latency_ms"]
    orig = result["original_design"]["request_ms"]
    result["ratio"] = {
        "p50": round(orig["p50"] / ours["p50"], 1) if ours["n"] and ours["p50"] > 0 else None,
        "p99": round(orig["p99"] / ours["p99"], 1) if ours["n"] and ours["p99"] > 0 else None,
    }
    inline = result["inline"]["realistic"]["latency_ms"]
    result["met"] = {"realistic_p99": bool(ours["n"]) and ours["p99"] <= TARGET_P99_MS,
                     "inline_realistic_p99": bool(inline["n"])
                     and inline["p99"] <= TARGET_P99_MS}  # fmt: skip
    if backtest_trades > 0:
        from tickvault.bench.backtest import run_backtest_bench

        say(f"backtest: one simulated WIN session of {backtest_trades:,} trades, a prediction "
            "every second (bench backtest, on a temporary server of its own)")  # fmt: skip
        with bench_vault(base) as bv:
            result["backtest"] = run_backtest_bench(bv, trades=backtest_trades,
                                                    sessions=sessions)  # fmt: skip
    else:
        result["backtest"] = None
    result["load_average_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tickvault.bench.signals")
    p.add_argument("role", choices=["publisher"])
    p.add_argument("--endpoints", required=True)
    p.add_argument("--trades", type=int, required=True)
    p.add_argument("--id-offset", type=int, default=0,
                   help="Added to the simulated trade ids (a later layout's are new).")  # fmt: skip
    p.add_argument(
        "--after-ns",
        type=int,
        default=0,
        help="Start event time after this one (a later layout continues).",
    )
    _publisher(p.parse_args(argv))


if __name__ == "__main__":
    main()
