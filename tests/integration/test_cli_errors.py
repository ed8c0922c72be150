"""Every CLI command against a store it cannot use (a closed port, a service that is not
Valkey) and into output paths it cannot write: one line on stderr, a non-zero exit
status, never a traceback. Commands that need no store still work."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from tickvault.cli.main import cli
from tickvault.feeds.sim.generator import generate_day
from tickvault.files import b3, reader
from tickvault.transport.endpoints import SOCKET_NAMES, free_tcp_ports
from tickvault.transport.publisher import Publisher

GUARD_S = 60.0


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """valkey:// pointing at a real HTTP server: a service that is not Valkey."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"valkey://127.0.0.1:{srv.server_address[1]}/0"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def silent_url() -> Iterator[str]:
    """valkey:// pointing at a port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"valkey://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def closed_url() -> str:
    """valkey:// pointing at a port nothing listens on."""
    [port] = free_tcp_ports(1)
    return f"valkey://127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def trade_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "TradeIntraday_20251103_1.txt"
    trades = {"WINZ25": generate_day("WINZ25", dt.date(2025, 11, 3), 50, seed=1)}
    reader.write_b3(path, b3.to_b3_table(trades, ZoneInfo("America/Sao_Paulo")))
    return path


def _store_commands(trade_file: Path) -> dict[str, list[str]]:
    """Every command that needs the store, with arguments that are otherwise valid."""
    f = str(trade_file)
    return {
        "status": ["status"],
        "query": ["query", "WINZ25"],
        "query-csv-out": ["query", "WINZ25", "--format", "csv", "--out", "x.csv"],
        "trim": ["trim", "WINZ25"],
        "book": ["book", "WINZ25"],
        "import": ["import", f],
        "backfill": ["backfill", "WINZ25", "--days", "1"],
        "replay-store": ["replay", f, "--store", "--speed", "max"],
        "bridge": ["bridge"],
        "demo": ["demo", "--speed", "max", "--duration", "1"],
        "gaps": ["gaps", "WINZ25"],
        "quarantine": ["quarantine"],
    }


BENCH_COMMANDS = {
    "bench-store": ["bench", "store", "--trades", "1000", "--seed-trades", "100", "--repeats", "1"],
    "bench-import": ["bench", "import", "--trades", "1000", "--seed-trades", "100"],
    "bench-book": ["bench", "book", "--trades-per-day", "1000", "--queries", "1"],
    "bench-live": ["bench", "live", "--trades", "1000", "--rate", "1000"],
    "bench-formats": ["bench", "formats", "--trades", "1000"],
}
STORE_COMMANDS = list(_store_commands(Path("f.txt")))


def _run(args: list[str], url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKVAULT_VALKEY_URL", url)
    monkeypatch.setenv("TICKVAULT_CONNECT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(tmp_path / "unused-data"))
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """The command failed with exactly one line on stderr and no traceback."""
    assert result.exc_info is not None and result.exc_info[0] is SystemExit, result.exc_info
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_command_with_an_unreachable_server_fails_in_one_line_naming_the_address(
    name: str, closed_url: str, trade_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(_store_commands(trade_file)[name], closed_url, tmp_path, monkeypatch)
    assert_one_line_error(result, "cannot reach Valkey at", closed_url.removeprefix("valkey://"))


@pytest.mark.parametrize("name", list(BENCH_COMMANDS))
def test_bench_with_an_unreachable_server_fails_in_one_line(
    name: str, closed_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Benchmarks run on a server of their own unless --url names one.
    args = ["bench", "--url", closed_url, *BENCH_COMMANDS[name][1:]]
    result = _run(args, closed_url, tmp_path, monkeypatch)
    assert_one_line_error(result, "cannot reach Valkey at")


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_command_with_an_http_server_as_valkey_says_it_is_not_valkey(
    name: str, http_url: str, trade_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(_store_commands(trade_file)[name], http_url, tmp_path, monkeypatch)
    line = assert_one_line_error(result, "is not a Valkey server", http_url)
    assert "TICKVAULT_VALKEY_URL" in line  # what to check


@pytest.mark.parametrize("name", ["status", "query", "import"])
def test_command_with_a_silent_service_as_valkey_fails_instead_of_hanging(
    name: str, silent_url: str, trade_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(_store_commands(trade_file)[name], silent_url, tmp_path, monkeypatch)
    assert_one_line_error(result, "is not a Valkey server", "did not answer within 0.5 s")


def test_server_commands_note_that_valkey_url_is_set(
    closed_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(["server", "status"], closed_url, tmp_path, monkeypatch)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "valkey_url is set" in result.stderr and "not running" in result.stdout


def test_config_with_an_unreachable_server_shows_the_url_and_its_source(
    closed_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(["config"], closed_url, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "valkey_url" in line)
    assert closed_url in row and "environment variable TICKVAULT_VALKEY_URL" in row


def test_tail_needs_no_store_and_prints_trades_with_an_unreachable_server(
    closed_url: str, tmp_path: Path
) -> None:
    """tail only subscribes to ZeroMQ: a bad valkey_url does not stop it."""
    from tickvault.config import Settings

    ports = dict(zip(SOCKET_NAMES, free_tcp_ports(len(SOCKET_NAMES)), strict=True))
    port_env = {f"TICKVAULT_ZMQ_{n.upper()}_PORT": str(p) for n, p in ports.items()}
    env = {**os.environ, "TICKVAULT_VALKEY_URL": closed_url, "PYTHONUNBUFFERED": "1", **port_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickvault.cli.main", "tail", "WINZ25"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader_thread = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader_thread.start()
    trades = generate_day("WINZ25", dt.date(2025, 11, 3), 1, seed=2).to_structured()
    settings = Settings(**{f"zmq_{n}_port": p for n, p in ports.items()})
    try:
        with Publisher(settings) as pub:
            deadline = time.monotonic() + GUARD_S
            while not any("WINZ25" in line for line in lines):
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "tail printed no trade"
                pub.publish_trades("WINZ25", trades)  # again: a late subscriber misses some
                pub.flush()
                time.sleep(0.05)
        proc.terminate()
        _, err = proc.communicate(timeout=GUARD_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"#{int(trades['trade_id'][0])}" in "".join(lines)


# ---------------------------------------------------------------------- output paths
@pytest.fixture
def runner(own_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TICKVAULT_DATA_DIR", str(own_data_dir))
    return CliRunner()


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores modes: /sys then)."""
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o500)
        return d
    probe = Path("/sys/tickvault-write-probe")
    try:
        probe.write_text("")
    except OSError:
        return Path("/sys")
    probe.unlink()
    pytest.skip("no unwritable directory for root on this machine")


def _bad_outputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Output paths that cannot be written, and a word the error must contain."""
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir(exist_ok=True)
    return {
        "missing directory": (tmp_path / "no" / "such" / "dir" / "out.x", "does not exist"),
        "directory given as file": (a_dir, "is a directory"),
        "parent is a file": (a_file / "out.x", "not a directory"),
        "unwritable directory": (_unwritable_dir(tmp_path) / "out.x", "ermission"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing directory",
        "directory given as file",
        "parent is a file",
        "unwritable directory",
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_query_out_that_cannot_be_written_is_one_line_naming_the_path(
    runner: CliRunner, tmp_path: Path, case: str, fmt: str
) -> None:
    path, why = _bad_outputs(tmp_path)[case]
    result = runner.invoke(cli, ["query", "WINZ25", "--format", fmt, "--out", str(path)])
    assert_one_line_error(result, str(path), why)
    assert not path.is_file()


def test_query_out_into_a_writable_directory_still_writes(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "ok.csv"
    result = runner.invoke(cli, ["query", "WINZ25", "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("ts_event,")
