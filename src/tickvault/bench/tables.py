"""The tables ``tickvault bench`` prints from each benchmark's result (``--json`` prints
the result itself)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table


def store_table(result: Any, trades: int) -> list[RenderableType]:
    """The table of ``tickvault bench store``."""
    shown: list[RenderableType] = []
    table = Table(title=f"bench store: {trades:,} trades")
    table.add_column("")
    for col in ("ingest trades/s", "read trades/s", "bytes/trade"):
        table.add_column(col, justify="right")
    keys = ("ingest_trades_per_s", "read_trades_per_s", "bytes_per_trade")
    for name, label in (("tickvault", "tickvault"), ("original_design", "original layout")):
        f = result[name]
        table.add_row(
            label, *(f"{f[k]:,.0f}" if k != "bytes_per_trade" else f"{f[k]:.2f}" for k in keys)
        )
    r = result["ratio"]
    table.add_row("ratio", f"{r['ingest']}x", f"{r['read']}x", f"{r['bytes']}x smaller")
    shown.append(table)
    return shown


def import_table(result: Any, trades: int) -> list[RenderableType]:
    """The table of ``tickvault bench import``."""
    shown: list[RenderableType] = []
    table = Table(title=f"bench import: {trades:,} trades ({result['file_mb']} MB)")
    table.add_column("")
    table.add_column("trades/s", justify="right")
    table.add_row("tickvault import", f"{result['trades_per_s']:,}")
    table.add_row("original design", f"{result['original_design']['trades_per_s']:,}")
    table.add_row("ratio", f"{result['ratio']}x")
    shown.append(table)
    return shown


def book_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault bench book``."""
    shown: list[RenderableType] = []
    ms = result["book_ms"]
    table = Table(title=f"bench book: {result['book_updates']:,} updates in a day")
    table.add_column("")
    table.add_column("book(at=t, depth=10)", justify="right")
    table.add_row("tickvault p50 / p99", f"{ms['p50']} / {ms['p99']} ms")
    table.add_row("replay the day (original)", f"{result['original_design_ms_median']} ms")
    table.add_row("ratio", f"{result['ratio']}x")
    shown.append(table)
    return shown


def live_table(result: Any, rate: float, trades: int) -> list[RenderableType]:
    """The table of ``tickvault bench live``."""
    shown: list[RenderableType] = []
    table = Table(title=f"bench live: {trades:,} trades, lag at {rate:,.0f} trades/s")
    for col in ("design", "trades/s", "lost", "duplicated", "lag p50 ms", "lag p99 ms"):
        table.add_column(col, justify="right")
    for name, label in (("tickvault", "tickvault"), ("original_design", "original design")):
        row = result[name]
        table.add_row(
            label,
            f"{row['trades_per_s']:,}",
            f"{row['lost']:,}",
            f"{row['duplicated']:,}",
            f"{row['lag_ms']['p50']:,.2f}",
            f"{row['lag_ms']['p99']:,.2f}",
        )
    shown.append(table)
    shown.append(f"throughput ratio: {result['ratio']['throughput']}x")
    stages = result["tickvault"].get("lag_stages")
    if stages and stages.get("messages"):
        st = Table(title=f"tickvault lag by stage ({stages['messages']:,} messages, "
                         f"{stages['cycles']:,} write cycles)")  # fmt: skip
        for col in ("stage", "p50 ms", "p99 ms", "mean in the p99 tail ms"):
            st.add_column(col, justify="right")
        for name, row in stages["stages_ms"].items():
            st.add_row(name.replace("_", " "), f"{row['p50']:.3f}", f"{row['p99']:.3f}",
                       f"{row['tail_mean']:.3f}")  # fmt: skip
        shown.append(st)
        gc = stages["gc"]
        shown.append(f"bridge garbage collections: {gc['collections']}, longest "
                     f"{gc['longest_ms']:.2f} ms, total {gc['total_ms']:.1f} ms")  # fmt: skip
        events = stages.get("server_latency_ms") or {}
        shown.append(
            "Valkey latency events of 1 ms or more: "
            + (", ".join(f"{k} {v:g} ms" for k, v in sorted(events.items())) or "none")
        )
    if result.get("fsync"):
        fs = Table(title="tickvault by AOF fsync mode (same run, same server)")
        for col in ("appendfsync", "trades/s", "lost", "duplicated", "lag p50 ms", "lag p99 ms"):
            fs.add_column(col, justify="right")
        for row in result["fsync"]:
            fs.add_row(
                row["appendfsync"] + ("" if row["aof"] else " (AOF off)"),
                f"{row['trades_per_s']:,}",
                f"{row['lost']:,}",
                f"{row['duplicated']:,}",
                f"{row['lag_ms']['p50']:,.2f}",
                f"{row['lag_ms']['p99']:,.2f}",
            )
        shown.append(fs)
    if result.get("wait"):
        wt = Table(title="tickvault by valkey_wait_replicas (WAIT after each write cycle)")
        for col in ("wait replicas", "trades/s", "lost", "duplicated", "writes", "WAIT short",
                    "lag p50 ms", "lag p99 ms"):  # fmt: skip
            wt.add_column(col, justify="right")
        for row in result["wait"]:
            wt.add_row(
                str(row["wait_replicas"]),
                f"{row['trades_per_s']:,}",
                f"{row['lost']:,}",
                f"{row['duplicated']:,}",
                f"{row['writes']:,}",
                f"{row['wait_short']:,}",
                f"{row['lag_ms']['p50']:,.2f}",
                f"{row['lag_ms']['p99']:,.2f}",
            )
        shown.append(wt)
    return shown


def formats_table(rows: Any, trades: int) -> list[RenderableType]:
    """The table of ``tickvault bench formats``."""
    shown: list[RenderableType] = []
    table = Table(title=f"block formats: {trades:,} trades")
    for col in ("codec", "block_max_trades", "bytes/trade", "ingest trades/s", "read trades/s"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["compression"],
            f"{row['block_max_trades']:,}",
            f"{row['bytes_per_trade']:.2f}",
            f"{row['ingest_trades_per_s']:,}",
            f"{row['read_trades_per_s']:,}",
        )
    shown.append(table)
    return shown


def features_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault bench features``."""
    shown: list[RenderableType] = []
    orig = result["original_design"]
    ratio = result["ratio"]
    live, warm, cold = (
        result["live_update_us"],
        result["history_warm_ms"],
        result["history_cold_ms"],
    )
    frame = result["frame"]
    table = Table(
        title=f"bench features: {result['sessions']} simulated WIN sessions, "
        f"{result['trades']:,} trades"
    )
    for col in ("", "tickvault", "original design", "ratio", "target"):
        table.add_column(col, justify="right")
    table.add_row(
        "live update, default set, per trade (p50 / p99)",
        f"{live['p50']} / {live['p99']} us",
        f"{orig['live_request_ms']['p50']} / {orig['live_request_ms']['p99']} ms per request",
        f"{ratio['live_update_p50']}x",
        "p99 <= 50 us",
    )
    worker = result.get("live_worker")
    table.add_row(
        "sustained trades/s through the live worker",
        f"{worker['trades_per_s']:,.0f}/s" if worker else "not measured here",
        "",
        "",
        ">= 100k/s",
    )
    table.add_row(
        "history features at random T, warm (p50 / p99)",
        f"{warm['p50']} / {warm['p99']} ms",
        f"{orig['history_request_ms']['p50']} / {orig['history_request_ms']['p99']} ms",
        f"{ratio['history_warm_p50']}x",
        "p99 <= 1 ms",
    )
    table.add_row(
        "history features, cold: first call of a session (median / max)",
        f"{cold['median']} / {cold['max']} ms",
        f"{orig['history_request_ms']['p50']} ms",
        f"{ratio['history_cold_median']}x",
        "<= 50 ms",
    )
    cp = result["history_cold_process_ms"]
    table.add_row(
        "  the same, fresh process (30 sessions read from Valkey)",
        f"{cp['median']} / {cp['max']} ms", "", "", "",
    )  # fmt: skip
    table.add_row(
        "  no session materialised at all (31 built)",
        f"{result['history_all_cold_ms']} ms", "", "", "",
    )  # fmt: skip
    table.add_row(
        f"training frame, {frame['sessions']} sessions at 1-min steps ({frame['rows']:,} rows)",
        f"{frame['seconds']} s, {frame['rows_per_s']:,.0f} rows/s",
        f"{orig['frame_seconds_extrapolated']:,} s, {orig['frame_rows_per_s']} rows/s "
        "(extrapolated)",
        f"{ratio['frame']}x",
        "",
    )
    shown.append(table)
    return shown


def _signals_rows(table: Table, layout: str, figures: Any, orig: Any, result: Any) -> None:
    """The rows of one worker layout in the table of ``tickvault bench signals``."""
    for name, label, target in (
        ("realistic", "realistic WIN pace (1k/5k trades/s)", "p99 <= 2 ms"),
        ("fast", "fast pace", ""),
    ):
        ph = figures[name]
        lat, w, modes = ph["latency_ms"], ph["worker"], ph["signal_modes"]
        table.add_row(
            f"tick -> signal, {layout}, {label}: {ph['trades_per_s']:,} trades/s (p50 / p99 / max)",
            f"{lat['p50']} / {lat['p99']} / {lat['max']} ms",
            f"{orig['p50']} / {orig['p99']} ms per request" if name == "realistic" else "",
            f"{result['ratio']['p50']}x (p50)" if name == "realistic" else "",
            target,
        )
        table.add_row(
            "  signals (fast / history); worker: predictions, deadline misses, skipped rows",
            f"{ph['signals']:,} ({modes['fast']:,} / {modes['history']:,}); "
            f"{w['predictions']:,}, {w['misses']:,}, {w['skipped']:,} of {w['rows']:,} rows",
            "", "", "",
        )  # fmt: skip
        st = ph["stages_ms"]
        table.add_row(
            "  of which (p50 / p99 ms): publish -> row computed -> model received -> "
            "decided -> stored -> published -> received",
            " | ".join(f"{st[k]['p50']}/{st[k]['p99']}" for k in st), "", "", "",
        )  # fmt: skip


def signals_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault bench signals``."""
    shown: list[RenderableType] = []
    table = Table(
        title=f"bench signals: {result['symbol']}, models trained on {result['sessions']} "
        f"simulated sessions ({result['estimator']}), deadline {result['deadline_ms']:g} ms"
    )
    for col in ("", "tickvault", "original design", "ratio", "target"):
        table.add_column(col, justify="right")
    orig = result["original_design"]["request_ms"]
    for layout, figures in (
        ("feature and model workers", result),
        ("inline (features run --models)", result.get("inline")),
    ):
        if figures:
            _signals_rows(table, layout, figures, orig, result)
    pred = result["predict_us"]
    for kind in ("full", "fast"):
        p = pred[kind]
        raw = pred.get(f"{kind}_booster")
        table.add_row(
            f"one-row predict, {kind} model (p50 / p99)",
            f"{p['p50']} / {p['p99']} us"
            + (f" (booster alone {raw['p50']} / {raw['p99']} us)" if raw else ""),
            "", "", "",
        )  # fmt: skip
        st = pred.get(f"{kind}_strength")
        if st:
            table.add_row(
                "  its strength p_up - p_down on stored rows (p5 / p50 / p95, share > 0)",
                f"{st['p5']} / {st['p50']} / {st['p95']}, {st['positive_share']}", "", "", "",
            )  # fmt: skip
    bt = result.get("backtest")
    table.add_row(
        "backtest, one simulated WIN session, a prediction every second",
        f"{bt['trades_per_s']:,.0f} trades/s ({bt['trades']:,} trades)" if bt else "not measured",
        "", "", ">= 500k/s",
    )  # fmt: skip
    shown.append(table)
    shown.append(
        f"{result['policy']}; load average {result['load_average_start']} at the start, "
        f"{result['load_average_end']} at the end"
    )
    return shown


def chaos_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault chaos``: one row per scenario (``bench.chaos``)."""
    load = result.get("load_average_start") or []
    title = (
        f"chaos: {result['trades']:,} trades, one part per scenario "
        f"({result['seconds']} s in all; load {', '.join(map(str, load)) or 'n/a'})"
    )
    table = Table(title=title)
    for col in ("scenario", "sent", "stored", "lost", "duplicated", "gap markers",
                "checksum", "feature rows lost/doubled", "signals lost/doubled",
                "time to recover", "fault at", ""):  # fmt: skip
        table.add_column(col, justify="left" if col in ("scenario", "") else "right")
    notes: list[str] = []
    for row in result["rows"]:
        t, r, s = row["trades"], row["rows"], row["signals"]
        rows_cell = f"{r['lost']}/{r['doubled'] + r['wrong']}" if r else "-"
        if s:
            decided = s["decided"] - s["versions"]
            sig_cell = f"{max(-decided, 0)}/{max(decided, 0) + s['doubled'] + s['orphan']}"
        else:
            sig_cell = "-"
        verdict = "[green]ok[/]" if row["ok"] else "[red]FAILED[/]"
        if row["expected_loss"] and t["lost"]:
            verdict = "[yellow]documented loss[/]" if row["ok"] else verdict
        recover = f"{row['recover_s']:.1f} s" if row["recover_s"] is not None else "not settled"
        table.add_row(
            row["scenario"], f"{t['sent']:,}", f"{t['stored']:,}", f"{t['lost']:,}",
            f"{t['duplicated']:,}", f"{t['gap_markers']:,}",
            "ok" if t["checksum_ok"] else "differs", rows_cell, sig_cell, recover,
            row["fault_at"] or "-", verdict,
        )  # fmt: skip
        notes += [f"{row['scenario']}: {n}" for n in row["notes"]]
    shown: list[RenderableType] = [table]
    if result.get("fuzz") is not None:
        fz = result["fuzz"]
        if not fz.get("available"):
            notes.append("fuzz: " + fz["note"])
        else:
            notes.append(f"fuzz ({'ok' if fz['ok'] else 'PROBLEMS'}):\n{fz['table']}")
    shown += notes
    return shown


def compare_table(result: Any) -> list[RenderableType]:
    """The tables of ``tickvault bench compare``."""
    tv, ac = result["tickvault"], result["arcticdb"]
    ratio = result.get("ratio", {})
    table = Table(
        title=f"bench compare: {result['trades']:,} simulated trades, tickvault and ArcticDB"
        + (f" {ac['version']}" if ac["available"] else "")
        + f", median of {len(result['rounds'])} interleaved rounds"
    )
    for col in ("", "tickvault", "ArcticDB", "ratio (tickvault ahead > 1)"):
        table.add_column(col, justify="right")

    def cell(side: Any, key: str, fmt: str) -> str:
        return format(side[key], fmt) if side.get("available", True) else "not installed"

    rows = (
        ("bulk write, trades/s", "write_trades_per_s", ",.0f", "write"),
        ("full-range read into a DataFrame, trades/s", "read_trades_per_s", ",.0f", "read"),
        (f"1-minute slice, ms (median of {result['slices']})", "slice_ms", ".3f", "slice"),
        ("full range as of an earlier time/version, ms", "asof_ms", ".1f", "asof"),
        ("bytes per trade", "bytes_per_trade", ".2f", "bytes"),
    )
    for label, key, fmt, rkey in rows:
        r = ratio.get(rkey)
        table.add_row(label, cell(tv, key, fmt), cell(ac, key, fmt), f"{r}x" if r else "")
    shown: list[RenderableType] = [table]
    shown.append(f"bytes: tickvault {tv['bytes_measured_as']}; ArcticDB "
                 + (ac["bytes_measured_as"] if ac["available"] else "not measured"))  # fmt: skip
    shown.append(f"as of: tickvault {result['asof']['tickvault']}; ArcticDB "
                 f"{result['asof']['arcticdb']}")  # fmt: skip
    if not ac["available"]:
        shown.append(f"[yellow]ArcticDB not measured: {ac['note']}[/]")
    h = result["history"]
    hist = Table(title=f"slice vs history: a 1-minute slice of the last day ({h['slice_rows']:,} "
                       f"trades in all slices), {h['trades_per_day']:,} trades a day")  # fmt: skip
    for col in ("stored", "trades", "blocks", "1-minute slice, ms (median)"):
        hist.add_column(col, justify="right")
    hist.add_row("1 day", f"{h['one_day']['trades']:,}", f"{h['one_day']['blocks']:,}",
                 f"{h['one_day']['slice_ms']:.3f}")  # fmt: skip
    hist.add_row(f"{h['days']} days", f"{h['long']['trades']:,}", f"{h['long']['blocks']:,}",
                 f"{h['long']['slice_ms']:.3f}")  # fmt: skip
    hist.add_row("ratio", "", "", f"{h['ratio']}x")
    shown.append(hist)
    shown.append(f"load average {result['load_average_start']} at the start, "
                 f"{result['load_average_end']} at the end")  # fmt: skip
    return shown


def scale_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault bench scale``."""

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,}"

    shown: list[RenderableType] = []
    table = Table(title=f"bench scale: {result['trades']:,} trades over {result['symbols']} "
                  f"symbols per cell ({result['cpus']} CPUs, load {result['load_before']:.2f} "
                  f"before, {result['load_after']:.2f} after)")  # fmt: skip
    for col in ("store", "bridges", "ingest trades/s", "lost", "dup", "bridge CPU s",
                "valkey CPU s", "trades/bridge-CPU-s", "trades/valkey-CPU-s",
                "read trades/s", "bytes/trade", "used_memory MB"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, row in result["stores"].items():
        label = "1 node" if name == "single" else f"{result['primaries']}-node cluster"
        for c in row["cells"]:
            table.add_row(label, str(c["bridges"]), num(c["ingest_trades_per_s"]), num(c["lost"]),
                          num(c["duplicated"]), num(c["cpu_s"]["bridges"]),
                          num(c["cpu_s"]["valkey"]), num(c["ingest_trades_per_cpu_s"]["bridges"]),
                          num(c["ingest_trades_per_cpu_s"]["valkey"]), num(c["read_trades_per_s"]),
                          num(c["bytes_per_trade"]),
                          f"{c['used_memory'] / 2**20:,.1f}")  # fmt: skip
        c = row.get("paced")
        if c:
            table.add_row(f"{label}, paced {c['rate']:,.0f}/s", str(c["bridges"]),
                          num(c["ingest_trades_per_s"]), num(c["lost"]), num(c["duplicated"]),
                          num(c["cpu_s"]["bridges"]), num(c["cpu_s"]["valkey"]),
                          num(c["ingest_trades_per_cpu_s"]["bridges"]),
                          num(c["ingest_trades_per_cpu_s"]["valkey"]),
                          num(c["read_trades_per_s"]), num(c["bytes_per_trade"]),
                          f"{c['used_memory'] / 2**20:,.1f}")  # fmt: skip
        o = row.get("original_design")
        if o:
            table.add_row(f"{label}, original design", "1 (one symbol)",
                          num(o["ingest_trades_per_s"]), num(o["lost"]), num(o["duplicated"]),
                          *["-"] * 7)  # fmt: skip
    shown.append(table)
    return shown


def compact_table(result: Any) -> list[RenderableType]:
    """The table of ``tickvault bench compact``."""
    shown: list[RenderableType] = []
    table = Table(title=f"bench compact: {result['trades']:,} trades of a day captured live "
                  f"at {result['rate']:,.0f} trades/s")  # fmt: skip
    table.add_column("")
    for col in ("blocks", "trades/block", "bytes/trade", "full-day read trades/s"):
        table.add_column(col, justify="right")
    rows = (("live, before compaction", result["before"]),
            ("live, after compaction", result["after"]),
            ("the same records in bulk", result["bulk"]))  # fmt: skip
    for label, f in rows:
        table.add_row(label, f"{f['blocks']:,}", f"{f['trades_per_block']:,}",
                      f"{f['bytes_per_trade']:.2f}", f"{f['read_trades_per_s']:,}")  # fmt: skip
    o = result["original_design"]
    table.add_row(f"original layout ({o['trades']:,} trades)", f"{o['trades']:,}", "1",
                  f"{o['bytes_per_trade']:.2f}", f"{o['read_trades_per_s']:,}")  # fmt: skip
    shown.append(table)
    c = result["compaction"]
    swap = f", mean swap {c['mean_swap_ms']} ms" if c["mean_swap_ms"] is not None else ""
    shown.append(f"compaction: {c['seconds']} s, {c['trades_per_s']:,} trades/s, "
                 f"{c['entries']:,} blocks into {c['blocks_written']:,} in {c['swaps']:,} "
                 f"swaps{swap}")  # fmt: skip
    t = result["targets"]
    shown.append(f"targets (<= {t['bytes_per_trade_max']} bytes/trade, >= "
                 f"{t['read_trades_per_s_min']:,} trades/s after): "
                 f"{'met' if t['met'] else 'NOT met'}")  # fmt: skip
    return shown
