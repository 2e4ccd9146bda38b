"""Who may IDENTIFY when: Discord's identify concurrency and the daily session budget.

Discord lets one IDENTIFY through per ``rate_limit_key = shard_id %
max_concurrency`` every 5 seconds, and counts every IDENTIFY (refused ones
too, never a RESUME) against the daily ``session_start_limit.remaining``.
Identifying too fast is answered with op 9, which spends a session start all
the same, so the only safe flow control is to wait *before* sending.

``IdentifyQueue`` is the protocol a shard waits on before each IDENTIFY (the
first and every re-identify); ``LocalIdentifyQueue`` implements it for the
shards of one process.  ``fastshard.redis.RedisIdentifyQueue`` implements the
same protocol across processes.  The rules themselves (bucket spacing, order
within a bucket, the budget) are ``IdentifySchedule``: plain logic over a
clock value, testable without sleeping.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Callable, Protocol, runtime_checkable

from .errors import SessionStartLimitError

__all__ = ["IdentifyQueue", "LocalIdentifyQueue", "IdentifySchedule", "IDENTIFY_INTERVAL", "IDENTIFY_MARGIN"]

#: Seconds between two IDENTIFYs of one rate-limit key (Discord: "per 5 seconds").
IDENTIFY_INTERVAL = 5.0
#: Spacing added on top of the interval, as a share of it (50 ms at 5 s): Discord judges the
#: spacing by when each IDENTIFY *arrives*, and a late first one makes the next arrive early.
IDENTIFY_MARGIN = 0.01


@runtime_checkable
class IdentifyQueue(Protocol):
    """What a shard waits on before it sends IDENTIFY."""

    async def acquire(self, shard_id: int) -> None:
        """Return when ``shard_id`` may send IDENTIFY now; that spends one session start.

        Cancellable: a cancelled wait spends nothing and keeps no place.
        Raises ``SessionStartLimitError`` when the daily budget has no start
        left (rather than letting Discord refuse and reset the token).
        """
        ...


class IdentifySchedule:
    """The identify rules as plain state: no clock, no tasks, no I/O.

    ``grant(shard_id, now)`` says whether that shard may identify at ``now``
    (and books it), else returns the time to ask again.  The budget is
    optional: without ``set_budget`` nothing is counted.
    """

    def __init__(self, max_concurrency: int, interval: float = IDENTIFY_INTERVAL) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, not {max_concurrency!r}")
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, not {interval!r}")
        self.max_concurrency = max_concurrency
        self.interval = float(interval)
        self._next_at: dict[int, float] = {}
        self.total: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        #: IDENTIFYs granted so far (each spent one session start).
        self.spent = 0

    def key(self, shard_id: int) -> int:
        return shard_id % self.max_concurrency

    def set_budget(self, total: int, remaining: int, reset_after: float, now: float) -> None:
        """The ``session_start_limit`` from /gateway/bot (``reset_after`` in seconds)."""
        self.total = total
        self.remaining = remaining
        self.reset_at = now + reset_after

    def available(self, now: float) -> int | None:
        """Session starts left at ``now`` (None: no budget known)."""
        if self.remaining is None:
            return None
        if self.reset_at is not None and now >= self.reset_at and self.total is not None:
            return self.total
        return self.remaining

    def next_at(self, shard_id: int) -> float:
        """The earliest time ``shard_id``'s bucket is free."""
        return self._next_at.get(self.key(shard_id), float("-inf"))

    def grant(self, shard_id: int, now: float) -> float | None:
        """Book an IDENTIFY for ``shard_id`` at ``now``: None if granted, else when to try again.

        Raises ``SessionStartLimitError`` when the budget is spent.
        """
        at = self.next_at(shard_id)
        if now < at:
            return at
        if self.remaining is not None:
            if self.reset_at is not None and now >= self.reset_at and self.total is not None:
                self.remaining = self.total
                self.reset_at = now + 24 * 3600.0
            if self.remaining <= 0:
                reset_after = max(0.0, (self.reset_at or now) - now)
                raise SessionStartLimitError(0, reset_after)
            self.remaining -= 1
        self._next_at[self.key(shard_id)] = now + self.interval * (1 + IDENTIFY_MARGIN)
        self.spent += 1
        return None


class LocalIdentifyQueue:
    """``IdentifyQueue`` for the shards of one process.

    One IDENTIFY per ``shard_id % max_concurrency`` per ``interval`` (plus a 1% margin
    for the network's jitter); within
    a bucket the lowest waiting shard id goes first, so a start-up fills the
    buckets in order (0-15 together, then 16-31, for ``max_concurrency`` 16).
    """

    def __init__(self, max_concurrency: int = 1, interval: float = IDENTIFY_INTERVAL, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.schedule = IdentifySchedule(max_concurrency, interval)
        self._clock = clock
        # Per bucket: a heap of (shard_id, tie, future) waiting their turn.
        self._waiting: dict[int, list[tuple[int, int, asyncio.Future[None]]]] = {}
        self._timers: dict[int, asyncio.Handle] = {}
        self._tie = itertools.count()

    @property
    def max_concurrency(self) -> int:
        return self.schedule.max_concurrency

    @property
    def interval(self) -> float:
        return self.schedule.interval

    @property
    def spent(self) -> int:
        """IDENTIFYs granted by this queue so far."""
        return self.schedule.spent

    @property
    def remaining(self) -> int | None:
        """Session starts left in the budget (None until ``set_budget``)."""
        return self.schedule.available(self._now())

    def set_budget(self, total: int, remaining: int, reset_after: float) -> None:
        """The daily budget (``reset_after`` in seconds); identifies are counted against it."""
        self.schedule.set_budget(total, remaining, reset_after, self._now())

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def acquire(self, shard_id: int) -> None:
        if isinstance(shard_id, bool) or not isinstance(shard_id, int) or shard_id < 0:
            raise ValueError(f"shard_id must be an int >= 0, not {shard_id!r}")
        bucket = self.schedule.key(shard_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting.setdefault(bucket, []), (shard_id, next(self._tie), future))
        if bucket not in self._timers:
            # Not at once: shards that ask in the same loop tick are served lowest id first.
            self._timers[bucket] = asyncio.get_running_loop().call_soon(self._pump, bucket)
        try:
            await future
        except asyncio.CancelledError:
            # A grant that raced the cancel stays spent: the bucket's slot was used either way.
            self._forget(bucket, future)
            raise

    def _forget(self, bucket: int, future: asyncio.Future[None]) -> None:
        heap = self._waiting.get(bucket)
        if heap:
            heap[:] = [entry for entry in heap if entry[2] is not future]
            heapq.heapify(heap)
        self._pump(bucket)

    def _pump(self, bucket: int) -> None:
        timer = self._timers.pop(bucket, None)
        if timer is not None:
            timer.cancel()
        heap = self._waiting.get(bucket)
        while heap:
            shard_id, _, future = heap[0]
            if future.done():
                heapq.heappop(heap)
                continue
            try:
                again = self.schedule.grant(shard_id, self._now())
            except SessionStartLimitError as exc:
                heapq.heappop(heap)
                future.set_exception(exc)
                continue
            if again is not None:
                loop = asyncio.get_running_loop()
                delay = max(0.0, again - self._now())
                self._timers[bucket] = loop.call_later(delay, self._pump, bucket)
                return
            heapq.heappop(heap)
            future.set_result(None)
