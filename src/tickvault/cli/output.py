"""Where the CLI writes: files given with ``--out``, and stdout when it is not a terminal.

Output files are checked before any work is done (missing directory, a directory
given as the file, a directory that cannot be written) and writing them turns
every OSError into one ``OutputError`` line. Output that is not a terminal (a
pipe, a file) is never cut to 80 columns: tables are as wide as their values.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions

from tickvault.errors import OutputError

PIPE_WIDTH = 10_000
"""Columns of a console that is not a terminal: wide enough that no value is cut."""


class WholeConsole(Console):
    """A rich Console that, when its output is not a terminal and no width was given
    (argument or COLUMNS), lays out at ``PIPE_WIDTH`` columns instead of 80, so piped
    tables keep every value whole."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def check_output_path(path: Path, option: str = "--out") -> None:
    """Raise OutputError, before any work is done, when ``path`` cannot be a file
    written by this process."""
    parent = path.parent
    if path.is_dir():
        raise OutputError(f"{option} {path} is a directory; give a file name, e.g. {path / 'x'}")
    if not parent.exists():
        raise OutputError(
            f"{option} {path}: the directory {parent} does not exist; create it first "
            f"(mkdir -p {parent}) or choose another path"
        )
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{option} {path}: no permission to write there; choose another path")


def write_output(path: Path, write: Callable[[Path], Any], option: str = "--out") -> None:
    """Call ``write(path)``; any failure to create or write the file becomes one
    OutputError line (the path and the reason)."""
    try:
        write(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write {option} {path}: {reason}; choose another path") from None
    except Exception as exc:  # pyarrow reports some OS failures as its own errors
        import pyarrow as pa

        if isinstance(exc, pa.ArrowException):
            raise OutputError(f"cannot write {option} {path}: {exc}") from None
        raise


console = WholeConsole()
"""Standard output of every CLI command."""
err_console = WholeConsole(stderr=True, soft_wrap=True)
"""Standard error: progress, notes and the one-line errors."""
