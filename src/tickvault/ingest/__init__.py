"""Batch writes into the store: file imports (``files``) and history backfills on request
(``backfill``).

May import: files, feeds, the store (``tickvault.vault``, ``tickvault.storage``), records,
venue, errors, timeutil, config. Imported only by the CLI and the benchmarks.
"""
