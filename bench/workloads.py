"""The traffic every benchmark measures, built the same way in every process.

Two workloads from the simulator's deterministic generator, reported apart
because they stress different things:

* ``steady``: the steady-state dispatch mix (MESSAGE_CREATE, PRESENCE_UPDATE,
  TYPING_START, ...): many small messages, where per-message overhead rules.
* ``burst``: the GUILD_CREATE burst after READY: few very large messages,
  where inflate and decode throughput (and the garbage collector) rule.

Payloads are packed into websocket messages by the simulator's own
``MessagePacker``, so the codec micro-benchmarks, the wire-size figures and
the blast server all see byte-for-byte what the simulator would send.  The
same seed gives the same bytes in every process, which is what lets the blast
server (its own process) and the report agree on sizes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from fastshard.testing import MessagePacker, TrafficGenerator, WireMessage, encode_payload

__all__ = ["ENCODINGS", "COMPRESSIONS", "COMBINATIONS", "COMPRESSION_LABELS", "WORKLOADS", "Packed",
           "combo_label", "payloads", "encoded", "pack", "connection_stream", "hello", "ready", "wire_digest"]

ENCODINGS = ("json", "etf")
COMPRESSIONS = (0, 1, 2, 3)
COMBINATIONS = tuple((e, c) for e in ENCODINGS for c in COMPRESSIONS)
COMPRESSION_LABELS = {0: "none", 1: "payload", 2: "zlib-stream", 3: "zstd-stream"}
WORKLOADS = ("steady", "burst")
SEED = 20261128
HEARTBEAT_INTERVAL_MS = 3_600_000


def combo_label(encoding: str, compression: int) -> str:
    return f"{encoding} + {COMPRESSION_LABELS[compression]}"


@lru_cache(maxsize=None)
def payloads(workload: str, count: int) -> tuple[dict[str, Any], ...]:
    """``count`` dispatches of a workload (``count`` guilds for ``burst``).

    Sequences start at 2: the blast server sends READY as ``s`` 1.
    """
    gen = TrafficGenerator(f"bench:{SEED}")
    if workload == "steady":
        pairs = gen.steady_stream(count)
    elif workload == "burst":
        pairs = gen.guild_burst(count)
    else:
        raise ValueError(f"workload must be one of {WORKLOADS}, not {workload!r}")
    return tuple({"op": 0, "t": t, "s": i, "d": d} for i, (t, d) in enumerate(pairs, 2))


@lru_cache(maxsize=None)
def encoded(workload: str, count: int, encoding: str) -> tuple[bytes, ...]:
    """The uncompressed payloads as Discord puts them on the wire for ``encoding``."""
    return tuple(encode_payload(p, encoding) for p in payloads(workload, count))


@dataclass(frozen=True)
class Packed:
    """One workload as the websocket messages of one encoding + compression."""

    workload: str
    encoding: str
    compression: int
    messages: tuple[WireMessage, ...]   # prefix (HELLO, READY) first, if any
    events: int
    raw_bytes: int      # uncompressed bytes of the workload's payloads (what the decoder parses)
    prefix: int = 0     # how many of ``messages`` are the prefix

    @property
    def event_messages(self) -> tuple[WireMessage, ...]:
        return self.messages[self.prefix:]

    @property
    def wire_bytes(self) -> int:
        """The workload's websocket message payload bytes (frame headers and prefix not counted)."""
        return sum(len(m.data) for m in self.event_messages)

    def __iter__(self) -> Iterator[WireMessage]:
        """The workload's messages (without the prefix)."""
        return iter(self.event_messages)


def pack(workload: str, count: int, encoding: str, compression: int,
         prefix: tuple[dict[str, Any], ...] = ()) -> Packed:
    """Pack a workload with a fresh compression context, as one connection would receive it.

    ``prefix`` payloads (HELLO, READY for the blast server) go first through
    the same context, since a stream context covers the whole connection.
    """
    packer = MessagePacker(encoding, compression)
    messages: list[WireMessage] = []
    for payload in prefix:
        messages.extend(packer.pack(payload))
    n_prefix = len(messages)
    raws = encoded(workload, count, encoding)
    for raw in raws:
        messages.extend(packer.pack_encoded(raw))
    return Packed(workload, encoding, compression, tuple(messages), len(raws), sum(map(len, raws)), n_prefix)


def hello() -> dict[str, Any]:
    """HELLO with a one-hour heartbeat interval, so no heartbeat interrupts a run."""
    return {"op": 10, "s": None, "t": None, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}


def ready() -> dict[str, Any]:
    return {"op": 0, "s": 1, "t": "READY", "d": {
        "v": 10, "session_id": "0123456789abcdef0123456789abcdef",
        "resume_gateway_url": "ws://127.0.0.1:1/resume", "shard": [0, 1], "guilds": [],
        "user": {"id": "1000000000000000001", "username": "bench", "discriminator": "0", "bot": True},
        "application": {"id": "1000000000000000001", "flags": 0}}}


@lru_cache(maxsize=None)
def connection_stream(workload: str, count: int, encoding: str, compression: int) -> Packed:
    """What one blast-server connection receives: HELLO, READY, the workload, one compression context.

    The wire-size figures come from these exact bytes.
    """
    return pack(workload, count, encoding, compression, prefix=(hello(), ready()))


def wire_digest(messages: tuple[WireMessage, ...] | list[WireMessage]) -> str:
    """A short digest of a message sequence, to check two processes built the same stream."""
    h = hashlib.sha256()
    for m in messages:
        h.update(b"t" if m.text else b"b")
        h.update(len(m.data).to_bytes(8, "little"))
        h.update(m.data)
    return h.hexdigest()[:16]
