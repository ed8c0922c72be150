// tickvault dashboard pages (Market, Pipeline, History). No build step, no CDN.
// Memory caps of a page left open: 1 s candles 1800 (30 min), 1 min candles 600,
// markers 500 (signals and fills), regime changes 500 (server side), quarantine 10.
"use strict";
(function () {
  const CAP_1S = 1800, CAP_1M = 600, CAP_MARKERS = 500;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const page = document.body.dataset.page;
  const LC = window.LightweightCharts;

  function withToken(url, extra) {
    const q = new URLSearchParams(extra || {});
    if (token) q.set("token", token);
    const s = q.toString();
    return s ? url + (url.includes("?") ? "&" : "?") + s : url;
  }
  function pageUrl(name, changes) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes || {})) {
      if (v === null || v === undefined || v === "") q.delete(k); else q.set(k, v);
    }
    const s = q.toString();
    return "/" + name + (s ? "?" + s : "");
  }
  for (const name of ["market", "pipeline", "history"]) {
    const a = document.getElementById("nav-" + name);
    if (a) a.href = pageUrl(name, {});
  }
  async function getJSON(url, extra) {
    const r = await fetch(withToken(url, extra));
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const $ = (id) => document.getElementById(id);
  const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
    : Number(v).toLocaleString("en-US", { maximumFractionDigits: d === undefined ? 2 : d,
                                          minimumFractionDigits: d === undefined ? 0 : Math.min(d, 2) });
  const bytes = (v) => v === null || v === undefined ? "–"
    : v > 1 << 30 ? fmt(v / (1 << 30), 2) + " GiB" : v > 1 << 20 ? fmt(v / (1 << 20), 1) + " MiB"
    : v > 1024 ? fmt(v / 1024, 1) + " KiB" : fmt(v, 0) + " B";
  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "status " + (cls || ""); }
  function rows(table, data) {   // data: array of arrays (first row: header)
    const el = $(table);
    el.replaceChildren();
    data.forEach((r, i) => {
      const tr = document.createElement("tr");
      r.forEach((c) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (c && typeof c === "object") { cell.textContent = c.text; if (c.cls) cell.className = c.cls; }
        else cell.textContent = c;
        tr.appendChild(cell);
      });
      el.appendChild(tr);
    });
  }
  const chartOptions = (el) => ({
    width: el.clientWidth, height: el.clientHeight,
    layout: { background: { color: "#0f1419" }, textColor: "#9fb3c8" },
    grid: { vertLines: { color: "#1c2530" }, horzLines: { color: "#1c2530" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });

  // ------------------------------------------------------------------ socket
  function connect(subscription, onMessage) {
    let ws = null, closed = false, retry = 500;
    function open() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(withToken(proto + "//" + location.host + "/ws"));
      ws.onopen = () => { retry = 500; ws.send(JSON.stringify(subscription)); };
      ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
      ws.onclose = () => {
        if (closed) return;
        setStatus("reconnecting", "past");
        setTimeout(open, retry); retry = Math.min(retry * 2, 10000);
      };
      ws.onerror = () => {};
    }
    open();
    return { close() { closed = true; if (ws) ws.close(); } };
  }

  // ------------------------------------------------------------------ symbol and known-at controls
  async function setupControls(onChange) {
    const sel = $("symbol");
    const { symbols } = await getJSON("/api/symbols");
    let symbol = params.get("symbol") || symbols[0] || "";
    if (symbol && !symbols.includes(symbol)) symbols.push(symbol);
    sel.replaceChildren(...symbols.map((s) => { const o = document.createElement("option"); o.value = s; o.textContent = s; return o; }));
    sel.value = symbol;
    const known = params.get("known_at");
    if (known) { $("known-at").value = known.slice(0, 19); $("known-label").textContent = "as known at " + known; }
    sel.onchange = () => { location.href = withTokenless(pageUrl(page, { symbol: sel.value })); };
    $("known-apply").onclick = () => {
      const v = $("known-at").value;
      if (v) location.href = pageUrl(page, { known_at: v.length === 16 ? v + ":00" : v });
    };
    $("known-live").onclick = () => { location.href = pageUrl(page, { known_at: null }); };
    return { symbol, known };
  }
  function withTokenless(u) { return u; }   // the page URL already carries the token

  // ------------------------------------------------------------------ market
  function marketPage(ctl) {
    const el = $("chart");
    const chart = LC.createChart(el, chartOptions(el));
    const candles = chart.addSeries(LC.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
      wickUpColor: "#26a69a", wickDownColor: "#ef5350" });
    const volume = chart.addSeries(LC.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "", color: "#3b4b5e" });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    const markerApi = LC.createSeriesMarkers(candles, []);
    window.addEventListener("resize", () => chart.applyOptions({ width: el.clientWidth }));
    const state = { res: "1s", bars: { "1s": [], "1m": [] }, markers: [] };
    window.tickvault = state;   // for tests and the curious: what the page holds

    function volBar(b) { return { time: b.time, value: b.volume, color: b.close >= b.open ? "#1f5f58" : "#7a2f2e" }; }
    function redraw() {
      const bars = state.bars[state.res];
      candles.setData(bars);
      volume.setData(bars.map(volBar));
      drawMarkers();
    }
    function drawMarkers() {
      const bars = state.bars[state.res];
      if (!bars.length) { markerApi.setMarkers([]); return; }
      const step = state.res === "1s" ? 1 : 60, first = bars[0].time;
      const ms = state.markers
        .map((m) => ({ time: Math.floor(m.time / step) * step, position: m.position, color: m.color, shape: m.shape, text: m.text }))
        .filter((m) => m.time >= first)
        .sort((a, b) => a.time - b.time);
      markerApi.setMarkers(ms);
    }
    function merge(list, incoming, cap) {
      for (const b of incoming) {
        const last = list.length ? list[list.length - 1] : null;
        if (last && b.time < last.time) {
          const i = list.findIndex((x) => x.time === b.time);
          if (i >= 0) list[i] = b;   // a late trade changed an older bar
          continue;
        }
        if (last && b.time === last.time) list[list.length - 1] = b; else list.push(b);
      }
      if (list.length > cap) list.splice(0, list.length - cap);
    }
    function applyBars(key, incoming) {
      if (!incoming || !incoming.length) return false;
      const list = state.bars[key];
      const before = list.length ? list[list.length - 1].time : -Infinity;
      const older = incoming.some((b) => b.time < before);
      const grew = list.length;
      merge(list, incoming, key === "1s" ? CAP_1S : CAP_1M);
      if (key !== state.res) return false;
      if (older || list.length < grew) { redraw(); return true; }
      for (const b of incoming) if (b.time >= before) { candles.update(b); volume.update(volBar(b)); }
      return false;
    }
    function panels(p) {
      if (p.last_price !== undefined && p.last_price !== null) $("last-price").textContent = fmt(p.last_price);
      if (p.last_ts) $("last-ts").textContent = p.last_ts;
      if (p.metrics) {
        const m = p.metrics;
        $("metric-volume").textContent = fmt(m.volume, 0);
        $("metric-trades").textContent = fmt(m.trades, 0);
        $("metric-change").textContent = fmt(m.price_change) + (m.price_change_pct === null ? "" : " (" + fmt(m.price_change_pct, 3) + "%)");
        $("metric-change").className = m.price_change > 0 ? "up" : m.price_change < 0 ? "down" : "";
        $("metric-avg").textContent = fmt(m.avg_trade_size);
        $("metric-ratio").textContent = fmt(m.buy_sell_ratio, 3);
      }
      if (p.position) {
        const q = p.position;
        $("pos-qty").textContent = fmt(q.qty, 0);
        $("pos-avg").textContent = fmt(q.avg_price);
        $("pos-realized").textContent = fmt(q.realized);
        $("pos-open").textContent = fmt(q.open_pnl);
        $("pos-total").textContent = fmt(q.total_pnl);
        $("pos-total").className = q.total_pnl > 0 ? "up" : q.total_pnl < 0 ? "down" : "";
      }
      if (p.ladder) {
        const L = p.ladder, n = Math.max(L.bids.length, L.asks.length), data = [["bid qty", "bid", "ask", "ask qty"]];
        for (let i = 0; i < n; i++) {
          const b = L.bids[i], a = L.asks[i];
          data.push([b ? fmt(b.qty, 0) : "", { text: b ? fmt(b.price) : "", cls: "bid" }, { text: a ? fmt(a.price) : "", cls: "ask" }, a ? fmt(a.qty, 0) : ""]);
        }
        if (n === 0) data.push(["", "no book", "", ""]);
        rows("ladder", data);
      }
      if (p.features) {
        $("regime").textContent = p.features.regime || "–";
        rows("features", [["feature", "value"]].concat(p.features.values.map((v) => [v.name, typeof v.value === "number" ? fmt(v.value, 4) : (v.value ?? "–")])));
      }
    }
    function markers(list) {
      if (!list || !list.length) return;
      state.markers = state.markers.concat(list);
      if (state.markers.length > CAP_MARKERS) state.markers.splice(0, state.markers.length - CAP_MARKERS);
      $("signal-count").textContent = state.markers.filter((m) => m.kind === "signal").length;
      $("fill-count").textContent = state.markers.filter((m) => m.kind === "fill").length;
      drawMarkers();
    }
    function snapshot(p) {
      state.bars["1s"] = p.bars_1s.slice(-CAP_1S);
      state.bars["1m"] = p.bars_1m.slice(-CAP_1M);
      state.markers = [];
      redraw();
      $("signal-count").textContent = "0"; $("fill-count").textContent = "0";
      markers(p.markers);
      panels(p);
      if (p.empty) $("last-ts").textContent = "no trades stored for " + p.symbol;
      chart.timeScale().scrollToRealTime();
    }
    for (const r of ["1s", "1m"]) {
      $("res-" + r).onclick = () => {
        state.res = r;
        document.querySelectorAll("button.res").forEach((b) => b.classList.toggle("active", b.id === "res-" + r));
        redraw();
      };
    }
    if (!ctl.symbol) { setStatus("no symbols stored yet"); return; }
    if (ctl.known) {
      getJSON("/api/market/" + encodeURIComponent(ctl.symbol), { known_at: ctl.known })
        .then((p) => { snapshot(p); setStatus("as known at " + ctl.known, "past"); })
        .catch((e) => setStatus(String(e.message || e), "past"));
      return;
    }
    connect({ subscribe: "market", symbol: ctl.symbol }, (msg) => {
      if (msg.type === "error") { setStatus(msg.error, "past"); return; }
      if (msg.type === "snapshot") snapshot(msg);
      else {
        applyBars("1m", msg.bars_1m); applyBars("1s", msg.bars_1s);
        markers(msg.markers); panels(msg);
      }
      state.updates = (state.updates || 0) + 1;
      setStatus("live", "live");
    });
  }

  // ------------------------------------------------------------------ pipeline
  function pipelinePage() {
    function show(p) {
      rows("processes", [["process", "state", "pid", "uptime", "restarts", "note"]].concat(
        p.processes.map((c) => [c.name, { text: c.up ? "up" : (c.state || "down"), cls: c.up ? "up" : "down" },
          c.pid ?? "–", c.uptime_s === null ? "–" : fmt(c.uptime_s, 0) + " s",
          c.restarts ?? "–", c.message || ""])));
      if (!p.processes.length) rows("processes", [["process", "state"], ["no tickvault up and no bridge reporting", "–"]]);
      $("p-rate").textContent = fmt(p.trades_per_s, 0);
      $("p-lag50").textContent = p.lag_p50_ms === null ? "–" : fmt(p.lag_p50_ms, 2) + " ms";
      $("p-lag99").textContent = p.lag_p99_ms === null ? "–" : fmt(p.lag_p99_ms, 2) + " ms";
      $("p-gaps").textContent = fmt(p.gaps.detected, 0);
      $("p-recovered").textContent = fmt(p.gaps.recovered_messages, 0);
      $("p-lost").textContent = fmt(p.gaps.lost_messages, 0);
      $("p-unrecovered").textContent = fmt(p.gaps.unrecovered_markers, 0);
      const v = p.valkey;
      $("v-memory").textContent = bytes(v.used_memory);
      $("v-trades").textContent = fmt(v.stored_trades, 0);
      $("v-bpt").textContent = fmt(v.bytes_per_trade, 1);
      $("v-persist").textContent = v.aof ? "AOF, appendfsync " + v.appendfsync : "no AOF";
      $("v-policy").textContent = v.maxmemory_policy || "–";
      rows("buffers", [["buffer", "held", "of"]].concat(p.buffers.map((b) => [b.name, bytes(b.held_bytes), bytes(b.max_held_bytes)])));
      const replay = p.replay_buffers || [];
      rows("replay-buffers", [["replay buffer", "held", "of", "fill", "messages", "evicted", "oldest held"]].concat(
        replay.length ? replay.map((r) => [{ text: r.name, cls: r.stale ? "down" : "" }, bytes(r.replay_bytes), bytes(r.replay_max_bytes),
          r.fill === null ? "–" : fmt(100 * r.fill, 1) + " %", fmt(r.replay_messages, 0), fmt(r.replay_evicted, 0),
          r.oldest_topic ? r.oldest_topic + " #" + fmt(r.oldest_seq, 0) : "–"])
          : [["no publisher reporting", "–", "–", "–", "–", "–", "–"]]));
      rows("replay-topics", [["topic", "messages", "held", "oldest seq", "last seq"]].concat(
        replay.filter((r) => !r.stale).flatMap((r) => r.topics.map((t) => [t.topic, fmt(t.messages, 0), bytes(t.bytes),
          t.first_seq ? fmt(t.first_seq, 0) : "–", fmt(t.last_seq, 0)]))));
      rows("workers", [["symbol", "deadline misses", "predictions", "signals", "skipped", "p99 fast µs"]].concat(
        p.workers.map((w) => [w.symbol, { text: fmt(w.misses, 0), cls: w.misses ? "warn" : "" }, fmt(w.predictions, 0), fmt(w.signals, 0), fmt(w.skipped, 0), fmt(w.p99_fast_us, 0)])));
      rows("quarantine-reasons", [["reason", "messages"]].concat(Object.entries(p.quarantine.by_reason).map(([r, n]) => [r, n])));
      rows("quarantine-latest", [["when", "reason", "detail"]].concat(p.quarantine.latest.map((q) => [q.ts, q.reason, q.detail])));
      const ul = $("warnings"); ul.replaceChildren();
      for (const w of p.warnings) { const li = document.createElement("li"); li.textContent = w; ul.appendChild(li); }
      if (!p.warnings.length) { const li = document.createElement("li"); li.textContent = "none"; li.className = "up"; ul.appendChild(li); }
    }
    connect({ subscribe: "pipeline" }, (msg) => {
      if (msg.type === "error") { setStatus(msg.error, "past"); return; }
      show(msg); setStatus("live", "live");
    });
  }

  // ------------------------------------------------------------------ history
  function historyPage(ctl) {
    const charts = {};
    function small(id, kind) {
      const el = $(id);
      const c = LC.createChart(el, { ...chartOptions(el), timeScale: { timeVisible: kind === "clock", secondsVisible: false } });
      const s = kind === "line-clock" || kind === "line"
        ? c.addSeries(LC.LineSeries, { color: "#ff9800", lineWidth: 2 })
        : c.addSeries(LC.HistogramSeries, { color: "#4fc3f7" });
      charts[id] = s;
      return s;
    }
    const vp = small("h-volume-profile", "clock"), xp = small("h-vol-profile", "clock");
    const sv = small("h-session-volume", "day"), sx = small("h-session-vol", "line");
    const clock = (m) => m * 60;   // minutes of the local day as chart seconds: the axis reads HH:MM
    async function load() {
      const n = $("n-sessions").value || "30";
      const extra = { sessions: n };
      if (ctl.known) extra.known_at = ctl.known;
      const h = await getJSON("/api/history/" + encodeURIComponent(ctl.symbol), extra);
      vp.setData(h.profile.map((b) => ({ time: clock(b.minute), value: b.volume })));
      xp.setData(h.profile.filter((b) => b.volatility !== null).map((b) => ({ time: clock(b.minute), value: b.volatility })));
      sv.setData(h.sessions.map((s) => ({ time: s.date, value: s.volume })));
      sx.setData(h.sessions.filter((s) => s.volatility !== null).map((s) => ({ time: s.date, value: s.volatility })));
      const total = h.sessions.reduce((a, s) => a + s.volume, 0), traded = h.sessions.filter((s) => s.trades > 0).length;
      $("history-summary").textContent = traded + " sessions with trades, volume " + fmt(total, 0) + (h.last_ts ? " · last trade " + h.last_ts : "");
      rows("regimes", [["from", "regime"]].concat(h.regimes.slice().reverse().map((r) => [r.time, r.regime])));
      if (!h.regimes.length) rows("regimes", [["from", "regime"], ["–", "no feature rows stored in these sessions"]]);
      window.tickvault = { history: h };
      setStatus(ctl.known ? "as known at " + ctl.known : "now", ctl.known ? "past" : "live");
    }
    $("n-sessions").onchange = () => load().catch((e) => setStatus(String(e.message || e), "past"));
    if (!ctl.symbol) { setStatus("no symbols stored yet"); return; }
    load().catch((e) => setStatus(String(e.message || e), "past"));
  }

  if (page === "pipeline") pipelinePage();
  else setupControls().then((ctl) => (page === "market" ? marketPage(ctl) : historyPage(ctl)))
    .catch((e) => setStatus(String(e.message || e), "past"));
})();
