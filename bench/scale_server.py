"""A lean gateway for thousands of connections: ``python -m bench.scale_server``.

The gateway simulator (``fastshard.testing``) builds every payload, session
and compression context live; that is what tests want, but with thousands of
connections it is the bottleneck and the memory hog (a zstd compression
context per connection).  This server sends only bytes prepared in advance by
the simulator's own ``MessagePacker`` (so the wire format is the
simulator's), over picows:

* every connection of a variant gets the same stream (HELLO, READY, the
  extras, then heartbeat ACKs), compressed once with one fresh context, as a
  connection of its own would be; so READY is the same for every shard (its
  ``shard`` field says ``[0, 1]``, which no client here reads);
* the variant is in the URL's query: ``hb`` (heartbeat interval, ms),
  ``extra`` (``none``, ``guild``: one ~58.7 KB GUILD_CREATE after READY,
  ``burst``: 41 of them, ~2.4 MB), ``run`` (a name grouping the connections
  of one measurement), ``m`` and ``iv`` (the identify rule to check:
  ``shard_id % m``, one per ``iv`` seconds);
* it checks Discord's identify rule per run and counts violations (an
  IDENTIFY of a rate-limit key less than 90% of ``iv`` after the previous
  one: the gateway simulator's default slack, since the server sees network
  and scheduling jitter), and it counts heartbeat ACKs;
* ``/stats?run=NAME`` answers one text message: that run's counts as JSON.

It prints ``PORT <n>`` once it listens and runs until its stdin closes.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import picows

from fastshard.testing import TrafficGenerator
from fastshard.testing.compression import COMPRESSION_NAMES, MessagePacker

__all__ = ["GUILD_BYTES", "BURST_GUILDS", "RunStats", "main"]

#: The size of "one GUILD_CREATE" (issue 9: ~58.7 KB of JSON) and of the burst.
GUILD_BYTES = 58_700
BURST_GUILDS = 41
_ACKS = 8  # ACK frames prepared per stream; from the third on they are all the same bytes
_TEXT = picows.WSMsgType.TEXT
_BINARY = picows.WSMsgType.BINARY
_CLOSE = picows.WSMsgType.CLOSE


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (one descriptor per connection); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@functools.lru_cache(maxsize=None)
def _guild_payloads() -> list[dict[str, Any]]:
    """BURST_GUILDS GUILD_CREATE payloads, the first of about GUILD_BYTES of JSON."""
    gen = TrafficGenerator("scale:guilds")
    out = []
    for i in range(BURST_GUILDS):
        lo, hi = 10, 400  # members: the JSON size grows with it; bisect to ~GUILD_BYTES
        state = gen.rng.getstate()
        while lo < hi:
            mid = (lo + hi) // 2
            gen.rng.setstate(state)
            if len(orjson.dumps(gen.guild_create(f"{10**17 + i}", mid))) < GUILD_BYTES:
                lo = mid + 1
            else:
                hi = mid
        gen.rng.setstate(state)
        out.append({"op": 0, "t": "GUILD_CREATE", "d": gen.guild_create(f"{10**17 + i}", lo)})
    return out


_READY = TrafficGenerator("scale:ready").ready("f" * 32, "ws://127.0.0.1/resume", (0, 1), ["100000000000000000"])


@dataclass
class Stream:
    """The frames of one variant: what every connection of it receives, in order."""

    text: bool
    hello: bytes
    ready: bytes
    extras: list[bytes]
    acks: list[bytes]

    @classmethod
    def build(cls, compression: int, heartbeat_ms: int, extra: str) -> Stream:
        packer = MessagePacker("json", compression)

        def one(payload: dict[str, Any]) -> bytes:
            (message,) = packer.pack(payload)
            return message.data

        hello = one({"op": 10, "d": {"heartbeat_interval": heartbeat_ms}})
        ready = one({"op": 0, "t": "READY", "s": 1, "d": _READY})
        guilds = {"none": [], "guild": _guild_payloads()[:1], "burst": _guild_payloads()}[extra]
        extras = [one(dict(g, s=2 + i)) for i, g in enumerate(guilds)]
        acks = [one({"op": 11}) for _ in range(_ACKS)]
        if acks[-1] != acks[-2]:
            raise RuntimeError("heartbeat ACK frames did not settle to one byte string")
        return cls(compression == 0, hello, ready, extras, acks)


@dataclass
class RunStats:
    connections: int = 0
    identifies: int = 0
    violations: int = 0
    #: IDENTIFYs less than the full interval after their key's previous one (within the slack).
    short_gaps: int = 0
    #: The smallest gap (s) seen between two IDENTIFYs of one rate-limit key.
    min_gap: float | None = None
    first_identify: float | None = None
    last_identify: float | None = None
    acks: int = 0
    closed: int = 0
    _last: dict[int, float] = field(default_factory=dict)

    def identify(self, shard_id: int, m: int, interval: float, now: float) -> None:
        self.identifies += 1
        if self.first_identify is None:
            self.first_identify = now
        self.last_identify = now
        key = shard_id % m
        last = self._last.get(key)
        if last is not None:
            gap = now - last
            self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
            if gap < interval * 0.9:
                self.violations += 1
            elif gap < interval:
                self.short_gaps += 1
        self._last[key] = now

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["_last"]
        return d


class Gateway:
    def __init__(self) -> None:
        self.streams: dict[tuple[int, int, str], Stream] = {}
        self.runs: dict[str, RunStats] = {}

    def stream(self, compression: int, heartbeat_ms: int, extra: str) -> Stream:
        key = (compression, heartbeat_ms, extra)
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = Stream.build(compression, heartbeat_ms, extra)
        return s

    def listener(self, request: picows.WSUpgradeRequest) -> picows.WSListener:
        target = urlsplit(request.path.decode() if isinstance(request.path, bytes) else request.path)
        query = dict(parse_qsl(target.query))
        run = self.runs.setdefault(query.get("run", ""), RunStats())
        if target.path.rstrip("/") == "/stats":
            return _StatsListener(run)
        compression = COMPRESSION_NAMES.get(query.get("compress", ""), 0)
        stream = self.stream(compression, int(query.get("hb", "41250")), query.get("extra", "none"))
        run.connections += 1
        return _GatewayListener(stream, run, int(query.get("m", "1000000")), float(query.get("iv", "5")))


class _StatsListener(picows.WSListener):
    def __init__(self, run: RunStats) -> None:
        self.run = run

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        transport.send(_TEXT, orjson.dumps(self.run.as_dict()))

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is _CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class _GatewayListener(picows.WSListener):
    __slots__ = ("stream", "run", "m", "interval", "identified", "pending_acks", "acks_sent", "kind")

    def __init__(self, stream: Stream, run: RunStats, m: int, interval: float) -> None:
        self.stream = stream
        self.run = run
        self.m = m
        self.interval = interval
        self.identified = False
        self.pending_acks = 0
        self.acks_sent = 0
        self.kind = _TEXT if stream.text else _BINARY

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        transport.send(self.kind, self.stream.hello)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is _CLOSE:
            self.run.closed += 1
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind is not _TEXT and kind is not _BINARY:
            return
        payload = orjson.loads(frame.get_payload_as_memoryview())
        op = payload.get("op")
        if op == 1:
            # The compressed stream's order is fixed: an ACK asked for before READY waits for it.
            if self.identified:
                self._ack(transport)
            else:
                self.pending_acks += 1
        elif op == 2 and not self.identified:
            self.identified = True
            shard = payload["d"].get("shard") or [0, 1]
            self.run.identify(int(shard[0]), self.m, self.interval, time.monotonic())
            transport.send(self.kind, self.stream.ready)
            for data in self.stream.extras:
                transport.send(self.kind, data)
            for _ in range(self.pending_acks):
                self._ack(transport)
            self.pending_acks = 0

    def _ack(self, transport: picows.WSTransport) -> None:
        acks = self.stream.acks
        transport.send(self.kind, acks[min(self.acks_sent, len(acks) - 1)])
        self.acks_sent += 1
        self.run.acks += 1


async def _serve(host: str, backlog: int) -> None:
    gateway = Gateway()
    server = await picows.ws_create_server(gateway.listener, host, 0, backlog=backlog,
                                           websocket_handshake_timeout=30, max_frame_size=1 << 20)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backlog", type=int, default=4096,
                        help="listen backlog (the kernel caps it at net.core.somaxconn)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    asyncio.run(_serve(args.host, args.backlog))


if __name__ == "__main__":
    main()
