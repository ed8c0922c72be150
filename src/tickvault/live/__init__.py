"""Live processes: the bridge (ZeroMQ subscriber into the store) and the pipeline that runs
feeders, bridges and gap fillers together.

May import: feeds, transport, the store (``tickvault.vault``, ``tickvault.storage``),
records, venue, errors, timeutil, config. Imported only by the CLI and the benchmarks.
"""
