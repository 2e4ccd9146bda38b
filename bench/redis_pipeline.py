"""Children of the Redis pipeline and memory benchmarks (``python -m bench.redis_pipeline --role ...``).

* ``gateway``: one shard (raw_dispatches) + ``RedisPublisher`` receives a blast
  workload and publishes it; prints ``{"published", "cpu_s", "wall_s"}``.
* ``worker``: a ``RedisConsumer`` of group ``bench`` that acks everything;
  prints ``READY`` once its group exists, then, when its stdin closes, the
  count and the latency of each event from its XADD (the entry id's server
  time) to the worker having it.
* ``memory``: ``RedisGateway`` with N shards against a simulator; prints the
  RSS growth per shard.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from .clients import rss_bytes


async def gateway(url: str, redis_port: int, events: int) -> dict[str, Any]:
    import redis.asyncio

    from fastshard import WebsocketShard
    from fastshard.redis import RedisPublisher

    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    publisher = RedisPublisher(client, max_buffer=10 * events)
    await publisher.start()
    shard = WebsocketShard(token="bench", intents=513, url=url, compression=2, raw_dispatches=True)
    publish = publisher.publish
    shard.on("event", lambda p: publish(0, p[0], p[1], p[2]))
    clocks: dict[str, float] = {}

    def ready(_: Any) -> None:
        clocks["c0"], clocks["t0"] = time.process_time(), time.perf_counter()
        asyncio.ensure_future(shard.send({"op": 1, "d": 1}))
    shard.on("ready", ready)
    await shard.connect()
    while publisher.events_published < events:
        await asyncio.sleep(0.002)
    c1, t1 = time.process_time(), time.perf_counter()
    await shard.close()
    await publisher.close()
    await client.aclose()
    return {"published": publisher.events_published, "cpu_s": c1 - clocks["c0"], "wall_s": t1 - clocks["t0"]}


async def worker(redis_port: int) -> dict[str, Any]:
    import redis.asyncio

    from fastshard.redis import RedisConsumer

    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    latencies: list[float] = []
    last = 0.0
    first = float("inf")
    consumer = RedisConsumer(client, "bench", shards=[0], block=0.05, count=500)
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.read)
    async with consumer:
        print("READY", flush=True)

        async def consume() -> None:
            nonlocal last, first
            batch = []
            async for event in consumer:
                now = time.time()
                sent = int(event.id.split("-")[0])
                first = min(first, sent)
                latencies.append(now * 1000.0 - sent)
                last = now
                batch.append(event)
                if not consumer.buffered:  # what one read brought is handled: ack it in one round trip
                    await consumer.ack(*batch)
                    batch.clear()
        task = asyncio.ensure_future(consume())
        await stop
        task.cancel()
    await client.aclose()
    return {"count": len(latencies), "latencies_ms": [round(x, 3) for x in latencies], "last": last,
            "first_xadd_ms": first if latencies else None}


async def memory(sim_url: str, redis_port: int, shards: int) -> dict[str, Any]:
    import redis.asyncio

    from fastshard.redis import RedisGateway

    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    warm = RedisGateway(client, token="bench", intents=513, shard_ids=[0], shard_count=1, url=sim_url,
                        identify_interval=0.0, prefix="warm", compression=2)
    async with warm:
        await warm.wait_ready(60)
    del warm
    gc.collect()
    await asyncio.sleep(0.2)
    before = rss_bytes()
    gateway = RedisGateway(client, token="bench", intents=513, shard_ids=range(shards), shard_count=shards,
                           url=sim_url, identify_interval=0.0, max_concurrency=shards, compression=2)
    async with gateway:
        await gateway.wait_ready(120)
        await gateway.publisher.flush(30)
        await asyncio.sleep(0.2)
        gc.collect()
        after = rss_bytes()
    await client.aclose()
    if before is None or after is None:
        return {"per_shard_bytes": None, "shards": shards, "error": "no way to read RSS on this system"}
    return {"per_shard_bytes": (after - before) / shards, "shards": shards, "error": None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_pipeline")
    parser.add_argument("--role", choices=("gateway", "worker", "memory"), required=True)
    parser.add_argument("--url", default=None)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--shards", type=int, default=100)
    args = parser.parse_args(argv)
    if args.role == "gateway":
        result = asyncio.run(gateway(args.url, args.redis_port, args.events))
    elif args.role == "worker":
        result = asyncio.run(worker(args.redis_port))
    else:
        result = asyncio.run(memory(args.url, args.redis_port, args.shards))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
