"""valkey.log of the embedded server stays small: warnings only, rotated at start."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tickvault.storage.server import LOG_FILE, LOG_MAX_BYTES, ensure_server, rotate_log, stop_server


def test_server_start_and_stop_log_no_notices(own_data_dir: Path) -> None:
    for _ in range(2):
        ensure_server(own_data_dir)
        stop_server(own_data_dir)
    log = (own_data_dir / LOG_FILE).read_text()
    # Notice-level lines every start and stop used to write (the banner, "ready"...).
    for notice in ("Valkey is starting", "Ready to accept connections", "Server initialized"):
        assert notice not in log
    lines = log.splitlines()
    assert all(" # " in line for line in lines), lines  # "#" marks warnings in Valkey's log


def test_a_large_log_is_moved_aside_at_start(own_data_dir: Path) -> None:
    own_data_dir.mkdir(parents=True)
    old = "old line\n" * (LOG_MAX_BYTES // 9 + 1)
    (own_data_dir / LOG_FILE).write_text(old)
    ensure_server(own_data_dir)
    stop_server(own_data_dir)
    assert (own_data_dir / (LOG_FILE + ".1")).read_text() == old
    new = (own_data_dir / LOG_FILE).read_text()
    assert "old line" not in new and "ready to exit" in new  # this run's lines only


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=6))
def test_rotation_keeps_at_most_two_logs_and_the_newest_lines(sizes: list[int]) -> None:
    """Whatever the sizes written between starts, the current log is at most the limit
    plus one run's lines, and the lines of the last run are never lost."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / LOG_FILE
        for i, size in enumerate(sizes):
            rotate_log(log, max_bytes=1000)
            with log.open("a") as fh:
                fh.write(f"run {i}\n" + "y" * size)
            assert log.stat().st_size <= 1000 + len(f"run {i}\n") + size
            assert f"run {i}\n" in log.read_text()
        assert sorted(p.name for p in Path(d).iterdir()) in (
            [LOG_FILE],
            [LOG_FILE, LOG_FILE + ".1"],
        )
