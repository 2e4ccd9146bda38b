"""RedisIdentifyQueue and RedisSessionStore against a real redis-server."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastshard.errors import SessionStartLimitError
from fastshard.identify_queue import IdentifyQueue
from fastshard.session_store import SessionInfo, SessionStore
from fastshard.redis import RedisIdentifyQueue, RedisPublisher, RedisSessionStore


async def test_queue_is_an_identify_queue(redis_client: Any) -> None:
    assert isinstance(RedisIdentifyQueue(redis_client, 4), IdentifyQueue)
    with pytest.raises(ValueError, match="max_concurrency"):
        RedisIdentifyQueue(redis_client, 0)
    with pytest.raises(ValueError, match="shard_id"):
        await RedisIdentifyQueue(redis_client, 1).acquire(-1)


async def test_one_identify_per_bucket_per_interval_across_queues(redis_client: Any) -> None:
    # Two queue objects stand for two processes: they share only Redis.
    interval = 0.3
    a, b = RedisIdentifyQueue(redis_client, 2, interval), RedisIdentifyQueue(redis_client, 2, interval)
    loop = asyncio.get_running_loop()
    granted: list[tuple[int, float]] = []

    async def identify(queue: RedisIdentifyQueue, shard_id: int) -> None:
        await queue.acquire(shard_id)
        granted.append((shard_id, loop.time()))

    await asyncio.gather(*(identify(a if s % 3 else b, s) for s in (4, 2, 0, 5, 3, 1)))
    for bucket in (0, 1):
        times = [(t, s) for s, t in granted if s % 2 == bucket]
        # lowest shard id first within the bucket, one interval apart
        assert [s for _, s in sorted(times)] == sorted(s for _, s in times)
        gaps = [t2 - t1 for (t1, _), (t2, _) in zip(sorted(times), sorted(times)[1:])]
        assert all(g >= interval * 0.9 for g in gaps), gaps
    assert a.spent + b.spent == 6 and await a.total_spent() == 6


async def test_a_cancelled_wait_keeps_no_place(redis_client: Any) -> None:
    queue = RedisIdentifyQueue(redis_client, 1, 0.3)
    await queue.acquire(5)  # the bucket is now busy for 0.3 s
    waiter = asyncio.ensure_future(queue.acquire(0))  # the lowest id: it would go first
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await redis_client.zcard("{fastshard}:identify:waiting:0") == 0
    await asyncio.wait_for(queue.acquire(7), 1.0)  # not blocked behind the cancelled shard 0


async def test_a_dead_holder_blocks_a_bucket_at_most_one_interval(redis_client: Any) -> None:
    queue = RedisIdentifyQueue(redis_client, 1, 0.2)
    # A waiter of a process that died: its place is never refreshed again.
    await redis_client.zadd("{fastshard}:identify:waiting:0", {"0000000000:dead": 0})
    await redis_client.zadd("{fastshard}:identify:alive:0", {"0000000000:dead": 0})
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(queue.acquire(3), 1.0)
    await queue.acquire(4)  # the grant to 3 holds the bucket for one interval, then frees it
    assert loop.time() - start < 0.2 * 2


async def test_the_budget_is_one_counter_no_process_overspends(redis_client: Any) -> None:
    queues = [RedisIdentifyQueue(redis_client, 16, 0.0) for _ in range(3)]
    await queues[0].set_budget(1000, 5, 3600)
    await queues[1].set_budget(1000, 9, 3600)  # a later, staler /gateway/bot: the lower count stays
    assert await queues[2].remaining() == 5
    results = await asyncio.gather(*(q.acquire(s) for s in range(8) for q in queues[s % 3:s % 3 + 1]),
                                   return_exceptions=True)
    assert sum(r is None for r in results) == 5
    errors = [r for r in results if isinstance(r, SessionStartLimitError)]
    assert len(errors) == 3 and "session starts" in str(errors[0])
    assert await queues[0].remaining() == 0


async def test_the_budget_refills_after_reset(redis_client: Any) -> None:
    queue = RedisIdentifyQueue(redis_client, 1, 0.0)
    await queue.set_budget(3, 0, 0.05)
    assert queue.known_remaining == 0
    await asyncio.sleep(0.08)
    assert await queue.remaining() == 3
    await queue.acquire(0)
    assert queue.known_remaining == 2  # the grant says what it left, for displays (the manager's table)
    assert await queue.remaining() == 2


async def test_session_store_round_trip(redis_client: Any) -> None:
    store = RedisSessionStore(redis_client)
    assert isinstance(store, SessionStore)
    assert await store.load(3) is None
    info = SessionInfo("abc", 42, "wss://resume.example", 16)
    await store.save(3, info)
    assert await store.load(3) == info
    await store.save(3, SessionInfo("abc", 50, None, 16))
    assert await store.load(3) == SessionInfo("abc", 50, None, 16)
    await store.delete(3)
    assert await store.load(3) is None


async def test_session_store_rejects_garbage(redis_client: Any) -> None:
    await redis_client.hset("{fastshard}:session:1", mapping={"session_id": "x", "shard_count": "zero"})
    with pytest.raises(ValueError, match="session:1"):
        await RedisSessionStore(redis_client).load(1)


async def test_the_stream_is_the_checkpoint(redis_client: Any) -> None:
    """The sequence loaded is the last one published, never one saved ahead of the stream."""
    store = RedisSessionStore(redis_client)
    async with RedisPublisher(redis_client) as publisher:
        publisher.publish_session(2, "old", None, 4, "READY", 1, b'{"t":"READY"}')
        for s in range(2, 30):
            publisher.publish(2, "MESSAGE_CREATE", s, b"{}")
        await publisher.flush()
        assert (await store.load(2)).sequence == 29  # type: ignore[union-attr]
        # A save from code that counts received, not published, events: the stream still wins.
        await store.save(2, SessionInfo("old", 35, None, 4))
        assert (await store.load(2)).sequence == 29  # type: ignore[union-attr]
        # A new session: its READY and checkpoint land in one script run, after the old events.
        publisher.publish(2, "MESSAGE_CREATE", 30, b"{}")
        publisher.publish_session(2, "new", "ws://r", 4, "READY", 1, b'{"t":"READY"}')
        publisher.publish(2, "MESSAGE_CREATE", 2, b"{}")
        await publisher.flush()
        assert await store.load(2) == SessionInfo("new", 2, "ws://r", 4)
        assert publisher.published == {2: 2}
