"""A gateway that only blasts: pre-encoded frames, so the server is never the bottleneck.

Run in its own process (``python -m bench.blast_server --steady N --burst G``);
it prints ``PORT <n>`` on stdout once it listens.  Each connection:

1. ``ws://127.0.0.1:PORT/<workload>?encoding=..&compress=..`` where workload is
   ``steady``, ``burst`` or ``warmup`` (a short steady stream for warming a client up);
2. the server sends HELLO (a one-hour heartbeat interval, so no heartbeat
   interrupts a run) and waits for the client's first command (IDENTIFY);
   ``compress: true`` in it selects payload compression, as on Discord;
3. then READY (``s`` 1), and waits for one more command: the client sends it
   (a heartbeat) once it has handled READY and started its clocks, so no
   byte of the workload is read, parsed or buffered before the clocks start;
4. then the whole workload goes out as websocket frames serialized once in
   advance (by ``websockets``' own frame writer), written in large chunks;
5. the server keeps reading until the client closes.

Frames come from :func:`bench.workloads.pack`, i.e. the simulator's
``MessagePacker``: the same bytes the simulator would send, with one fresh
compression context per connection, as Discord does.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from fastshard.testing import decode_client_payload

from .workloads import Packed, connection_stream, wire_digest

__all__ = ["BlastServer", "WARMUP_EVENTS", "serialize", "main"]

WARMUP_EVENTS = 300
_CHUNK = 1 << 20
_TRANSPORT_COMPRESSION = {"zlib-stream": 2, "zstd-stream": 3}


def serialize(packed: Packed, start: int = 0, stop: int | None = None) -> bytes:
    """Websocket frames (server side: unmasked) for ``packed.messages[start:stop]``."""
    return b"".join(Frame(Opcode.TEXT if m.text else Opcode.BINARY, m.data).serialize(mask=False)
                    for m in packed.messages[start:stop])


class BlastServer:
    def __init__(self, steady: int, burst: int) -> None:
        self.counts = {"steady": steady, "burst": burst, "warmup": WARMUP_EVENTS}
        self._streams: dict[tuple[str, str, int], tuple[bytes, bytes, bytes]] = {}

    def stream(self, workload: str, encoding: str, compression: int) -> tuple[bytes, bytes, bytes]:
        """(HELLO frame, READY frame, workload frames), built once per key."""
        key = (workload, encoding, compression)
        cached = self._streams.get(key)
        if cached is None:
            source = "steady" if workload == "warmup" else workload
            packed = connection_stream(source, self.counts[workload], encoding, compression)
            cached = (serialize(packed, 0, 1), serialize(packed, 1, 2), serialize(packed, 2))
            self._streams[key] = cached
            if workload != "warmup":
                # The parent checks these against its own packing of the same workload.
                print(f"STREAM {workload} {encoding} {compression} {wire_digest(packed.event_messages)}",
                      flush=True)
        return cached

    async def handler(self, ws: ServerConnection) -> None:
        target = urlsplit(ws.request.path if ws.request else "/")
        workload = target.path.strip("/") or "steady"
        query = dict(parse_qsl(target.query))
        encoding = query.get("encoding", "json")
        if workload not in self.counts or encoding not in ("json", "etf"):
            await ws.close(4002, f"unknown workload {workload!r} or encoding {encoding!r}")
            return
        compression = _TRANSPORT_COMPRESSION.get(query.get("compress", ""), 0)
        try:
            # HELLO is the same plain message for compression 0 and 1: payload
            # compression is only chosen by IDENTIFY.
            ws.transport.write(self.stream(workload, encoding, compression)[0])
            identify, _ = decode_client_payload(await ws.recv(decode=False), encoding)
            d = identify.get("d") if isinstance(identify, dict) else None
            if compression == 0 and isinstance(d, dict) and d.get("compress") is True:
                compression = 1
            _, ready_frame, frames = self.stream(workload, encoding, compression)
            ws.transport.write(ready_frame)
            await ws.recv(decode=False)  # the client's clocks are running
            view = memoryview(frames)
            transport = ws.transport
            for pos in range(0, len(view), _CHUNK):
                transport.write(view[pos:pos + _CHUNK])
                # Let the client drain us: a bounded send buffer, never a stall.
                while transport.get_write_buffer_size() > 8 * _CHUNK:
                    await asyncio.sleep(0.0005)
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass


async def _serve(args: argparse.Namespace) -> None:
    server = BlastServer(args.steady, args.burst)
    async with serve(server.handler, "127.0.0.1", 0, compression=None, ping_interval=None,
                     max_size=1 << 20, close_timeout=1.0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        # Until the parent closes our stdin (or dies).
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blast_server", description=__doc__.split("\n")[0])
    parser.add_argument("--steady", type=int, default=20_000, help="events in the steady workload")
    parser.add_argument("--burst", type=int, default=100, help="GUILD_CREATEs in the burst workload")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
