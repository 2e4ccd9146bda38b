"""Sliding-window rate limits, checked before a command is sent.

Discord disconnects a client that sends more than 120 commands in 60 s (close
4008).  A sliding window (not a fixed bucket) is what the gateway enforces, so
that is what we count; the clock is passed in, which keeps this testable
without sleeping.
"""
from __future__ import annotations

from collections import deque


class SlidingWindow:
    """At most ``limit`` hits in any ``window`` seconds."""

    __slots__ = ("limit", "window", "_hits")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._hits: deque[float] = deque()

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        hits = self._hits
        while hits and hits[0] <= cutoff:
            hits.popleft()

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._hits)

    def retry_after(self, now: float, limit: int | None = None) -> float:
        """Seconds until one more hit fits under ``limit`` (default: the window's own); 0.0 if it fits now."""
        self._expire(now)
        limit = self.limit if limit is None else limit
        over = len(self._hits) - limit
        if over < 0:
            return 0.0
        # The hit that must expire for room to appear is the (over+1)-th oldest.
        return max(0.0, self._hits[over] + self.window - now)

    def hit(self, now: float) -> None:
        self._hits.append(now)

    def clear(self) -> None:
        self._hits.clear()
