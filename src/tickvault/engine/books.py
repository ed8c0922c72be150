"""Book tops from the stored offer book, for the book features of the intraday set.

The book features (``spread``, ``book_imbalance``, ``microprice``) read the best bid
and ask and the quantity at each (``features.batch.BookTops``). Here they come from
``book:{SYMBOL}``: the book state at the start (the latest snapshot, then the updates
after it), then every stored update in feed order; one top per run of updates that
share a time (a full-book run, or the updates of one nanosecond: no T can see the
book between them).

Time of a top: the book is a live feed only (nothing imports book history), so an
update is known when it was received: a top counts from ``max(ts_event, ts_recv)`` of
its update, and from the largest such time so far (the feed's order is kept, and a
late-stamped update never moves a top into the past). A feature at T reads the last
top with that time < T, in either mode (the store's ``known_at`` and the knowledge
time agree for live records: ``features.known``).

Cost: one Python step per run of updates (``BookState.apply``), so a day with a busy
book costs more than its trades; the reads are one snapshot and one XRANGE walk.
"""

from __future__ import annotations

import itertools

import numpy as np

from tickvault.features.batch import BookTops
from tickvault.vault import Vault


def book_tops(vault: Vault, symbol: str, start_ns: int, end_ns: int) -> BookTops:
    """The book tops of ``symbol`` from the book as it stood at ``start_ns`` to the
    last update with ts_event < ``end_ns`` (see the module docstring)."""
    books = vault.books
    updates = books.updates(symbol, start_ns, end_ns)
    state = books.state_at(symbol, start_ns - 1)
    if updates.size == 0 and state.updates == 0 and not any(s.offers for s in state.sides):
        return BookTops.empty()
    eff = np.maximum(updates["ts_event"], updates["ts_recv"]).astype(np.int64)
    eff = np.maximum.accumulate(eff) if eff.size else eff
    ts: list[int] = []
    tops: list[tuple[float, int, float, int]] = []
    if any(s.offers for s in state.sides):
        ts.append(int(start_ns) - 1)
        tops.append(state.top())
    if eff.size:
        # one top after each run of updates with one effective time
        ends = np.flatnonzero(np.diff(eff)) + 1
        bounds = [0, *ends.tolist(), int(eff.size)]
        for lo, hi in itertools.pairwise(bounds):
            state.apply(updates[lo:hi])
            ts.append(int(eff[hi - 1]))
            tops.append(state.top())
    if not tops:
        return BookTops.empty()
    bid_px, bid_qty, ask_px, ask_qty = zip(*tops, strict=True)
    return BookTops(
        ts=np.asarray(ts, dtype=np.int64),
        bid_px=np.asarray(bid_px, dtype=np.float64),
        bid_qty=np.asarray(bid_qty, dtype=np.int64),
        ask_px=np.asarray(ask_px, dtype=np.float64),
        ask_qty=np.asarray(ask_qty, dtype=np.int64),
    )
