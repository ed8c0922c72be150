"""ProfitDLL's offer book as the feeder keeps it: deltas and pages resolved into records (pure).

ProfitDLL sends an edit (action 1) as a change to the resting offer: when the
has-quantity flag is set, the callback's quantity is *added* to the offer's (a
delta, negative for a partial fill), and agent, offer id and price replace the
offer's when their flags are set. That is how all four of Nelogica's examples
(C++, Delphi, C#, Python) apply it; the manual only says "update the
information". tickvault's book records carry the resulting offer instead
(``records.book.BOOK_DTYPE``; ``records/book.py`` replaces the offer), so the store and any
subscriber rebuild the book from the records alone, and an edit that arrives
after a lost one is still right. ``ProfitBook`` keeps each side's list as the
examples do (with ``BookState``, the store's own rules) and turns each callback
into records of the resulting values.

A full book (action 4) may come in pages. The flags word after a side's entries
has 2 on the first page (the side starts over) and 1 on the last (the side is
complete); pages in between are appended. A side is published once complete, as
one full-book run (one record per offer, one ``ts_event``). A page with neither a
first-page flag nor a book in progress starts the side over (a DLL that does not
set flag 2 sends single pages flagged 1). An update of a side whose paged book is
still incomplete applies to the pages received so far, as in the examples, whose
lists grow page by page: those pages are published first, as the side's book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickvault.feeds.profitdll.convert import BookArray, Entry
from tickvault.feeds.profitdll.types import BOOK_ARRAY_FIRST_PACKET, BOOK_ARRAY_LAST_PACKET
from tickvault.records.book import (
    ADD,
    ASK,
    BID,
    BOOK_DTYPE,
    DELETE,
    DELETE_FROM,
    EDIT,
    FULL_BOOK,
    BookState,
)


def side_records(
    side: int, entries: list[Entry], ts_event: int, ts_recv: int
) -> npt.NDArray[np.void]:
    """A side's full-book run: entries in list order, positions counted from the end.
    A side sent empty is one action-4 record with price 0 (the side is cleared)."""
    n = len(entries)
    if n == 0:
        return np.array([(ts_event, ts_recv, 0, 0.0, 0, 0, 0, side, FULL_BOOK)], dtype=BOOK_DTYPE)
    rows = [(ts_event, ts_recv, offer_id, price, qty, agent, n - i - 1, side, FULL_BOOK)
            for i, (price, qty, agent, offer_id, _date) in enumerate(entries)]  # fmt: skip
    return np.array(rows, dtype=BOOK_DTYPE)


@dataclass(slots=True)
class _Pages:
    entries: list[Entry]
    ts_event: int
    ts_recv: int


@dataclass(slots=True)
class ProfitBook:
    """One symbol's book as ProfitDLL builds it. Not thread-safe: one worker calls it."""

    state: BookState = field(default_factory=BookState)
    """The book so far, in ProfitDLL's list order (what has been published)."""
    inconsistent: int = 0
    """Updates that did not fit the book: a position outside the list, a quantity that
    would go below zero, an unknown side or action. Published as they are where the
    store can skip them too; dropped otherwise. The next full book repairs the side."""
    _pages: list[_Pages | None] = field(default_factory=lambda: [None, None])

    # ------------------------------------------------------------------ full books
    def full_book(
        self, side: int, array: BookArray, ts_event: int, ts_recv: int
    ) -> npt.NDArray[np.void]:
        """One page of a side (``array``); the side's run once its last page came."""
        if side not in (BID, ASK):
            self.inconsistent += 1
            return np.zeros(0, dtype=BOOK_DTYPE)
        pages = self._pages[side]
        if array.flags & BOOK_ARRAY_FIRST_PACKET or pages is None:
            pages = _Pages([], ts_event, ts_recv)
        pages.entries.extend(array.entries)
        pages.ts_event, pages.ts_recv = ts_event, ts_recv
        if not array.flags & BOOK_ARRAY_LAST_PACKET:
            self._pages[side] = pages
            return np.zeros(0, dtype=BOOK_DTYPE)
        self._pages[side] = None
        return self._publish(side, pages)

    def _publish(self, side: int, pages: _Pages) -> npt.NDArray[np.void]:
        records = side_records(side, pages.entries, pages.ts_event, pages.ts_recv)
        self.state.apply(records)
        return records

    # ------------------------------------------------------------------ updates
    def update(
        self,
        *,
        action: int,
        position: int,
        side: int,
        qty: int,
        agent: int,
        offer_id: int,
        price: float,
        has: tuple[bool, bool, bool, bool],
        ts_event: int,
        ts_recv: int,
    ) -> npt.NDArray[np.void]:
        """Records for one add, edit, delete or delete-from. ``has``: price, qty, offer id,
        agent present. An edit's record carries the offer as it results: quantity plus
        the delta, the fields sent replacing the old ones."""
        unusable = side not in (BID, ASK) or action not in (ADD, EDIT, DELETE, DELETE_FROM)
        if unusable or position < 0 or not (math.isfinite(price) and price >= 0):
            self.inconsistent += 1  # the store would refuse the whole message
            return np.zeros(0, dtype=BOOK_DTYPE)
        out = []
        pages = self._pages[side]
        if pages is not None:  # a paged book in progress: the update applies to it
            out.append(self._publish(side, pages))
        has_price, has_qty, has_offer, has_agent = has
        offers = self.state.sides[side].offers
        if action == EDIT:
            index = len(offers) - position - 1
            if 0 <= index < len(offers):
                old_price, old_qty, old_agent, old_offer, _ts = offers[index]
                new_qty = old_qty + qty if has_qty else old_qty
                if new_qty < 0:
                    self.inconsistent += 1
                    new_qty = 0
                row = (ts_event, ts_recv, offer_id if has_offer else old_offer,
                       price if has_price else old_price, new_qty,
                       agent if has_agent else old_agent, position, side, EDIT)  # fmt: skip
            else:  # outside the list: the store skips it as well (and counts it)
                self.inconsistent += 1
                row = (ts_event, ts_recv, 0, 0.0, -1, 0, position, side, EDIT)
        elif action == ADD:
            if not 0 <= len(offers) - position <= len(offers):
                self.inconsistent += 1
            row = (ts_event, ts_recv, offer_id if has_offer else 0,
                   price if has_price else 0.0, qty if has_qty else 0,
                   agent if has_agent else 0, position, side, ADD)  # fmt: skip
        else:
            if not 0 <= len(offers) - position - 1 < len(offers):
                self.inconsistent += 1
            row = (ts_event, ts_recv, 0, 0.0, 0, 0, position, side, action)
        record = np.array([row], dtype=BOOK_DTYPE)
        self.state.apply(record)
        out.append(record)
        if pages is not None:  # later pages append to the side as it now stands
            self._pages[side] = _Pages(
                [(p, q, a, o, "") for p, q, a, o, _ts in offers], pages.ts_event, pages.ts_recv
            )
        return np.concatenate(out) if len(out) > 1 else record
