"""``attach(feeder)``: publish an existing feeder's events without changing it.

The user's system keeps its callbacks (for instance ``feeder.callback.newTradeCallback``
with ProfitDLL's legacy argument list). ``attach`` replaces each such attribute
with a wrapper that calls the original first, with the same arguments, returns
its result unchanged, and then publishes the event. A failure to convert or
publish is counted and logged (at a bounded rate), never raised into the
caller. If the original raises, the exception propagates as before and nothing
is published. ``detach`` puts the original attributes back.

Attach before the feeder registers its callbacks with the DLL: ctypes keeps the
function it was given.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from tickvault.errors import ValidationError
from tickvault.feeds.profitdll.convert import ProfitDateParser
from tickvault.logutil import RateLimitedLog
from tickvault.records.book import BOOK_DTYPE
from tickvault.records.trades import TradeFlag
from tickvault.transport.publisher import Publisher
from tickvault.transport.wire import Kind
from tickvault.venue.b3 import B3_TZ_NAME

log = logging.getLogger(__name__)

TRADE_PATHS = ("callback.newTradeCallback", "newTradeCallback")
HISTORY_PATHS = ("callback.newHistoryCallback", "newHistoryCallback")
BOOK_PATHS = ("callback.offerBookCallback", "offerBookCallback")


def ticker_of(asset: Any) -> str:
    """The ticker of a ProfitDLL asset argument (``TAssetID``-like object or a string)."""
    ticker = asset if isinstance(asset, str) else getattr(asset, "ticker", None)
    if not isinstance(ticker, str) or not ticker:
        raise ValidationError(f"cannot read a ticker from {asset!r}", field="asset")
    return ticker.upper()


@dataclasses.dataclass
class Attachment:
    """What ``attach`` did; ``detach()`` undoes it."""

    feeder: Any
    publisher: Publisher
    published: int = 0
    failures: int = 0
    _originals: list[tuple[Any, str, Any, bool]] = dataclasses.field(default_factory=list)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def detach(self) -> None:
        """Restore every original callback attribute."""
        for owner, attr, original, own in reversed(self._originals):
            if own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._originals.clear()

    @property
    def attached(self) -> bool:
        return bool(self._originals)


def _resolve(feeder: Any, path: str) -> tuple[Any, str] | None:
    *parents, attr = path.split(".")
    owner = feeder
    for name in parents:
        owner = getattr(owner, name, None)
        if owner is None:
            return None
    return (owner, attr) if callable(getattr(owner, attr, None)) else None


def attach(
    feeder: Any,
    publisher: Publisher,
    *,
    exchange_tz: str = B3_TZ_NAME,
    trade: tuple[str, ...] = TRADE_PATHS,
    history: tuple[str, ...] = HISTORY_PATHS,
    book: tuple[str, ...] = BOOK_PATHS,
) -> Attachment:
    """Wrap the first callback attribute found for each event kind (paths are tried in
    order) so every call is also published on ``publisher``."""
    att = Attachment(feeder, publisher)
    rate_log = RateLimitedLog(log)
    parse_date = ProfitDateParser(ZoneInfo(exchange_tz))

    def publish_trade(is_history: bool, args: tuple[Any, ...]) -> None:
        # (asset, date, tradeNumber, price, volume, qty, buyAgent, sellAgent, tradeType[, isEdit])
        asset, date, number, price, volume, qty, buy, sell, ttype = args[:9]
        edit = len(args) > 9 and bool(args[9]) and args[9] not in ("\x00", "0")
        publisher.publish_trade(
            ticker_of(asset), parse_date(date), int(number), float(price), int(qty),
            float(volume), int(buy), int(sell), int(ttype),
            int(TradeFlag.EDIT) if edit else 0, history=is_history,
        )  # fmt: skip

    def publish_book(args: tuple[Any, ...]) -> None:
        # Offer book V2: (asset, action, position, side, qty, agent, offerId, price, ...)
        asset, action, position, side, qty, agent, offer_id, price = args[:8]
        now = time.time_ns()
        rec = np.array(
            [(now, now, int(offer_id), float(price), int(qty), int(agent), int(position),
              int(side), int(action))],
            dtype=BOOK_DTYPE,
        )  # fmt: skip
        publisher.publish_records(Kind.BOOK, ticker_of(asset), rec)

    def make_wrapper(
        original: Callable[..., Any], attr: str, emit: Callable[[tuple[Any, ...]], None]
    ) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            try:
                emit(args)
                with att._lock:
                    att.published += 1
            except Exception as exc:  # never break the user's callback
                with att._lock:
                    att.failures += 1
                rate_log.warning("attach", "attach: could not publish a %s event: %s", attr, exc)
            return result

        return wrapper

    def wrap(paths: tuple[str, ...], emit: Callable[[tuple[Any, ...]], None]) -> None:
        for path in paths:
            found = _resolve(feeder, path)
            if found is None:
                continue
            owner, attr = found
            original = getattr(owner, attr)
            own = attr in getattr(owner, "__dict__", {})

            setattr(owner, attr, make_wrapper(original, attr, emit))
            att._originals.append((owner, attr, original if own else None, own))
            return

    wrap(trade, functools.partial(publish_trade, False))
    wrap(history, functools.partial(publish_trade, True))
    wrap(book, publish_book)
    if not att.attached:
        raise ValidationError(
            f"{type(feeder).__name__} has none of the callback attributes "
            f"{', '.join(trade + history + book)}; pass the paths with trade=/history=/book="
        )
    return att


def detach(attachment: Attachment) -> None:
    attachment.detach()
