"""The dashboard's FastAPI app: ``create_app(vault)``.

- Pages: ``/market`` (``?symbol=``), ``/pipeline``, ``/history``; each takes
  ``?known_at=`` (an ISO time or int ns) to show the store as known at that instant.
- JSON: ``/api/symbols``, ``/api/market/{symbol}``, ``/api/pipeline``,
  ``/api/history/{symbol}`` (``?sessions=N&known_at=``).
- Pushes: the websocket ``/ws``. The page sends ``{"subscribe": "market", "symbol": S}``
  or ``{"subscribe": "pipeline"}``; the server answers with ``{"type": "snapshot", ...}``
  and then ``{"type": "delta", ...}`` messages whenever the store changes (it looks
  every ``dashboard_poll_ms``; one look per symbol serves every open page of it).
- Token: with ``dashboard_token`` set, every HTTP and websocket request must carry it
  (``Authorization: Bearer <token>``, ``X-Tickvault-Token: <token>`` or ``?token=``);
  otherwise 401 (HTTP) or close code 4401 (websocket). Pages put the token they were
  opened with into their own asset, API and websocket URLs.
- Metrics: ``/metrics``, Prometheus text format, the whole system's figures read from
  the store at each scrape (``web.metrics``); the same token rule as every request.
- Static assets (lightweight-charts with its license, the page script and style) are
  package data under ``web/static``: nothing is fetched from the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tickvault.errors import TickvaultError
from tickvault.records.validate import check_symbol
from tickvault.timeutil import to_ns
from tickvault.vault import Vault
from tickvault.web.data import DashboardData, MarketFeed
from tickvault.web.metrics import registry_of

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("tickvault.web") / "static"))
PAGES = ("market", "pipeline", "history")
PIPELINE_EVERY_S = 1.0
"""Open Pipeline pages get the page again once a second when it changed."""
CLIENT_QUEUE = 64
"""Messages waiting for one websocket; a client that falls further behind is dropped
(its page reconnects and starts from a snapshot), so a stuck page costs bounded memory."""


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class _Client:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_QUEUE)

    def put(self, text: str | None) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:  # too slow: drop it, the page reconnects
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    """Looks in the store for changes and pushes them to the subscribed pages."""

    def __init__(self, data: DashboardData, poll_s: float) -> None:
        self.data = data
        self.poll_s = poll_s
        self.market: dict[str, set[_Client]] = {}
        self.feeds: dict[str, MarketFeed] = {}
        self.pipeline: set[_Client] = set()
        self._pipeline_last = ""
        self._pipeline_at = 0.0
        self._lock = asyncio.Lock()

    async def subscribe_market(self, client: _Client, symbol: str) -> None:
        async with self._lock:
            feed = self.feeds.get(symbol)
            if feed is None:
                feed = self.feeds[symbol] = MarketFeed(self.data, symbol)
                page = await asyncio.to_thread(feed.snapshot)
            else:
                page = await asyncio.to_thread(self.data.market, symbol)
            self.market.setdefault(symbol, set()).add(client)
        client.put(_dumps({"type": "snapshot", "page": "market", **page}))

    async def subscribe_pipeline(self, client: _Client) -> None:
        page = await asyncio.to_thread(self.data.pipeline)
        self.pipeline.add(client)
        client.put(_dumps({"type": "snapshot", "page": "pipeline", **page}))

    def drop(self, client: _Client) -> None:
        self.pipeline.discard(client)
        for symbol, clients in list(self.market.items()):
            clients.discard(client)
            if not clients:
                del self.market[symbol]
                self.feeds.pop(symbol, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self._once(loop.time())
            except TickvaultError as exc:
                log.warning("dashboard: store read failed: %s", exc)
            except Exception:
                log.exception("dashboard: push failed")

    async def _once(self, now: float) -> None:
        async with self._lock:
            feeds = [(s, f) for s, f in self.feeds.items() if self.market.get(s)]
        for symbol, feed in feeds:
            delta = await asyncio.to_thread(feed.delta)
            if delta is not None:
                text = _dumps({"type": "delta", "page": "market", **delta})
                for c in list(self.market.get(symbol, ())):
                    c.put(text)
        if self.pipeline and now - self._pipeline_at >= PIPELINE_EVERY_S:
            self._pipeline_at = now
            page = await asyncio.to_thread(self.data.pipeline)
            key = _dumps({k: v for k, v in page.items() if k != "now_ns"})
            if key != self._pipeline_last:
                self._pipeline_last = key
                text = _dumps({"type": "delta", "page": "pipeline", **page})
                for c in list(self.pipeline):
                    c.put(text)


def _token_of(headers: Any, query: Any) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return str(auth[7:].strip())
    got = headers.get("x-tickvault-token") or query.get("token")
    return None if got is None else str(got)


def _ok(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def create_app(vault: Vault, *, token: str | None = None, poll_ms: float | None = None,
               data_dir: Path | None = None) -> FastAPI:  # fmt: skip
    """The dashboard app over ``vault`` (``token``: the required token, None for none)."""
    data = DashboardData(vault, data_dir=data_dir)
    poll = (poll_ms if poll_ms is not None else vault.settings.dashboard_poll_ms) / 1000
    hub = Hub(data, poll)
    tz = vault.settings.tz

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="tickvault dashboard", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.hub = hub
    app.state.data = data

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not _ok(token, _token_of(request.headers, request.query_params)):
            return JSONResponse(
                {
                    "error": "this dashboard needs its token: send the header 'Authorization: "
                    "Bearer <dashboard_token>' or add ?token=<dashboard_token> to the URL"
                },
                status_code=401,
            )
        return await call_next(request)

    @app.exception_handler(TickvaultError)
    async def tickvault_error(request: Request, exc: TickvaultError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def known(value: str | None) -> int | None:
        if value in (None, ""):
            return None
        assert value is not None
        return to_ns(int(value) if re.fullmatch(r"-?\d+", value) else value, tz,
                     name="known_at")  # fmt: skip

    def page(name: str, request: Request) -> HTMLResponse:
        given = _token_of(request.headers, request.query_params) if token else None
        qs = f"?token={quote(given)}" if given else ""
        html = (STATIC / f"{name}.html").read_text()
        html = html.replace("{{TOKEN_QS}}", qs).replace("{{PAGE}}", name)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/")
    async def index(request: Request) -> RedirectResponse:
        q = request.url.query
        return RedirectResponse("/market" + (f"?{q}" if q else ""))

    @app.get("/market", response_class=HTMLResponse)
    async def market_page(request: Request) -> HTMLResponse:
        return page("market", request)

    @app.get("/pipeline", response_class=HTMLResponse)
    async def pipeline_page(request: Request) -> HTMLResponse:
        return page("pipeline", request)

    @app.get("/history", response_class=HTMLResponse)
    async def history_page(request: Request) -> HTMLResponse:
        return page("history", request)

    def json_response(obj: Any) -> Response:
        return Response(_dumps(obj), media_type="application/json")

    @app.get("/api/symbols")
    async def symbols() -> Response:
        return json_response({"symbols": await asyncio.to_thread(data.symbols)})

    @app.get("/api/market/{symbol}")
    async def market(symbol: str, known_at: str | None = None) -> Response:
        k = known(known_at)
        return json_response(await asyncio.to_thread(data.market, check_symbol(symbol), k))

    @app.get("/api/pipeline")
    async def pipeline() -> Response:
        return json_response(await asyncio.to_thread(data.pipeline))

    @app.get("/api/history/{symbol}")
    async def history(symbol: str, sessions: int = 30, known_at: str | None = None) -> Response:
        k = known(known_at)
        sym = check_symbol(symbol)
        return json_response(await asyncio.to_thread(data.history, sym, sessions, k))

    metrics_registry = registry_of(data)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await asyncio.to_thread(generate_latest, metrics_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not _ok(token, _token_of(websocket.headers, websocket.query_params)):
            await websocket.close(code=4401, reason="dashboard_token required")
            return
        await websocket.accept()
        client = _Client(websocket)

        async def sender() -> None:
            while True:
                text = await client.queue.get()
                if text is None:
                    await websocket.close(code=4408, reason="too slow: reconnect")
                    return
                await websocket.send_text(text)

        send_task = asyncio.create_task(sender())
        try:
            while True:
                msg = orjson.loads(await websocket.receive_text())
                try:
                    if msg.get("subscribe") == "market":
                        await hub.subscribe_market(client, check_symbol(str(msg["symbol"])))
                    elif msg.get("subscribe") == "pipeline":
                        await hub.subscribe_pipeline(client)
                    else:
                        client.put(_dumps({"type": "error", "error": f"unknown request {msg}"}))
                except TickvaultError as exc:
                    client.put(_dumps({"type": "error", "error": str(exc)}))
        except (WebSocketDisconnect, RuntimeError, orjson.JSONDecodeError):
            pass
        finally:
            hub.drop(client)
            send_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await send_task

    return app
