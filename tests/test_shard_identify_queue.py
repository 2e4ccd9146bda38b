"""WebsocketShard(identify_queue=...): every IDENTIFY waits for the queue, RESUME never does."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastshard import LocalIdentifyQueue, SessionStartLimitError, ShardStatus


def identifies(sim: Any) -> list[tuple[int, Any]]:
    return [(p["d"]["shard"][0], conn) for conn in sim.connections for p in conn.received if p.get("op") == 2]


async def test_two_shards_of_one_bucket_identify_an_interval_apart(make_sim: Any, make_shard: Any) -> None:
    sim = await make_sim(guilds=1, heartbeat_interval=0.2)
    queue = LocalIdentifyQueue(max_concurrency=2, interval=0.4)
    first, rec_first = make_shard(sim, id=0, total=4, identify_queue=queue)
    second, rec_second = make_shard(sim, id=2, total=4, identify_queue=queue)  # 2 % 2 == 0: same bucket
    loop = asyncio.get_running_loop()
    await first.connect()
    await rec_first.until(lambda: rec_first.ready, what="first READY")
    t_first = loop.time()
    await second.connect()
    conn = await sim.wait_connection(1)
    # HELLO came and heartbeats go on, but no IDENTIFY until the bucket frees.
    await conn.wait_for_op(1, timeout=2.0)
    assert [sid for sid, _ in identifies(sim)] == [0]
    assert second.status == ShardStatus.CONNECTING
    await rec_second.until(lambda: rec_second.ready, what="second READY")
    assert loop.time() - t_first >= 0.3
    assert queue.spent == 2


async def test_resume_never_waits_and_spends_nothing(make_sim: Any, make_shard: Any) -> None:
    sim = await make_sim(guilds=1, heartbeat_interval=1.0)
    queue = LocalIdentifyQueue(max_concurrency=1, interval=30.0)  # a second IDENTIFY would wait 30 s
    shard, rec = make_shard(sim, identify_queue=queue)
    await shard.connect()
    await rec.until(lambda: rec.ready)
    await sim.connections[0].drop()
    await rec.until(lambda: rec.resumed, timeout=3.0, what="RESUMED")
    assert queue.spent == 1 and len(identifies(sim)) == 1


async def test_an_empty_budget_stops_the_shard_before_identifying(make_sim: Any, make_shard: Any) -> None:
    sim = await make_sim(guilds=1, heartbeat_interval=1.0)
    queue = LocalIdentifyQueue(max_concurrency=1, interval=0.0)
    queue.set_budget(total=1000, remaining=0, reset_after=3600)
    shard, rec = make_shard(sim, identify_queue=queue)
    await shard.connect()
    await rec.until(lambda: rec.closes, what="close event")
    assert isinstance(rec.closes[0], SessionStartLimitError)
    assert identifies(sim) == [] and shard.status == ShardStatus.CLOSED


def test_identify_queue_option_is_checked(make_sim: Any) -> None:
    from fastshard import WebsocketShard

    with pytest.raises(TypeError, match="identify_queue"):
        WebsocketShard(token="t", intents=1, identify_queue=object())  # type: ignore[arg-type]
