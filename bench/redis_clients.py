"""Gateway-process clients for the Redis benchmark: receive the blast, publish every event to Redis.

Each runs in a child process (``python -m bench.redis_clients --client NAME ...``)
and prints one JSON line: CPU (``time.process_time``: this process only; the
blast server and redis-server run elsewhere) and wall time from READY until
Redis acknowledged the last event.

* ``floor``: picows + zlib-ng + a bytes.find peek of t and s + XADDs packed as
  RESP by hand, pipelined per loop tick on a raw asyncio socket: the least a
  Python gateway process can do.
* ``gateway``: what ``fastshard gateway`` runs: ``RedisGateway`` (a ShardManager
  with the Redis queue, store, publisher and command server) for one shard.
* ``fastshard``: ``WebsocketShard(raw_dispatches=True)`` + ``RedisPublisher`` alone.
* ``redispy``: the same shard, but each event queued as a redis-py pipeline
  ``xadd`` and the pipeline executed per loop tick (the naive path).
* ``decode``: a full fastshard decode (no raw_dispatches) re-encoded with
  orjson and published with ``RedisPublisher``: what skipping the decode saves.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import orjson

from .clients import Counter, _identify, _query_url

MAXLEN = 1_000_000
_TIMEOUT = 120.0


class _Done:
    """Counts events that Redis acknowledged; stops the clocks at ``target``."""

    def __init__(self, target: int) -> None:
        self.counter = Counter(target)

    def acked(self, n: int) -> None:
        counter = self.counter
        for _ in range(n):
            counter.message()


async def run_floor(url: str, redis_port: int, events: int) -> dict[str, Any]:
    import picows
    from zlib_ng import zlib_ng

    done = _Done(events)
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_port)
    inflate = zlib_ng.decompressobj()
    buf = bytearray()
    out = bytearray()
    pending = [0]
    scheduled = [False]
    key = b"{fastshard}:events:0"
    head = b"*14\r\n$4\r\nXADD\r\n$%d\r\n%b\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$7\r\n1000000\r\n$1\r\n*\r\n" \
           b"$5\r\nshard\r\n$1\r\n0\r\n$3\r\nseq\r\n" % (len(key), key)
    text = picows.WSMsgType.TEXT
    seen = [0]

    def flush() -> None:
        scheduled[0] = False
        writer.write(bytes(out))
        out.clear()

    class Listener(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            data = frame.get_payload_as_memoryview()
            buf.extend(data)
            if buf[-4:] != b"\x00\x00\xff\xff":
                return
            raw = inflate.decompress(buf)
            buf.clear()
            if seen[0] < 2:
                seen[0] += 1
                if seen[0] == 1:
                    transport.send(text, json.dumps(_identify(2)).encode())
                else:
                    done.counter.ready()
                    transport.send(text, b'{"op":1,"d":1}')
                return
            # peek: the t and s values (the blast server's JSON puts them before d)
            i = raw.find(b'"t":"') + 5
            t = raw[i:raw.find(b'"', i)]
            j = raw.find(b'"s":') + 4
            k = j
            while 48 <= raw[k] <= 57:
                k += 1
            s = raw[j:k]
            out.extend(b"%b$%d\r\n%b\r\n$1\r\nt\r\n$%d\r\n%b\r\n$1\r\nd\r\n$%d\r\n" % (head, len(s), s, len(t), t,
                                                                                    len(raw)))
            out.extend(raw)
            out.extend(b"\r\n")
            pending[0] += 1
            if not scheduled[0]:
                scheduled[0] = True
                asyncio.get_running_loop().call_soon(flush)

    async def read_replies() -> None:
        # Each XADD reply is one bulk string: "$<n>\r\n<id>\r\n", two line ends (count "\n":
        # a read may split a "\r\n").
        lines = 0
        while not done.counter.done.done():
            chunk = await reader.read(1 << 16)
            if not chunk:
                done.counter.fail("redis closed the connection")
                return
            lines += chunk.count(b"\n")
            done.acked(lines // 2)
            lines %= 2

    transport, _ = await picows.ws_connect(Listener, _query_url(url, "json", 2), max_frame_size=1 << 26)
    task = asyncio.ensure_future(read_replies())
    try:
        await asyncio.wait_for(asyncio.shield(done.counter.done), _TIMEOUT)
    finally:
        task.cancel()
        transport.disconnect()
        writer.close()
    return done.counter.result(None)


def _shard(url: str, raw: bool) -> Any:
    from fastshard import WebsocketShard

    return WebsocketShard(token="bench", intents=513, url=url, encoding="json", compression=2,
                          raw_dispatches=raw)


async def _run_shard(shard: Any, counter: Counter, flushed: asyncio.Future[None]) -> dict[str, Any]:
    def on_ready(_: Any) -> None:
        counter.ready()
        asyncio.ensure_future(shard.send({"op": 1, "d": 1}))

    shard.on("ready", on_ready)
    shard.on("close", lambda exc: counter.fail(f"the shard closed: {exc!r}"))
    await shard.connect()
    try:
        await asyncio.wait_for(asyncio.shield(flushed), _TIMEOUT)
    except asyncio.TimeoutError:
        counter.fail(f"timed out with {counter.count} events in Redis")
    finally:
        await shard.close()
    return counter.result(None)


async def run_fastshard(url: str, redis_url: str, events: int, raw: bool = True) -> dict[str, Any]:
    import redis.asyncio

    from fastshard.redis import RedisPublisher

    client = redis.asyncio.Redis.from_url(redis_url)
    counter = Counter(events)
    publisher = RedisPublisher(client, maxlen=MAXLEN, max_buffer=10 * events)
    await publisher.start()
    shard = _shard(url, raw)
    publish = publisher.publish
    flushed = asyncio.get_running_loop().create_future()

    if raw:
        def on_event(payload: Any) -> None:
            publish(0, payload[0], payload[1], payload[2])
    else:
        dumps = orjson.dumps

        def on_event(payload: Any) -> None:
            publish(0, payload["t"], payload["s"], dumps(payload))
    shard.on("event", on_event)

    async def watch() -> None:
        # The writer task updates events_published per batch; stop the clocks at the last one.
        while publisher.events_published < events:
            await asyncio.sleep(0.002)
        counter.count = events - 1
        counter.message()
        flushed.set_result(None)
    task = asyncio.ensure_future(watch())
    try:
        return await _run_shard(shard, counter, flushed)
    finally:
        task.cancel()
        await publisher.close()
        await client.aclose()


async def run_redispy(url: str, redis_url: str, events: int) -> dict[str, Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    counter = Counter(events)
    shard = _shard(url, True)
    pipe = [client.pipeline(transaction=False)]
    queued = [0]
    flushed = asyncio.get_running_loop().create_future()
    wake = asyncio.Event()
    key = "{fastshard}:events:0"

    def on_event(payload: Any) -> None:
        t, s, raw = payload
        pipe[0].xadd(key, {"shard": 0, "seq": s, "t": t, "d": raw}, maxlen=MAXLEN, approximate=True)
        queued[0] += 1
        wake.set()
    shard.on("event", on_event)

    async def writer() -> None:
        acked = 0
        while acked < events:
            await wake.wait()
            wake.clear()
            batch, pipe[0] = pipe[0], client.pipeline(transaction=False)
            acked += len(await batch.execute())
        counter.count = events - 1
        counter.message()
        flushed.set_result(None)
    task = asyncio.ensure_future(writer())
    try:
        return await _run_shard(shard, counter, flushed)
    finally:
        task.cancel()
        await client.aclose()


async def run_gateway(url: str, redis_url: str, events: int) -> dict[str, Any]:
    """The whole gateway process: ``RedisGateway`` (ShardManager, queue, store, publisher, commands)."""
    import redis.asyncio

    from fastshard.redis import RedisGateway

    client = redis.asyncio.Redis.from_url(redis_url)
    counter = Counter(events)
    gateway = RedisGateway(client, token="bench", intents=513, shard_ids=[0], shard_count=1, url=url,
                           identify_interval=0.0, maxlen=MAXLEN, max_buffer=10 * events, compression=2)
    publisher = gateway.publisher

    def on_ready(shard_id: int, _: Any) -> None:
        counter.ready()
        asyncio.ensure_future(gateway.manager.send(shard_id, {"op": 1, "d": 1}))
    gateway.manager.on("ready", on_ready)
    gateway.manager.on("close", lambda sid, exc: counter.fail(f"shard {sid} stopped: {exc!r}"))
    await gateway.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TIMEOUT
        while publisher.events_published < events + 1 and loop.time() < deadline:  # + READY
            await asyncio.sleep(0.002)
        counter.count = events - 1
        counter.message()
        return counter.result(None)
    finally:
        await gateway.close()
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_clients")
    parser.add_argument("--client", choices=("floor", "gateway", "fastshard", "redispy", "decode"), required=True)
    parser.add_argument("--url", required=True, help="the blast server's ws:// URL with the workload path")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    if args.client == "floor":
        coro = run_floor(args.url, args.redis_port, args.events)
    elif args.client == "gateway":
        coro = run_gateway(args.url, redis_url, args.events)
    elif args.client == "redispy":
        coro = run_redispy(args.url, redis_url, args.events)
    else:
        coro = run_fastshard(args.url, redis_url, args.events, raw=args.client == "fastshard")
    result = asyncio.run(coro)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("error") is None else 1)


if __name__ == "__main__":
    main()
