"""The gateway simulator: a real websocket server speaking Discord's gateway v10.

It listens on loopback by default, serves every path (``/`` for new
connections, ``/resume`` as READY's ``resume_gateway_url``), keeps sessions
across connections and records what each client did, so tests can assert on
the wire behaviour of a shard.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from functools import cached_property
from types import TracebackType
from typing import Any, Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve

from .commands import BadCommand, MembersRateLimit, update_presence
from .connection import SimConnection
from .identify_limits import IdentifyLimiter, IdentifyRecord, SessionStartBudget
from .protocol import Close
from .rest import API_PATH, process_request
from .session import SimSession
from .traffic import TrafficGenerator
from .world import ObjectMaker, World

__all__ = ["GatewaySimulator"]

log = logging.getLogger("fastshard.testing")


class GatewaySimulator:
    """A Discord gateway on a local port.  See the package docstring for usage.

    Sharding (one server for every shard of a bot):

    - ``shards``: the count GET /gateway/bot recommends.  The bot is then in
      ``guilds * shards`` guilds, and a session identifying with
      ``[shard_id, num_shards]`` gets those with ``(guild_id >> 22) %
      num_shards == shard_id`` (``guilds * shards / num_shards``, the
      remainder going to the lowest shard ids).
      None (the default): unsharded, every session gets ``guilds`` guilds.
    - ``max_concurrency`` and ``identify_interval``: one IDENTIFY per
      ``shard_id % max_concurrency`` per interval; a faster one is answered
      op 9 d=false and counted in ``identify_violations``.  Every judged
      IDENTIFY is in ``identify_log`` (``IdentifyRecord``: at, shard_id,
      num_shards, key, allowed).  ``identify_slack`` (default 10% of the
      interval) forgives server-side scheduling jitter.
    - ``session_start_limit`` per ``session_start_reset_after`` seconds:
      ``remaining`` drops on every IDENTIFY (refused ones too, never a
      RESUME); one more ends every session with 4004 and resets ``token``.
    - ``max_guilds_per_shard``: with ``shards`` set, a session that would
      hold more is closed 4011 (``required_shards`` still closes 4011 below
      that count).  4010 for a shard outside ``[0, num_shards)`` or a
      malformed ``shard``.

    The identify rules and the budget are enforced once ``shards`` or
    ``max_concurrency`` is given; unsharded, IDENTIFYs are only counted.
    ``api_url`` (``http://host:port/api/v10``) serves GET /gateway and
    GET /gateway/bot on the same port.
    """

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
                 before_hello: Callable[[SimConnection], Awaitable[None]] | None = None,
                 shards: int | None = None, max_concurrency: int | None = None, identify_interval: float = 5.0,
                 identify_slack: float | None = None, session_start_limit: int = 1000,
                 session_start_reset_after: float = 86_400.0, max_guilds_per_shard: int = 2500) -> None:
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
        self._init_sharding(shards, max_concurrency, identify_interval, identify_slack,
                            session_start_limit, session_start_reset_after, max_guilds_per_shard)
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
            process_request=functools.partial(process_request, self),  # GET /api/v10/gateway/bot
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

    # -- sharding: identify buckets, the session start budget, GET /gateway/bot ----
    def _init_sharding(self, shards: int | None, max_concurrency: int | None, identify_interval: float,
                       identify_slack: float | None, session_start_limit: int,
                       session_start_reset_after: float, max_guilds_per_shard: int) -> None:
        if shards is not None and (type(shards) is not int or shards < 1):
            raise ValueError(f"shards must be an integer >= 1 or None, not {shards!r}")
        if type(max_guilds_per_shard) is not int or max_guilds_per_shard < 1:
            raise ValueError(f"max_guilds_per_shard must be an integer >= 1, not {max_guilds_per_shard!r}")
        self.shards = shards                  # the recommended count; None: an unsharded bot
        # Discord's session start rules apply to a sharded simulator; an
        # unsharded one lets a test shard re-identify at once (and its budget
        # only counts), as the single-shard tests have always relied on.
        self.enforce_session_limits = shards is not None or max_concurrency is not None
        self.max_guilds_per_shard = max_guilds_per_shard
        # The server judges arrival times after its own scheduling delays, so by
        # default it forgives 10% of the interval (see IdentifyLimiter).
        slack = identify_interval * 0.1 if identify_slack is None else identify_slack
        self.identify_limiter = IdentifyLimiter(1 if max_concurrency is None else max_concurrency,
                                                identify_interval, slack)
        self.session_start_budget = SessionStartBudget(session_start_limit, session_start_reset_after,
                                                       self._now())
        self.identify_log: list[IdentifyRecord] = []  # every IDENTIFY judged by the bucket rule
        self.identify_violations = 0          # IDENTIFYs refused with op 9 for going too fast
        self.token_resets = 0                 # times the exhausted budget reset the token

    @staticmethod
    def _now() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # constructed outside a loop: the same clock
            return time.monotonic()

    @property
    def max_concurrency(self) -> int:
        return self.identify_limiter.max_concurrency

    @property
    def identify_interval(self) -> float:
        return self.identify_limiter.interval

    @property
    def recommended_shards(self) -> int:
        """``shards`` of GET /gateway/bot."""
        if self.shards is not None:
            return self.shards
        return max(self.required_shards or 1, 1)

    @property
    def session_start_remaining(self) -> int:
        return self.session_start_budget.remaining(self._now())

    @property
    def api_url(self) -> str:
        """The REST base (like ``https://discord.com/api/v10``): GET /gateway and /gateway/bot."""
        return f"http{self.url[2:]}{API_PATH}"

    def gateway_bot(self) -> dict[str, Any]:
        """The body of GET /gateway/bot, with Discord's field names."""
        now = self._now()
        budget = self.session_start_budget
        return {"url": self.url, "shards": self.recommended_shards,
                "session_start_limit": {"total": budget.total, "remaining": budget.remaining(now),
                                        "reset_after": budget.reset_after_ms(now),
                                        "max_concurrency": self.max_concurrency}}

    def guilds_per_session(self, num_shards: int, shard_id: int = 0) -> int:
        """Guilds a session identifying as ``[shard_id, num_shards]`` holds.

        With ``shards`` set the world has ``guilds * shards`` guilds, split by
        ``(guild_id >> 22) % num_shards`` (shard 0 holds the most); without
        it every session gets ``guilds``.
        """
        if self.shards is None:
            return self.guilds
        share, extra = divmod(self.guilds * self.shards, num_shards)
        return share + (shard_id < extra)

    def sharding_required(self, num_shards: int) -> str | None:
        """Why IDENTIFY with ``num_shards`` gets close 4011, or None when it is enough."""
        if self.required_shards is not None and num_shards < self.required_shards:
            return f"{num_shards} shards, {self.required_shards} required"
        if self.shards is None:
            return None  # unsharded: ``guilds`` is per session whatever num_shards says
        held = self.guilds_per_session(num_shards)
        if held > self.max_guilds_per_shard:
            return f"{held} guilds per shard with {num_shards} shards, at most {self.max_guilds_per_shard}"
        return None

    def judge_identify(self, shard_id: int, num_shards: int) -> bool:
        """The bucket rule for one IDENTIFY arriving now; False: answer op 9 d=false."""
        limiter, now = self.identify_limiter, self._now()
        if self.enforce_session_limits:
            record = limiter.attempt(shard_id, num_shards, now)
        else:
            record = IdentifyRecord(now, shard_id, num_shards, limiter.key(shard_id), True)
        self.identify_log.append(record)
        if not record.allowed:
            self.identify_violations += 1
            self._log(f"identify of shard {shard_id} too fast for key {record.key}: op 9")
        return record.allowed

    def spend_session_start(self) -> bool:
        """Count one IDENTIFY against the daily budget; False: none was left (and that is enforced)."""
        return self.session_start_budget.spend(self._now()) or not self.enforce_session_limits

    async def exhaust_session_starts(self) -> None:
        """An IDENTIFY over the daily limit.

        gateway.mdx: "Upon hitting this limit, all active sessions for the app
        will be terminated, the bot token will be reset".  Discord does not say
        which close code the sessions get; a bot sees its token refused from
        then on, so the simulator closes them 4004 Authentication failed, and
        the old token no longer works for IDENTIFY, RESUME or GET /gateway/bot.
        """
        self.token = "reset-%032x" % self._rng.getrandbits(128)
        self.token_resets += 1
        self._log("session start limit exhausted: every session terminated, token reset")
        for session in self.sessions.values():
            session.invalidate()
        open_conns = [c for c in self.connections if not c.closed]
        await asyncio.gather(*(c._close_with(Close.AUTHENTICATION_FAILED, "session start limit exhausted, token reset")
                               for c in open_conns), return_exceptions=True)

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
            gen = ObjectMaker(f"guilds:{self.seed}:{shard_id}:{total}")
            ids: list[str] = []
            count = self.guilds_per_session(total, shard_id)
            while len(ids) < count:
                # Move the timestamp to the next one that routes here: O(1) per
                # guild where sampling would take ~total tries (10,000 shards).
                gid = int(gen.snowflake())
                ms = gid >> 22
                ids.append(str((ms + (shard_id - ms) % total) << 22 | gid & 0x3FFFFF))
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
        for i, gid in enumerate(session.guild_ids):
            self.world.guild(gid, self.guild_members, large=i < self.large_guilds)
        presence = session.identify.get("presence")
        if presence is not None:
            try:  # IDENTIFY's initial presence is the bot's in its guilds
                update_presence(gen, presence)
            except BadCommand:
                pass  # an unusable presence leaves the bot online
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
