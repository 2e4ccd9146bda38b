"""One scale measurement per process: ``python -m bench.scale_clients MODE --impl fastshard|floor ...``.

Prints one JSON line.  ``fastshard`` is a :class:`fastshard.ShardManager`
holding N shards; ``floor`` is the least a Python client on picows can do: N
picows connections, each with its inflater (``zlib_ng`` or ``zstandard``),
``orjson`` and a heartbeat timer, and nothing else (no reconnect, rate limit,
identify queue or callbacks).

Modes:

* ``memory``: connect one client and close it (first-use imports and caches
  are not per-shard costs), collect garbage, read RSS; connect N clients
  (all READY and past their extras: none, one GUILD_CREATE, or the burst),
  collect garbage, read RSS: (after - before) / N.
* ``storm``: N clients from nothing to READY at once (every rate-limit key
  its own, so nothing waits): wall time and process CPU.
* ``heartbeat``: N clients READY with a short heartbeat interval; process
  CPU over a window / heartbeat ACKs the server sent in that window.
* ``startup``: a ShardManager with max_concurrency M and an identify
  interval: wall time from start() to every shard READY, and the handshake
  of one shard (the same process, measured first) for the limit.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
from typing import Any

import orjson
import picows

from .scale_server import raise_fd_limit

__all__ = ["FloorClient", "main"]

_COMPRESS = {0: "", 2: "zlib-stream", 3: "zstd-stream"}
_ZLIB_SUFFIX = b"\x00\x00\xff\xff"
_TEXT = picows.WSMsgType.TEXT
_CLOSE = picows.WSMsgType.CLOSE


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gateway_url(base: str, *, compression: int, run: str, hb_ms: int = 41250, extra: str = "none",
                m: int = 1_000_000, iv: float = 5.0) -> str:
    """The server URL for one run; fastshard and the floor add v/encoding/compress themselves."""
    return f"{base}/?run={run}&hb={hb_ms}&extra={extra}&m={m}&iv={iv}"


def _full_url(url: str, compression: int) -> str:
    tail = f"&compress={_COMPRESS[compression]}" if compression else ""
    return f"{url}&v=10&encoding=json{tail}"


async def server_stats(base: str, run: str) -> dict[str, Any]:
    """The lean server's counts for ``run``."""
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is _TEXT and not got.done():
                got.set_result(orjson.loads(frame.get_payload_as_bytes()))
                transport.send_close()
                transport.disconnect()

    transport, _ = await picows.ws_connect(Listener, f"{base}/stats?run={run}")
    try:
        return await asyncio.wait_for(got, 10)
    finally:
        transport.disconnect()


# -- the floor -----------------------------------------------------------------
class FloorClient(picows.WSListener):
    """One gateway connection with nothing but what the protocol needs."""

    __slots__ = ("shard", "total", "inflater", "zlib", "buffer", "seq", "timer", "transport", "ready",
                 "dispatches", "want", "done", "loop")

    def __init__(self, shard: int, total: int, compression: int, want: int,
                 done: asyncio.Future[None] | None, loop: asyncio.AbstractEventLoop) -> None:
        self.shard = shard
        self.total = total
        self.zlib = compression == 2
        if compression == 2:
            from zlib_ng import zlib_ng
            self.inflater: Any = zlib_ng.decompressobj()
        elif compression == 3:
            import zstandard
            self.inflater = zstandard.ZstdDecompressor().decompressobj()
        else:
            self.inflater = None
        self.buffer: bytearray | None = None
        self.seq: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.transport: picows.WSTransport | None = None
        self.ready = False
        self.dispatches = 0
        self.want = want  # dispatches (READY included) before ``done``
        self.done = done
        self.loop = loop

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind is not _TEXT and kind is not picows.WSMsgType.BINARY:
            return
        inflater = self.inflater
        if inflater is None:
            payload = orjson.loads(frame.get_payload_as_memoryview())
        elif self.zlib:
            data = frame.get_payload_as_bytes()
            if self.buffer is not None:
                self.buffer += data
                data = bytes(self.buffer)
            if not data.endswith(_ZLIB_SUFFIX):
                self.buffer = bytearray(data)
                return
            self.buffer = None
            payload = orjson.loads(inflater.decompress(data))
        else:
            payload = orjson.loads(inflater.decompress(frame.get_payload_as_bytes()))
        op = payload["op"]
        if op == 0:
            self.seq = payload["s"]
            self.dispatches += 1
            if payload["t"] == "READY":
                self.ready = True
            if self.dispatches == self.want and self.done is not None and not self.done.done():
                self.done.set_result(None)
        elif op == 10:
            interval = payload["d"]["heartbeat_interval"] / 1000.0
            self.timer = self.loop.call_later(interval * random.random(), self.beat, interval)
            transport.send(_TEXT, orjson.dumps({"op": 2, "d": {
                "token": "bench", "intents": 513, "shard": [self.shard, self.total], "compress": False,
                "properties": {"os": sys.platform, "browser": "floor", "device": "floor"}}}))

    def beat(self, interval: float) -> None:
        if self.transport is not None:
            self.transport.send(_TEXT, orjson.dumps({"op": 1, "d": self.seq}))
            self.timer = self.loop.call_later(interval, self.beat, interval)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


class Floor:
    def __init__(self, url: str, compression: int, n: int, want: int) -> None:
        self.url = _full_url(url, compression)
        self.compression = compression
        self.n = n
        self.want = want
        self.clients: list[FloorClient] = []
        self.transports: list[picows.WSTransport] = []

    async def start_and_wait(self) -> None:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(self.n)]
        self.clients = [FloorClient(i, self.n, self.compression, self.want, futures[i], loop)
                        for i in range(self.n)]
        results = await asyncio.gather(*(picows.ws_connect(lambda c=c: c, self.url) for c in self.clients))
        self.transports = [t for t, _ in results]
        await asyncio.gather(*futures)
        for c in self.clients:
            c.done = None

    async def close(self) -> None:
        for c in self.clients:
            if c.timer is not None:
                c.timer.cancel()
        for t in self.transports:
            t.send_close()
            t.disconnect()
        await asyncio.gather(*(t.wait_disconnected() for t in self.transports), return_exceptions=True)


# -- fastshard -------------------------------------------------------------------
class Manager:
    def __init__(self, url: str, compression: int, n: int, want: int, *, m: int | None = None,
                 interval: float | None = None) -> None:
        from fastshard import LocalIdentifyQueue, ShardManager

        queue = LocalIdentifyQueue(m or n, interval if interval is not None else 5.0)
        self.manager = ShardManager(token="bench", intents=513, shard_count=n, max_concurrency=m or n,
                                    url=url, compression=compression, identify_queue=queue)
        self.want = want
        self.counts: dict[int, int] = {}
        self._done: asyncio.Future[None] | None = None
        self._seen = 0
        self.manager.on("ready", self._dispatch)
        if want > 1:
            self.manager.on("event", self._dispatch)
        self.manager.on("close", self._closed)

    def _dispatch(self, shard_id: int, _value: Any) -> None:
        count = self.counts[shard_id] = self.counts.get(shard_id, 0) + 1
        if count == self.want:
            self._seen += 1
            if self._seen == len(self.manager.shards) and self._done is not None and not self._done.done():
                self._done.set_result(None)

    def _closed(self, shard_id: int, error: Any) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(RuntimeError(f"shard {shard_id} stopped: {error!r}"))

    async def start_and_wait(self) -> None:
        self._done = asyncio.get_running_loop().create_future()
        await self.manager.start()
        await self._done

    async def close(self) -> None:
        await self.manager.close()


def _client(impl: str, url: str, compression: int, n: int, want: int, **kw: Any) -> Floor | Manager:
    if impl == "floor":
        return Floor(url, compression, n, want)
    return Manager(url, compression, n, want, **kw)


_WANT = {"none": 1, "guild": 2, "burst": 42}


async def _warm(impl: str, base: str, compression: int, extra: str, tag: str) -> float:
    """One client to READY and closed: imports, caches and the server's stream are ready. Its wall time."""
    t0 = time.perf_counter()
    c = _client(impl, gateway_url(base, compression=compression, run=f"{tag}-warm", extra=extra), compression,
                1, _WANT[extra])
    await c.start_and_wait()
    elapsed = time.perf_counter() - t0
    await c.close()
    return elapsed


async def _memory(a: argparse.Namespace) -> dict[str, Any]:
    await _warm(a.impl, a.url, a.compression, a.extra, a.run)
    gc.collect()
    before = rss_bytes()
    c = _client(a.impl, gateway_url(a.url, compression=a.compression, run=a.run, extra=a.extra), a.compression,
                a.n, _WANT[a.extra])
    await c.start_and_wait()
    await asyncio.sleep(0.2)
    gc.collect()
    after = rss_bytes()
    await c.close()
    return {"per_shard_bytes": (after - before) / a.n, "rss_before": before, "rss_after": after}


async def _storm(a: argparse.Namespace) -> dict[str, Any]:
    await _warm(a.impl, a.url, a.compression, "none", a.run)
    gc.collect()
    url = gateway_url(a.url, compression=a.compression, run=a.run)
    gc_time = [0.0]
    started: list[float] = []

    def gc_callback(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.process_time())
        elif started:
            gc_time[0] += time.process_time() - started.pop()

    gc.callbacks.append(gc_callback)
    collections0 = [g["collections"] for g in gc.get_stats()]
    if a.gc == "threshold":
        gc.set_threshold(50_000, 20, 10)
    c0, t0 = time.process_time(), time.perf_counter()
    c = _client(a.impl, url, a.compression, a.n, 1)
    await c.start_and_wait()
    c1, t1 = time.process_time(), time.perf_counter()
    gc.callbacks.remove(gc_callback)
    collections = [g["collections"] - c for g, c in zip(gc.get_stats(), collections0)]
    await c.close()
    stats = await server_stats(a.url, a.run)
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "gc_cpu_s": gc_time[0], "gc_collections": collections,
            "violations": stats["violations"],
            "identifies": stats["identifies"]}


async def _heartbeat(a: argparse.Namespace) -> dict[str, Any]:
    hb_ms = int(a.interval * 1000)
    url = gateway_url(a.url, compression=a.compression, run=a.run, hb_ms=hb_ms)
    c = _client(a.impl, url, a.compression, a.n, 1)
    await c.start_and_wait()
    await asyncio.sleep(a.interval * 1.5)  # every first (jittered) beat is behind us
    gc.collect()
    s0 = await server_stats(a.url, a.run)
    c0 = time.process_time()
    await asyncio.sleep(a.window)
    c1 = time.process_time()
    s1 = await server_stats(a.url, a.run)
    await c.close()
    acks = s1["acks"] - s0["acks"]
    return {"cpu_s": c1 - c0, "acks": acks, "cpu_per_rtt_s": (c1 - c0) / acks if acks else None,
            "expected_acks": a.n * a.window / a.interval}


async def _startup(a: argparse.Namespace) -> dict[str, Any]:
    handshake = await _warm("fastshard", a.url, a.compression, "none", a.run)
    url = gateway_url(a.url, compression=a.compression, run=a.run, m=a.m, iv=a.interval)
    c = Manager(url, a.compression, a.n, 1, m=a.m, interval=a.interval)
    t0 = time.perf_counter()
    await c.start_and_wait()
    wall = time.perf_counter() - t0
    await c.close()
    stats = await server_stats(a.url, a.run)
    limit = (-(-a.n // a.m) - 1) * a.interval
    return {"wall_s": wall, "handshake_s": handshake, "limit_s": limit, "ratio": wall / (limit + handshake),
            "violations": stats["violations"], "identifies": stats["identifies"], "min_gap_s": stats["min_gap"],
            "short_gaps": stats["short_gaps"], "identify_span_s": stats["last_identify"] - stats["first_identify"]}


_MODES = {"memory": _memory, "storm": _storm, "heartbeat": _heartbeat, "startup": _startup}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale_clients")
    p.add_argument("mode", choices=sorted(_MODES))
    p.add_argument("--impl", choices=("fastshard", "floor"), default="fastshard")
    p.add_argument("--url", required=True, help="the lean server, ws://HOST:PORT")
    p.add_argument("--run", required=True, help="a name for this measurement at the server")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--compression", type=int, choices=(0, 2, 3), default=0)
    p.add_argument("--extra", choices=sorted(_WANT), default="none")
    p.add_argument("--interval", type=float, default=5.0, help="heartbeat or identify interval, s")
    p.add_argument("--window", type=float, default=5.0, help="heartbeat: seconds of CPU measured")
    p.add_argument("--m", type=int, default=16, help="startup: max_concurrency")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--gc", choices=("default", "off", "threshold"), default="default",
                   help="storm diagnostics: the cyclic GC as Python sets it, off, or gen0 threshold 50,000")
    a = p.parse_args(argv)
    raise_fd_limit()
    if a.gc == "off":
        gc.disable()
    try:
        out = asyncio.run(asyncio.wait_for(_MODES[a.mode](a), a.timeout))
    except (Exception, asyncio.TimeoutError) as exc:  # one JSON line either way: the parent reports it
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
