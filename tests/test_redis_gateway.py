"""RedisGateway + RedisConsumer + commands, against the simulator and a real redis-server (in-process)."""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fastshard.errors import PayloadTooLargeError, RateLimitedError
from fastshard.redis import RedisCommands, RedisConsumer, RedisGateway
from fastshard.testing import GatewaySimulator
from redis_fixtures import until


async def stream_seqs(redis: Any, shard_id: int) -> list[int]:
    entries = await redis.xrange(f"{{fastshard}}:events:{shard_id}")
    return [int(fields[b"seq"]) for _, fields in entries]


def make_gateway(redis: Any, sim: GatewaySimulator, shard_ids: list[int], shard_count: int,
                 **kw: Any) -> RedisGateway:
    kw.setdefault("identify_interval", 0.05)
    gateway = RedisGateway(redis, token="test-token", intents=513, shard_ids=shard_ids, shard_count=shard_count,
                           url=sim.url, **kw)
    gateway.connect_retry = 0.05
    gateway.manager.reconnect_base_delay = 0.02
    gateway.manager.reconnect_max_delay = 0.1
    return gateway


@pytest.mark.parametrize("encoding", ["json", "etf"])
async def test_every_dispatch_reaches_the_workers(redis_client: Any, make_sim: Any, encoding: str) -> None:
    sim = await make_sim(guilds=4, event_rate=400.0, event_limit=150)
    gateway = make_gateway(redis_client, sim, [0, 1], 2, encoding=encoding, compression=2)
    async with gateway:
        await gateway.wait_ready(5)

        async def sent_all() -> bool:
            return all(s.seq >= 150 for s in sim.sessions.values()) and len(sim.sessions) == 2
        await until(sent_all, what="the simulator's events")
        await gateway.publisher.flush(5)
        seen: dict[int, set[int]] = {0: set(), 1: set()}
        names: set[str] = set()
        async with RedisConsumer(redis_client, "svc", claim_idle=5.0, block=0.1) as consumer:
            async for event in consumer:
                seen[event.shard_id].add(event.sequence)
                names.add(event.name)
                if event.name == "GUILD_CREATE":
                    assert isinstance(event.data["id"], str)
                await event.ack()
                if all(len(seen[s]) >= sim_s.seq for s, sim_s in
                       ((x.shard[0], x) for x in sim.sessions.values())):
                    break
        for session in sim.sessions.values():
            assert seen[session.shard[0]] == set(range(1, session.seq + 1))
        assert {"READY", "GUILD_CREATE"} <= names
        assert await redis_client.xpending("{fastshard}:events:0", "svc") == {
            "pending": 0, "min": None, "max": None, "consumers": []}


async def test_events_filter_acks_what_it_skips_and_groups_each_get_everything(redis_client: Any,
                                                                                make_sim: Any) -> None:
    sim = await make_sim(guilds=3)
    async with make_gateway(redis_client, sim, [0], 1) as gateway:
        await gateway.wait_ready(5)
        await gateway.publisher.flush(5)
    got: dict[str, list[str]] = {}
    for group, events in (("a", {"GUILD_CREATE"}), ("b", None)):
        async with RedisConsumer(redis_client, group, shards=[0], events=events, block=0.05) as consumer:
            names: list[str] = []
            while len(names) < (3 if events else 4):
                event = await asyncio.wait_for(consumer.__anext__(), 5)
                names.append(event.name)
                await event.ack()
            got[group] = names
    assert got["a"] == ["GUILD_CREATE"] * 3
    assert got["b"][0] == "READY"
    info = await redis_client.xinfo_groups("{fastshard}:events:0")
    assert {g["name"].decode(): g["pending"] for g in info} == {"a": 0, "b": 0}


async def test_a_poison_event_goes_to_the_dead_letter_stream(redis_client: Any, make_sim: Any) -> None:
    sim = await make_sim(guilds=1)
    async with make_gateway(redis_client, sim, [0], 1) as gateway:
        await gateway.wait_ready(5)
        await gateway.publisher.flush(5)
    consumer = RedisConsumer(redis_client, "svc", shards=[0], events={"GUILD_CREATE"}, claim_idle=0.05,
                             max_deliveries=3, block=0.05)
    deliveries = 0
    async with consumer:
        while deliveries < 3:  # a worker that fails on it every time: never acks
            event = await asyncio.wait_for(consumer.__anext__(), 5)
            assert event.name == "GUILD_CREATE"
            deliveries += 1
            await asyncio.sleep(0.06)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consumer.__anext__(), 0.5)
    assert consumer.dead_lettered == 1
    dead = await redis_client.xrange("{fastshard}:dead:svc")
    assert len(dead) == 1 and dead[0][1][b"t"] == b"GUILD_CREATE" and dead[0][1][b"deliveries"] == b"3"
    assert (await redis_client.xpending("{fastshard}:events:0", "svc"))["pending"] == 0


async def test_commands_reach_the_gateway_and_errors_come_back(redis_client: Any, make_sim: Any) -> None:
    sim = await make_sim(guilds=2)
    async with make_gateway(redis_client, sim, [0, 1], 2) as gateway:
        await gateway.wait_ready(5)
        commands = RedisCommands(redis_client)
        guild_id = sim.guild_ids_for(1, 2)[0]
        await commands.send({"op": 8, "d": {"guild_id": guild_id, "query": "", "limit": 5}}, guild_id=guild_id)
        conn = sim.connections[[c.session.shard[0] if c.session else -1 for c in sim.connections].index(1)]
        request = await conn.wait_for_op(8)
        assert request["d"]["guild_id"] == guild_id
        presence = {"op": 3, "d": {"since": None, "activities": [], "status": "idle", "afk": False}}
        for _ in range(5):
            await commands.send(presence, shard_id=0)
        with pytest.raises(RateLimitedError, match="presence updates") as info:
            await commands.send(presence, shard_id=0)
        assert info.value.retry_after > 0
        with pytest.raises(PayloadTooLargeError, match="4096"):
            await commands.send({"op": 3, "d": {"status": "x" * 5000}}, shard_id=0)
        with pytest.raises(TimeoutError, match="shard 7"):
            await commands.send(presence, shard_id=7, timeout=0.2)


async def test_redis_restart_mid_stream_loses_nothing(redis_server: Any, redis_client: Any, make_sim: Any) -> None:
    sim = await make_sim(guilds=2, event_rate=300.0)
    gateway = make_gateway(redis_client, sim, [0], 1, max_buffer=40)
    gateway.publisher.timeout = 0.5
    async with gateway:
        await gateway.wait_ready(5)
        await until(lambda: (len(gateway.publisher.published) and gateway.publisher.published[0] > 40))
        redis_server.stop()
        await until(lambda: (gateway.publisher.paused), what="the shards to pause")
        await until(lambda: (all(s.status.name == "CLOSED" for s in gateway.shards.values())))
        redis_server.start()
        await until(lambda: (not gateway.publisher.paused), what="the publisher to catch up")
        await gateway.wait_ready(5)
        session = next(iter(sim.sessions.values()))
        target = session.seq + 30
        await until(lambda: (gateway.publisher.published.get(0, 0) >= target))
        ops = [p["op"] for c in sim.connections for p in c.received]
        assert len(sim.sessions) == 1 and ops.count(2) == 1  # resumed, never re-identified
        assert ops.count(6) >= 1
    seqs = await stream_seqs(redis_client, 0)
    assert set(range(1, target + 1)) <= set(seqs)


@pytest.mark.parametrize("encoding", ["json", "etf"])
async def test_shard_raw_dispatches_hands_over_undecoded_bytes(make_sim: Any, make_shard: Any,
                                                                encoding: str) -> None:
    sim = await make_sim(guilds=2)
    shard, rec = make_shard(sim, encoding=encoding, compression=2, raw_dispatches=True)
    await shard.connect()
    await rec.until(lambda: len(rec.events) == 2, what="two GUILD_CREATEs")
    assert len(rec.ready) == 1 and isinstance(rec.ready[0], dict)  # READY is still decoded: the shard needs it
    t, s, raw = rec.events[0]
    assert (t, s) == ("GUILD_CREATE", 2) and isinstance(raw, bytes)
    from fastshard.redis.consumer import decode_payload

    assert decode_payload(raw)["d"]["id"] == sim.guild_ids_for(0, 1)[0]
    assert shard.sequence == 3


async def test_metrics_endpoint(redis_client: Any, make_sim: Any) -> None:
    import socket
    import urllib.request

    from fastshard.redis.metrics import GatewayMetrics

    sim = await make_sim(guilds=2)
    async with make_gateway(redis_client, sim, [0, 1], 2) as gateway:
        await gateway.wait_ready(5)
        await gateway.publisher.flush(5)
        async with RedisConsumer(redis_client, "svc", shards=[0], block=0.05, count=1) as consumer:
            await (await asyncio.wait_for(consumer.__anext__(), 5)).ack()  # one delivered and acked
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        metrics = GatewayMetrics(gateway, port, addr="127.0.0.1")
        metrics.start()
        try:
            await metrics.refresh_now()
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        finally:
            metrics.stop()
    lines = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))
    assert lines['fastshard_shard_status{shard="0"}'] == "1.0"
    assert lines['fastshard_shard_identifies_total{shard="1"}'] == "1.0"
    events = 1 + len(sim.guild_ids_for(0, 2))  # READY + a GUILD_CREATE per guild
    assert lines['fastshard_events_published_total{shard="0"}'] == f"{events}.0"
    assert lines['fastshard_stream_length{shard="0"}'] == f"{events}.0"
    assert lines['fastshard_consumer_group_pending{group="svc",shard="0"}'] == "0.0"
    assert lines['fastshard_consumer_group_lag{group="svc",shard="0"}'] == f"{events - 1}.0"
    assert lines["fastshard_identifies_spent_total"] == "2.0"
    assert lines["fastshard_publish_buffer_events"] == "0.0" and lines["fastshard_publish_errors_total"] == "0.0"


async def test_ack_many_in_one_round_trip(redis_client: Any, make_sim: Any) -> None:
    sim = await make_sim(guilds=3)
    async with make_gateway(redis_client, sim, [0], 1) as gateway:
        await gateway.wait_ready(5)
        await gateway.publisher.flush(5)
    async with RedisConsumer(redis_client, "svc", shards=[0], block=0.05) as consumer:
        events = [await asyncio.wait_for(consumer.__anext__(), 5) for _ in range(4)]
        assert [e.sequence for e in events] == [1, 2, 3, 4] and consumer.buffered == 0
        assert (await redis_client.xpending("{fastshard}:events:0", "svc"))["pending"] == 4
        await consumer.ack(*events)
    assert (await redis_client.xpending("{fastshard}:events:0", "svc"))["pending"] == 0
