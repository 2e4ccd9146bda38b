"""``IdentifyQueue`` across processes and machines: the rules of ``LocalIdentifyQueue`` kept in Redis.

Each rule is one Lua script, so it is atomic whatever the number of processes:

* a bucket (``shard_id % max_concurrency``) is busy for ``interval`` after a
  grant: a key with that expiry, so a holder that dies frees it on time;
* within a bucket the lowest waiting shard id goes first: waiters sit in a
  sorted set by shard id and refresh a liveness deadline while they wait, so a
  waiter that died drops out within ``alive`` seconds (less than one interval);
* the daily budget is one counter, decremented in the same script as the
  grant, so no process can overspend it.

Times come from the Redis server's clock (``TIME``), so machines whose clocks
disagree still agree on the buckets.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ..errors import SessionStartLimitError
from ..identify_queue import IDENTIFY_INTERVAL, IDENTIFY_MARGIN
from .keys import Keys

__all__ = ["RedisIdentifyQueue", "MAX_CONCURRENT_CALLS"]

#: Redis calls one queue or store object has in flight at most (redis-py's pool holds 100 by default).
MAX_CONCURRENT_CALLS = 16

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: busy, waiting, alive, budget, spent   ARGV: shard_id, token, interval_ms, alive_ms
# Returns {0, remaining or -1} granted, {1, retry_ms} wait, {2, reset_after_ms} budget spent.
_ACQUIRE = _NOW + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, member in ipairs(dead) do redis.call('ZREM', KEYS[2], member) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local new = redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
local busy = redis.call('PTTL', KEYS[1])
if busy > 0 then return {1, busy} end
-- A first call only takes a place: shards asking at the same moment then go lowest id first.
if new == 1 then return {1, 0} end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
if head[1] ~= ARGV[2] then return {1, 0} end
local left = -1
if redis.call('EXISTS', KEYS[4]) == 1 then
  local b = redis.call('HMGET', KEYS[4], 'total', 'remaining', 'reset_at')
  local total, remaining, reset_at = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
  if now >= reset_at then
    remaining = total
    reset_at = now + 86400000
    redis.call('HSET', KEYS[4], 'reset_at', reset_at)
  end
  if remaining <= 0 then
    redis.call('ZREM', KEYS[2], ARGV[2])
    redis.call('ZREM', KEYS[3], ARGV[2])
    return {2, reset_at - now}
  end
  redis.call('HSET', KEYS[4], 'remaining', remaining - 1)
  left = remaining - 1
end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('INCR', KEYS[5])
return {0, left}
"""

# KEYS: budget   ARGV: total, remaining, reset_after_ms
# A budget already running (not past its reset) keeps the lower of the two
# "remaining": the other processes may have identified since Discord counted.
_SET_BUDGET = _NOW + """
local reset_at = tonumber(redis.call('HGET', KEYS[1], 'reset_at'))
local remaining = tonumber(ARGV[2])
if reset_at ~= nil and now < reset_at then
  local current = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
  if current ~= nil and current < remaining then remaining = current end
end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'remaining', remaining, 'reset_at', now + tonumber(ARGV[3]))
return remaining
"""

# KEYS: budget   Returns remaining now, or false without a budget.
_REMAINING = _NOW + """
local b = redis.call('HMGET', KEYS[1], 'total', 'remaining', 'reset_at')
if b[1] == false then return false end
if now >= tonumber(b[3]) then return tonumber(b[1]) end
return tonumber(b[2])
"""


class RedisIdentifyQueue:
    """``IdentifyQueue`` shared by every process that uses the same Redis and ``prefix``.

    ``redis`` is a ``redis.asyncio.Redis`` client.  Give every process the
    same ``max_concurrency`` (``session_start_limit.max_concurrency``) and
    ``interval``.  ``set_budget`` and ``remaining()`` are coroutines here
    (they talk to Redis); ``spent`` counts the grants of this object only,
    ``total_spent()`` those of every process.
    """

    def __init__(self, redis: Any, max_concurrency: int = 1, interval: float = IDENTIFY_INTERVAL,
                 prefix: str = "fastshard") -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, not {max_concurrency!r}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, not {interval!r}")
        self.redis = redis
        self.max_concurrency = max_concurrency
        self.interval = float(interval)
        self.keys = Keys(prefix)
        # A waiter refreshes its place every `_poll` seconds and loses it after
        # `_alive`: shorter than an interval, so a dead waiter blocks no longer.
        self._alive = max(0.05, min(self.interval, 1.0)) if self.interval else 1.0
        self._poll = self._alive / 4
        self.spent = 0
        #: The budget's ``remaining`` as last seen by this object (after a grant, ``set_budget`` or
        #: ``remaining()``); None before. A hint for displays: other processes spend too.
        self.known_remaining: int | None = None
        # Thousands of shards may wait at once: a few calls at a time keep within the pool's connections.
        self._calls = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        self._acquire = redis.register_script(_ACQUIRE)
        self._set_budget = redis.register_script(_SET_BUDGET)
        self._remaining = redis.register_script(_REMAINING)

    def _bucket_keys(self, shard_id: int) -> list[str]:
        bucket = shard_id % self.max_concurrency
        k = self.keys
        return [k.bucket_busy(bucket), k.bucket_waiting(bucket), k.bucket_alive(bucket), k.budget, k.spent]

    async def acquire(self, shard_id: int) -> None:
        if isinstance(shard_id, bool) or not isinstance(shard_id, int) or shard_id < 0:
            raise ValueError(f"shard_id must be an int >= 0, not {shard_id!r}")
        keys = self._bucket_keys(shard_id)
        token = f"{shard_id:010d}:{uuid.uuid4().hex}"  # sorts by shard id on equal scores too
        # The bucket stays busy an interval plus the margin LocalIdentifyQueue keeps too.
        args = [shard_id, token, round(self.interval * (1 + IDENTIFY_MARGIN) * 1000), int(self._alive * 1000)]
        granted = False
        try:
            while True:
                async with self._calls:
                    reply = await self._acquire(keys=keys, args=args)
                code = int(reply[0])
                if code == 0:
                    granted = True
                    self.spent += 1
                    if int(reply[1]) >= 0:
                        self.known_remaining = int(reply[1])
                    return
                if code == 2:
                    granted = True  # our place is already gone
                    self.known_remaining = 0
                    raise SessionStartLimitError(0, int(reply[1]) / 1000)
                await asyncio.sleep(min(max(int(reply[1]) / 1000, 0.002), self._poll))
        finally:
            if not granted:
                # Cancelled (or Redis failed): give the place up so the next shard goes now.
                try:
                    await asyncio.shield(self._leave(keys, token))
                except (asyncio.CancelledError, Exception):
                    pass

    async def _leave(self, keys: list[str], token: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys[1], token)
            pipe.zrem(keys[2], token)
            await pipe.execute()

    async def set_budget(self, total: int, remaining: int, reset_after: float) -> None:
        """The daily budget from /gateway/bot (``reset_after`` in seconds), shared by every process."""
        for name, value in (("total", total), ("remaining", remaining)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        if isinstance(reset_after, bool) or not isinstance(reset_after, (int, float)) or reset_after < 0:
            raise ValueError(f"reset_after must be a number of seconds >= 0, not {reset_after!r}")
        value = await self._set_budget(keys=[self.keys.budget], args=[total, remaining, int(reset_after * 1000)])
        self.known_remaining = int(value)

    async def remaining(self) -> int | None:
        """Session starts left today across every process (None: no budget set)."""
        value = await self._remaining(keys=[self.keys.budget])
        if value is not None:
            self.known_remaining = int(value)
        return None if value is None else int(value)

    async def total_spent(self) -> int:
        """IDENTIFYs granted through this Redis by every process so far."""
        value = await self.redis.get(self.keys.spent)
        return int(value or 0)
