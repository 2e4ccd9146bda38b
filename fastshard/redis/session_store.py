"""``SessionStore`` in Redis, with the shard's event stream as the checkpoint.

A session is a hash: ``session_id``, ``resume_url``, ``shard_count``, the
``sequence`` last saved, and ``since``/``since_sequence``: the stream entry
(and its sequence) where this session began.  When the shard's stream holds
entries of this session, ``load`` resumes from the last one: the last
sequence that actually reached Redis, never one saved before its event was
published (a crash in between would lose that event; resuming from the
stream makes Discord replay it).
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..session_store import SessionInfo
from .identify_queue import MAX_CONCURRENT_CALLS
from .keys import Keys

__all__ = ["RedisSessionStore"]

# KEYS: session, stream   ARGV: session_id, sequence ('' = none), resume_url ('' = none), shard_count
# A new session_id starts at the stream's current end.
_SAVE = """
local old = redis.call('HGET', KEYS[1], 'session_id')
if old ~= ARGV[1] then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local since = '0-0'
  if #last > 0 then since = last[1][1] end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'since', since, 'since_sequence', ARGV[2])
end
redis.call('HSET', KEYS[1], 'session_id', ARGV[1], 'sequence', ARGV[2], 'resume_url', ARGV[3],
           'shard_count', ARGV[4])
return 1
"""


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSessionStore:
    """``SessionStore`` shared through Redis: a gateway process restarted anywhere resumes its shards."""

    def __init__(self, redis: Any, prefix: str = "fastshard") -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._save = redis.register_script(_SAVE)
        self._calls = asyncio.Semaphore(MAX_CONCURRENT_CALLS)  # a manager loads every shard at once

    async def load(self, shard_id: int) -> SessionInfo | None:
        async with self._calls, self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.session(shard_id))
            pipe.xrevrange(self.keys.stream(shard_id), count=1)
            stored, tail = await pipe.execute()
        if not stored:
            return None
        fields = {_text(k): _text(v) for k, v in stored.items()}
        try:
            sequence: int | None = int(fields["sequence"]) if fields.get("sequence") else None
            since = fields.get("since")
            if tail and since is not None:
                entry_id, entry = tail[0]
                if _stream_id(entry_id) > _stream_id(since):
                    # Entries of this session: the last one that reached Redis is the checkpoint.
                    seq = entry.get(b"seq", entry.get("seq"))
                    if seq is not None:
                        sequence = int(seq)
                elif fields.get("since_sequence"):
                    # Nothing of this session reached the stream yet: resume from where it began.
                    sequence = int(fields["since_sequence"])
            return SessionInfo.from_dict({
                "session_id": fields.get("session_id"), "sequence": sequence,
                "resume_url": fields.get("resume_url") or None,
                "shard_count": int(fields["shard_count"]) if fields.get("shard_count") else None})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"Redis key {self.keys.session(shard_id)!r} is not a fastshard session: {exc}") from exc

    async def save(self, shard_id: int, info: SessionInfo) -> None:
        async with self._calls:
            await self._save(keys=[self.keys.session(shard_id), self.keys.stream(shard_id)],
                             args=[info.session_id, "" if info.sequence is None else info.sequence,
                                   info.resume_url or "", info.shard_count])

    async def delete(self, shard_id: int) -> None:
        async with self._calls:
            await self.redis.delete(self.keys.session(shard_id))
