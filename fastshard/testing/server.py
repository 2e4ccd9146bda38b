"""The gateway simulator: a real websocket server speaking Discord's gateway v10.

It listens on loopback by default, serves every path (``/`` for new
connections, ``/resume`` as READY's ``resume_gateway_url``), keeps sessions
across connections and records what each client did, so tests can assert on
the wire behaviour of a shard.
"""
from __future__ import annotations

import asyncio
import logging
import random
from functools import cached_property
from types import TracebackType
from typing import Any, Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve

from .commands import MembersRateLimit
from .connection import SimConnection
from .session import SimSession
from .traffic import TrafficGenerator
from .world import World

__all__ = ["GatewaySimulator"]

log = logging.getLogger("fastshard.testing")


class GatewaySimulator:
    """A Discord gateway on a local port.  See the package docstring for usage."""

    # Seconds between two requests for *all* members of a guild (op 8 with
    # query "" and limit 0); Discord's is 30 s.  Tests may shorten it.
    request_all_members_interval = 30.0

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, guilds: int = 3,
                 heartbeat_interval: float = 41.25, heartbeat_timeout: float | None = None,
                 token: str | None = None, allowed_intents: int | None = None,
                 event_rate: float = 0.0, event_limit: int | None = None,
                 rate_limit: tuple[int, float] = (120, 60.0), guild_members: int | None = None,
                 large_guilds: int = 0, payload_compression_threshold: int = 256,
                 max_payload_size: int = 4096, replay_buffer: int = 50_000,
                 close_timeout: float = 2.0, hello_delay: float = 0.0,
                 required_shards: int | None = None, session_timeout: float | None = None,
                 before_hello: Callable[[SimConnection], Awaitable[None]] | None = None) -> None:
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be positive, not {heartbeat_interval!r}")
        if event_rate < 0:
            raise ValueError(f"event_rate must be >= 0, not {event_rate!r}")
        self.host = host
        self.port = port
        self.seed = seed
        self.guilds = guilds
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.token = token
        self.allowed_intents = allowed_intents
        self.event_rate = event_rate
        self.event_limit = event_limit
        self.rate_limit = rate_limit
        self.guild_members = guild_members    # members per GUILD_CREATE; None = varied
        self.large_guilds = large_guilds      # how many of each session's guilds are "large"
        self.payload_compression_threshold = payload_compression_threshold
        self.max_payload_size = max_payload_size
        self.replay_buffer = replay_buffer
        self.close_timeout = close_timeout
        self.required_shards = required_shards  # IDENTIFY with fewer shards in total: close 4011
        self.session_timeout = session_timeout  # a detached session dies after this many seconds
        self.hello_delay = hello_delay        # seconds between the handshake and HELLO
        self.before_hello = before_hello      # awaited with each new connection before HELLO
        self.connections: list[SimConnection] = []
        self.sessions: dict[str, SimSession] = {}
        self.debug_log: list[str] = []
        self._rng = random.Random(f"sessions:{seed}")
        self._guild_ids: dict[tuple[int, int], list[str]] = {}
        self._traffic: dict[str, TrafficGenerator] = {}
        self._server: Server | None = None
        self._arrived = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> GatewaySimulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = await serve(
            self._handler, self.host, self.port,
            compression=None,        # Discord does not negotiate permessage-deflate
            ping_interval=None,      # liveness is the gateway's heartbeat, not websocket pings
            max_size=1 << 20,        # bigger than 4096 so oversized payloads get Discord's 4002
            close_timeout=self.close_timeout,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection (1001, like a gateway going away) and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> GatewaySimulator:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Where clients connect (no query string: the client adds v/encoding/compress)."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"ws://{host}:{self.port}"

    @property
    def resume_url(self) -> str:
        """READY's ``resume_gateway_url``: the same server on the ``/resume`` path."""
        return f"{self.url}/resume"

    @property
    def effective_heartbeat_timeout(self) -> float:
        """Seconds without a heartbeat before the simulator closes 4009."""
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        # A client's first heartbeat comes after interval * jitter, then one
        # per interval: 1.5 intervals plus slack for a loaded test machine.
        return self.heartbeat_interval * 1.5 + 0.5

    async def wait_connection(self, n: int | None = None, timeout: float = 5.0) -> SimConnection:
        """The ``n``-th connection (0-based) once it exists; ``None``: the next one to arrive."""
        target = len(self.connections) if n is None else n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.connections) <= target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"connection #{target} did not arrive within {timeout} s "
                                   f"({len(self.connections)} so far)")
            event = self._arrived
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.connections[target]

    async def _handler(self, ws: ServerConnection) -> None:
        conn = SimConnection(self, ws, len(self.connections))
        self.connections.append(conn)
        self._arrived.set()
        self._arrived = asyncio.Event()
        self._log(f"#{conn.index} connected: {ws.request.path if ws.request else '?'}")
        await conn.run()

    def _log(self, message: str) -> None:
        self.debug_log.append(message)
        log.debug(message)

    # -- content --------------------------------------------------------------
    def guild_ids_for(self, shard_id: int, total: int) -> list[str]:
        """This simulator's guilds for a shard: ids that route to it by Discord's formula."""
        key = (shard_id, total)
        if key not in self._guild_ids:
            gen = TrafficGenerator(f"guilds:{self.seed}:{shard_id}:{total}")
            ids: list[str] = []
            while len(ids) < self.guilds:
                gid = gen.snowflake()
                if (int(gid) >> 22) % total == shard_id:
                    ids.append(gid)
            self._guild_ids[key] = ids
        return self._guild_ids[key]

    @cached_property
    def world(self) -> World:
        """The one world every session of this simulator sees (seeded by ``seed``)."""
        return World(self.seed)

    @cached_property
    def members_rate_limit(self) -> MembersRateLimit:
        return MembersRateLimit(self.request_all_members_interval)

    def traffic_for(self, session: SimSession) -> TrafficGenerator:
        """The session's content generator: its view of :attr:`world` (deterministic per seed and shard)."""
        gen = self._traffic.get(session.session_id)
        if gen is None:
            shard_id, total = session.shard
            gen = TrafficGenerator(f"traffic:{self.seed}:{shard_id}:{total}", session.guild_ids, world=self.world)
            self._traffic[session.session_id] = gen
        return gen

    def _new_session(self, identify: dict[str, Any], shard: tuple[int, int], intents: int) -> SimSession:
        session_id = "%032x" % self._rng.getrandbits(128)
        session = SimSession(session_id, identify, shard, intents, self.guild_ids_for(*shard),
                             replay_buffer=self.replay_buffer)
        self.sessions[session_id] = session
        return session

    def _ready_data(self, session: SimSession) -> dict[str, Any]:
        return self.traffic_for(session).ready(session.session_id, self.resume_url, session.shard,
                                               session.guild_ids)

    def _guild_creates(self, session: SimSession) -> list[dict[str, Any]]:
        gen = self.traffic_for(session)
        threshold = session.identify.get("large_threshold")
        # IDENTIFY's large_threshold is 50-250, default 50 (gateway-events.mdx, Identify).
        threshold = min(max(threshold, 50), 250) if type(threshold) is int else 50
        # Sent even without the GUILDS intent: the guilds READY announced must become
        # available for a client to work at all (the docs list GUILD_CREATE under GUILDS
        # but say it is "uniquely affected by intents"; its content follows them).
        return [gen.guild_create(gid, self.guild_members, large=i < self.large_guilds,
                                 intents=session.intents, large_threshold=threshold)
                for i, gid in enumerate(session.guild_ids)]

    def _stream_traffic(self, conn: SimConnection, session: SimSession) -> TrafficGenerator:
        # The stream is about the session's world view, so it only names what
        # the client was shown; it continues across RESUMEs.
        return self.traffic_for(session)
