"""A Discord gateway simulator for tests, examples and benchmarks.

``GatewaySimulator`` is a real websocket server (the ``websockets`` package,
loopback by default) that speaks Discord's gateway v10 from the server side:
HELLO, IDENTIFY -> READY + GUILD_CREATEs, heartbeats and ACKs, RESUME with
replay then RESUMED, op 1/7/9, the close codes, JSON and ETF, compression
0 (none), 1 (payload), 2 (zlib-stream) and 3 (zstd-stream), the 120 commands
per 60 s limit, and scriptable faults::

    async with GatewaySimulator(heartbeat_interval=0.05) as sim:
        shard = WebsocketShard(token="t", intents=513, url=sim.url)
        await shard.connect()
        conn = await sim.wait_connection(0)
        await conn.wait_for_op(2)               # the client identified
        await conn.dispatch("MESSAGE_CREATE", conn.traffic.message_create())
        conn.ack_heartbeats = False             # make it a zombie connection
        await conn.drop()                       # or lose the network

One simulator serves every shard of a bot: with ``shards=N,
max_concurrency=M, identify_interval=...`` it routes guilds by
``(guild_id >> 22) % num_shards``, answers an IDENTIFY that is too fast for
its bucket (``shard_id % M``) with op 9 (counted in ``identify_violations``),
closes 4010/4011, spends ``session_start_limit`` and serves
``GET {sim.api_url}/gateway/bot`` with Discord's fields.

Every simulator holds one ``World`` (guilds, channels, roles, members with
the bot among them, messages, voice states); the dispatches it sends, and
those ``conn.traffic`` makes, are about that world and honour the session's
intents.  ``TrafficGenerator`` produces realistic dispatches deterministically
from a seed; ``MessagePacker`` and ``encode_payload`` turn payloads into the exact
websocket messages for an encoding and compression, for pre-encoded streams.
"""
from __future__ import annotations

from .compression import MessagePacker, WireMessage
from .connection import SimConnection
from .encoding import decode_client_payload, encode_payload, encode_stream, snowflakes_to_int
from .protocol import Close, Op
from .server import GatewaySimulator
from .session import SimSession
from .traffic import TrafficGenerator
from .world import World

__all__ = ["GatewaySimulator", "SimConnection", "SimSession", "TrafficGenerator", "World", "MessagePacker",
           "WireMessage", "encode_payload", "encode_stream", "decode_client_payload", "snowflakes_to_int", "Close", "Op"]
