"""One client connection to the simulator: the server side of the gateway protocol.

Everything a test needs to see (what the client sent, how it closed) and to
do (dispatch, op 7/9/1, close, drop, stop ACKing, split or fragment frames)
hangs off :class:`SimConnection`.
"""
from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from . import commands
from .compression import COMPRESSION_NAMES, MessagePacker, WireMessage, split_bytes
from .encoding import ENCODINGS, ClientDecodeError, decode_client_payload, encode_payload
from .protocol import (ALL_INTENTS, API_VERSION, CLIENT_OPS, CLOSE_REASONS, PRIVILEGED_INTENTS,
                       Close, Op)
from .intents_filter import apply_intents
from .session import SimSession

if TYPE_CHECKING:
    from .server import GatewaySimulator
    from .traffic import TrafficGenerator

__all__ = ["SimConnection"]

FRAGMENTS_PER_MESSAGE = 3


def _strip_bot(token: str) -> str:
    return token[4:] if token.startswith("Bot ") else token


class SimConnection:
    """The simulator's side of one websocket connection."""

    def __init__(self, sim: GatewaySimulator, ws: ServerConnection, index: int) -> None:
        self.sim = sim
        self.ws = ws
        self.index = index
        target = urlsplit(ws.request.path if ws.request is not None else "/")
        self.path: str = target.path or "/"
        self.query: dict[str, str] = dict(parse_qsl(target.query))
        self.encoding: str = self.query.get("encoding", "json")
        self.compression: int = COMPRESSION_NAMES.get(self.query.get("compress", ""), 0)
        self.received: list[dict[str, Any]] = []
        self.undecodable: list[bytes | str] = []  # raw messages that failed to decode
        self.session: SimSession | None = None
        self.closed = False
        self.close_code: int | None = None     # from the client's close frame
        self.close_reason: str | None = None
        self.closed_by_client = False          # the client sent the first close frame
        self.server_close_code: int | None = None  # what the simulator closed with, if it did
        self.server_close_reason: str | None = None
        self.atom_keys = False                 # an ETF client sent atom map keys (4002)
        self.heartbeats = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        # Fault knobs a test may flip at any time.
        self.ack_heartbeats = True
        self.split_messages = 1
        self.fragment_frames = False
        self._packer: MessagePacker | None = None
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._window: collections.deque[float] = collections.deque()
        self._last_heartbeat = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<SimConnection #{self.index} {self.path} {self.encoding} compression={self.compression} "
                f"{state} received={len(self.received)}>")

    # -- waiting ------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_op(self, op: int, timeout: float = 5.0, count: int = 1) -> dict[str, Any]:
        """The ``count``-th payload with ``op`` the client sent (waits for it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [p for p in self.received if p.get("op") == op]
            if len(matches) >= count:
                return matches[count - 1]
            if self.closed:
                raise ConnectionError(
                    f"connection #{self.index} closed (client code {self.close_code}, server code "
                    f"{self.server_close_code}) before op {op} #{count} arrived; received ops "
                    f"{[p.get('op') for p in self.received]}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"op {op} #{count} not received within {timeout} s on connection "
                                   f"#{self.index}; received ops {[p.get('op') for p in self.received]}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """``(code, reason)`` of the client's close frame once the connection is gone.

        ``code`` is None when the TCP connection ended without a close frame.
        When the simulator closed first, this is the code the client echoed.
        """
        try:
            await asyncio.wait_for(self._closed_event.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection #{self.index} still open after {timeout} s") from None
        return self.close_code, self.close_reason

    # -- sending ------------------------------------------------------------
    @property
    def packer(self) -> MessagePacker:
        """This connection's encoding + compression context (stateful)."""
        if self._packer is None:
            raise RuntimeError("the connection has not negotiated its encoding yet")
        return self._packer

    async def _write(self, message: WireMessage) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(message.data)
        if self.fragment_frames and len(message.data) > 1:
            # An iterable makes websockets send one fragmented message:
            # a first frame, continuation frames, then an empty final frame.
            await self.ws.send(split_bytes(message.data, FRAGMENTS_PER_MESSAGE), text=message.text)
        else:
            await self.ws.send(message.data, text=message.text)

    async def send_payload(self, payload: dict[str, Any]) -> None:
        """Any payload, encoded and compressed as this connection negotiated."""
        await self.send_encoded(encode_payload(payload, self.encoding))

    async def send_encoded(self, raw: bytes) -> None:
        """An already encoded payload (see :func:`encode_payload`) through this connection's compression."""
        # Pack and write under one lock: with zlib-stream, pieces of two
        # messages must never interleave on the wire.
        async with self._send_lock:
            for message in self.packer.pack_encoded(raw, self.split_messages):
                await self._write(message)

    async def send_stream(self, raws: Iterable[bytes]) -> int:
        """Many pre-encoded payloads (see :func:`encode_stream`), packed and sent in order.

        Holds the send lock for the whole stream so nothing else interleaves
        with the compression context.  The session's sequence is not touched:
        use it for throughput, not for resume tests.  Returns messages sent.
        """
        sent = 0
        async with self._send_lock:
            packer = self.packer
            for raw in raws:
                for message in packer.pack_encoded(raw, self.split_messages):
                    await self._write(message)
                    sent += 1
        return sent

    async def send_messages(self, messages: list[WireMessage]) -> None:
        """Exact websocket messages, e.g. pre-packed by a benchmark with its own packer."""
        async with self._send_lock:
            for message in messages:
                await self._write(message)

    async def send_raw(self, data: bytes | str) -> None:
        """Bypass encoding and compression: bytes go as a binary frame, str as text."""
        async with self._send_lock:
            await self.ws.send(data)

    async def dispatch(self, t: str, d: Any) -> int:
        """A dispatch on this connection; it takes the session's next sequence number."""
        if self.session is None:
            raise RuntimeError(f"connection #{self.index} has no session yet (no IDENTIFY/RESUME)")
        payload = self.session.record(t, d)
        try:
            await self.send_payload(payload)
        except ConnectionClosed:
            pass  # buffered in the session: a RESUME will replay it
        return int(payload["s"])

    @property
    def traffic(self) -> TrafficGenerator:
        """The session's generator: events about the world this client was shown.

        ``await conn.dispatch("MESSAGE_CREATE", conn.traffic.message_create())``
        posts a message in one of the session's channels by one of its members.
        """
        if self.session is None:
            raise RuntimeError(f"connection #{self.index} has no session yet (no IDENTIFY/RESUME)")
        return self.sim.traffic_for(self.session)

    async def dispatch_world(self, t: str, d: Any) -> int | None:
        """A dispatch about the world, as the session's intents let it through (None: filtered out).

        :meth:`dispatch` sends exactly what it is given; this one drops events
        the client did not subscribe to and empties message content without
        MESSAGE_CONTENT, as Discord does.
        """
        session = self.session
        if session is None:
            raise RuntimeError(f"connection #{self.index} has no session yet (no IDENTIFY/RESUME)")
        seen = apply_intents(t, d, session.intents, self.sim.world.bot_user["id"])
        if seen is None:
            return None
        return await session.dispatch(t, seen)

    async def reconnect(self) -> None:
        """Op 7: ask the client to reconnect and resume."""
        await self.send_payload({"op": Op.RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool) -> None:
        """Op 9; with ``resumable=False`` the session is also forgotten."""
        if not resumable and self.session is not None:
            self.session.invalidate()
        await self.send_payload({"op": Op.INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def request_heartbeat(self) -> None:
        """Op 1 from the server: the client must heartbeat at once."""
        await self.send_payload({"op": Op.HEARTBEAT, "d": None, "s": None, "t": None})

    async def close(self, code: int, reason: str = "") -> None:
        """Server-initiated close with ``code`` (waits for the closing handshake)."""
        if self.server_close_code is None and not self.closed:
            self.server_close_code, self.server_close_reason = code, reason
        await self.ws.close(code, reason)

    async def _close_with(self, code: Close, detail: str = "") -> None:
        reason = CLOSE_REASONS[code]
        self.sim._log(f"#{self.index} closing {int(code)} {reason} {detail}".rstrip())
        await self.close(int(code), reason)

    async def drop(self) -> None:
        """Abort the TCP connection: no close frame, like a network failure."""
        self.ws.transport.abort()
        await self.wait_closed()

    # -- lifecycle ----------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """The websocket handler: HELLO, then answer what the client sends."""
        try:
            if not await self._check_query():
                return
            self._packer = MessagePacker(self.encoding, self.compression,
                                         payload_compression_threshold=self.sim.payload_compression_threshold)
            loop = asyncio.get_running_loop()
            if self.sim.before_hello is not None:
                # Tests of "op 7 before HELLO" and "the client waits for HELLO".
                await self.sim.before_hello(self)
            if self.sim.hello_delay > 0:
                await asyncio.sleep(self.sim.hello_delay)
            self._last_heartbeat = loop.time()
            interval_ms = max(1, round(self.sim.heartbeat_interval * 1000))
            await self.send_payload({"op": Op.HELLO, "s": None, "t": None,
                                     "d": {"heartbeat_interval": interval_ms,
                                           "_trace": ['["gateway-sim",{"micros":0.0}]']}})
            self._spawn(self._heartbeat_watchdog())
            while True:
                try:
                    data = await self.ws.recv(decode=False)
                except ConnectionClosed:
                    break
                await self._handle(data)
        except ConnectionClosed:
            pass
        finally:
            self._finish()

    async def _check_query(self) -> bool:
        if self.query.get("v") != API_VERSION:
            await self._close_with(Close.INVALID_API_VERSION, f"v={self.query.get('v')!r}")
            return False
        if self.encoding not in ENCODINGS:
            await self._close_with(Close.DECODE_ERROR, f"encoding={self.encoding!r}")
            return False
        compress = self.query.get("compress")
        if compress is not None and compress not in COMPRESSION_NAMES:
            await self._close_with(Close.DECODE_ERROR, f"compress={compress!r}")
            return False
        return True

    def _finish(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        protocol = self.ws.protocol
        rcvd = protocol.close_rcvd
        if rcvd is not None:
            self.close_code, self.close_reason = rcvd.code, rcvd.reason
        self.closed_by_client = bool(protocol.close_rcvd_then_sent)
        session = self.session
        if session is not None:
            if session.connection is self:
                session.connection = None
                session.detached_at = asyncio.get_running_loop().time()
            # Discord ends the session when the client closes with 1000/1001.
            if self.closed_by_client and self.close_code in (1000, 1001):
                session.invalidate()
        self.closed = True
        self._closed_event.set()
        self._notify()
        self.sim._log(f"#{self.index} closed: client code {self.close_code}, server code {self.server_close_code}")

    async def _heartbeat_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.sim.effective_heartbeat_timeout
        while True:
            remaining = self._last_heartbeat + timeout - loop.time()
            if remaining <= 0:
                # No heartbeat in time: the session times out, as on Discord.
                if self.session is not None:
                    self.session.invalidate()
                await self._close_with(Close.SESSION_TIMED_OUT, "no heartbeat received in time")
                return
            await asyncio.sleep(remaining)

    # -- receiving ----------------------------------------------------------
    async def _handle(self, data: bytes | str) -> None:
        loop = asyncio.get_running_loop()
        size = len(data)
        if size > self.sim.max_payload_size:
            self.undecodable.append(data)
            await self._close_with(Close.DECODE_ERROR, f"payload of {size} bytes")
            return
        try:
            payload, atom_keys = decode_client_payload(data, self.encoding)
        except ClientDecodeError as exc:
            self.undecodable.append(data)
            await self._close_with(Close.DECODE_ERROR, str(exc))
            return
        if not isinstance(payload, dict):
            self.undecodable.append(data)
            await self._close_with(Close.DECODE_ERROR, "payload is not an object")
            return
        self.received.append(payload)
        self._notify()
        if atom_keys:
            self.atom_keys = True
            await self._close_with(Close.DECODE_ERROR, "ETF map keys must be binaries, not atoms")
            return
        # Every command counts towards the limit, heartbeats included.
        limit, window = self.sim.rate_limit
        now = loop.time()
        self._window.append(now)
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) > limit:
            await self._close_with(Close.RATE_LIMITED, f"{len(self._window)} commands in {window} s")
            return
        op = payload.get("op")
        if type(op) is not int or op not in CLIENT_OPS:
            await self._close_with(Close.UNKNOWN_OPCODE, f"op {op!r}")
            return
        if op == Op.HEARTBEAT:
            await self._on_heartbeat(payload)
        elif op == Op.IDENTIFY:
            await self._on_identify(payload.get("d"))
        elif op == Op.RESUME:
            await self._on_resume(payload.get("d"))
        elif self.session is None:
            await self._close_with(Close.NOT_AUTHENTICATED, f"op {op} before IDENTIFY")
        else:
            await self._on_command(op, payload.get("d"))

    async def _on_heartbeat(self, payload: dict[str, Any]) -> None:
        d = payload.get("d")
        if d is not None and type(d) is not int:
            await self._close_with(Close.DECODE_ERROR, f"heartbeat d must be an integer or null, not {d!r}")
            return
        self.heartbeats += 1
        self._last_heartbeat = asyncio.get_running_loop().time()
        if self.ack_heartbeats:
            await self.send_payload({"op": Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str) or not token:
            return False
        expected = self.sim.token
        return expected is None or _strip_bot(token) == _strip_bot(expected)

    async def _on_identify(self, d: Any) -> None:
        # After op 9 d=false a client may identify again on the same connection.
        if self.session is not None and not self.session.invalidated:
            await self._close_with(Close.ALREADY_AUTHENTICATED, "second IDENTIFY")
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict) \
                or type(d.get("intents")) is not int:
            await self._close_with(Close.DECODE_ERROR, "IDENTIFY needs token, intents and properties")
            return
        if not self._token_ok(d.get("token")):
            await self._close_with(Close.AUTHENTICATION_FAILED)
            return
        # Every IDENTIFY of the app spends a session start, refused ones too
        # (a wrong token is no app's, so it spent nothing above).
        if not self.sim.spend_session_start():
            await self.sim.exhaust_session_starts()
            return
        shard = d.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and all(type(x) is int for x in shard)
                and 0 <= shard[0] < shard[1]):
            await self._close_with(Close.INVALID_SHARD, f"shard {shard!r}")
            return
        too_few = self.sim.sharding_required(shard[1])
        if too_few is not None:
            await self._close_with(Close.SHARDING_REQUIRED, too_few)
            return
        intents: int = d["intents"]
        if intents < 0 or intents & ~ALL_INTENTS:
            await self._close_with(Close.INVALID_INTENTS, f"intents {intents}")
            return
        allowed = self.sim.allowed_intents
        if allowed is not None and intents & PRIVILEGED_INTENTS & ~allowed:
            await self._close_with(Close.DISALLOWED_INTENTS, f"intents {intents}")
            return
        if not self.sim.judge_identify(shard[0], shard[1]):
            # Judged last, so only an IDENTIFY that would start a session
            # uses its bucket.  Too fast: Discord answers op 9, not a close.
            await self.send_payload({"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if d.get("compress") is True:
            self.packer.enable_payload_compression()
            self.compression = self.packer.compression
        session = self.sim._new_session(d, (shard[0], shard[1]), intents)
        self.session = session
        session.connection = self
        await session.dispatch("READY", self.sim._ready_data(session))
        for guild in self.sim._guild_creates(session):
            await session.dispatch("GUILD_CREATE", guild)
        self._start_stream()

    async def _on_resume(self, d: Any) -> None:
        if self.session is not None and not self.session.invalidated:
            await self._close_with(Close.ALREADY_AUTHENTICATED, "RESUME after IDENTIFY/RESUME")
            return
        if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
            await self._close_with(Close.DECODE_ERROR, "RESUME needs token, session_id and seq")
            return
        seq = d.get("seq")
        if seq is None:
            seq = 0
        if type(seq) is not int:
            await self._close_with(Close.DECODE_ERROR, f"RESUME seq must be an integer, not {seq!r}")
            return
        if not self._token_ok(d.get("token")):
            await self._close_with(Close.AUTHENTICATION_FAILED)
            return
        session = self.sim.sessions.get(d["session_id"])
        timeout = self.sim.session_timeout
        if session is not None and timeout is not None and session.connection is None \
                and session.detached_at is not None \
                and asyncio.get_running_loop().time() - session.detached_at > timeout:
            session.invalidate()  # Discord keeps a dropped session only for a while
        if session is None or session.invalidated or not session.can_replay_from(seq):
            await self.send_payload({"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if seq > session.seq:
            await self._close_with(Close.INVALID_SEQ, f"seq {seq} > session seq {session.seq}")
            return
        self.session = session
        old = session.connection
        session.connection = None  # the old connection (if any) stops receiving this session
        if old is not None and old is not self:
            self.sim._log(f"#{self.index} took session {session.session_id} over from #{old.index}")
        # Replay until caught up: dispatches made meanwhile are buffered and
        # picked up here, so nothing is lost and the order holds.
        sent = seq
        while True:
            missed = session.missed_after(sent)
            if not missed:
                break
            for payload in missed:
                await self.send_payload(payload)
                sent = int(payload["s"])
        session.connection = self
        await session.dispatch("RESUMED", {"_trace": ['["gateway-sim",{"micros":0.0}]']})
        self._start_stream()

    async def _on_command(self, op: int, d: Any) -> None:
        """Ops 3, 4, 8, 31 and 43, answered as Discord answers them (see :mod:`.commands`)."""
        session = self.session
        assert session is not None
        gen = self.sim.traffic_for(session)
        try:
            if op == Op.REQUEST_GUILD_MEMBERS:
                answers = commands.request_guild_members(gen, session.intents, d, self.sim.members_rate_limit,
                                                         asyncio.get_running_loop().time())
            elif op == Op.VOICE_STATE_UPDATE:
                answers = commands.update_voice_state(gen, session.session_id, d)
            elif op == Op.PRESENCE_UPDATE:
                answers = commands.update_presence(gen, d)
            elif op == Op.REQUEST_SOUNDBOARD_SOUNDS:
                answers = commands.request_soundboard_sounds(gen, d)
            else:
                answers = commands.request_channel_info(gen, d)
        except commands.BadCommand as exc:
            await self._close_with(Close.DECODE_ERROR, str(exc))
            return
        if not answers:
            self.sim._log(f"#{self.index} op {op}: nothing to answer")
        for t, answer in answers:
            await self.dispatch_world(t, answer)

    # -- generated traffic ---------------------------------------------------
    def _start_stream(self) -> None:
        if self.sim.event_rate > 0:
            self._spawn(self._stream())

    async def _stream(self) -> None:
        """Generated dispatches at ``event_rate`` per second until closed or ``event_limit``."""
        session = self.session
        assert session is not None
        traffic = self.sim._stream_traffic(self, session)
        loop = asyncio.get_running_loop()
        period = 1.0 / self.sim.event_rate
        limit = self.sim.event_limit
        sent = 0
        next_at = loop.time()
        while limit is None or sent < limit:
            now = loop.time()
            if now < next_at:
                await asyncio.sleep(next_at - now)
                now = loop.time()
            # Catch up after a slow send in batches instead of sleeping per event.
            due = min(int((now - next_at) / period) + 1, 1000)
            if limit is not None:
                due = min(due, limit - sent)
            if session.connection is not self or session.invalidated:
                return  # resumed elsewhere or replaced by a new IDENTIFY
            events = traffic.steady_stream(due, session.intents)
            if not events:
                return  # nothing these intents can receive
            # Dispatched through the session even if it moves to another
            # connection meanwhile: the world already changed, so the client must hear it.
            for t, d in events:
                await self.dispatch_world(t, d)
            sent += due
            next_at += due * period
