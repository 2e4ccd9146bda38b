"""A gateway process: shards that identify through Redis, resume from Redis and publish into it.

``RedisGateway`` runs the given shard ids with ``RedisIdentifyQueue``,
``RedisSessionStore``, ``RedisPublisher`` and ``CommandServer`` wired
together: every dispatch goes to its shard's stream, a new session is
checkpointed in the same script run as its READY, a shard whose session is
gone identifies again through the shared queue, and when Redis falls behind
the shards close resumably until it has caught up.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from ..codec import make_encoder
from ..errors import ConnectionFailedError, InvalidSessionError, NotConnectedError, ShardError
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
    /gateway/bot); other keyword arguments go to each ``WebsocketShard``.
    ``maxlen`` bounds each stream, ``max_buffer`` the events held in memory
    while Redis is slow before the shards pause.
    """

    #: Seconds between two attempts to reach the gateway when it cannot be reached.
    connect_retry = 1.0

    def __init__(self, redis: Any, *, token: str, intents: int, shard_ids: Iterable[int], shard_count: int,
                 url: str = "gateway.discord.gg", max_concurrency: int = 1, identify_interval: float = 5.0,
                 prefix: str = "fastshard", maxlen: int = 100_000, max_buffer: int = 50_000,
                 identify_queue: Any = None, **shard_options: Any) -> None:
        self.redis = redis
        self.token = token
        self.intents = intents
        self.shard_ids = sorted(set(shard_ids))
        if not self.shard_ids or self.shard_ids[0] < 0 or self.shard_ids[-1] >= shard_count:
            raise ValueError(f"shard_ids must be ids in 0..{shard_count - 1}, not {shard_ids!r}")
        self.shard_count = shard_count
        self.url = url
        self.keys = Keys(prefix)
        # Dispatches are forwarded, not read: the shard peeks t and s and hands the raw bytes over.
        shard_options.setdefault("raw_dispatches", True)
        self.shard_options = shard_options
        self.queue = identify_queue or RedisIdentifyQueue(redis, max_concurrency, identify_interval, prefix)
        self.store = RedisSessionStore(redis, prefix)
        self.publisher = RedisPublisher(redis, prefix=prefix, maxlen=maxlen, max_buffer=max_buffer,
                                        on_pause=self._pause, on_resume=self._resume)
        self.commands = CommandServer(redis, self.shard_ids, self.send, prefix)
        self.shards: dict[int, WebsocketShard] = {}
        self.identifies = 0
        self.resumes = 0
        #: A shard that stopped for good (bad token, disallowed intents...): the error.
        self.errors: dict[int, ShardError] = {}
        self._encoder = make_encoder(shard_options.get("encoding", "json")).encode
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopped: dict[int, asyncio.Future[ShardError]] = {}
        self._paused: set[int] = set()
        self._pause_task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start every shard (identifying through the queue or resuming); returns at once."""
        await self.redis.set(self.keys.shard_count, self.shard_count)
        await self.publisher.start()
        self.commands.start()
        for shard_id in self.shard_ids:
            self._tasks[shard_id] = asyncio.ensure_future(self._run(shard_id))

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every shard is CONNECTED (READY or RESUMED received)."""
        async def ready() -> None:
            while not self._closing and (len(self.shards) < len(self.shard_ids) or any(
                    s.status != ShardStatus.CONNECTED for s in self.shards.values())):
                await asyncio.sleep(0.02)
        await asyncio.wait_for(ready(), timeout)

    async def close(self) -> None:
        """Close the shards (sessions stay resumable), then flush what is left to Redis."""
        self._closing = True
        await self.commands.close()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.shards.values()), return_exceptions=True)
        if self._pause_task is not None:
            self._pause_task.cancel()
        await self.publisher.close()

    async def __aenter__(self) -> RedisGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def send(self, shard_id: int, payload: dict[str, Any]) -> None:
        """``WebsocketShard.send`` on one of this process's shards."""
        shard = self.shards.get(shard_id)
        if shard is None:
            raise NotConnectedError(f"shard {shard_id} does not run in this gateway process")
        await shard.send(payload)

    # -- one shard --------------------------------------------------------------
    async def _run(self, shard_id: int) -> None:
        while not self._closing:
            info = await self.store.load(shard_id)
            options = dict(token=self.token, intents=self.intents, id=shard_id, total=self.shard_count,
                           url=self.url, **self.shard_options)
            if info is not None and info.shard_count == self.shard_count:
                options.update(session=info.session_id, sequence=info.sequence or 0,
                               url=info.resume_url or self.url)
                self.resumes += 1
            else:
                await self.queue.acquire(shard_id)
                self.identifies += 1
            shard = self._make_shard(shard_id, options)
            while True:
                try:
                    await shard.connect()
                    break
                except ConnectionFailedError as exc:
                    log.warning("shard %d: %s; retrying", shard_id, exc)
                    await asyncio.sleep(self.connect_retry)
            error = await self._stopped[shard_id]
            if isinstance(error, InvalidSessionError):
                log.info("shard %d: session gone (%s); identifying again", shard_id, error)
                await self.store.delete(shard_id)
                continue
            log.error("shard %d stopped: %s", shard_id, error)
            self.errors[shard_id] = error
            return

    def _make_shard(self, shard_id: int, options: dict[str, Any]) -> WebsocketShard:
        shard = WebsocketShard(**options)
        self.shards[shard_id] = shard
        stopped: asyncio.Future[ShardError] = asyncio.get_running_loop().create_future()
        self._stopped[shard_id] = stopped
        publish, encode = self.publisher.publish, self._encoder

        def on_event(payload: Any) -> None:
            if type(payload) is tuple:
                publish(shard_id, payload[0], payload[1], payload[2])
            else:
                publish(shard_id, payload["t"], payload["s"], encode(payload))

        def on_ready(data: Any) -> None:
            seq = shard.sequence or 0
            self.publisher.publish_session(shard_id, data["session_id"], shard.resume_url, self.shard_count,
                                           "READY", seq, encode({"op": 0, "t": "READY", "s": seq, "d": data}))

        def on_resumed(data: Any) -> None:
            d = {k: v for k, v in data.items() if k != "replayed"}
            seq = shard.sequence or 0
            publish(shard_id, "RESUMED", seq, encode({"op": 0, "t": "RESUMED", "s": seq, "d": d}))

        def on_close(error: Any) -> None:
            if not stopped.done():
                stopped.set_result(error)

        shard.on("event", on_event)
        shard.on("ready", on_ready)
        shard.on("resumed", on_resumed)
        shard.on("close", on_close)
        return shard

    # -- Redis fell behind ------------------------------------------------------
    def _pause(self) -> None:
        self._pause_task = asyncio.ensure_future(self._pause_shards())

    async def _pause_shards(self) -> None:
        for shard_id, shard in list(self.shards.items()):
            if shard.status != ShardStatus.CLOSED:
                self._paused.add(shard_id)
                await shard.close()

    def _resume(self) -> None:
        self._pause_task = asyncio.ensure_future(self._resume_shards())

    async def _resume_shards(self) -> None:
        paused, self._paused = self._paused, set()
        for shard_id in sorted(paused):
            shard = self.shards[shard_id]
            while not self._closing and shard.status == ShardStatus.CLOSED and not self.publisher.paused:
                try:
                    await shard.connect()
                except ConnectionFailedError as exc:
                    log.warning("shard %d: %s; retrying", shard_id, exc)
                    await asyncio.sleep(self.connect_retry)
