"""B3 trade files and mapped CSV/Parquet imported into the real store, checked against
an independent reading of the same file (Python's csv module, row by row)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import zipfile
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tickvault import Vault
from tickvault.cli.main import cli
from tickvault.errors import ConfigError, FileFormatError
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.files.mapped import ColumnMap
from tickvault.ingest.files import ImportOptions, import_files
from tickvault.records.trades import TradeBatch, TradeFlag

SP = ZoneInfo("America/Sao_Paulo")
DAY = dt.date(2025, 11, 3)


def _trades(n: int = 3000) -> dict[str, TradeBatch]:
    return {
        "WINZ25": generate_day("WINZ25", DAY, n, seed=3),
        "WDOZ25": generate_day("WDOZ25", DAY, n // 2, seed=4),
    }


def _write_text(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join([";".join(header), *(";".join(r) for r in rows)]) + "\n")
    return path


def _file_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return rows[0], rows[1:]


def oracle(path: Path, symbol: str) -> dict[str, object]:
    """What the file says about ``symbol``, read row by row with no tickvault code."""
    header, rows = _file_rows(path)
    col = {name: i for i, name in enumerate(header)}
    trades: dict[int, tuple[int, Decimal, int]] = {}
    cancelled: set[int] = set()
    for row in rows:
        if row[col["CodigoInstrumento"]] != symbol:
            continue
        tid = int(row[col["CodigoIdentificadorNegocio"]])
        if row[col["AcaoAtualizacao"]] == "2":
            cancelled.add(tid)
            continue
        hora = row[col["HoraFechamento"]].zfill(9)
        local = dt.datetime.fromisoformat(
            f"{row[col['DataNegocio']]}T{hora[:2]}:{hora[2:4]}:{hora[4:6]}.{hora[6:]}"
        ).replace(tzinfo=SP)
        ts = int(local.timestamp()) * 1_000_000_000 + local.microsecond * 1000
        price = Decimal(row[col["PrecoNegocio"]].replace(",", "."))
        trades[tid] = (ts, price, int(row[col["QuantidadeNegociada"]]))
    kept = sorted((t[0], tid, t[1], t[2]) for tid, t in trades.items() if tid not in cancelled)
    qty = sum(q for *_, q in kept)
    notional = sum(p * q for _, _, p, q in kept)
    return {
        "count": len(kept),
        "qty": qty,
        "vwap": float(notional / qty) if qty else None,
        "first": kept[0] if kept else None,
        "last": kept[-1] if kept else None,
    }


def stored_summary(vault: Vault, symbol: str) -> dict[str, object]:
    frame = vault.range(symbol, "2025-11-01", "2025-11-30")
    if frame.empty:
        return {"count": 0, "qty": 0, "vwap": None, "first": None, "last": None}

    def row(i: int) -> tuple[int, int, Decimal, int]:
        r = frame.iloc[i]
        return (
            int(frame.index[i].value),
            int(r["trade_id"]),
            Decimal(str(r["price"])),
            int(r["qty"]),
        )

    qty = int(frame["qty"].sum())
    return {
        "count": len(frame),
        "qty": qty,
        "vwap": float((frame["price"] * frame["qty"]).sum() / qty),
        "first": row(0),
        "last": row(-1),
    }


def assert_matches_file(vault: Vault, path: Path, symbol: str) -> None:
    want, got = oracle(path, symbol), stored_summary(vault, symbol)
    assert got["count"] == want["count"] > 0
    assert got["qty"] == want["qty"]
    assert got["vwap"] == pytest.approx(want["vwap"], rel=1e-12)
    assert got["first"] == want["first"]
    assert got["last"] == want["last"]


@pytest.fixture
def b3_file(tmp_path: Path) -> Path:
    """A B3 file with a channel column, times without their leading zero, an empty
    participant, and cancels of two trades in the file and of one that is not."""
    table = b3.to_b3_table(_trades(), SP, channel=True)
    path = tmp_path / "TradeIntraday_20251103_1.txt"
    reader.write_b3(path, table)
    header, rows = _file_rows(path)
    h = {name: i for i, name in enumerate(header)}
    for row in rows:
        row[h["HoraFechamento"]] = row[h["HoraFechamento"]].lstrip("0") or "0"
    rows[5][h["CodigoParticipanteComprador"]] = ""
    win = [r for r in rows if r[h["CodigoInstrumento"]] == "WINZ25"]
    for victim in (win[10], win[200]):
        cancel = list(victim)
        cancel[h["AcaoAtualizacao"]] = "2"
        rows.append(cancel)
    ghost = list(win[0])
    ghost[h["AcaoAtualizacao"]], ghost[h["CodigoIdentificadorNegocio"]] = "2", "999999"
    rows.append(ghost)
    return _write_text(path, header, rows)


def test_b3_file_queried_back_equals_the_file(vault: Vault, b3_file: Path) -> None:
    [report] = import_files(vault, [b3_file])
    assert report.cancelled == 2 and report.unmatched_cancels == 1
    assert report.bad_rows == 0
    for symbol in ("WINZ25", "WDOZ25"):
        assert_matches_file(vault, b3_file, symbol)
    frame = vault.range("WINZ25", "2025-11-01", "2025-11-30")
    assert (frame["flags"] & int(TradeFlag.HISTORY)).all()
    assert (frame["volume"] == frame["price"] * frame["qty"]).all()
    # the row with an empty participant: agent 0
    assert (frame["buy_agent"] == 0).sum() >= 1


def test_gz_and_zip_give_the_same_trades(vault: Vault, b3_file: Path, tmp_path: Path) -> None:
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(b3_file.read_bytes()))
    zipped = tmp_path / "t.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(b3_file, "TradeIntraday_20251103_1.txt")
    for path in (gz, zipped):
        vault.client.flushdb()
        [report] = import_files(vault, [path])
        assert report.name.startswith(str(path))
        assert_matches_file(vault, b3_file, "WINZ25")
        assert_matches_file(vault, b3_file, "WDOZ25")


def test_importing_twice_stores_each_trade_once(vault: Vault, b3_file: Path) -> None:
    [first] = import_files(vault, [b3_file])
    records = sum(s.trades for s in vault.stats("WINZ25"))
    [again] = import_files(vault, [b3_file])
    assert again.already_imported and again.stored == first.stored
    assert sum(s.trades for s in vault.stats("WINZ25")) == records
    [forced] = import_files(vault, [b3_file], ImportOptions(force=True))
    assert not forced.already_imported
    assert sum(s.trades for s in vault.stats("WINZ25")) == 2 * records
    assert_matches_file(vault, b3_file, "WINZ25")  # repeats resolved at read time


def test_a_file_cancel_removes_a_trade_stored_from_the_live_feed(
    vault: Vault, b3_file: Path
) -> None:
    header, rows = _file_rows(b3_file)
    h = {name: i for i, name in enumerate(header)}
    cancel_rows = [r for r in rows if r[h["AcaoAtualizacao"]] == "2"]
    live = import_files  # the same trades, first seen live
    trades = _trades()["WINZ25"]
    vault.write_trades("WINZ25", trades)
    live(vault, [b3_file], ImportOptions(symbols=frozenset({"WINZ25"})))
    cancelled = {int(r[h["CodigoIdentificadorNegocio"]]) for r in cancel_rows}
    frame = vault.range("WINZ25", "2025-11-01", "2025-11-30")
    assert not cancelled & set(frame["trade_id"].tolist())
    assert len(frame) == len(trades) - 2


def test_symbols_filter(vault: Vault, b3_file: Path) -> None:
    [report] = import_files(vault, [b3_file], ImportOptions(symbols=frozenset({"WDOZ25"})))
    assert set(report.stored) == {"WDOZ25"}
    assert vault.symbols() == ["WDOZ25"]
    assert_matches_file(vault, b3_file, "WDOZ25")


def test_wrong_header_names_file_line_and_column(vault: Vault, tmp_path: Path) -> None:
    header = list(b3.B3_COLUMNS)
    header[3] = "Preco"
    path = _write_text(tmp_path / "x.txt", header, [["1"] * 11])
    with pytest.raises(FileFormatError) as err:
        import_files(vault, [path])
    assert (err.value.line, err.value.path) == (1, str(path))
    assert "PrecoNegocio" in str(err.value) and "'Preco'" in str(err.value)
    assert vault.symbols() == []


def _good_row(tid: int) -> list[str]:
    return ["2025-11-03", "WINZ25", "0", "128910,000", "1", "90000007", str(tid), "1",
            "2025-11-03", "3", "120"]  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("PrecoNegocio", "12a,5"),
        ("PrecoNegocio", "-5,0"),
        ("QuantidadeNegociada", "0"),
        ("HoraFechamento", "256000000"),
        ("DataNegocio", "2025-13-45"),
        ("AcaoAtualizacao", "7"),
        ("CodigoIdentificadorNegocio", "x1"),
        ("CodigoInstrumento", "WIN{Z25}"),
    ],
)
def test_a_bad_cell_names_line_and_column_and_skip_keeps_the_rest(
    vault: Vault, tmp_path: Path, column: str, value: str
) -> None:
    rows = [_good_row(i) for i in range(1, 9)]
    rows[4][b3.B3_COLUMNS.index(column)] = value  # line 6
    path = _write_text(tmp_path / "bad.txt", list(b3.B3_COLUMNS), rows)
    with pytest.raises(FileFormatError) as err:
        import_files(vault, [path])
    assert err.value.line == 6
    assert err.value.column == f"{b3.B3_COLUMNS.index(column) + 1} ({column})"
    assert repr(value) in str(err.value) and "--skip-bad-rows" in str(err.value)
    assert vault.symbols() == []  # a file with an error stores nothing
    [report] = import_files(vault, [path], ImportOptions(skip_bad_rows=True))
    assert report.bad_rows == 1 and report.stored == {"WINZ25": 7}
    assert report.bad_examples[0].startswith("line 6")
    assert sorted(vault.range("WINZ25", "2025-11-03", "2025-11-04")["trade_id"]) == [
        1, 2, 3, 4, 6, 7, 8,
    ]  # fmt: skip


def test_a_ragged_row_after_ragged_and_bad_rows_keeps_line_numbers(
    vault: Vault, tmp_path: Path
) -> None:
    rows = [_good_row(i) for i in range(1, 12)]
    rows[2] = rows[2][:4]  # line 4: too few fields
    rows[6][3] = "oops"  # line 8
    path = _write_text(tmp_path / "bad.txt", list(b3.B3_COLUMNS), rows)
    with pytest.raises(FileFormatError) as err:
        import_files(vault, [path])
    assert err.value.line == 4 and "found 4" in str(err.value)
    [report] = import_files(vault, [path], ImportOptions(skip_bad_rows=True))
    assert report.bad_rows == 2 and report.rows == 11
    assert [e.split(":")[0].split(",")[0] for e in report.bad_examples] == ["line 4", "line 8"]
    assert report.stored == {"WINZ25": 9}


def test_truncated_archives(vault: Vault, b3_file: Path, tmp_path: Path) -> None:
    data = gzip.compress(b3_file.read_bytes())
    gz = tmp_path / "cut.txt.gz"
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="ends early or is corrupt") as err:
        import_files(vault, [gz])
    assert err.value.path == str(gz) and err.value.line is not None and err.value.line > 1
    zipped = tmp_path / "cut.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(b3_file, "t.txt")
    zipped.write_bytes(zipped.read_bytes()[:-200])
    with pytest.raises(FileFormatError, match="zip"):
        import_files(vault, [zipped])
    assert vault.symbols() == []


def test_missing_file_directory_and_unmapped_parquet(vault: Vault, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such file"):
        import_files(vault, [tmp_path / "nope.txt"])
    with pytest.raises(FileFormatError, match="is a directory"):
        import_files(vault, [tmp_path])
    pq.write_table(pa.table({"t": [1]}), tmp_path / "x.parquet")
    with pytest.raises(FileFormatError, match="--map"):
        import_files(vault, [tmp_path / "x.parquet"])
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FileFormatError, match="--map"):
        import_files(vault, [tmp_path / "other.csv"])


def test_mapped_csv_and_parquet(vault: Vault, tmp_path: Path) -> None:
    trades = _trades(500)["WINZ25"]
    local = pd.DatetimeIndex(trades.ts_event.view("M8[ns]"), tz="UTC").tz_convert(SP)
    frame = pd.DataFrame(
        {
            "when": local.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "preco": trades.price,
            "qtd": trades.qty,
            "id": trades.trade_id,
            "ticker": "winz25",
        }
    )
    path = tmp_path / "trades.csv"
    frame.to_csv(path, index=False)
    mapping = ColumnMap.parse("ts_event=when,price=preco,qty=qtd,trade_id=id,symbol=ticker")
    import_files(vault, [path], ImportOptions(mapping=mapping))
    got = vault.range("WINZ25", "2025-11-03", "2025-11-04")
    np.testing.assert_array_equal(got.index.asi8, np.sort(trades.ts_event))
    assert int(got["qty"].sum()) == int(trades.qty.sum())

    vault.client.flushdb()
    pq.write_table(
        pa.table({"t": pa.array(trades.ts_event // 1_000_000), "p": trades.price,
                  "q": trades.qty}),
        tmp_path / "trades.parquet",
    )  # fmt: skip
    mapping = ColumnMap.parse("ts_event=t,price=p,qty=q", time_unit="ms")
    import_files(vault, [tmp_path / "trades.parquet"], ImportOptions(mapping=mapping,
                                                                     symbol="WDOZ25"))  # fmt: skip
    got = vault.range("WDOZ25", "2025-11-03", "2025-11-04")
    assert len(got) == len(trades)
    assert (got["trade_id"].to_numpy() == np.arange(1, len(trades) + 1)).all()

    frame["preco"] = frame["preco"].astype(object)
    frame.loc[7, "preco"] = "n/a"
    frame.to_csv(path, index=False)
    mapping = ColumnMap.parse("ts_event=when,price=preco,qty=qtd,symbol=ticker")
    with pytest.raises(FileFormatError) as err:
        import_files(vault, [path], ImportOptions(mapping=mapping, force=True))
    assert (err.value.line, err.value.column) == (9, "preco")


def test_column_map_errors() -> None:
    with pytest.raises(ConfigError, match="qty"):
        ColumnMap.parse("ts_event=a,price=b")
    with pytest.raises(ConfigError, match="field=column"):
        ColumnMap.parse("ts_event=a,price=b,qty=c,colour=d")


def test_import_cli_and_bench_json(
    own_data_dir: Path, b3_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(b3_file), "--symbols", "winz25"])
    assert result.exit_code == 0, result.output
    assert "TradeIntraday_20251103_1.txt" in result.output
    again = runner.invoke(cli, ["import", str(b3_file), "--symbols", "WINZ25"])
    assert "already imported" in again.output
    bad = runner.invoke(cli, ["import", str(b3_file.with_name("missing.txt"))])
    assert bad.exit_code == 2 and "no such file" in bad.output
    bench = runner.invoke(cli, ["bench", "import", "--trades", "20000", "--seed-trades",
                                "500", "--repeats", "1", "--json"])  # fmt: skip
    assert bench.exit_code == 0, bench.output
    figures = json.loads(bench.output.strip().splitlines()[-1])
    assert figures["trades"] == 20000 and figures["trades_per_s"] > 0
    assert figures["original_design"]["trades"] == 500
