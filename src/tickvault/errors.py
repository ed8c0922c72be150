"""The tickvault exception tree. Every error tickvault raises is one of these.

    TickvaultError
    ├── ConfigError              bad or unknown setting, unreadable config file
    ├── ValidationError          bad input records (names the field and the row)
    ├── QueryError               bad query arguments (start after end, bad time)
    ├── FormatError              bytes that are not a valid tickvault block or wire message
    │   └── FileFormatError      a market-data file that cannot be read (names file, line, column)
    ├── FeedError                a feed failed (ProfitDLL error code, login refused...)
    ├── BenchmarkError           a benchmark run failed its own check (lost data, a worker died)
    ├── OutputError              a file to write cannot be created or written
    ├── ModelError               a model version is unknown, does not load, or its features differ
    ├── SupervisorError          ``tickvault up`` cannot start (a port in use, one already
    │                            runs) or a component it needs keeps failing
    ├── LeaseLost                a pool worker's write was refused: another worker owns
    │                            the symbol now, or its lease expired (nothing written)
    └── ServerError              anything about the Valkey server
        ├── ServerUnreachable    no server answers at the configured address
        ├── StoreRefused         the server answers but refuses writes (out of memory
        │                        under noeviction, or it cannot persist: MISCONF)
        └── EmbeddedServerError  the embedded server could not be started or stopped

Errors of the libraries underneath (valkey-py, OSError, ...) are translated at the
boundary, so callers only ever need to catch ``TickvaultError``.
"""

from __future__ import annotations


class TickvaultError(Exception):
    """Root of every error raised by tickvault."""


class ConfigError(TickvaultError):
    """A setting is unknown, of the wrong type, or a config file cannot be read."""


class ValidationError(TickvaultError, ValueError):
    """Input records were rejected; nothing of the batch was written."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None):
        super().__init__(message)
        self.field = field
        self.row = row


class QueryError(TickvaultError, ValueError):
    """The arguments of a query are invalid."""


class FormatError(TickvaultError):
    """Bytes that should hold a tickvault block do not."""


class FileFormatError(FormatError):
    """A market-data file (B3 trades, CSV, Parquet) has a bad header, row or archive."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None = None,
        column: str | None = None,
    ):
        where = path if line is None else f"{path}, line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.column = column


class FeedError(TickvaultError):
    """A feed failed: the DLL could not be loaded, refused a call or the login."""


class BenchmarkError(TickvaultError):
    """A benchmark run failed one of its own checks; its figures would mean nothing."""


class OutputError(TickvaultError):
    """A file to write (an export, ``--out``) cannot be created or written."""


class ModelError(TickvaultError):
    """A model version is unknown, its artifact does not load, or the running feature
    engine does not compute the features it was trained on."""


class SupervisorError(TickvaultError):
    """``tickvault up`` cannot start its components, or one it needs keeps failing."""


class LeaseLost(TickvaultError):
    """A pool worker's fenced write was refused (``storage.leases``): the lease of
    ``symbols`` for ``role`` is no longer this worker's (it expired, e.g. the worker was
    paused past ``pool_lease_ttl_ms``, and another worker may own it now). Nothing of
    the write of ``symbols`` was stored; the symbol's owner resumes from the stored
    cursor. ``stored``: the other symbols of the same write, stored (a bridge cycle)."""

    def __init__(
        self, symbols: list[str], role: str, *, why: str = "", stored: list[str] | None = None
    ) -> None:
        also = f" (the write of {', '.join(stored)} was stored)" if stored else ""
        super().__init__(
            f"{role} pool: the lease of {', '.join(symbols)} is no longer this worker's"
            f"{' (' + why + ')' if why else ''}; the write was refused and nothing of it "
            f"stored{also}: the symbol's current owner resumes from the stored cursor"
        )
        self.symbols = symbols
        self.role = role
        self.stored = list(stored or [])


class ServerError(TickvaultError):
    """The Valkey server failed a request."""


class ServerUnreachable(ServerError):
    """No Valkey server answers at the configured address."""


class StoreRefused(ServerError):
    """The server is up but refuses writes: ``reason`` is ``oom`` (``maxmemory`` reached;
    with ``noeviction`` nothing is dropped to make room) or ``misconf`` (its last RDB
    save or AOF write failed, so it stops accepting writes). Nothing of the refused
    request was written; it can be retried once the cause is fixed."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class EmbeddedServerError(ServerError):
    """The embedded Valkey server could not be started, found or stopped."""
