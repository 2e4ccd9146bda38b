"""A gateway process: a ShardManager whose queue, sessions and events live in Redis.

``RedisGateway`` wires ``ShardManager`` to ``RedisIdentifyQueue``,
``RedisSessionStore``, ``RedisPublisher`` and ``CommandServer``: every
dispatch goes to its shard's stream as received (``raw_dispatches``: never
decoded here), a new session is checkpointed in the same script run as its
READY, and when Redis falls behind the shards close resumably until it has
caught up.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from ..codec import make_encoder
from ..errors import ConnectionFailedError
from ..manager import ShardManager
from ..shard import ShardStatus, WebsocketShard
from .commands import CommandServer
from .identify_queue import RedisIdentifyQueue
from .keys import Keys
from .publisher import RedisPublisher
from .session_store import RedisSessionStore

__all__ = ["RedisGateway"]

log = logging.getLogger("fastshard.redis")


class RedisGateway:
    """Runs ``shard_ids`` of a bot with ``shard_count`` shards, on Redis.

    ``redis`` is a ``redis.asyncio.Redis``; ``url`` the gateway URL (from
    /gateway/bot); other keyword arguments go to the ``ShardManager`` (so to
    every ``WebsocketShard``).  ``maxlen`` bounds each stream, ``max_buffer``
    the events held in memory while Redis is slow before the shards pause.
    ``manager`` is the ``ShardManager``: ``gateway.manager.on("ready", ...)``.
    """

    #: Seconds between two attempts to reach the gateway again after a pause.
    connect_retry = 1.0

    def __init__(self, redis: Any, *, token: str, intents: int, shard_ids: Iterable[int], shard_count: int,
                 url: str, max_concurrency: int = 1, identify_interval: float = 5.0,
                 prefix: str = "fastshard", maxlen: int = 100_000, max_buffer: int = 50_000,
                 **options: Any) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.shard_count = shard_count
        # Dispatches are forwarded, not read: the shard peeks t and s and hands the raw bytes over.
        options.setdefault("raw_dispatches", True)
        self.queue = RedisIdentifyQueue(redis, max_concurrency, identify_interval, prefix)
        self.store = RedisSessionStore(redis, prefix)
        self.manager = ShardManager(token=token, intents=intents, shard_ids=shard_ids, shard_count=shard_count,
                                    max_concurrency=max_concurrency, url=url, identify_queue=self.queue,
                                    session_store=self.store, **options)
        self.publisher = RedisPublisher(redis, prefix=prefix, maxlen=maxlen, max_buffer=max_buffer,
                                        on_pause=self._pause, on_resume=self._resume)
        self.shard_ids = sorted(set(self.manager._requested_ids or range(shard_count)))
        self.commands = CommandServer(redis, self.shard_ids, self.manager.send, prefix)
        self._encode = make_encoder(options.get("encoding", "json")).encode
        self._paused: set[int] = set()
        self._pause_task: asyncio.Task[None] | None = None
        self._closing = False
        publish = self.publisher.publish

        def on_event(shard_id: int, payload: Any) -> None:
            if type(payload) is tuple:
                publish(shard_id, payload[0], payload[1], payload[2])
            else:  # a shard made with raw_dispatches=False
                publish(shard_id, payload["t"], payload["s"], self._encode(payload))

        self.manager.on("event", on_event)
        self.manager.on("ready", self._on_ready)
        self.manager.on("resumed", self._on_resumed)

    @property
    def shards(self) -> dict[int, WebsocketShard]:
        return self.manager.shards

    async def start(self) -> None:
        """Start the publisher, the command server and every shard; returns without waiting for READY."""
        await self.redis.set(self.keys.shard_count, self.shard_count)
        await self.publisher.start()
        self.commands.start()
        await self.manager.start()

    async def wait_ready(self, timeout: float | None = None) -> None:
        await self.manager.wait_ready(timeout)

    async def close(self) -> None:
        """Close the shards (sessions stay resumable), then flush what is left to Redis."""
        self._closing = True
        await self.commands.close()
        if self._pause_task is not None:
            self._pause_task.cancel()
        await self.manager.close()
        await self.publisher.close()

    async def __aenter__(self) -> RedisGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def send(self, shard_id: int, payload: dict[str, Any]) -> None:
        await self.manager.send(shard_id, payload)

    def _on_ready(self, shard_id: int, data: Any) -> None:
        shard = self.manager.shards[shard_id]
        seq = shard.sequence or 0
        self.publisher.publish_session(shard_id, data["session_id"], shard.resume_url, self.shard_count,
                                       "READY", seq, self._encode({"op": 0, "t": "READY", "s": seq, "d": data}))

    def _on_resumed(self, shard_id: int, data: Any) -> None:
        d = {k: v for k, v in data.items() if k != "replayed"}
        seq = self.manager.shards[shard_id].sequence or 0
        self.publisher.publish(shard_id, "RESUMED", seq, self._encode({"op": 0, "t": "RESUMED", "s": seq, "d": d}))

    # -- Redis fell behind ------------------------------------------------------
    def _pause(self) -> None:
        self._pause_task = asyncio.ensure_future(self._pause_shards())

    async def _pause_shards(self) -> None:
        for shard_id, shard in list(self.manager.shards.items()):
            if shard.status != ShardStatus.CLOSED:
                self._paused.add(shard_id)
                await shard.close()

    def _resume(self) -> None:
        self._pause_task = asyncio.ensure_future(self._resume_shards())

    async def _resume_shards(self) -> None:
        paused, self._paused = self._paused, set()
        for shard_id in sorted(paused):
            shard = self.manager.shards[shard_id]
            while not self._closing and shard.status == ShardStatus.CLOSED and not self.publisher.paused:
                try:
                    await shard.connect()
                except ConnectionFailedError as exc:
                    log.warning("shard %d: %s; retrying", shard_id, exc)
                    await asyncio.sleep(self.connect_retry)
