"""Gateway commands from workers back to the shard that holds the guild.

A worker pushes ``{"id", "payload"}`` on ``{prefix}:commands:<shard_id>``;
the gateway process that runs the shard pops it, calls ``shard.send()`` (so
every check and rate limit of ``send()`` applies) and pushes the outcome on
``{prefix}:reply:<id>``, which the worker waits on.  The outcome is "sent"
or the error ``send()`` raised, re-raised in the worker with its message.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Awaitable, Callable, Iterable

import orjson

from .. import errors
from .keys import Keys

__all__ = ["RedisCommands", "CommandServer", "shard_for_guild"]

log = logging.getLogger("fastshard.redis")

#: Seconds a reply waits in Redis for a worker that may have given up.
REPLY_TTL = 60


def shard_for_guild(guild_id: int | str, shard_count: int) -> int:
    """Discord's rule: ``(guild_id >> 22) % shard_count``."""
    return (int(guild_id) >> 22) % shard_count


def _error_from(reply: dict[str, Any]) -> Exception:
    kind, message = reply.get("error"), str(reply.get("message", ""))
    if kind == "RateLimitedError":
        return errors.RateLimitedError(float(reply.get("retry_after", 0.0)), str(reply.get("limit", "")))
    cls = getattr(errors, str(kind), None)
    if isinstance(cls, type) and issubclass(cls, errors.ShardError) and cls not in (
            errors.GatewayCloseError, errors.InvalidSessionError, errors.ConnectionFailedError,
            errors.SessionStartLimitError):
        return cls(message)
    if kind == "TypeError":
        return TypeError(message)
    if kind == "ValueError":
        return ValueError(message)
    return errors.ShardError(f"{kind}: {message}")


class RedisCommands:
    """Worker side: ``await commands.send(payload, guild_id=...)`` (or ``shard_id=``)."""

    def __init__(self, redis: Any, prefix: str = "fastshard", shard_count: int | None = None) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.shard_count = shard_count

    async def send(self, payload: dict[str, Any], *, shard_id: int | None = None, guild_id: int | str | None = None,
                   timeout: float = 5.0) -> None:
        """Send a gateway command through the shard; returns once it was sent.

        Raises what ``WebsocketShard.send()`` raised in the gateway process
        (``RateLimitedError``, ``PayloadTooLargeError``, ``NotConnectedError``,
        ``TypeError``/``ValueError``), or ``TimeoutError`` when no gateway
        process answered within ``timeout`` (the command may still be sent later).
        """
        if (shard_id is None) == (guild_id is None):
            raise TypeError("give exactly one of shard_id= or guild_id=")
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        if shard_id is None:
            count = self.shard_count
            if count is None:
                stored = await self.redis.get(self.keys.shard_count)
                if stored is None:
                    raise errors.NotConnectedError("no gateway has announced its shard count; pass shard_id=")
                count = int(stored)
            shard_id = shard_for_guild(guild_id, count)  # type: ignore[arg-type]
        request_id = uuid.uuid4().hex
        await self.redis.rpush(self.keys.commands(shard_id), orjson.dumps({"id": request_id, "payload": payload}))
        reply = await self.redis.blpop([self.keys.reply(request_id)], timeout=timeout)
        if reply is None:
            raise TimeoutError(f"no gateway process answered the command for shard {shard_id} within {timeout} s")
        result = orjson.loads(reply[1])
        if not result.get("ok"):
            raise _error_from(result)


class CommandServer:
    """Gateway side: pops commands for ``shard_ids`` and sends them with ``send(shard_id, payload)``."""

    def __init__(self, redis: Any, shard_ids: Iterable[int], send: Callable[[int, dict[str, Any]], Awaitable[None]],
                 prefix: str = "fastshard", poll: float = 1.0) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.shard_ids = list(shard_ids)
        self._send = send
        self.poll = poll
        self._task: asyncio.Task[None] | None = None
        self.handled = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        keys = {self.keys.commands(s): s for s in self.shard_ids}
        while True:
            try:
                item = await self.redis.blpop(list(keys), timeout=self.poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading gateway commands from Redis failed: %s", exc)
                await asyncio.sleep(self.poll)
                continue
            if item is None:
                continue
            key = item[0].decode() if isinstance(item[0], bytes) else item[0]
            await self._handle(keys[key], item[1])

    async def _handle(self, shard_id: int, raw: bytes) -> None:
        try:
            request = orjson.loads(raw)
            request_id, payload = request["id"], request["payload"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("ignored a malformed gateway command for shard %d: %s", shard_id, exc)
            return
        result: dict[str, Any]
        try:
            await self._send(shard_id, payload)
            result = {"ok": True}
        except errors.RateLimitedError as exc:
            result = {"ok": False, "error": "RateLimitedError", "message": str(exc),
                      "retry_after": exc.retry_after, "limit": exc.limit}
        except (errors.ShardError, TypeError, ValueError) as exc:
            result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        self.handled += 1
        reply = self.keys.reply(str(request_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(reply, orjson.dumps(result))
            pipe.expire(reply, REPLY_TTL)
            await pipe.execute()
