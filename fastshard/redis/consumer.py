"""Workers: read the gateway's streams through a consumer group, at least once.

Every group (one per service) gets every event; the consumers of a group
share them.  An event stays pending until ``await event.ack()``; one left
pending by a consumer that died is claimed by another after ``claim_idle``
seconds (XAUTOCLAIM), and one delivered ``max_deliveries`` times without an
ack is moved to the ``{prefix}:dead:<group>`` stream (with where it came from
and how often it was tried), never dropped silently.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Any, Iterable

import orjson

from ..errors import DecodeError
from .keys import Keys

__all__ = ["RedisConsumer", "GatewayEvent"]

log = logging.getLogger("fastshard.redis")

# KEYS: stream, dead-letter stream   ARGV: group, idle_ms, max_deliveries, count
_DEAD_LETTER = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', ARGV[4])
local moved = 0
for _, p in ipairs(pending) do
  if tonumber(p[4]) >= tonumber(ARGV[3]) then
    local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])
    local fields = {'stream', KEYS[1], 'id', p[1], 'group', ARGV[1], 'consumer', p[2], 'deliveries', p[4]}
    if #entry > 0 then
      for _, v in ipairs(entry[1][2]) do table.insert(fields, v) end
    else
      table.insert(fields, 'trimmed')
      table.insert(fields, '1')
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
    moved = moved + 1
  end
end
return moved
"""


def decode_payload(raw: bytes, big_ints_as_str: bool = True) -> Any:
    """A stored payload (JSON text or ETF, told apart by ETF's version byte 131)."""
    if raw[:1] == b"\x83":
        from ..codec import _etf_module

        return _etf_module().decode(raw, big_ints_as_str=big_ints_as_str)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"stored event is neither ETF nor valid JSON: {exc}") from None


class GatewayEvent:
    """One dispatch read from a shard's stream.  ``data`` is decoded on first access."""

    __slots__ = ("shard_id", "sequence", "name", "raw", "id", "stream", "deliveries", "_consumer", "_payload")

    def __init__(self, consumer: RedisConsumer, stream: str, entry_id: str, fields: dict[bytes, bytes],
                 deliveries: int = 1) -> None:
        self._consumer = consumer
        self.stream = stream
        self.id = entry_id
        self.shard_id = int(fields[b"shard"])
        self.sequence = int(fields[b"seq"])
        self.name = fields[b"t"].decode()
        self.raw: bytes = fields[b"d"]
        #: 1 for a first delivery, more when it was claimed from a consumer that did not ack it.
        self.deliveries = deliveries
        self._payload: Any = None

    @property
    def payload(self) -> dict[str, Any]:
        """The whole gateway payload ``{"op", "t", "s", "d"}``."""
        if self._payload is None:
            self._payload = decode_payload(self.raw, self._consumer.big_ints_as_str)
        return self._payload  # type: ignore[no-any-return]

    @property
    def data(self) -> Any:
        """The event's ``d``."""
        return self.payload.get("d")

    async def ack(self) -> None:
        """Done with it: the group will not deliver it again."""
        await self._consumer.redis.xack(self.stream, self._consumer.group, self.id)

    def __repr__(self) -> str:
        return f"<GatewayEvent shard={self.shard_id} seq={self.sequence} {self.name} id={self.id}>"


class RedisConsumer:
    """``async with RedisConsumer(redis, "my-service") as events: async for event in events: ...``

    ``shards``: the shard ids to read (None: every stream, found as they
    appear); ``events``: event names to deliver (others are acked unseen).
    """

    def __init__(self, redis: Any, group: str, consumer: str | None = None, shards: Iterable[int] | None = None,
                 events: Iterable[str] | None = None, claim_idle: float = 30.0, max_deliveries: int = 5,
                 prefix: str = "fastshard", *, count: int = 100, block: float = 1.0,
                 big_ints_as_str: bool = True) -> None:
        if not isinstance(group, str) or not group:
            raise ValueError(f"group must be a non-empty str, not {group!r}")
        if isinstance(events, str):
            raise TypeError("events must be a collection of event names, not a str")
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValueError(f"max_deliveries must be an int >= 1, not {max_deliveries!r}")
        if not isinstance(claim_idle, (int, float)) or claim_idle <= 0:
            raise ValueError(f"claim_idle must be a number of seconds > 0, not {claim_idle!r}")
        self.redis = redis
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(prefix)
        self.shards = None if shards is None else sorted(set(shards))
        self.events = None if events is None else frozenset(events)
        self.claim_idle = float(claim_idle)
        self.max_deliveries = max_deliveries
        self.count = count
        self.block = block
        self.big_ints_as_str = big_ints_as_str
        #: Entries moved to the dead-letter stream by this consumer.
        self.dead_lettered = 0
        self._streams: dict[str, bool] = {}  # stream key -> group exists
        self._ready: list[GatewayEvent] = []
        self._last_claim = float("-inf")
        self._last_discover = float("-inf")
        self._dead_letter = redis.register_script(_DEAD_LETTER)

    @property
    def buffered(self) -> int:
        """Events fetched from Redis and not yet handed out (``async for`` returns them without a round trip)."""
        return len(self._ready)

    async def ack(self, *events: GatewayEvent) -> None:
        """Ack several events in one round trip (one XACK per stream)."""
        by_stream: dict[str, list[str]] = {}
        for event in events:
            by_stream.setdefault(event.stream, []).append(event.id)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()

    async def __aenter__(self) -> RedisConsumer:
        await self._discover()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass

    def __aiter__(self) -> RedisConsumer:
        return self

    async def __anext__(self) -> GatewayEvent:
        while not self._ready:
            await self._fetch()
            self._ready.reverse()  # popped from the end: O(1) per event, in stream order
        return self._ready.pop()

    async def _discover(self) -> None:
        if self.shards is not None:
            ids = self.shards
        else:
            ids = sorted(int(x) for x in await self.redis.smembers(self.keys.streams))
        for shard_id in ids:
            key = self.keys.stream(shard_id)
            if not self._streams.get(key):
                await self._create_group(key)
        self._last_discover = asyncio.get_running_loop().time()

    async def _create_group(self, key: str) -> None:
        try:
            # From 0: a group made now still gets everything the stream retains.
            await self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._streams[key] = True

    async def _fetch(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.shards is None and now - self._last_discover >= 1.0:
            await self._discover()
        if now - self._last_claim >= min(self.claim_idle / 2, 5.0):
            self._last_claim = now
            await self._claim()
            if self._ready:
                return
        if not self._streams:
            await asyncio.sleep(self.block)
            return
        try:
            reply = await self.redis.xreadgroup(self.group, self.consumer, {k: ">" for k in self._streams},
                                                count=self.count, block=int(self.block * 1000))
        except Exception as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._streams = {k: False for k in self._streams}  # the stream was deleted: make the groups again
            await self._discover()
            return
        for stream, entries in reply or ():
            await self._accept(stream.decode() if isinstance(stream, bytes) else stream, entries, 1)

    async def _accept(self, stream: str, entries: list[Any], deliveries: int) -> None:
        skipped = []
        for entry_id, fields in entries:
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if not fields:
                continue  # trimmed while pending (XAUTOCLAIM also reports these separately)
            event = GatewayEvent(self, stream, entry_id, fields, deliveries)
            if self.events is not None and event.name not in self.events:
                skipped.append(entry_id)
            else:
                self._ready.append(event)
        if skipped:
            await self.redis.xack(stream, self.group, *skipped)

    async def _claim(self) -> None:
        idle_ms = int(self.claim_idle * 1000)
        dead = self.keys.dead_letters(self.group)
        for key in list(self._streams):
            moved = int(await self._dead_letter(keys=[key, dead], args=[self.group, idle_ms, self.max_deliveries,
                                                                        self.count]))
            if moved:
                self.dead_lettered += moved
                log.error("moved %d events of %s delivered %d times without an ack to %s",
                          moved, key, self.max_deliveries, dead)
            reply = await self.redis.xautoclaim(key, self.group, self.consumer, idle_ms, "0-0", count=self.count)
            entries = reply[1]
            gone = reply[2] if len(reply) > 2 else []
            if gone:
                # Trimmed by MAXLEN while pending: record them, do not lose them silently.
                for entry_id in gone:
                    await self.redis.xadd(dead, {"stream": key, "id": entry_id, "group": self.group, "trimmed": 1})
                log.error("%d pending events of %s were trimmed (MAXLEN) before any consumer acked them; "
                          "recorded in %s", len(gone), key, dead)
            if entries:
                await self._accept(key, entries, 2)
