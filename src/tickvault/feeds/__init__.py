"""Feeders: the feeder contract (``base``: ``Feeder``, ``FeedEvents``), the simulator
(``sim``), the file feeder (``files``), ProfitDLL (``profitdll``), ``attach`` for a
user's own feeder, and the gap filler that backfills after a reconnect (``gapfill``).

May import: transport (to publish), files (to read what it replays), records, venue,
errors, timeutil, config, logutil. Never the store: feeders know nothing of Valkey
(an import contract enforces it).
"""
