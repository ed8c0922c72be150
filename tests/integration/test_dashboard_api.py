"""The dashboard's HTTP and websocket API on its own (FastAPI's test client over the real
embedded Valkey): the pages' data, pushes on change, known-at reads and the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.dashboard_seed import SYMBOL, seed
from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.engine.signals import SignalStore
from tickvault.records.signals import Mode, Side, Signal
from tickvault.records.trades import TradeType
from tickvault.transport.publisher import Publisher
from tickvault.web.app import create_app

TOKEN = "t0ken-for-tests"


@pytest.fixture
def seeded(vault: Vault):
    return seed(vault)


@pytest.fixture
def client(vault: Vault, seeded, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(vault, poll_ms=20, data_dir=tmp_path)) as c:
        yield c


def test_market_page_data_holds_the_stored_trades_signals_and_fills(client, seeded) -> None:
    page = client.get(f"/api/market/{SYMBOL}").json()
    last = int(seeded.ts_event[-1])
    assert page["last_ts_ns"] == last
    assert page["last_price"] == float(seeded.price[-1])
    kinds = [m["kind"] for m in page["markers"]]
    assert kinds.count("signal") == 8 and kinds.count("fill") == 8
    # the 5-minute metrics are those of the raw trades of the last five minutes
    inside = seeded.ts_event >= last + 1 - 300 * 10**9
    m = page["metrics"]
    assert m["trades"] == int(inside.sum()) and m["volume"] == int(seeded.qty[inside].sum())
    buys = seeded.qty[inside & (seeded.trade_type == TradeType.AGGRESSOR_BUY)].sum()
    assert m["buy_volume"] == int(buys)
    assert sum(b["volume"] for b in page["bars_1m"]) == int(
        seeded.qty[seeded.ts_event >= last + 1 - 600 * 60 * 10**9].sum()
    )
    assert page["position"]["fills"] == 8


def test_market_known_at_an_earlier_instant_shows_only_what_was_known_then(client, seeded) -> None:
    k = int(seeded.ts_recv[len(seeded) // 2])
    page = client.get(f"/api/market/{SYMBOL}", params={"known_at": str(k)}).json()
    assert page["live"] is False
    assert page["last_ts_ns"] == int(seeded.ts_event[seeded.ts_recv <= k].max())
    assert page["markers"] == []  # every signal was stored after k (seeded now)


def test_history_known_at_the_middle_of_the_sessions_shows_fewer_sessions(client, seeded) -> None:
    now = client.get(f"/api/history/{SYMBOL}", params={"sessions": 10}).json()
    with_trades = [s for s in now["sessions"] if s["trades"]]
    assert len(with_trades) == 6
    assert sum(s["volume"] for s in with_trades) == int(seeded.qty.sum())
    k = int(seeded.ts_recv[len(seeded) // 2])  # in the middle of session 4 of 6
    then = client.get(f"/api/history/{SYMBOL}", params={"sessions": 10, "known_at": str(k)})
    past = [s for s in then.json()["sessions"] if s["trades"]]
    assert len(past) == 4
    assert sum(s["volume"] for s in past) == int(seeded.qty[seeded.ts_recv <= k].sum())
    assert then.json()["profile"] != now["profile"]


def test_history_with_a_bad_session_count_is_a_clear_400(client) -> None:
    r = client.get(f"/api/history/{SYMBOL}", params={"sessions": 0})
    assert r.status_code == 400 and "sessions must be 1..250" in r.json()["error"]


def test_pipeline_page_data_shows_valkey_quarantine_and_bridge_reports(client, vault) -> None:
    import time

    vault.put_status("bridge:h:1", {"updated_ns": time.time_ns(), "trades_per_s": 1234.0,
                                    "lag_p50_ms": 0.8, "lag_p99_ms": 3.5, "gaps_detected": 2,
                                    "recovered_messages": 7, "lost_messages": 0,
                                    "held_bytes": 10, "max_held_bytes": 100})  # fmt: skip
    p = client.get("/api/pipeline").json()
    assert p["trades_per_s"] == pytest.approx(1234.0)
    assert (p["lag_p50_ms"], p["lag_p99_ms"]) == (0.8, 3.5)
    assert p["gaps"]["detected"] == 2 and p["gaps"]["recovered_messages"] == 7
    assert p["quarantine"]["by_reason"] == {"decode": 1}
    assert p["quarantine"]["latest"][0]["detail"] == "frame 1: bad magic (test)"
    assert p["valkey"]["maxmemory_policy"] == "noeviction"
    assert p["valkey"]["stored_trades"] == 18000 and p["valkey"]["bytes_per_trade"] > 0
    assert [pr["name"] for pr in p["processes"]] == ["bridge:h:1"]
    assert p["warnings"] == []


def test_pipeline_shows_the_processes_of_up_json_when_present(vault, seeded, tmp_path) -> None:
    import json
    import os
    import time

    run = tmp_path / "run"
    run.mkdir()
    state = {"pid": os.getpid(), "components": [
        {"name": "bridge", "state": "ready", "pid": 11, "started_ns": time.time_ns(),
         "restarts": 2, "message": ""},
        {"name": "features", "state": "starting", "pid": 12, "started_ns": time.time_ns(),
         "restarts": 0, "message": ""},
        {"name": "model", "state": "backoff", "pid": None, "started_ns": 0, "restarts": 1,
         "message": "exit 1 after 0.1 s; restart 2 in 1.0 s"},
        {"name": "train", "state": "running", "pid": 13, "started_ns": time.time_ns(),
         "restarts": 0, "message": "WINSIM: training a first fast model"}]}  # fmt: skip
    (run / "up.json").write_text(json.dumps(state))
    with TestClient(create_app(vault, data_dir=tmp_path)) as c:
        p = c.get("/api/pipeline").json()
    assert [(x["name"], x["up"], x["restarts"]) for x in p["processes"]] == [
        ("bridge", True, 2), ("features", True, 0), ("model", False, 1),
        ("train", True, 0)]  # fmt: skip
    assert "training a first fast model" in p["processes"][-1]["message"]


def test_pipeline_and_metrics_show_the_replay_buffer_fill_a_real_publisher_reports(
    vault, seeded, endpoints, tmp_path
) -> None:
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from tickvault.live.pubstatus import PublisherStatus

    small = vault.with_settings(zmq_replay_buffer_mb=0.05)  # about 52 KB: the oldest go
    vault.put_status("publisher:gone:1", {"updated_ns": time.time_ns() - 60 * 10**9,
                                          "replay_bytes": 5, "replay_max_bytes": 10})  # fmt: skip
    with Publisher(small.settings, endpoints=endpoints) as pub:
        for i in range(20):
            pub.publish_trades(SYMBOL, seeded.take(np.arange(100 * i, 100 * (i + 1))))
            assert pub.flush(30)  # one message per batch
        fill = pub.replay_fill()
        reporter = PublisherStatus(pub, small.settings, vault=vault)
        reporter.report()
    assert reporter.reports == 1 and fill.evicted > 0 and fill.messages > 0
    with TestClient(create_app(vault, data_dir=tmp_path)) as c:
        p = c.get("/api/pipeline").json()
        text = c.get("/metrics").text
    fresh, gone = p["replay_buffers"]  # newest first
    assert fresh["name"] == reporter.name and not fresh["stale"] and gone["stale"]
    assert (fresh["replay_bytes"], fresh["replay_max_bytes"]) == (fill.bytes, fill.max_bytes)
    assert fresh["fill"] == pytest.approx(fill.bytes / fill.max_bytes)
    assert (fresh["replay_messages"], fresh["replay_evicted"]) == (fill.messages, fill.evicted)
    topic = f"trade.{SYMBOL}"
    assert (fresh["oldest_topic"], fresh["oldest_seq"]) == (topic, fill.evicted + 1)
    assert fresh["topics"] == [{"topic": topic, "messages": fill.messages, "bytes": fill.bytes,
                                "first_seq": fill.evicted + 1, "last_seq": 20}]  # fmt: skip
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    me, old = (("publisher", reporter.name),), (("publisher", "publisher:gone:1"),)
    assert samples[("tickvault_publisher_up", me)] == 1
    assert samples[("tickvault_publisher_up", old)] == 0
    assert samples[("tickvault_publisher_replay_buffer_bytes", me)] == fill.bytes
    assert samples[("tickvault_publisher_replay_buffer_max_bytes", me)] == fill.max_bytes
    assert samples[("tickvault_publisher_replay_buffer_messages", me)] == fill.messages
    assert samples[("tickvault_publisher_replay_evicted_messages_total", me)] == fill.evicted
    oldest = (("publisher", reporter.name), ("topic", topic))
    assert samples[("tickvault_publisher_replay_oldest_seq", oldest)] == fill.evicted + 1


def test_websocket_market_gets_a_snapshot_then_deltas_as_trades_and_signals_arrive(
    client, vault, seeded
) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"subscribe": "market", "symbol": SYMBOL})
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["last_price"] == float(seeded.price[-1])
        new = seeded.take(np.arange(len(seeded) - 3, len(seeded))).to_structured()
        new["ts_event"] += 10**9  # one second later
        new["trade_id"] += 10_000
        new["price"] = 131_000.0
        vault.write_trades(SYMBOL, new)
        delta = ws.receive_json()
        assert delta["type"] == "delta"
        assert delta["last_price"] == 131_000.0
        assert delta["bars_1s"][-1]["close"] == 131_000.0
        t = int(new["ts_event"][-1]) + 1
        SignalStore(vault).append([Signal(SYMBOL, t, t, Side.SHORT, -0.6, 0.8, 10**9, "m2",
                                          Mode.HISTORY)])  # fmt: skip
        while "markers" not in (delta := ws.receive_json()):
            pass
        assert [(m["kind"], m["side"]) for m in delta["markers"]] == [("signal", "SHORT")]


def test_websocket_pipeline_gets_a_snapshot(client) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"subscribe": "pipeline"})
        msg = ws.receive_json()
    assert msg["type"] == "snapshot" and msg["page"] == "pipeline"


def test_websocket_unknown_symbol_or_request_is_an_error_message(client) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"subscribe": "market", "symbol": "bad symbol!"})
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"subscribe": "nothing"})
        assert "unknown request" in ws.receive_json()["error"]


# ---------------------------------------------------------------------- token
@pytest.fixture
def locked(vault: Vault, seeded, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(vault, token=TOKEN, data_dir=tmp_path)) as c:
        yield c


@pytest.mark.parametrize("url", ["/market", "/api/symbols", f"/api/market/{SYMBOL}",
                                 "/api/pipeline", "/static/dashboard.js"])  # fmt: skip
def test_with_a_token_every_http_request_without_it_is_refused(locked, url) -> None:
    assert locked.get(url).status_code == 401
    assert locked.get(url, params={"token": "wrong"}).status_code == 401
    assert locked.get(url, params={"token": TOKEN}).status_code == 200
    assert locked.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert locked.get(url, headers={"X-Tickvault-Token": TOKEN}).status_code == 200


def test_with_a_token_the_page_puts_it_into_its_own_asset_urls(locked) -> None:
    html = locked.get("/market", params={"token": TOKEN}).text
    assert f"/static/dashboard.js?token={TOKEN}" in html


def test_with_a_token_a_websocket_without_it_is_closed(locked) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, locked.websocket_connect("/ws") as ws:
        ws.receive_json()
    assert exc.value.code == 4401
    with locked.websocket_connect(f"/ws?token={TOKEN}") as ws:
        ws.send_json({"subscribe": "pipeline"})
        assert ws.receive_json()["type"] == "snapshot"
    with locked.websocket_connect("/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send_json({"subscribe": "pipeline"})
        assert ws.receive_json()["type"] == "snapshot"


def test_cli_dashboard_on_all_addresses_without_token_refuses_in_one_line(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"],
                                env={"TICKVAULT_DATA_DIR": str(tmp_path)})  # fmt: skip
    assert result.exit_code == 2
    assert "dashboard_token" in result.output and "Traceback" not in result.output


def test_market_feed_sends_throttled_panels_later_even_when_nothing_else_changes(
    vault, seeded, tmp_path
) -> None:
    """Trades arriving just after a panels update leave the 5-minute metrics due; the
    next check sends them although no further trade came (they were left stale)."""
    from tickvault.web.data import DashboardData, MarketFeed

    feed = MarketFeed(DashboardData(vault, data_dir=tmp_path), SYMBOL)
    before = feed.snapshot()["metrics"]["trades"]  # panels just sent: the next are throttled
    new = seeded.take(np.arange(len(seeded) - 3, len(seeded))).to_structured()
    new["ts_event"] += 10**9
    new["trade_id"] += 10_000
    vault.write_trades(SYMBOL, new)
    first = feed.delta()
    assert first is not None and "bars_1s" in first and "metrics" not in first
    feed.metrics_at -= 1.0  # as if the throttle interval had passed, with no new data
    later = feed.delta()
    assert later is not None and later["metrics"]["trades"] != before
    assert later["position"]["fills"] == 8
    assert feed.delta() is None  # nothing changed and nothing due


def test_cli_dashboard_stopped_by_sigterm_exits_cleanly(vault, tmp_path) -> None:
    """A supervisor (tickvault up) stops the dashboard with SIGTERM: status 0, not death
    by the signal (uvicorn re-raises the signal it stopped on)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tickvault.transport.endpoints import free_tcp_ports

    (port,) = free_tcp_ports(1)
    env = {**os.environ, "TICKVAULT_VALKEY_URL": vault.url,
           "TICKVAULT_DATA_DIR": str(tmp_path), "TICKVAULT_DASHBOARD_PORT": str(port)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tickvault.cli.main", "dashboard"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:  # serving: the pages answer
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/symbols", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_market_feed_rebuilds_the_ladder_only_when_the_stored_book_moves(
    vault: Vault, seeded, tmp_path: Path
) -> None:
    """A live page's ladder is rebuilt when a book update is stored (and sent, although no
    trade came), and not on checks where the book did not move: rebuilding an unchanged
    book four times a second was the dashboard's main cost."""
    from tests.integration.test_book import sim_book
    from tickvault.web.data import DashboardData, MarketFeed

    batches = sim_book(trades_per_day=2_000, symbols=(SYMBOL,)).updates[SYMBOL]
    assert len(batches) > 20
    vault.write_book(SYMBOL, np.concatenate(batches[:10]))
    data = DashboardData(vault, data_dir=tmp_path)
    builds = []
    real = data._ladder
    data._ladder = lambda *a: builds.append(a) or real(*a)  # type: ignore[method-assign]
    feed = MarketFeed(data, SYMBOL)
    feed.snapshot()
    builds.clear()
    for _ in range(3):  # nothing stored: no push, no rebuild, even with the panels due
        feed.metrics_at -= 1.0
        assert feed.delta() is None
    assert builds == []
    vault.write_book(SYMBOL, np.concatenate(batches[10:]))
    feed.metrics_at -= 1.0
    moved = feed.delta()
    assert moved is not None and len(builds) == 1
    bids, asks = vault.book(SYMBOL, depth=None).levels(10)
    assert [lv["price"] for lv in moved["ladder"]["bids"]] == bids["price"].tolist()
    assert [lv["qty"] for lv in moved["ladder"]["asks"]] == asks["qty"].tolist()
    new = seeded.take(np.arange(len(seeded) - 2, len(seeded))).to_structured()
    new["ts_event"] += 10**9
    new["trade_id"] += 20_000
    vault.write_trades(SYMBOL, new)
    feed.metrics_at -= 1.0
    traded = feed.delta()  # a trade, the book unchanged: panels sent with the same ladder
    assert traded is not None and traded["ladder"] == moved["ladder"] and len(builds) == 1
