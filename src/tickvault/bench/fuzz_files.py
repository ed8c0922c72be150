"""The file half of ``bench.fuzz``: malformed rows per format (B3, CSV, Parquet)."""

from __future__ import annotations

from tickvault.bench.fuzz import FuzzRow
from tickvault.vault import Vault


def fuzz_files(vault: Vault, rows: int, *, seed: int = 17) -> list[FuzzRow]:
    return []
