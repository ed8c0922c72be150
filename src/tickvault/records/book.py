"""Offer-book records (``BOOK_DTYPE``) and the book they rebuild (pure).

Each side is a list of offers in the feed's own order. ``position`` counts from
the end of that list, as in ProfitDLL: the offer at position p is at index
``size - p - 1``, and an add at position p is inserted so that it ends up
there. Actions (``BOOK_DTYPE``):

- 0 add: insert the offer;
- 1 edit: replace the offer at the position (fields marked absent keep their value).
  An edit carries the resulting offer, not a change: a feeder whose source sends
  quantity deltas (ProfitDLL) resolves them before publishing (``feeds/profitdll/book.py``);
- 2 delete: remove the offer at the position;
- 3 delete from: remove the offer at the position and every one after it in
  position order down to position 0 (the end of the list);
- 4 full book: a run of action-4 records of one side, with one ts_event, replaces
  that side; each record is placed by its position within the run, and the
  record at position 0 ends the run. One action-4 record with price 0 means the
  side was sent empty: it is cleared.

An update that points outside the list (a feed glitch or a missed update) is
counted in ``BookState.inconsistent`` and skipped; the next full book repairs
the side. Views sort by price (bids high to low, asks low to high), keeping the
feed's order among offers at one price.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

BOOK_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("offer_id", "<i8"),
        ("price", "<f8"),
        ("qty", "<i8"),
        ("agent", "<i4"),
        ("position", "<i4"),
        ("side", "u1"),
        ("action", "u1"),
    ]
)
"""One offer-book update. ``side`` 0 bid, 1 ask. ``action`` as ProfitDLL: 0 add, 1 edit,
2 delete, 3 delete from ``position`` to the end, 4 full book (one record per offer,
the first of a full book resets the side). ``position`` counts from the end of the
side's list, as in ProfitDLL (index = size - position - 1)."""

ADD, EDIT, DELETE, DELETE_FROM, FULL_BOOK = 0, 1, 2, 3, 4
BID, ASK = 0, 1
SNAPSHOT_DTYPE = np.dtype(
    [("ts_event", "<i8"), ("offer_id", "<i8"), ("price", "<f8"), ("qty", "<i8"),
     ("agent", "<i4"), ("side", "u1")]
)  # fmt: skip
"""One offer of a stored snapshot, in list order per side."""

Offer = tuple[float, int, int, int, int]
"""(price, qty, agent, offer_id, ts_event)."""


@dataclass(slots=True)
class _Side:
    offers: list[Offer] = field(default_factory=list)
    run_ts: int | None = None
    """ts_event of the full-book run in progress on this side, if any."""
    run_positions: list[int] = field(default_factory=list)
    """Negated positions of the run's offers so far (sorted), to place the next one."""


@dataclass(slots=True)
class BookState:
    sides: tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))
    ts_event: int = 0
    """Time of the last update applied."""
    updates: int = 0
    inconsistent: int = 0

    def apply(self, records: npt.NDArray[np.void]) -> None:
        """Apply updates in order."""
        names = ("ts_event", "offer_id", "price", "qty", "agent", "position", "side", "action")
        cols = [records[name].tolist() for name in names]
        for ts, oid, price, qty, agent, pos, side_no, action in zip(*cols, strict=True):
            if side_no not in (BID, ASK):
                self.inconsistent += 1
                continue
            side = self.sides[side_no]
            offers = side.offers
            if action != FULL_BOOK:
                side.run_ts = None
            if action == ADD:
                index = len(offers) - pos
                if 0 <= index <= len(offers):
                    offers.insert(index, (price, qty, agent, oid, ts))
                else:
                    self.inconsistent += 1
            elif action == EDIT:
                index = len(offers) - pos - 1
                if 0 <= index < len(offers):
                    old = offers[index]
                    offers[index] = (
                        price if price > 0 else old[0],
                        qty if qty >= 0 else old[1],
                        agent if agent > 0 else old[2],
                        oid if oid > 0 else old[3],
                        ts,
                    )
                else:
                    self.inconsistent += 1
            elif action == DELETE:
                index = len(offers) - pos - 1
                if 0 <= index < len(offers):
                    del offers[index]
                else:
                    self.inconsistent += 1
            elif action == DELETE_FROM:
                index = len(offers) - pos - 1
                if 0 <= index < len(offers):
                    del offers[index:]
                else:
                    self.inconsistent += 1
            elif action == FULL_BOOK and price <= 0:  # the side was sent empty
                offers.clear()
                side.run_ts = None
            elif action == FULL_BOOK:
                if side.run_ts != ts:
                    side.run_ts = ts
                    side.run_positions = []
                    offers.clear()
                # the run is ordered by position, highest first (index = n - p - 1)
                index = bisect.bisect_right(side.run_positions, -pos)
                side.run_positions.insert(index, -pos)
                offers.insert(index, (price, qty, agent, oid, ts))
                if pos == 0:  # the run's last offer (the end of the list)
                    side.run_ts = None
            else:
                self.inconsistent += 1
                continue
            self.ts_event = ts
            self.updates += 1

    def top(self) -> tuple[float, int, float, int]:
        """(bid_px, bid_qty, ask_px, ask_qty): the best price per side and the quantity
        offered at it (offers with a positive price and quantity); NaN and 0 for an
        empty side."""
        out: list[float | int] = []
        for side, better in ((BID, max), (ASK, min)):
            offers = [o for o in self.sides[side].offers if o[1] > 0 and o[0] > 0]
            if not offers:
                out += [float("nan"), 0]
                continue
            best = better(o[0] for o in offers)
            out += [best, sum(o[1] for o in offers if o[0] == best)]
        return float(out[0]), int(out[1]), float(out[2]), int(out[3])

    # ------------------------------------------------------------------ snapshots
    def to_snapshot(self) -> npt.NDArray[np.void]:
        """Every offer, bids then asks, each side in list order."""
        bids, asks = self.sides[BID].offers, self.sides[ASK].offers
        out = np.zeros(len(bids) + len(asks), dtype=SNAPSHOT_DTYPE)
        for i, (price, qty, agent, oid, ts) in enumerate(bids + asks):
            out[i] = (ts, oid, price, qty, agent, BID if i < len(bids) else ASK)
        return out

    @classmethod
    def from_snapshot(cls, snap: npt.NDArray[np.void], ts_event: int) -> BookState:
        state = cls(ts_event=ts_event)
        cols = [snap[n].tolist() for n in ("price", "qty", "agent", "offer_id", "ts_event", "side")]
        for price, qty, agent, oid, ts, side in zip(*cols, strict=True):
            state.sides[side].offers.append((price, qty, agent, oid, ts))
        return state

    # ------------------------------------------------------------------ views
    def side_frame(self, side: int, depth: int | None = None) -> pd.DataFrame:
        """Offers of one side, best first: price, qty, agent, offer_id, ts_event."""
        offers = self.sides[side].offers
        frame = pd.DataFrame(
            offers if offers else None,
            columns=["price", "qty", "agent", "offer_id", "ts_event"],
        ).astype({"price": "float64", "qty": "int64", "agent": "int32",
                  "offer_id": "int64", "ts_event": "int64"})  # fmt: skip
        frame["order"] = np.arange(len(frame))
        frame = frame.sort_values(["price", "order"], ascending=[side == ASK, True], kind="stable")
        frame = frame.drop(columns="order").reset_index(drop=True)
        return frame if depth is None else frame.head(depth)


@dataclass(frozen=True, slots=True)
class BookView:
    """The book of one symbol as it stood at ``at`` (int ns UTC)."""

    symbol: str
    at: int
    bids: pd.DataFrame
    asks: pd.DataFrame
    last_update: int
    """ts_event of the last update applied (0: none)."""
    updates_applied: int
    """Updates replayed on top of the snapshot used (a measure of the work done)."""

    def levels(self, depth: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bids and asks aggregated by price: price, qty, offers."""

        def agg(frame: pd.DataFrame, ascending: bool) -> pd.DataFrame:
            grouped = frame.groupby("price", sort=False).agg(
                qty=("qty", "sum"), offers=("qty", "size")
            )
            return grouped.sort_index(ascending=ascending).head(depth).reset_index()

        return agg(self.bids, False), agg(self.asks, True)

    @property
    def best_bid(self) -> float | None:
        return float(self.bids["price"].iloc[0]) if len(self.bids) else None

    @property
    def best_ask(self) -> float | None:
        return float(self.asks["price"].iloc[0]) if len(self.asks) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "at": self.at,
            "bids": self.bids.to_dict("records"),
            "asks": self.asks.to_dict("records"),
        }
