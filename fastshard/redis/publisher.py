"""Every dispatch into Redis Streams, one stream per shard, nothing dropped.

``publish()`` runs on the gateway's hot path: it appends the event to the
open batch (hand-packed RESP, see ``resp.py``) and wakes the writer task.  The
writer sends each batch as one EVALSHA of a script that XADDs its events in
order (one round trip and one reply per batch), and retries a batch that
failed until Redis takes it: a retried batch may land twice, never zero
times.  Past ``max_buffer`` events waiting, ``on_pause`` asks the gateway to
close its shards resumably (Discord keeps the rest for RESUME); once all is
written, ``on_resume`` lets them reconnect.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable

from .keys import Keys
from .resp import PublishBatch

__all__ = ["RedisPublisher", "PUBLISH_SCRIPT"]

log = logging.getLogger("fastshard.redis")

# KEYS: streams set, then per shard k: stream (2k), session (2k+1)
# ARGV: maxlen ('0' = keep all), shard id per k, then records in order:
#   event:   k, seq, t, d
#   session: -k, session_id, resume_url, shard_count, seq   (a new session's checkpoint)
PUBLISH_SCRIPT = """
local maxlen = ARGV[1]
local n = (#KEYS - 1) / 2
for k = 1, n do redis.call('SADD', KEYS[1], ARGV[1 + k]) end
local i = n + 2
local count = 0
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  if k > 0 then
    if maxlen ~= '0' then
      redis.call('XADD', KEYS[2 * k], 'MAXLEN', '~', maxlen, '*', 'shard', ARGV[1 + k],
                 'seq', ARGV[i + 1], 't', ARGV[i + 2], 'd', ARGV[i + 3])
    else
      redis.call('XADD', KEYS[2 * k], '*', 'shard', ARGV[1 + k], 'seq', ARGV[i + 1], 't', ARGV[i + 2],
                 'd', ARGV[i + 3])
    end
    count = count + 1
    i = i + 4
  else
    k = -k
    local last = redis.call('XREVRANGE', KEYS[2 * k], '+', '-', 'COUNT', 1)
    local since = '0-0'
    if #last > 0 then since = last[1][1] end
    redis.call('DEL', KEYS[2 * k + 1])
    redis.call('HSET', KEYS[2 * k + 1], 'session_id', ARGV[i + 1], 'resume_url', ARGV[i + 2],
               'shard_count', ARGV[i + 3], 'sequence', ARGV[i + 4], 'since', since,
               'since_sequence', ARGV[i + 4])
    i = i + 5
  end
end
return count
"""


class RedisPublisher:
    """Writes dispatches to ``{prefix}:events:<shard_id>`` streams.

    Entry fields: ``shard``, ``seq``, ``t`` (event name) and ``d`` (the whole
    payload as received after inflate: JSON text or ETF).  ``maxlen`` bounds
    each stream (``MAXLEN ~``; 0 keeps everything); ``max_batch`` events go
    in one command.  ``published[shard_id]`` is the last sequence Redis has.
    """

    def __init__(self, redis: Any, *, prefix: str = "fastshard", maxlen: int = 100_000,
                 max_buffer: int = 50_000, max_batch: int = 1000, timeout: float = 5.0,
                 on_pause: Callable[[], Any] | None = None, on_resume: Callable[[], Any] | None = None) -> None:
        for name, value, low in (("maxlen", maxlen, 0), ("max_buffer", max_buffer, 1), ("max_batch", max_batch, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, not {value!r}")
        self.redis = redis
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self.max_buffer = max_buffer
        self.max_batch = max_batch
        self.timeout = timeout
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.published: dict[int, int] = {}
        #: Events waiting for Redis (in the open batch or being retried).
        self.buffered = 0
        #: Batches that failed (each is retried until it succeeds).
        self.errors = 0
        self.events_published = 0
        #: Events that reached Redis, per shard.
        self.published_counts: dict[int, int] = {}
        self.paused = False
        self._batches: deque[PublishBatch] = deque()
        self._open: PublishBatch | None = None
        self._names: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._sha = b""

    # -- hot path -----------------------------------------------------------
    def publish(self, shard_id: int, name: str, sequence: int, raw: Any) -> None:
        """Queue one dispatch (``raw``: the payload bytes as received); never blocks, never drops."""
        batch = self._open
        if batch is None or batch.count >= self.max_batch:
            batch = self._new_batch()
        packed = self._names.get(name)
        if packed is None:
            encoded = name.encode()
            packed = self._names[name] = b"$%d\r\n%b\r\n" % (len(encoded), encoded)
        batch.add(shard_id, packed, sequence, raw)
        self.buffered += 1
        if self.buffered >= self.max_buffer and not self.paused:
            self._pause()
        if not self._wake.is_set():
            self._wake.set()

    def publish_session(self, shard_id: int, session_id: str, resume_url: str | None, shard_count: int,
                        name: str, sequence: int, raw: Any) -> None:
        """A new session's first dispatch (READY): its checkpoint goes in the same script run, just before it."""
        batch = self._open
        if batch is None or batch.count >= self.max_batch:
            batch = self._new_batch()
        batch.add_session(shard_id, session_id, resume_url, shard_count, sequence)
        self.publish(shard_id, name, sequence, raw)

    def _new_batch(self) -> PublishBatch:
        batch = self._open = PublishBatch()
        self._batches.append(batch)
        self._drained.clear()
        return batch

    def _pause(self) -> None:
        self.paused = True
        log.warning("Redis is behind: %d events waiting; pausing the shards (they will resume)", self.buffered)
        if self.on_pause is not None:
            self.on_pause()

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _load_sha(self) -> str:
        sha = await self.redis.script_load(PUBLISH_SCRIPT)
        text = sha.decode() if isinstance(sha, bytes) else str(sha)
        self._sha = text.encode()
        return text

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything published so far is in Redis."""
        if self._task is None:
            raise RuntimeError("the publisher is not started (use start() or `async with`)")
        await asyncio.wait_for(self._drained.wait(), timeout)

    async def close(self, timeout: float | None = 10.0) -> None:
        """Flush (within ``timeout``), then stop the writer.  What could not be written is logged."""
        if self._task is None:
            return
        try:
            await self.flush(timeout)
        except asyncio.TimeoutError:
            log.error("closing the publisher with %d events not in Redis (the shards' sessions still "
                      "resume from the stream's last sequence)", self.buffered)
        task, self._task = self._task, None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await self._drop_connection()

    async def __aenter__(self) -> RedisPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- writer -----------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._batches:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._batches[0]
            if batch is self._open:
                self._open = None  # sealed: later events go to a new batch
            try:
                await asyncio.wait_for(self._send(batch), self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                log.warning("publishing %d events to Redis failed (%s); retrying in %.2f s",
                            batch.count, exc, backoff)
                await self._drop_connection()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self._batches.popleft()
            self.published.update(batch.last)
            self.buffered -= batch.count
            self.events_published += batch.count
            for shard_id, n in batch.counts.items():
                self.published_counts[shard_id] = self.published_counts.get(shard_id, 0) + n
            if not self._batches:
                self._drained.set()
                if self.paused:
                    self.paused = False
                    log.warning("Redis caught up; resuming the shards")
                    if self.on_resume is not None:
                        self.on_resume()

    async def _send(self, batch: PublishBatch) -> None:
        if not self._sha:
            await self._load_sha()
        conn = self._conn
        if conn is None:
            conn = self._conn = await self.redis.connection_pool.get_connection()
        k = self.keys
        keys = [k.streams.encode()]
        for shard_id in batch.shards:
            keys += [k.stream(shard_id).encode(), k.session(shard_id).encode()]
        ids = [b"%d" % s for s in batch.shards]
        for attempt in (0, 1):
            await conn.send_packed_command(batch.command(self._sha, keys, ids, self.maxlen), check_health=False)
            try:
                await conn.read_response()
                return
            except Exception as exc:
                if attempt == 0 and (type(exc).__name__ == "NoScriptError" or "NOSCRIPT" in str(exc)):
                    await self._load_sha()  # Redis restarted without the script
                    continue
                raise

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.disconnect()
            except Exception:
                pass
            try:
                await self.redis.connection_pool.release(conn)
            except Exception:
                pass
