"""The clients the end-to-end benchmark compares, and the worker process that runs them.

* ``fastshard``: one :class:`fastshard.WebsocketShard` with an ``"event"`` callback.
* ``discordpy``: discord.py's receive shape: an ``aiohttp`` websocket opened with
  discord.py's options, discord.py's own decompression context class
  (``discord.utils._ActiveDecompressionContext``) and its JSON loader
  (``discord.utils._from_json``, orjson when installed), then the bookkeeping
  of ``DiscordWebSocket.received_message`` (read ``t``/``op``/``d``, track ``s``).
  discord.py picks zstd-stream when ``zstandard`` is importable and
  zlib-stream otherwise, so the zlib-stream worker hides ``zstandard`` before
  importing discord (``discordpy-zlib``); both are real discord.py set-ups.
  discord.py speaks JSON only and never asks for payload compression, so it
  has no figure for ETF or compression 1.
* ``websockets``: a plain ``websockets`` client loop + stdlib ``zlib`` (or
  ``zstandard`` for zstd-stream) + ``orjson``, or ``erlpack`` for ETF.

Each measured run: connect, HELLO, IDENTIFY, READY, then the workload; CPU
time (``time.process_time``, this process only: the server runs elsewhere) and
wall time are taken from READY to the last event.  Every event is counted and
its sequence checked, so a client that loses or reorders events fails loudly
instead of looking fast.

This module imports nothing heavy at module level: the discord.py zlib worker
must hide ``zstandard`` before anything imports it.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any, Callable

__all__ = ["IMPLEMENTATIONS", "RAW_CLIENTS", "supports", "worker_impl", "run_once", "rss_bytes", "main"]

IMPLEMENTATIONS = ("fastshard", "discordpy", "websockets")
_COMPRESS_QUERY = {2: "zlib-stream", 3: "zstd-stream"}
_TIMEOUT = 300.0


def supports(impl: str, encoding: str, compression: int) -> bool:
    """Whether ``impl`` can receive this combination at all."""
    if impl == "discordpy":
        return encoding == "json" and compression in (0, 2, 3)
    return True


def worker_impl(impl: str, compression: int) -> str:
    """The worker process name for a client: discord.py needs one per stream compression."""
    if impl == "discordpy":
        return "discordpy-zstd" if compression == 3 else "discordpy-zlib"
    return impl


def rss_bytes() -> int | None:
    """Resident memory of this process, from /proc (Linux) or psutil when present."""
    try:
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _query_url(url: str, encoding: str, compression: int) -> str:
    query = f"v=10&encoding={encoding}"
    if compression in _COMPRESS_QUERY:
        query += f"&compress={_COMPRESS_QUERY[compression]}"
    return f"{url}?{query}"


def _identify(compression: int) -> dict[str, Any]:
    return {"op": 2, "d": {"token": "bench", "intents": 513, "compress": compression == 1,
                           "properties": {"os": sys.platform, "browser": "bench", "device": "bench"}}}


class Counter:
    """READY and event bookkeeping shared by every client: times, count, order check."""

    def __init__(self, target: int, keep_reading: bool = False) -> None:
        self.target = target
        #: Memory mode: clients stay connected and reading after the target.
        self.keep_reading = keep_reading
        self.count = 0
        self.next_seq = 2
        self.error: str | None = None
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ready(self, _d: Any = None) -> None:
        """READY handled: start the clocks; the client then sends a heartbeat, which starts the blast."""
        self.c0 = time.process_time()
        self.t0 = time.perf_counter()

    def event(self, payload: Any) -> bool:
        """Count one dispatch; True once the target is reached."""
        if payload["s"] != self.next_seq and self.error is None:
            self.error = f"event {self.count + 1} has s={payload['s']!r}, expected {self.next_seq}"
        self.next_seq += 1
        self.count += 1
        if self.count == self.target:
            self.c1 = time.process_time()
            self.t1 = time.perf_counter()
            if not self.done.done():
                self.done.set_result(None)
            return not self.keep_reading
        return False

    def message(self, _data: Any = None) -> bool:
        """Count one undecoded message (transport-only clients); True once the target is reached."""
        self.count += 1
        if self.count == self.target:
            self.c1 = time.process_time()
            self.t1 = time.perf_counter()
            if not self.done.done():
                self.done.set_result(None)
            return True
        return False

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        if not self.done.done():
            self.done.set_result(None)

    def result(self, wire_bytes: int | None) -> dict[str, Any]:
        if self.error is None and self.count < self.target:
            self.error = f"only {self.count} of {self.target} events arrived"
        return {"cpu_s": self.c1 - self.c0, "wall_s": self.t1 - self.t0, "events": self.count,
                "wire_bytes": wire_bytes, "error": self.error}


# -- fastshard ---------------------------------------------------------------
class FastshardClient:
    def __init__(self, url: str, encoding: str, compression: int, counter: Counter) -> None:
        from fastshard import WebsocketShard

        self.counter = counter
        self.shard = WebsocketShard(token="bench", intents=513, url=url, encoding=encoding,
                                    compression=compression)
        self.wire0 = 0
        self._go: asyncio.Future[None] | None = None
        event = counter.event
        self.shard.on("ready", self._ready)
        self.shard.on("event", event)
        self.shard.on("close", lambda exc: counter.fail(f"the shard closed: {exc!r}"))

    def _ready(self, d: Any) -> None:
        self.wire0 = self.shard.bytes_received
        self.counter.ready(d)
        self._go = asyncio.ensure_future(self.shard.send({"op": 1, "d": 1}))
        self._go.add_done_callback(self._sent)

    def _sent(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.counter.fail(f"the heartbeat that starts the blast failed: {future.exception()!r}")

    async def start(self) -> None:
        await self.shard.connect()

    @property
    def wire_bytes(self) -> int:
        return self.shard.bytes_received - self.wire0

    async def stop(self) -> None:
        await self.shard.close()


# -- discord.py's shape --------------------------------------------------------
class DiscordpyClient:
    _session: Any = None

    def __init__(self, url: str, encoding: str, compression: int, counter: Counter) -> None:
        from discord import utils

        if not supports("discordpy", encoding, compression):
            raise ValueError(f"discord.py does not receive {encoding} with compression {compression}")
        self.counter = counter
        self.url = _query_url(url, encoding, compression)
        self.compression = compression
        if compression:
            kind = utils._ActiveDecompressionContext.COMPRESSION_TYPE
            if kind != _COMPRESS_QUERY[compression]:
                raise RuntimeError(f"this worker's discord.py uses {kind}, not {_COMPRESS_QUERY[compression]}")
        self.decompressor = utils._ActiveDecompressionContext()
        self.from_json = utils._from_json
        self.to_json = utils._to_json
        self.sequence: int | None = None
        self.wire_bytes = None  # only fastshard's count is used (checked against the stream's size)
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def session(cls) -> Any:
        import aiohttp

        if cls._session is None:
            # One HTTP session for all shards, as discord.py's HTTPClient has.
            cls._session = aiohttp.ClientSession()
        return cls._session

    @staticmethod
    def _ws_timeout() -> Any:
        import aiohttp

        # discord.py passes timeout=30.0; newer aiohttp spells that ClientWSTimeout.
        if hasattr(aiohttp, "ClientWSTimeout"):
            return aiohttp.ClientWSTimeout(ws_close=30.0)
        return 30.0

    async def start(self) -> None:
        session = await self.session()
        # The options discord.py's HTTPClient.ws_connect uses.
        self.ws = await session.ws_connect(self.url, max_msg_size=0, timeout=self._ws_timeout(),
                                           autoclose=False, compress=0)
        self.task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        import aiohttp

        ws, counter = self.ws, self.counter
        decompress, from_json = self.decompressor.decompress, self.from_json
        TEXT, BINARY = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not TEXT and msg.type is not BINARY:
                    counter.fail(f"websocket ended: {msg.type!r} {msg.data!r}")
                    return
                data = msg.data
                # DiscordWebSocket.received_message, up to where it dispatches.
                if type(data) is bytes:
                    data = decompress(data)
                    if data is None:
                        continue
                payload = from_json(data)
                event = payload.get("t")
                op = payload.get("op")
                d = payload.get("d")
                seq = payload.get("s")
                if seq is not None:
                    self.sequence = seq
                if op == 0:
                    if event == "READY":
                        counter.ready(d)
                        await ws.send_str(self.to_json({"op": 1, "d": self.sequence}))
                    elif counter.event(payload):
                        return
                elif op == 10:
                    await ws.send_str(self.to_json(_identify(self.compression)))
        except Exception as exc:  # reported as the run's error, never hidden
            counter.fail(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close(code=4000)


# -- a plain websockets loop -----------------------------------------------------
class WebsocketsClient:
    def __init__(self, url: str, encoding: str, compression: int, counter: Counter) -> None:
        self.counter = counter
        self.url = _query_url(url, encoding, compression)
        self.encoding = encoding
        self.compression = compression
        self.wire_bytes = None  # only fastshard's count is used (checked against the stream's size)
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    def _decoder(self) -> Callable[[Any], Any]:
        """message -> payload (or None while a zlib-stream message is incomplete)."""
        import zlib

        import orjson

        if self.encoding == "etf":
            import erlpack
            loads = erlpack.unpack
        else:
            loads = orjson.loads
        c = self.compression
        if c == 2:
            context = zlib.decompressobj()
            buffer = bytearray()

            def decode(data: Any) -> Any:
                buffer.extend(data)
                if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
                    return None
                out = context.decompress(buffer)
                buffer.clear()
                return loads(out)
            return decode
        if c == 3:
            import zstandard
            zdecompress = zstandard.ZstdDecompressor().decompressobj().decompress
            return lambda data: loads(zdecompress(data))
        if c == 1 and self.encoding == "json":
            decompress = zlib.decompress
            return lambda data: loads(decompress(data) if type(data) is bytes else data)
        # ETF payload compression is the term's own tag 80, which erlpack inflates.
        return loads

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, compression=None, max_size=None, ping_interval=None,
                                close_timeout=1.0)
        self.task = asyncio.ensure_future(self._poll())

    def _encode(self, payload: dict[str, Any]) -> str | bytes:
        if self.encoding == "etf":
            import erlpack
            return erlpack.pack(payload)  # type: ignore[no-any-return]
        import orjson
        return orjson.dumps(payload).decode()

    async def _poll(self) -> None:
        ws, counter = self.ws, self.counter
        decode = self._decoder()
        etf = self.encoding == "etf"
        sequence = None
        try:
            async for data in ws:
                payload = decode(data)
                if payload is None:
                    continue
                # erlpack's atom keys are str subclasses, so the same lookups serve both.
                op = payload["op"]
                s = payload["s"]
                if s is not None:
                    sequence = s
                if op == 0:
                    t = payload["t"]
                    if t == "READY" or t == b"READY":
                        counter.ready(payload["d"])
                        await ws.send(self._encode({"op": 1, "d": s}))
                    elif counter.event({"s": s} if etf else payload):
                        return
                elif op == 10:
                    await ws.send(self._encode(_identify(self.compression)))
            counter.fail(f"websocket closed: {ws.close_code} {ws.close_reason!r} (last s={sequence})")
        except Exception as exc:  # reported as the run's error, never hidden
            counter.fail(f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close(code=4000)


# -- transport alone ---------------------------------------------------------------
class _RawClient:
    """Receive without decoding: what the websocket library alone costs per message.

    The blast server sends exactly one message per event after READY, so the
    message count is the event count.  JSON only (IDENTIFY is a fixed text).
    """

    def __init__(self, url: str, encoding: str, compression: int, counter: Counter) -> None:
        if encoding != "json" or compression == 1:
            raise ValueError("transport-only clients speak JSON without payload compression")
        self.counter = counter
        self.url = _query_url(url, encoding, compression)
        self.identify = json.dumps(_identify(0))
        self.seen = 0
        self.wire_bytes = None
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    def _before_events(self) -> str | None:
        """What to send for the n-th message before the events: IDENTIFY after HELLO, a heartbeat after READY."""
        self.seen += 1
        if self.seen == 1:
            return self.identify
        self.counter.ready()
        return '{"op":1,"d":1}'

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close(code=4000)


class RawPicowsClient(_RawClient):
    async def start(self) -> None:
        import picows

        client, text = self, picows.WSMsgType.TEXT

        class Listener(picows.WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if client.seen < 2:
                    transport.send(text, client._before_events().encode())
                else:
                    client.counter.message()

        self.transport, _ = await picows.ws_connect(Listener, self.url, max_frame_size=1 << 26)

    async def stop(self) -> None:
        if getattr(self, "transport", None) is not None:
            self.transport.disconnect()


class RawAiohttpClient(_RawClient):
    async def start(self) -> None:
        session = await DiscordpyClient.session()
        self.ws = await session.ws_connect(self.url, max_msg_size=0, timeout=DiscordpyClient._ws_timeout(),
                                           autoclose=False, compress=0)
        self.task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        import aiohttp

        ws, message = self.ws, self.counter.message
        data_types = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
        while self.seen < 2:
            await ws.receive()
            await ws.send_str(self._before_events())
        while True:
            msg = await ws.receive()
            if msg.type not in data_types:
                self.counter.fail(f"websocket ended: {msg.type!r} {msg.data!r}")
                return
            if message(msg):
                return


class RawWebsocketsClient(_RawClient):
    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, compression=None, max_size=None, ping_interval=None,
                                close_timeout=1.0)
        self.task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        ws, message = self.ws, self.counter.message
        try:
            while self.seen < 2:
                await ws.recv()
                await ws.send(self._before_events())
            while not message(await ws.recv()):
                pass
        except Exception as exc:  # reported as the run's error, never hidden
            self.counter.fail(f"{type(exc).__name__}: {exc}")


CLIENTS = {"fastshard": FastshardClient, "discordpy": DiscordpyClient, "websockets": WebsocketsClient,
           "raw-picows": RawPicowsClient, "raw-aiohttp": RawAiohttpClient, "raw-websockets": RawWebsocketsClient}
RAW_CLIENTS = ("raw-picows", "raw-aiohttp", "raw-websockets")


async def run_once(impl: str, url: str, encoding: str, compression: int, events: int) -> dict[str, Any]:
    """Receive ``events`` dispatches once; CPU and wall time from READY to the last one."""
    counter = Counter(events)
    client = CLIENTS[impl](url, encoding, compression, counter)
    try:
        await client.start()
        try:
            await asyncio.wait_for(asyncio.shield(counter.done), _TIMEOUT)
        except asyncio.TimeoutError:
            counter.fail(f"timed out after {_TIMEOUT} s with {counter.count} events")
        return counter.result(client.wire_bytes)
    finally:
        await client.stop()


async def measure_memory(impl: str, url: str, encoding: str, compression: int, shards: int,
                         guilds: int) -> dict[str, Any]:
    """RSS growth per connected idle client: ``shards`` clients, each past READY + its GUILD_CREATEs."""
    async def connect_one() -> Any:
        # The simulator sends READY as s 1, then one GUILD_CREATE per guild.
        counter = Counter(guilds, keep_reading=True)
        client = CLIENTS[impl](url, encoding, compression, counter)
        await client.start()
        await asyncio.wait_for(asyncio.shield(counter.done), 60.0)
        if counter.error:
            raise RuntimeError(counter.error)
        return client

    warm = await connect_one()  # first-use imports and caches are not per-shard costs
    await warm.stop()
    del warm
    gc.collect()
    await asyncio.sleep(0.2)
    before = rss_bytes()
    clients = [await connect_one() for _ in range(shards)]
    await asyncio.sleep(0.2)
    gc.collect()
    after = rss_bytes()
    for client in clients:
        await client.stop()
    await _close_sessions()
    if before is None or after is None:
        return {"per_shard_bytes": None, "shards": shards, "error": "no way to read RSS on this system"}
    return {"per_shard_bytes": (after - before) / shards, "shards": shards, "error": None}


async def _close_sessions() -> None:
    if DiscordpyClient._session is not None:
        await DiscordpyClient._session.close()
        DiscordpyClient._session = None


def _hide_zstandard() -> None:
    # discord.py falls back to zlib-stream when no zstd module can be imported.
    sys.modules["zstandard"] = None  # type: ignore[assignment]
    sys.modules["compression.zstd"] = None  # type: ignore[assignment]


async def _serve_commands(impl: str) -> None:
    """Worker loop: one JSON command per stdin line, one JSON result per stdout line."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            await _close_sessions()
            return
        cmd = json.loads(line)
        try:
            result = await run_once(cmd.get("impl", impl), cmd["url"], cmd["encoding"], cmd["compression"],
                                    cmd["events"])
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    parser.add_argument("mode", choices=("worker", "memory"))
    parser.add_argument("--impl", required=True,
                        choices=("fastshard", "discordpy-zlib", "discordpy-zstd", "websockets", "raw"))
    parser.add_argument("--url", help="memory mode: the simulator's url")
    parser.add_argument("--encoding", default="json")
    parser.add_argument("--compression", type=int, default=0)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--guilds", type=int, default=1)
    args = parser.parse_args(argv)
    if args.impl == "discordpy-zlib":
        _hide_zstandard()
    impl = args.impl.split("-")[0]
    if args.mode == "worker":
        asyncio.run(_serve_commands(impl))
        return
    try:
        result = asyncio.run(measure_memory(impl, args.url, args.encoding, args.compression, args.shards,
                                            args.guilds))
    except Exception as exc:
        result = {"per_shard_bytes": None, "shards": args.shards, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
