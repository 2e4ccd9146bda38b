"""Discord's session start rules as plain logic: identify buckets and the daily budget.

Both take the time as an argument (seconds on any monotonic clock), so they
are tested without sockets and the simulator feeds them its loop's clock.

- Concurrency (gateway.mdx, "Max Concurrency" and "Rate Limiting"): a shard's
  ``rate_limit_key`` is ``shard_id % max_concurrency``; each key allows one
  IDENTIFY per 5 seconds, and identifying faster is answered with op 9.
- Budget ("Session Start Limit Object"): ``total`` IDENTIFYs per 24 hours
  over all shards, RESUMEs free; every IDENTIFY counts, refused ones too.
"""
from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["IdentifyLimiter", "IdentifyRecord", "SessionStartBudget", "rate_limit_key"]


def rate_limit_key(shard_id: int, max_concurrency: int) -> int:
    """The identify bucket of a shard: ``shard_id % max_concurrency``."""
    return shard_id % max_concurrency


class IdentifyRecord(NamedTuple):
    """One IDENTIFY the gateway judged: when, which shard, its key, whether it was let through."""

    at: float
    shard_id: int
    num_shards: int
    key: int
    allowed: bool


class IdentifyLimiter:
    """One IDENTIFY per rate limit key per ``interval`` seconds.

    ``slack`` forgives IDENTIFYs that arrive a little early: the server sees
    arrival times after its own scheduling delays, so a client that spaces
    its IDENTIFYs exactly ``interval`` apart can appear a few milliseconds
    fast.  A refused IDENTIFY starts no session, so it does not move the
    key's window.
    """

    def __init__(self, max_concurrency: int = 1, interval: float = 5.0, slack: float = 0.0) -> None:
        if type(max_concurrency) is not int or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, not {max_concurrency!r}")
        if not interval >= 0 or math.isinf(interval):
            raise ValueError(f"identify_interval must be a number of seconds >= 0, not {interval!r}")
        if not 0 <= slack <= interval:
            raise ValueError(f"identify slack must be between 0 and the interval ({interval}), not {slack!r}")
        self.max_concurrency = max_concurrency
        self.interval = interval
        self.slack = slack
        self._last: dict[int, float] = {}  # key -> when its last allowed IDENTIFY arrived

    def key(self, shard_id: int) -> int:
        return rate_limit_key(shard_id, self.max_concurrency)

    def retry_after(self, shard_id: int, now: float) -> float:
        """Seconds until ``shard_id``'s key may IDENTIFY again (0: now)."""
        last = self._last.get(self.key(shard_id))
        if last is None:
            return 0.0
        return max(0.0, last + self.interval - self.slack - now)

    def attempt(self, shard_id: int, num_shards: int, now: float) -> IdentifyRecord:
        """Judge one IDENTIFY arriving at ``now``; an allowed one starts its key's window."""
        key = self.key(shard_id)
        allowed = self.retry_after(shard_id, now) <= 0
        if allowed:
            self._last[key] = now
        return IdentifyRecord(now, shard_id, num_shards, key, allowed)


class SessionStartBudget:
    """``total`` session starts per ``reset_after`` seconds, the window starting at ``start``."""

    def __init__(self, total: int = 1000, reset_after: float = 86_400.0, start: float = 0.0) -> None:
        if type(total) is not int or total < 0:
            raise ValueError(f"session_start_limit must be an integer >= 0, not {total!r}")
        if not reset_after > 0 or math.isinf(reset_after):
            raise ValueError(f"session_start_reset_after must be a positive number of seconds, "
                             f"not {reset_after!r}")
        self.total = total
        self.period = reset_after
        self._window_start = start
        self._used = 0

    def _roll(self, now: float) -> None:
        if now >= self._window_start + self.period:
            periods = (now - self._window_start) // self.period
            self._window_start += periods * self.period
            self._used = 0

    def remaining(self, now: float) -> int:
        self._roll(now)
        return self.total - self._used

    def reset_after_ms(self, now: float) -> int:
        """Milliseconds until ``remaining`` is back to ``total``, as Discord reports it."""
        self._roll(now)
        return max(0, math.ceil((self._window_start + self.period - now) * 1000))

    def spend(self, now: float) -> bool:
        """Count one IDENTIFY; False when none was left (the IDENTIFY is over the limit)."""
        self._roll(now)
        if self._used >= self.total:
            return False
        self._used += 1
        return True
