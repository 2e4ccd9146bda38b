"""Gateway and worker processes killed with SIGKILL, against the simulator and a real redis-server."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from fastshard.redis import RedisConsumer, RedisGateway, RedisIdentifyQueue
from fastshard.testing import GatewaySimulator
from redis_fixtures import until

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, DISCORD_TOKEN="test-token", PYTHONPATH=str(ROOT))
INTERVAL = 1.0  # long beside the jitter of 2 loaded cores; the 10% slack is the simulator's own default


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def record_identifies(sim: GatewaySimulator) -> list[tuple[float, int]]:
    """(time, shard id) of every IDENTIFY, taken as the simulator reads it."""
    identifies: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()

    async def watch(conn: Any) -> None:
        async def wait() -> None:
            try:
                payload = await conn.wait_for_op(2, timeout=30)
            except Exception:
                return
            identifies.append((loop.time(), payload["d"]["shard"][0]))
        loop.create_task(wait())
    sim.before_hello = watch
    return identifies


async def test_three_gateway_processes_share_the_identify_buckets_then_one_is_killed(
        redis_server: Any, redis_client: Any, make_sim: Any) -> None:
    # Light traffic and small guilds: the simulator shares this process, and its clock judges the spacing.
    sim = await make_sim(guilds=12, guild_members=2, event_rate=20.0)
    identifies = record_identifies(sim)
    # Earlier identifies hold every bucket until all three processes wait, then free them: the
    # order within each bucket is then the queue's, not the order the processes happened to start in.
    hold = RedisIdentifyQueue(redis_client, 4, 30.0)
    await asyncio.gather(*(hold.acquire(100 + b) for b in range(4)))
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastshard", "gateway", "--redis", redis_server.url, "--shards", "0-11",
        "--shard-count", "12", "--max-concurrency", "4", "--url", sim.url, "--processes", "3",
        "--compression", "0", "--identify-interval", str(INTERVAL), env=ENV)
    try:
        async def all_waiting() -> None:
            while sum([await redis_client.zcard(f"{{fastshard}}:identify:waiting:{b}") for b in range(4)]) < 12:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(all_waiting(), 20)
        await redis_client.delete(*(f"{{fastshard}}:identify:busy:{b}" for b in range(4)))
        await until(lambda: len(sim.sessions) == 12 and len(identifies) == 12, what="12 IDENTIFYs")
        by_bucket: dict[int, list[tuple[float, int]]] = {}
        for at, shard_id in sorted(identifies):
            by_bucket.setdefault(shard_id % 4, []).append((at, shard_id))
        violations = sum(1 for group in by_bucket.values() for (a, _), (b, _) in zip(group, group[1:])
                         if b - a < INTERVAL * 0.9)
        assert violations == 0, by_bucket
        assert all([s for _, s in group] == sorted(s for _, s in group) for group in by_bucket.values()), by_bucket

        # kill -9 the process of shards 4-7 mid-stream: the supervisor starts it again and it resumes.
        await until(lambda: len(children(supervisor.pid)) == 3)
        victims = sorted(children(supervisor.pid))
        sessions_before = {s.shard[0]: s for s in sim.sessions.values()}
        await asyncio.sleep(0.3)
        connections_before = len(sim.connections)
        victim = next(pid for pid in victims if b"4-7" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(victim, signal.SIGKILL)
        await until(lambda: sum(1 for c in sim.connections[connections_before:]
                                if any(p["op"] == 6 for p in c.received)) >= 4, what="4 RESUMEs")
        resumes = {p["d"]["session_id"]: p["d"]["seq"] for c in sim.connections[connections_before:]
                   for p in c.received if p["op"] == 6}
        assert len(sim.sessions) == 12 and len(identifies) == 12  # nobody identified again
        # What the simulator has sent by now must all reach the streams (later ones may still be in flight).
        targets = {sid: sessions_before[sid].seq for sid in range(4, 8)}

        async def published() -> bool:
            for sid, target in targets.items():
                tail = await redis_client.xrevrange(f"{{fastshard}}:events:{sid}", count=1)
                if not tail or int(tail[0][1][b"seq"]) < target:
                    return False
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await published():
            assert loop.time() < deadline, "the restarted process did not publish what the simulator sent"
            await asyncio.sleep(0.05)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        await asyncio.wait_for(supervisor.wait(), 20)
    for shard_id in range(4, 8):
        session = sessions_before[shard_id]
        entries = await redis_client.xrange(f"{{fastshard}}:events:{shard_id}")
        seqs = [int(f[b"seq"]) for _, f in entries]
        assert session.session_id in resumes
        # It resumed from the last sequence in its stream, and the stream has every one the simulator sent.
        assert resumes[session.session_id] in seqs
        assert set(range(1, targets[shard_id] + 1)) <= set(seqs), (shard_id, targets[shard_id])


async def test_a_killed_worker_s_events_are_claimed_by_another(redis_server: Any, redis_client: Any,
                                                               make_sim: Any) -> None:
    sim = await make_sim(guilds=4, event_rate=200.0, event_limit=150)
    gateway = RedisGateway(redis_client, token="test-token", intents=513, shard_ids=[0, 1], shard_count=2,
                           url=sim.url, identify_interval=0.05)
    async with gateway:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastshard", "consume", "--redis", redis_server.url, "--group", "svc",
            "--consumer", "doomed", "--claim-idle", "0.3", "--no-data", "--stall-after", "20",
            env=ENV, stdout=asyncio.subprocess.PIPE)
        assert worker.stdout is not None
        acked: dict[int, set[int]] = {0: set(), 1: set()}
        for _ in range(20):  # printed, then acked, by the worker that is about to die
            line = orjson.loads(await asyncio.wait_for(worker.stdout.readline(), 15))
            acked[line["shard"]].add(line["seq"])
        await until(lambda: all(s.seq >= 150 for s in sim.sessions.values()) and len(sim.sessions) == 2)
        await gateway.publisher.flush(5)
        await asyncio.sleep(0.2)
        worker.kill()
        await worker.wait()
        keys = ("{fastshard}:events:0", "{fastshard}:events:1")
        pending = [p for key in keys for p in await redis_client.xpending_range(key, "svc", "-", "+", 1000)]
        assert pending and all(p["consumer"] == b"doomed" for p in pending)
        want = {s.shard[0]: set(range(1, s.seq + 1)) for s in sim.sessions.values()}
        claimed = 0
        async with RedisConsumer(redis_client, "svc", "rescuer", claim_idle=0.3, block=0.05) as consumer:
            while any(acked[s] < seqs for s, seqs in want.items()):
                event = await asyncio.wait_for(consumer.__anext__(), 10)
                claimed += event.deliveries > 1
                acked[event.shard_id].add(event.sequence)
                await event.ack()
        # Every sequence of every shard acked at least once; what the dead worker held was claimed.
        assert claimed == len(pending)
        assert acked == want
        for key in keys:
            assert not [p for p in await redis_client.xpending_range(key, "svc", "-", "+", 1000)
                        if p["consumer"] == b"doomed"]
