"""Benchmarks never touch a user's data.

By default every benchmark runs on its own embedded Valkey server, started in a
fresh temporary data directory with the same options as the user's embedded
server (``storage.server``), and removed afterwards: the server stopped and the
directory deleted, on success, error, Ctrl-C or SIGTERM alike (the CLI turns
SIGTERM into SystemExit).

With an explicit URL (``tickvault bench --url ...``) the benchmarks run on that
server, and then they write only their own keys: symbols named
``TVBENCH_...`` (an underscore is never part of a B3 ticker) and keys under
``tvbench:``. They delete only those keys, before they start and when they end.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tickvault.config import Settings
from tickvault.errors import BenchmarkError
from tickvault.storage.server import stop_server
from tickvault.vault import Vault

_T = TypeVar("_T")

SYMBOL_PREFIX = "TVBENCH_"
"""Every benchmark symbol starts with this."""
KEY_PREFIX = "tvbench:"
"""Every benchmark key that is not a symbol's key starts with this."""
TEMP_PREFIX = "tickvault-bench-"
"""The temporary data directories of benchmark servers."""

_OWN_PATTERNS = (
    f"ticks:{{{SYMBOL_PREFIX}*",
    f"book:{{{SYMBOL_PREFIX}*",
    f"agg:{{{SYMBOL_PREFIX}*",
    f"{KEY_PREFIX}*",
)


def symbol_keys(symbol: str) -> tuple[str, ...]:
    """Key patterns of every key of a benchmark symbol (trades, book, cursors, gaps,
    session aggregates)."""
    if not symbol.startswith(SYMBOL_PREFIX):
        raise BenchmarkError(
            f"benchmark symbols start with {SYMBOL_PREFIX}, not {symbol!r}: a benchmark "
            "touches only its own symbols; name yours with that prefix"
        )
    return (f"ticks:{{{symbol}}}:*", f"book:{{{symbol}}}*", f"agg:{{{symbol}}}:*")


def _own(pattern: str) -> bool:
    prefixes = (f"ticks:{{{SYMBOL_PREFIX}", f"book:{{{SYMBOL_PREFIX}", f"agg:{{{SYMBOL_PREFIX}")
    return pattern.startswith((*prefixes, KEY_PREFIX))


def clear_keys(vault: Vault, *patterns: str) -> None:
    """Delete every key matching the patterns; only a benchmark's own patterns are allowed."""
    for pattern in patterns:
        if not _own(pattern):
            raise BenchmarkError(
                f"a benchmark may delete only its own keys, not {pattern!r}: use the "
                f"patterns of symbol_keys() or {KEY_PREFIX}*"
            )
    r = vault.client
    for pattern in patterns:
        for key in list(r.scan_iter(match=pattern)):
            r.delete(key)


def clear_all(vault: Vault) -> None:
    """Delete every benchmark key (of any benchmark), and nothing else."""
    clear_keys(vault, *_OWN_PATTERNS)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored meanwhile (a second Ctrl-C must not leave a server behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def bench_vault(settings: Settings, url: str | None = None) -> Iterator[Vault]:
    """A store for benchmarks: a temporary embedded server, or ``url`` (own keys only)."""
    if url is not None:
        vault = Vault.open(url, settings=settings)
        try:
            clear_all(vault)  # what an interrupted run left
            yield vault
        finally:
            with _uninterrupted():
                try:
                    clear_all(vault)
                finally:
                    vault.close()
        return
    data_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        vault = Vault.open(settings=settings, data_dir=data_dir, valkey_url=None)
        try:
            yield vault
        finally:
            with _uninterrupted():
                vault.close()
    finally:
        with _uninterrupted():
            stop_server(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


def on_own_server(run: Callable[..., _T]) -> Callable[..., _T]:
    """``run(vault, **kw)`` on a temporary server of its own (``bench_vault`` without a
    URL), whatever store it is given: for benchmarks whose symbols need B3 session hours
    (so not ``TVBENCH_`` names) and that write model files into the data directory."""

    def wrapped(vault: Vault, **kw: Any) -> _T:
        with bench_vault(vault.settings) as own:
            return run(own, **kw)

    return wrapped
