"""``tickvault chaos``: faults injected into the live processes during a replay, and what
was stored checked against what was sent, per fault (issue 17).

Everything runs on a temporary embedded Valkey server of its own (``bench.isolation``;
AOF, appendfsync everysec, as a user's server), removed at the end. The processes are
separate, as ``tickvault up`` runs them:

- a **publisher** process (this module's ``publisher`` role): a replay of one simulated
  WIN session (``simulate_session`` of ``DAY``) at full speed, ``Publisher.publish_trades``
  of ``CHUNK`` trades at a time, each chunk's ``ts_recv`` the wall clock of its call;
- the **bridge** (``tickvault bridge``), the **feature worker** (``tickvault features
  run``) and the **model worker** (``tickvault ml run``, on a fast model trained on
  ``sessions`` seeded sessions and promoted, as ``bench signals`` does; ``models=False``
  leaves it out).

The trades are cut into one contiguous part per scenario (whole event times, so the
parts are disjoint in time), and the scenarios run one after the other: the part's
first tenth (``LEAD``) is sent; once the process under test has handled it, the rest is
sent at full speed and the fault is injected as it arrives (kill -9, SIGSTOP, a clean
server restart; the publisher is killed half-way through sending the rest; the row's
``fault_at`` says how much of the part was stored at the fault), the process is
restarted at once (the supervisor's restart delay is not what is measured), and the
suite waits
until the part is stored, its feature rows written and decided (or nothing has moved
for ``stall_s``). Then, for the part:

- **trades**: sent, stored (distinct trades readable), lost (sent, not stored), extra
  (stored, never sent), duplicated (records stored minus distinct trades: a block
  written twice), a checksum over (trade_id, price, qty) (the wrapping sum of a 64-bit
  hash per trade, order-independent) of the stored trades against the sent ones, and
  the gap markers overlapping the part;
- **feature rows**: one row per event time e of the part (T = e + 1 ns) whose last
  trade is the last trade of e; lost (expected, not stored), doubled (two rows of one T
  in the latest versions), wrong (another last trade);
- **signals**: the model worker decided each stored row version once (its cursor's row
  count moved by the number of row versions stored: ``decided - versions`` below 0 is a
  row lost, above 0 a row decided twice), no two signals of one T, and its cursor ends on
  the part's last row;
- **time to recover**: from the fault (for SIGSTOP: from SIGCONT) until everything above
  was in place. The first row, without a fault, gives the time of the part alone.

The one documented loss: a publisher whose replay buffer evicted messages a subscriber
had not received, without a journal (``journal = false``); the scenario
``buffer overrun (no journal)`` shows it: its loss is expected when every lost trade
lies inside a gap marker (reported, never silent). A publisher killed with records
queued but not yet numbered and journaled loses them too (nobody saw their sequence
numbers): this replay re-sends them from its source (the journal tells where the killed
run stopped), as a feeder with history must (ProfitDLL backfills, else sends a GAP).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tickvault.bench.isolation import bench_vault
from tickvault.bench.signals import load_average
from tickvault.config import Settings
from tickvault.errors import BenchmarkError, ServerError
from tickvault.storage.server import ensure_server, read_state, stop_server
from tickvault.transport.endpoints import free_tcp_ports
from tickvault.vault import Vault

SYMBOL = "WINZ25"
DAY = dt.date(2025, 12, 1)
"""The session replayed (the seeded sessions come before it)."""
CHUNK = 100
"""Trades per ``publish_trades`` call of the replay."""
TOPIC = f"trade.{SYMBOL}"
DEFAULT_TRADES = 1_000_000
DEFAULT_STOP_S = 30.0
_JOIN_S = 0.5
_POLL_S = 0.01
_GUARD_S = 600.0
"""No wait of the suite lasts longer (a guard against hangs, never a figure)."""
_PORTS = ("ticks", "book", "history", "replay", "features", "signals", "signals_replay")
"""The ports of the run (settings ``zmq_<name>_port``); the publisher's unused signals
socket gets one more (the model worker publishes on ``zmq_signals_port``)."""

SCENARIOS: tuple[str, ...] = (
    "no fault",
    "kill -9 publisher",
    "kill -9 bridge",
    "kill -9 feature worker",
    "kill -9 model worker",
    "kill -9 valkey",
    "kill -9 bridge + valkey",
    "SIGSTOP bridge",
    "valkey restart (SHUTDOWN)",
    "buffer overrun (no journal)",
)
EXPECTED_LOSS = "buffer overrun (no journal)"
"""The scenario whose loss is documented (reported by gap markers)."""
OVERRUN_BUFFER_MB = 1.0
"""The publisher's replay buffer in the overrun scenario (far less than the part)."""
OVERRUN_HWM = 20
"""The publisher's send queue (messages) in the overrun scenario."""
LEAD = 0.1
"""The share of each part sent before the fault's moment: the rest is sent at full speed
once the process under test has handled it, and the fault comes when it is busy with the
rest."""


# ---------------------------------------------------------------------- pure checks
def trade_hashes(trade_id: npt.ArrayLike, price: npt.ArrayLike, qty: npt.ArrayLike) -> Any:
    """A 64-bit hash per trade of (trade_id, price, qty) (splitmix64 rounds; wraps)."""
    with np.errstate(over="ignore"):
        h = np.asarray(trade_id).astype(np.uint64)
        h = _mix(h ^ _mix(np.asarray(price, dtype=np.float64).view(np.uint64)))
        return _mix(h ^ _mix(np.asarray(qty).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))


def _mix(x: Any) -> Any:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def checksum(trade_id: npt.ArrayLike, price: npt.ArrayLike, qty: npt.ArrayLike) -> int:
    """Order-independent checksum of a set of trades: the wrapping sum of their hashes."""
    with np.errstate(over="ignore"):
        return int(np.sum(trade_hashes(trade_id, price, qty), dtype=np.uint64))


def split_points(ts_event: npt.NDArray[np.int64], parts: int) -> list[int]:
    """``parts + 1`` indices cutting the trades into parts of about equal size, each cut
    where the event time changes (so no event time spans two parts)."""
    n = len(ts_event)
    cuts = [0]
    for k in range(1, parts):
        i = int(n * k / parts)
        while 0 < i < n and ts_event[i] == ts_event[i - 1]:
            i += 1
        cuts.append(max(i, cuts[-1] + 1))
    cuts.append(n)
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise BenchmarkError(f"chaos: {n} trades cannot make {parts} parts; use more --trades")
    return cuts


def expected_rows(ts_event: npt.NDArray[np.int64], trade_id: npt.NDArray[np.int64]) -> Any:
    """(T, last trade id) of the feature row of each event time (T = e + 1)."""
    last = np.flatnonzero(np.r_[ts_event[1:] != ts_event[:-1], True])
    return ts_event[last] + 1, trade_id[last]


@dataclass
class TradeCheck:
    sent: int
    stored: int
    lost: int
    extra: int
    duplicated: int
    checksum_ok: bool
    gap_markers: int
    lost_outside_gaps: int
    """Lost trades that no gap marker covers (a silent loss)."""


def check_trades(
    sent: Any, stored: Mapping[str, Any], records: int, gaps: list[tuple[int, int]]
) -> TradeCheck:
    """``sent``/``stored``: columns of the part (stored: each trade once, as read);
    ``records``: the records the store holds for the part (repeats included);
    ``gaps``: (start_ns, end_ns) of the markers overlapping it."""
    sent_ids, stored_ids = np.asarray(sent["trade_id"]), np.asarray(stored["trade_id"])
    lost_mask = ~np.isin(sent_ids, stored_ids)
    extra = int((~np.isin(stored_ids, sent_ids)).sum())
    lost_ts = np.asarray(sent["ts_event"])[lost_mask]
    covered = np.zeros(len(lost_ts), dtype=bool)
    for start, end in gaps:
        covered |= (lost_ts >= start) & (lost_ts <= end)
    ok = checksum(sent["trade_id"], sent["price"], sent["qty"]) == checksum(
        stored["trade_id"], stored["price"], stored["qty"]
    )
    return TradeCheck(
        sent=len(sent_ids), stored=len(stored_ids), lost=int(lost_mask.sum()), extra=extra,
        duplicated=max(records - len(stored_ids), 0), checksum_ok=ok, gap_markers=len(gaps),
        lost_outside_gaps=int((~covered).sum()),
    )  # fmt: skip


@dataclass
class RowCheck:
    expected: int
    stored: int
    lost: int
    doubled: int
    wrong: int
    """Rows whose last trade is not the last trade of their event time."""


def check_rows(expected_t: Any, expected_tid: Any, stored_t: Any, stored_tid: Any) -> RowCheck:
    stored_t, stored_tid = np.asarray(stored_t), np.asarray(stored_tid)
    uniq = np.unique(stored_t)
    lost = int((~np.isin(expected_t, uniq)).sum())
    want = dict(zip(np.asarray(expected_t).tolist(), np.asarray(expected_tid).tolist(),
                    strict=True))  # fmt: skip
    wrong = sum(1 for t, tid in zip(stored_t.tolist(), stored_tid.tolist(), strict=True)
                if want.get(t, tid) != tid)  # fmt: skip
    return RowCheck(expected=len(expected_t), stored=len(uniq), lost=lost,
                    doubled=len(stored_t) - len(uniq), wrong=wrong)  # fmt: skip


@dataclass
class SignalCheck:
    versions: int
    """Feature row versions stored for the part (each must be decided once)."""
    decided: int
    """Rows the model worker decided during the part (its cursor's row count)."""
    signals: int
    doubled: int
    """Signals of a T that already had one."""
    orphan: int
    """Signals of a T without a feature row."""
    cursor_at_end: bool


@dataclass
class Row:
    scenario: str
    trades: TradeCheck
    rows: RowCheck | None = None
    signals: SignalCheck | None = None
    recover_s: float | None = None
    fault_at: str = ""
    expected_loss: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """0 lost and 0 duplicated everywhere, or the documented loss, fully reported."""
        t = self.trades
        if t.extra or t.duplicated or not (t.checksum_ok or self.expected_loss):
            return False
        if t.lost and not (self.expected_loss and t.lost_outside_gaps == 0):
            return False
        if self.rows is not None:
            r = self.rows
            # under the documented loss the feature worker may lose messages too (the same
            # evicted buffer): rows of those event times are missing or made without them
            if r.doubled or ((r.wrong or r.lost) and not self.expected_loss):
                return False
        if self.signals is not None:
            s = self.signals
            if s.doubled or s.orphan or s.decided != s.versions or not s.cursor_at_end:
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


# ---------------------------------------------------------------------- the publisher process
def _replay_trades(n: int, seed: int) -> npt.NDArray[np.void]:
    """The first ``n`` trades of the simulated session ``DAY`` (the same in every process)."""
    from tickvault.feeds.sim.generator import simulate_session

    arr = simulate_session(SYMBOL, DAY, trades_per_day=int(n * 1.25) + 1000, seed=seed)
    out = arr.to_structured()[:n]
    if len(out) < n:
        raise BenchmarkError(f"chaos: the simulator gave {len(out)} trades, not {n}")
    return out


def _publisher(a: argparse.Namespace) -> None:
    """Replay parts on command: one JSON line on stdin each, ``{"first": i, "last": j,
    "pause": k, "mark": m}``: trades i..k-1 at full speed, then ``{"paused": k}`` once they
    are handed to ZeroMQ and a wait for a line (``go``), then trades k..j-1 at full speed
    (``{"mark": m}`` printed on the way, once trades up to m are queued) and ``{"done": j,
    "seq": last seq}`` once handed to ZeroMQ. EOF ends it."""
    from tickvault.config import load_settings
    from tickvault.transport.publisher import Publisher

    arr = _replay_trades(a.trades, a.seed)
    pub = Publisher(load_settings())
    time.sleep(_JOIN_S)
    print(json.dumps({"id": f"{pub.id:016x}"}), flush=True)

    def send(first: int, last: int, mark: int = -1) -> None:
        for i in range(first, last, CHUNK):
            if 0 <= mark <= i:
                print(json.dumps({"mark": mark}), flush=True)
                mark = -1
            chunk = arr[i : min(i + CHUNK, last)].copy()
            chunk["ts_recv"] = time.time_ns()
            pub.publish_trades(SYMBOL, chunk)
        pub.flush(_GUARD_S)

    for line in sys.stdin:
        if not line.strip():
            break
        cmd = json.loads(line)
        first, last = int(cmd["first"]), int(cmd["last"])
        pause = min(max(int(cmd.get("pause", first)), first), last)
        if pause > first:
            send(first, pause)
            print(json.dumps({"paused": pause}), flush=True)
            sys.stdin.readline()
        send(pause, last, int(cmd.get("mark", -1)))
        print(json.dumps({"done": last, "seq": pub.stats().messages}), flush=True)
    pub.close()


# ---------------------------------------------------------------------- orchestration
Procs = dict[str, tuple[subprocess.Popen[bytes], Path]]


class _Lab:
    """The processes, the server and the checks of one chaos run."""

    def __init__(self, vault: Vault, trades: npt.NDArray[np.void], env: dict[str, str],
                 models: bool, say: Callable[[str], None]) -> None:  # fmt: skip
        from tickvault.engine.rows import FeatureRows
        from tickvault.engine.signals import SignalStore

        self.vault = vault
        self.arr = trades
        self.env = env
        self.models = models
        self.say = say
        self.data_dir = vault.settings.data_dir
        self.logs = self.data_dir / "chaos-logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: Procs = {}
        self.pub: subprocess.Popen[str] | None = None
        self.pub_id = 0
        self.pub_env: dict[str, str] = {}
        self.pub_starts = 0
        self.pub_signals_port = free_tcp_ports(1)[0]
        self.rows = FeatureRows(vault)
        self.signals = SignalStore(vault)
        self.cmds = {
            "bridge": ["tickvault.cli.main", "bridge", "--symbols", SYMBOL],
            "feature worker": ["tickvault.cli.main", "features", "run", "--symbols", SYMBOL],
        }
        if models:
            self.cmds["model worker"] = ["tickvault.cli.main", "ml", "run", "--symbols", SYMBOL]

    # -------------------------------------------------------------- processes
    def start(self, name: str) -> None:
        log = self.logs / f"{name.replace(' ', '-')}.log"
        with log.open("ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", *self.cmds[name]], env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err)  # fmt: skip
        self.procs[name] = (proc, log)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name][0]
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def start_publisher(self, extra_env: Mapping[str, str] | None = None) -> None:
        self.pub_env = {**self.env, "TICKVAULT_ZMQ_SIGNALS_PORT": str(self.pub_signals_port),
                        **(extra_env or {})}  # fmt: skip
        self.pub_starts += 1
        log = self.logs / f"publisher-{self.pub_starts}.log"
        with log.open("ab") as err:
            self.pub = subprocess.Popen(
                [sys.executable, "-m", "tickvault.bench.chaos", "publisher",
                 "--trades", str(len(self.arr))],
                env=self.pub_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, text=True,
            )  # fmt: skip
        self.procs["publisher"] = (self.pub, log)  # type: ignore[assignment]
        self.pub_id = int(json.loads(self._pub_line())["id"], 16)

    def stop_publisher(self) -> None:
        if self.pub is not None and self.pub.poll() is None:
            assert self.pub.stdin is not None
            with suppress(BrokenPipeError):
                self.pub.stdin.write("\n")
                self.pub.stdin.flush()
            try:
                self.pub.wait(_GUARD_S)
            except subprocess.TimeoutExpired:
                self.pub.kill()
                self.pub.wait()

    def _pub_line(self) -> str:
        assert self.pub is not None and self.pub.stdout is not None
        line = self.pub.stdout.readline()
        if not line:
            raise BenchmarkError(f"chaos: the publisher process exited: {self._tail('publisher')}")
        return line

    def _tail(self, name: str) -> str:
        log = self.procs[name][1]
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def send(self, first: int, last: int, pause: int = -1, mark: int = -1) -> None:
        """Send trades first..last-1; with ``pause``, wait until first..pause-1 are sent."""
        assert self.pub is not None and self.pub.stdin is not None
        cmd = {"first": first, "last": last, "pause": pause, "mark": mark}
        self.pub.stdin.write(json.dumps(cmd) + "\n")
        self.pub.stdin.flush()
        if pause > first:
            answer = json.loads(self._pub_line())
            if answer.get("paused") != pause:
                raise BenchmarkError(f"chaos: the publisher answered {answer}")

    def go(self) -> None:
        """Let a paused publisher send the rest of its part."""
        assert self.pub is not None and self.pub.stdin is not None
        self.pub.stdin.write("go\n")
        self.pub.stdin.flush()

    def close(self) -> None:
        self.stop_publisher()
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def check_alive(self) -> None:
        for name, (proc, _) in self.procs.items():
            if name != "publisher" and proc.poll() is not None:
                raise BenchmarkError(f"chaos: the {name} exited by itself: {self._tail(name)}")

    # -------------------------------------------------------------- the server
    def kill_server(self) -> None:
        info = read_state(self.data_dir.resolve())
        if info is None:
            raise BenchmarkError("chaos: the embedded server is not running")
        os.kill(info.pid, signal.SIGKILL)
        while True:  # gone (it is not our child: poll for it)
            try:
                os.kill(info.pid, 0)
            except ProcessLookupError:
                break
            with suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)
            time.sleep(0.005)

    def restart_server(self, *, clean: bool) -> None:
        if clean:
            stop_server(self.data_dir)  # SHUTDOWN: the AOF written and fsynced
        port = self.vault_port()
        info, _ = ensure_server(self.data_dir)
        if info.port != port:
            raise BenchmarkError(f"chaos: the server came back on port {info.port}, not {port}")

    def vault_port(self) -> int:
        return int(self.vault.url.rsplit(":", 1)[1].split("/")[0])

    # -------------------------------------------------------------- positions
    def _safe(self, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except ServerError:
            return default

    def records(self) -> int:
        live = ("realtime", "compacted")
        return int(self._safe(lambda: sum(s.trades for s in self.vault.stats(SYMBOL)
                                          if s.stream in live), -1))  # fmt: skip

    def feature_pos(self) -> tuple[int, int]:
        c = self._safe(lambda: self.rows.cursor(SYMBOL), {})
        return (int(c["ts"]), int(c["tid"])) if "ts" in c else (-1, -1)

    def model_cursor(self) -> dict[str, str]:
        return dict(self._safe(lambda: self.signals.cursor(SYMBOL), {}))

    def wait(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _GUARD_S
        while not cond():
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchmarkError(f"chaos: gave up waiting for {what}")
            time.sleep(_POLL_S)


@dataclass
class _Part:
    first: int
    last: int
    sent: npt.NDArray[np.void]
    records_before: int
    rows_decided_before: int


def _segment(lab: _Lab, first: int, last: int) -> _Part:
    c = lab.model_cursor()
    return _Part(first, last, lab.arr[first:last], lab.records(), int(c.get("rows") or 0))


def _lead(part: _Part) -> int:
    """Index of the first trade after the part's lead (``LEAD``)."""
    return part.first + max(1, int((part.last - part.first) * LEAD))


def _settled(lab: _Lab, part: _Part, lossy: bool = False) -> Callable[[], bool]:
    """Everything of the part in place: stored, its rows written and decided (``lossy``,
    the documented loss: every trade stored or inside a gap marker, the rows and the
    decisions up to the part's last trade)."""
    n = part.last - part.first
    last_ts, last_tid = int(part.sent["ts_event"][-1]), int(part.sent["trade_id"][-1])
    last_t = str(last_ts + 1)

    def done() -> bool:
        if lab.records() - part.records_before < n and not (lossy and _accounted(lab, part)):
            return False
        if lab.feature_pos() != (last_ts, last_tid):
            return False
        return not lab.models or lab.model_cursor().get("T") == last_t

    return done


def _accounted(lab: _Lab, part: _Part) -> bool:
    """Every trade of the part stored or inside one of the store's gap markers."""
    sent = part.sent
    lo, hi = int(sent["ts_event"][0]), int(sent["ts_event"][-1]) + 1
    stored = lab.vault.range_columns(SYMBOL, lo, hi, streams=("realtime",))
    gaps = [(g.start_ns, g.end_ns) for g in lab.vault.gaps(SYMBOL, lo, hi)]
    check = check_trades(sent, stored, len(stored["trade_id"]), gaps)
    return check.lost_outside_gaps == 0


def _progress(lab: _Lab) -> tuple[Any, ...]:
    return (lab.records(), lab.feature_pos(), lab.model_cursor().get("rows"))


def _wait_settled(lab: _Lab, part: _Part, stall_s: float, lossy: bool = False) -> bool:
    """Until the part is in place (True), or nothing moved for ``stall_s`` (False)."""
    done = _settled(lab, part, lossy)
    last, moved = _progress(lab), time.monotonic()
    deadline = time.monotonic() + _GUARD_S
    while not done():
        lab.check_alive()
        now = time.monotonic()
        seen = _progress(lab)
        if seen != last:
            last, moved = seen, now
        elif now - moved > stall_s or now > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _check(lab: _Lab, part: _Part, scenario: str) -> Row:
    from tickvault.engine.rows import FeatureRows

    sent = part.sent
    lo, hi = int(sent["ts_event"][0]), int(sent["ts_event"][-1]) + 1
    stored = lab.vault.range_columns(SYMBOL, lo, hi, streams=("realtime",))
    gaps = [(g.start_ns, g.end_ns) for g in lab.vault.gaps(SYMBOL, lo, hi)]
    trades = check_trades(sent, stored, lab.records() - part.records_before, gaps)
    row = Row(scenario, trades, expected_loss=scenario == EXPECTED_LOSS)
    exp_t, exp_tid = expected_rows(sent["ts_event"], sent["trade_id"])
    rows = FeatureRows(lab.vault)
    latest = rows.range(SYMBOL, lo + 1, hi + 1)
    row.rows = check_rows(exp_t, exp_tid, latest.index.to_numpy(np.int64),
                          latest["last_trade_id"].to_numpy(np.int64))  # fmt: skip
    if lab.models:
        versions = rows.range(SYMBOL, lo + 1, hi + 1, versions=True)
        sig = lab.signals.range(SYMBOL, lo + 1, hi + 1)
        t_sig = sig["t_features"].to_numpy(np.int64)
        cursor = lab.model_cursor()
        row.signals = SignalCheck(
            versions=len(versions), decided=int(cursor.get("rows") or 0) - part.rows_decided_before,
            signals=len(t_sig), doubled=len(t_sig) - len(np.unique(t_sig)),
            orphan=int((~np.isin(t_sig, latest.index.to_numpy(np.int64))).sum()),
            cursor_at_end=cursor.get("T") == str(int(exp_t[-1])),
        )  # fmt: skip
    return row


# ---------------------------------------------------------------------- the scenarios
def _run_scenario(lab: _Lab, scenario: str, first: int, last: int, stop_s: float,
                  stall_s: float) -> Row:  # fmt: skip
    """One scenario on trades first..last-1 (module docstring): the lead sent; once the
    process under test has handled it, the rest sent at full speed and the fault injected
    as it arrives; restart; wait; check."""
    part = _segment(lab, first, last)
    lead_i = _lead(part)
    n_lead = lead_i - first
    notes: list[str] = []
    if scenario == EXPECTED_LOSS:  # a publisher without a journal and a small buffer
        lab.stop_publisher()
        lab.start_publisher({"TICKVAULT_JOURNAL": "false",
                             "TICKVAULT_ZMQ_REPLAY_BUFFER_MB": str(OVERRUN_BUFFER_MB),
                             "TICKVAULT_ZMQ_HWM": str(OVERRUN_HWM),
                             "TICKVAULT_ZMQ_REPLAY_TIMEOUT_S": "1"})  # fmt: skip
    target = {
        "kill -9 feature worker": "feature worker", "kill -9 model worker": "model worker",
    }.get(scenario, "bridge")  # fmt: skip
    mark = (lead_i + last) // 2 if scenario == "kill -9 publisher" else -1
    lab.send(first, last, lead_i, mark)

    def at_lead() -> bool:  # the target has handled the lead
        if target == "bridge":
            return lab.records() - part.records_before >= n_lead
        if target == "feature worker":
            return lab.feature_pos() >= (int(lab.arr["ts_event"][lead_i - 1]),
                                         int(lab.arr["trade_id"][lead_i - 1]))  # fmt: skip
        return int(lab.model_cursor().get("T") or 0) > int(lab.arr["ts_event"][lead_i - 1])

    lab.wait(at_lead, f"the {target} to handle the part's first trades")
    if scenario == EXPECTED_LOSS:  # stopped before the rest is sent: all of it while stopped
        lab.signal("bridge", signal.SIGSTOP)
        t_stop = time.monotonic()
    lab.go()  # the rest goes out at full speed: the fault comes as it arrives
    if scenario == "kill -9 publisher":  # half-way through the rest: some of it queued
        json.loads(lab._pub_line())
    t_fault = time.monotonic()
    stored_at_fault = (lab.records() - part.records_before) / (last - first)
    pub_done = False
    if scenario == "no fault":
        pass
    elif scenario == "kill -9 publisher":  # while it sends the rest
        lab.signal("publisher", signal.SIGKILL)
        t_fault = time.monotonic()
        resume = _journaled_until(lab, part)
        notes.append(f"killed with {resume - first:,} of the part's trades journaled; the "
                     f"restarted replay sends the {last - resume:,} after them")  # fmt: skip
        lab.start_publisher()
        lab.send(resume, last)
    elif scenario in ("kill -9 bridge", "kill -9 feature worker", "kill -9 model worker"):
        lab.signal(target, signal.SIGKILL)
        lab.start(target)
    elif scenario in ("kill -9 valkey", "kill -9 bridge + valkey"):
        if scenario == "kill -9 bridge + valkey":
            lab.signal("bridge", signal.SIGKILL)
        lab.kill_server()
        lab.restart_server(clean=False)
        if scenario == "kill -9 bridge + valkey":
            lab.start("bridge")
    elif scenario == "SIGSTOP bridge":
        lab.signal("bridge", signal.SIGSTOP)
        time.sleep(stop_s)  # the fault itself: the bridge stopped this long
        lab.signal("bridge", signal.SIGCONT)
        t_fault = time.monotonic()
        notes.append(f"stopped {stop_s:g} s; time to recover from SIGCONT")
    elif scenario == "valkey restart (SHUTDOWN)":
        lab.restart_server(clean=True)
    elif scenario == EXPECTED_LOSS:
        _expect_done(lab, last)  # all sent while the bridge is stopped
        pub_done = True
        time.sleep(max(0.0, stop_s - (time.monotonic() - t_stop)))
        lab.signal("bridge", signal.SIGCONT)
        t_fault = time.monotonic()
        notes.append(
            f"bridge stopped {stop_s:g} s while {last - lead_i:,} trades were sent; "
            f"replay buffer {OVERRUN_BUFFER_MB:g} MiB, send queue "
            f"{OVERRUN_HWM} messages, no journal; time to recover from SIGCONT"
        )
    else:
        raise BenchmarkError(f"chaos: unknown scenario {scenario!r}")
    if not pub_done:
        _expect_done(lab, last)
    settled = _wait_settled(lab, part, stall_s, lossy=scenario == EXPECTED_LOSS)
    recover = time.monotonic() - t_fault
    row = _check(lab, part, scenario)
    row.recover_s = round(recover, 2) if settled else None
    row.fault_at = "" if scenario == "no fault" else f"{stored_at_fault:.0%} of the part stored"
    if not settled:
        notes.append(f"not everything in place: nothing moved for {stall_s:g} s")
    row.notes = notes
    if scenario == EXPECTED_LOSS:  # back to the normal publisher for what follows
        lab.stop_publisher()
        lab.start_publisher()
    return row


def _expect_done(lab: _Lab, last: int) -> None:
    done = json.loads(lab._pub_line())
    if done.get("done") != last:
        raise BenchmarkError(f"chaos: the publisher answered {done}")


def _journaled_until(lab: _Lab, part: _Part) -> int:
    """Index after the last trade the killed publisher journaled (and so may have sent)."""
    from tickvault.transport import wire
    from tickvault.transport.journal import JournalReader

    reader = JournalReader(lab.vault.settings.journal_path, lab.pub_id)
    try:
        last_seq = reader.topics().get(TOPIC, 0)
        if not last_seq:
            return part.first
        answer = reader.get(TOPIC, last_seq, last_seq)
        if not answer.bodies:
            return part.first
        msg = wire.decode([TOPIC.encode(), answer.bodies[-1]], max_bytes=1 << 30)
        last_tid = int(msg.records()["trade_id"][-1])
    finally:
        reader.close()
    hit = np.flatnonzero(lab.arr["trade_id"] == last_tid)
    return int(hit[0]) + 1 if hit.size else part.first


def _train(vault: Vault, sessions: int, session_trades: int, estimator: str) -> str:
    """A fast model on ``sessions`` seeded sessions, promoted; its version."""
    from tickvault.engine.training import metadata, train
    from tickvault.live.seed import seed_sessions
    from tickvault.models.registry import Registry
    from tickvault.venue.b3 import previous_sessions

    seed_sessions(vault, SYMBOL, sessions, before=DAY, trades_per_day=session_trades)
    first = previous_sessions(SYMBOL, DAY, sessions)[0]
    reg = Registry.of_data_dir(vault.settings.data_dir)
    result = train(vault, SYMBOL, first, DAY, folds=2, estimator=estimator, features="fast")
    version = reg.save(SYMBOL, result.model, metadata(result))
    reg.promote(version)
    return version


@contextmanager
def _lab(vault: Vault, arr: Any, env: dict[str, str], models: bool,
         say: Callable[[str], None]) -> Iterator[_Lab]:  # fmt: skip
    lab = _Lab(vault, arr, env, models, say)
    try:
        yield lab
    finally:
        lab.close()


def _fuzz(vault: Vault, messages: int, rows: int, say: Callable[[str], None]) -> dict[str, Any]:
    """--fuzz: ``tickvault.bench.fuzz.run_fuzz`` (issue 17 part 3: hostile wire messages
    against a real bridge and subscriber, malformed rows per file format) on its own
    temporary server (its quarantine entries must not push out anyone else's)."""
    from tickvault.bench import fuzz

    say(f"fuzz: {messages:,} wire messages, {rows:,} malformed rows per file format")
    with bench_vault(vault.settings) as fv:
        report = fuzz.run_fuzz(fv, messages=messages, rows=rows)
    return {"available": True, **report.to_dict(), "table": report.table()}


def run_chaos(
    base: Settings,
    *,
    trades: int = DEFAULT_TRADES,
    stop_seconds: float = DEFAULT_STOP_S,
    scenarios: tuple[str, ...] = SCENARIOS,
    models: bool = True,
    sessions: int = 3,
    session_trades: int = 20_000,
    estimator: str = "lightgbm",
    stall_s: float = 20.0,
    fuzz: bool = False,
    fuzz_messages: int = 10_000,
    fuzz_rows: int = 1_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The chaos suite (module docstring), on a temporary server of its own with the
    ``base`` settings (and ports of its own). Returns the rows and the run's figures."""
    say = progress or (lambda _msg: None)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise BenchmarkError(f"chaos: unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    t_start = time.monotonic()
    ports = dict(zip(_PORTS, free_tcp_ports(len(_PORTS)), strict=True))
    settings = Settings(**{**base.model_dump(), **{f"zmq_{n}_port": p for n, p in ports.items()}})
    result: dict[str, Any] = {"trades": trades, "stop_seconds": stop_seconds,
                              "load_average_start": load_average(), "models": models}  # fmt: skip
    arr = _replay_trades(trades, 0)
    cuts = split_points(arr["ts_event"], len(scenarios))
    with bench_vault(settings) as sv:
        if models:
            say(f"training a fast model on {sessions} seeded sessions of {session_trades:,} "
                "trades (the model worker needs one promoted)")  # fmt: skip
            result["model"] = _train(sv, sessions, session_trades, estimator)
        env = {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "TICKVAULT_DATA_DIR": str(sv.settings.data_dir), "TICKVAULT_VALKEY_URL": sv.url,
            **{f"TICKVAULT_ZMQ_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        }  # fmt: skip
        rows: list[Row] = []
        with _lab(sv, arr, env, models, say) as lab:
            for name in lab.cmds:
                lab.start(name)
            lab.start_publisher()
            say(f"{trades:,} trades in {len(scenarios)} parts, one per scenario")
            for k, scenario in enumerate(scenarios):
                say(f"{scenario}: trades {cuts[k]:,}..{cuts[k + 1] - 1:,}")
                row = _run_scenario(lab, scenario, cuts[k], cuts[k + 1], stop_seconds, stall_s)
                rows.append(row)
                t = row.trades
                say(f"  {'ok' if row.ok else 'FAILED'}: {t.stored:,}/{t.sent:,} stored, "
                    f"{t.lost} lost, {t.duplicated} duplicated, {t.gap_markers} gap markers, "
                    f"recovered in {row.recover_s} s")  # fmt: skip
        result["rows"] = [r.as_dict() for r in rows]
        result["ok"] = all(r.ok for r in rows)
        result["fuzz"] = _fuzz(sv, fuzz_messages, fuzz_rows, say) if fuzz else None
    result["seconds"] = round(time.monotonic() - t_start, 1)
    result["load_average_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tickvault.bench.chaos")
    p.add_argument("role", choices=["publisher"])
    p.add_argument("--trades", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    _publisher(p.parse_args(argv))


if __name__ == "__main__":
    main()


__all__ = [
    "EXPECTED_LOSS",
    "SCENARIOS",
    "Row",
    "check_rows",
    "check_trades",
    "checksum",
    "expected_rows",
    "run_chaos",
    "split_points",
]
