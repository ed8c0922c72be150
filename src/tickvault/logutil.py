"""Logging helpers."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Logs a warning per key at most once per ``interval_s``, with the count suppressed
    since the last one, so a flood of bad input cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0):
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            msg += f" ({dropped} more like it since the last report)"
        self.logger.warning(msg, *args)
