"""Record types and their validation (pure): what every layer passes around.

- ``trades``: ``TRADE_DTYPE``, ``TradeBatch``, trade flags and types;
- ``book``: ``BOOK_DTYPE`` offer-book updates, ``SNAPSHOT_DTYPE``, and ``BookState``,
  the book they rebuild;
- ``events``: feeder states, history progress and gap records, with the state codes
  and gap reasons;
- ``signals``: ``SIGNAL_DTYPE``, ``Signal``, ``Side``, ``Mode``;
- ``orders``: ``ORDER_DTYPE``, ``FILL_DTYPE``, ``Order``, ``Fill``;
- ``validate``: the checks every write path runs (trades, symbols, book updates).

May import: numpy, pandas, ``tickvault.errors``, ``tickvault.timeutil``; nothing of the
project's I/O (feeds, files, transport, storage, live, ingest, cli), which all import
these instead. The import contracts (``pyproject.toml``, ``lint-imports``) enforce it.
"""
