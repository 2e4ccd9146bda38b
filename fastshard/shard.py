"""WebsocketShard: one Discord gateway connection over picows.

This is the thin asyncio layer.  The protocol rules live in ``gateway.py``
(a sans-I/O state machine), the codecs behind ``codec.make_decoder``, the
rate limits in ``ratelimit.py``; this module owns the socket, the timers, the
reconnect loop and the user's callbacks.
"""
from __future__ import annotations

import asyncio
import functools
import math
import random
import sys
from enum import IntEnum
from typing import Any, AsyncIterator, Iterable, Optional, SupportsInt, Union, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import picows

from . import close_codes, opcodes
from .codec import DEFAULT_MAX_MESSAGE_SIZE, make_decoder, make_encoder
from .errors import (ConnectionFailedError, NotConnectedError, PayloadTooLargeError, RateLimitedError,
                     ShardError)
from .emitter import EVENT_NAMES, EventEmitter, EventStream
from .gateway import Emit, Fail, GatewayState, Reconnect, Send
from .identify_queue import IdentifyQueue
from .ratelimit import SlidingWindow

__all__ = ["WebsocketShard", "ShardStatus", "EVENT_NAMES"]


_NOT_EVENTS = frozenset({"READY", "RESUMED"})
# Shared by every shard that does not set its own: a process may hold thousands of shards.
_DEFAULT_PROPERTIES = {"os": sys.platform, "browser": "fastshard", "device": "fastshard"}
_NO_EVENTS: frozenset[str] = frozenset()

_MSG_TEXT = picows.WSMsgType.TEXT
_MSG_BINARY = picows.WSMsgType.BINARY
_MSG_CONTINUATION = picows.WSMsgType.CONTINUATION
_MSG_PONG = picows.WSMsgType.PONG
_MSG_CLOSE = picows.WSMsgType.CLOSE



class ShardStatus(IntEnum):
    """Where the shard stands.  CONNECTED means READY or RESUMED was received."""

    CONNECTING = 0
    CONNECTED = 1
    RECONNECTING = 2
    CLOSING = 3
    CLOSED = 4
    IDENTIFYING = 5


class _Listener(picows.WSListener):
    """picows callbacks for one websocket; hands frames to the shard's decoder."""

    def __init__(self, shard: "WebsocketShard") -> None:
        self.shard = shard
        # Bound once: these two run for every frame.
        self._feed = shard._decoder.feed_frame
        self._deliver = shard._on_payload
        self.transport: Optional[picows.WSTransport] = None
        self.close_code: Optional[int] = None
        self.close_reason = ""
        #: Why *we* closed this connection: None (we did not), "close" or "reconnect".
        self.intent: Optional[str] = None
        self.disconnected = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        if self.intent is not None:
            # Abandoned while its handshake was in flight (close(), a failure, a cancelled
            # attempt): nobody will read this socket, so it must not stay open.
            transport.send_close(cast(picows.WSCloseCode, close_codes.CLIENT_CLOSE), b"closing")
            transport.disconnect()
        elif self.shard._listener is self:
            self.shard._decoder.watch_read_buffer(transport)  # picows' buffer given back after large frames

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        # On a connection we are leaving nothing counts any more but its close frame.
        if self.intent is None and self.shard._listener is self:
            try:
                payload = self._feed(frame)  # None for control frames and unfinished messages
            except ShardError as exc:
                self.shard._reconnect_now(close_codes.CLIENT_BAD_DATA, f"undecodable data from the gateway: {exc}")
                return
            if payload is not None:
                self._deliver(payload)
                return
        msg_type = frame.msg_type
        if msg_type is _MSG_CLOSE:
            self._on_close_frame(transport, frame)
        elif msg_type is _MSG_PONG:
            self.shard._on_pong(frame.get_payload_as_bytes())

    def _on_close_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        code = int(cast(SupportsInt, frame.get_close_code()))
        if transport.is_close_frame_sent:
            transport.disconnect()  # the answer to our own close: the handshake is complete
            return
        if code:
            self.close_code = code
            self.close_reason = frame.get_close_reason() or ""
            transport.send_close(frame.get_close_code())
        else:  # a close frame without a code (1005): nothing to echo, nothing to act on
            transport.send_close()
        transport.disconnect()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.disconnected = True
        self.shard._on_disconnected(self)


class WebsocketShard(EventEmitter):
    """One Discord gateway connection.

    See the README for the full guide.  All arguments are keyword-only; only
    ``token`` and ``intents`` are required.
    """

    #: Reconnect backoff: the first retry after ``reconnect_first_delay`` (at once by
    #: default), then base * 2**n seconds with jitter, capped.
    reconnect_first_delay = 0.0
    reconnect_base_delay = 1.0
    reconnect_max_delay = 60.0
    #: Seconds to wait for the websocket handshake, and for the gateway to answer our close frame.
    connect_timeout = 10.0
    close_timeout = 2.0
    #: Seconds an open websocket may go without HELLO before it counts as a zombie (Discord
    #: sends HELLO at once; without this bound a silent gateway would stall the shard forever).
    hello_timeout = 10.0
    #: Discord's limits on what a client sends.
    COMMAND_LIMIT = (120, 60.0)
    PRESENCE_LIMIT = (5, 20.0)
    MAX_PAYLOAD_SIZE = 4096
    #: Consecutive connections that got HELLO but lost before READY/RESUMED that are
    #: retried at once; past this many the gateway is misbehaving and backoff applies.
    reconnect_unsettled_limit = 3

    # Connection lifecycle state, set per instance once used (class defaults keep __init__ short).
    #: The websocket handshake in flight (a task of its own, never cancelled: see _open()).
    _handshake: Optional["asyncio.Task[Any]"] = None
    #: Connections in a row that reached HELLO and were lost before READY/RESUMED.
    _unsettled = 0
    #: Fires hello_timeout after a connection opened (see _hello_overdue).
    _hello_timer: Optional[asyncio.TimerHandle] = None

    def __init__(
        self,
        *,
        token: str,
        intents: int,
        id: int = 0,
        total: int | None = None,
        large_threshold: int | None = None,
        presence: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        version: int = 10,
        encoding: str = "json",
        compression: int = 0,
        url: str = "gateway.discord.gg",
        session: str | None = None,
        sequence: int = 0,
        resume_url: str | None = None,
        big_ints_as_str: bool = True,
        disabled_events: Iterable[str] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        identify_queue: IdentifyQueue | None = None,
        raw_dispatches: bool = False,
    ) -> None:
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, not {type(token).__name__}")
        token = token.strip()
        if token[:4].lower() == "bot ":
            token = token[4:].strip()  # IDENTIFY takes the bare token; "Bot " belongs to HTTP headers
        if not token:
            raise ValueError("token must not be empty")
        _check_int("intents", intents, minimum=0)
        _check_int("id", id, minimum=0)
        if total is None:
            total = id + 1
        _check_int("total", total, minimum=1)
        if id >= total:
            raise ValueError(f"id ({id}) must be lower than total ({total})")
        if large_threshold is not None:
            _check_int("large_threshold", large_threshold, minimum=50)
            if large_threshold > 250:
                raise ValueError(f"large_threshold must be between 50 and 250, not {large_threshold}")
        if presence is not None and not isinstance(presence, dict):
            raise TypeError(f"presence must be a dict or None, not {type(presence).__name__}")
        if properties is None:
            properties = _DEFAULT_PROPERTIES
        elif not isinstance(properties, dict):
            raise TypeError(f"properties must be a dict or None, not {type(properties).__name__}")
        _check_int("version", version, minimum=1)
        if encoding not in ("json", "etf"):
            raise ValueError(f"encoding must be 'json' or 'etf', not {encoding!r}")
        if isinstance(compression, bool) or compression not in (0, 1, 2, 3):
            raise ValueError(f"compression must be 0 (none), 1 (payload), 2 (zlib-stream) or 3 (zstd-stream), "
                             f"not {compression!r}")
        if not isinstance(url, str) or not url.strip():
            raise ValueError(f"url must be a non-empty str, not {url!r}")
        if session is not None and (not isinstance(session, str) or not session):
            raise ValueError(f"session must be a non-empty str or None, not {session!r}")
        _check_int("sequence", sequence, minimum=0)
        if resume_url is not None and (not isinstance(resume_url, str) or not resume_url.strip()):
            raise ValueError(f"resume_url must be a non-empty str or None, not {resume_url!r}")
        if resume_url is not None and session is None:
            raise ValueError("resume_url is only used with session= (the session to resume there)")
        if isinstance(disabled_events, str):
            raise TypeError("disabled_events must be a collection of event names, not a str")
        _check_int("max_message_size", max_message_size, minimum=4096)
        if identify_queue is not None and not callable(getattr(identify_queue, "acquire", None)):
            raise TypeError(f"identify_queue must have an async acquire(shard_id) method (an IdentifyQueue), "
                            f"not {type(identify_queue).__name__}")

        self.id = id
        self.total = total
        self.version = version
        self.encoding = encoding
        self.compression = compression
        self._base_url = url.strip()
        # raw_dispatches: dispatches (but READY/RESUMED) reach the "event" callbacks as
        # (t, s, raw bytes) without decoding d, for code that only forwards them (fastshard.redis).
        self.raw_dispatches = bool(raw_dispatches)
        raw_option = {"raw_dispatches": True} if raw_dispatches else {}
        self._decoder = make_decoder(encoding, compression, big_ints_as_str=big_ints_as_str,
                                     max_message_size=max_message_size,
                                     disabled_events=frozenset(disabled_events) or _NO_EVENTS, **raw_option)
        self._max_message_size = max_message_size
        if session is not None:
            self._decoder.sequence = sequence
        self._encoder = make_encoder(encoding)
        self._gateway = GatewayState(
            token=token, intents=intents, shard=(id, total), properties=properties,
            compress=compression == 1, large_threshold=large_threshold, presence=presence,
            session_id=session, resume_url=resume_url, sequence=self._decoder)

        self._status = ShardStatus.CLOSED
        self._init_events()
        self._listener: Optional[_Listener] = None
        self._heartbeat_timer: Optional[asyncio.TimerHandle] = None
        self._reconnect_task: Optional[asyncio.Task[None]] = None
        self._reconnect_attempt = 0
        self._closing = False
        self._commands = SlidingWindow(*self.COMMAND_LIMIT)
        self._presences: Optional[SlidingWindow] = None  # made on the first presence update
        self._pings: list[tuple[bytes, float, asyncio.Future[float]]] = []
        self._ping_counter = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        #: Every IDENTIFY waits on this queue (RESUME never does); None: identify at once.
        self.identify_queue = identify_queue
        self._identify_task: Optional[asyncio.Task[None]] = None

    # -- public state -------------------------------------------------------
    @property
    def status(self) -> ShardStatus:
        return self._status

    @property
    def last_ping(self) -> float | None:
        """Milliseconds of the last heartbeat ACK or ping(); None before any."""
        return self._gateway.last_ping

    @property
    def session_id(self) -> str | None:
        return self._gateway.session_id

    @property
    def sequence(self) -> int | None:
        return self._decoder.sequence  # type: ignore[no-any-return]

    @property
    def resume_url(self) -> str | None:
        return self._gateway.resume_url

    @property
    def bytes_received(self) -> int:
        """Bytes of gateway messages received on the wire (compressed, if compression is on)."""
        return self._decoder.wire_bytes  # type: ignore[no-any-return]

    @property
    def bytes_decoded(self) -> int:
        """Bytes of gateway messages after decompression."""
        return self._decoder.raw_bytes  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (f"<WebsocketShard id={self.id}/{self.total} status={self._status.name} "
                f"session={self.session_id!r} sequence={self.sequence!r}>")

    # -- events (on/once/off and the callbacks' bookkeeping: EventEmitter) ----
    def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every dispatch as ``{"op": 0, "t", "s", "d"}``, in order, from this call on.

        The iteration ends when ``close()`` is called, and raises the error when
        the shard stops for good (the same error the ``close`` event carries).
        """
        stream: EventStream[dict[str, Any]] = EventStream(self)
        return stream

    def _debug(self, message: str) -> None:
        self._emit("debug", message)

    # -- lifecycle ----------------------------------------------------------
    async def connect(self) -> None:
        """Open the websocket; returns once it is open.  READY/RESUMED follow as events.

        Resumes when the shard holds a session (given at construction, or kept
        from before ``close()``), identifies otherwise.  Raises
        ``ConnectionFailedError`` when the gateway cannot be reached.
        """
        if self._status not in (ShardStatus.CLOSED,):
            raise ShardError(f"connect() called while the shard is {self._status.name}; close() it first")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._reconnect_attempt = 0
        self._status = ShardStatus.CONNECTING
        try:
            live = await self._open()
        except BaseException:
            self._status = ShardStatus.CLOSED
            raise
        if not live:
            # Lost inside its own handshake (op 7 or a close right after HELLO): connect()
            # was the pending attempt, so the next one is started here (see _start_reconnect).
            self._spawn_attempt()

    async def close(self) -> None:
        """Close the connection, keeping the session resumable.  No ``close`` event fires."""
        if self._status == ShardStatus.CLOSED:
            return
        self._closing = True
        self._status = ShardStatus.CLOSING
        self._cancel_heartbeat()
        handshake = self._handshake
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if handshake is not None and not handshake.done():
            # A handshake in flight ends on its own (picows bounds it by connect_timeout); waiting
            # for it means no socket outlives close(): its listener closes it once open.
            await asyncio.wait([handshake], timeout=self.connect_timeout)
        listener = self._listener
        if listener is not None and not listener.disconnected and listener.transport is not None:
            if listener.intent is None:
                # Wait for the gateway's answer: closing the socket while events still stream in makes
                # the kernel reset the connection, and the gateway may never read our close frame.
                self._leave(listener, "close", close_codes.CLIENT_CLOSE, "closing; the session stays resumable",
                            handshake=True)
            try:
                await asyncio.wait_for(listener.transport.wait_disconnected(), self.close_timeout)
            except Exception:
                listener.transport.disconnect(graceful=False)
        self._listener = None
        self._status = ShardStatus.CLOSED
        self._finish(None)

    async def ping(self, data: Union[str, bytes, bytearray, None] = None, timeout: float = 10.0) -> float:
        """Send a websocket ping; returns the round trip in milliseconds (also ``last_ping``).

        ``data`` (str or bytes) must encode to at most 125 bytes.  Raises
        ``NotConnectedError`` without an open connection or if it closes
        first, and ``asyncio.TimeoutError`` when no pong comes within ``timeout``.
        """
        if data is None:
            self._ping_counter += 1
            payload = b"fastshard-%d" % self._ping_counter
        elif isinstance(data, str):
            payload = data.encode()
        elif isinstance(data, (bytes, bytearray)):
            payload = bytes(data)
        else:
            raise TypeError(f"ping data must be str, bytes or None, not {type(data).__name__}")
        if len(payload) > 125:
            raise ValueError(f"ping data must encode to at most 125 bytes, not {len(payload)}")
        transport = self._open_transport()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        entry = (payload, self._now(), future)
        self._pings.append(entry)
        transport.send_ping(payload)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            if entry in self._pings:
                self._pings.remove(entry)

    async def send(self, payload: dict[str, Any]) -> None:
        """Send a gateway command, after checking what Discord would punish.

        Raises ``TypeError``/``ValueError`` for a malformed payload,
        ``PayloadTooLargeError`` (a ``ValueError``) past 4096 encoded bytes,
        ``RateLimitedError`` when the command would pass a rate limit and
        ``NotConnectedError`` when the shard is not CONNECTED.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
        op = payload.get("op")
        if type(op) is not int:
            raise TypeError(f"payload['op'] must be an int, not {type(op).__name__}")
        if "d" not in payload:
            raise ValueError("payload must have a 'd' key (use None for no data)")
        if op not in opcodes.SENDABLE:
            raise ValueError(f"op {op} is not a command a client can send (Discord closes with 4001)")
        if self._status != ShardStatus.CONNECTED:
            raise NotConnectedError(f"cannot send: the shard is {self._status.name}, not CONNECTED")
        data = self._encoder.encode({"op": op, "d": payload["d"]})
        if len(data) > self.MAX_PAYLOAD_SIZE:
            raise PayloadTooLargeError(f"payload encodes to {len(data)} bytes; the gateway accepts at most "
                                       f"{self.MAX_PAYLOAD_SIZE}")
        now = self._now()
        wait = self._commands.retry_after(now, self.COMMAND_LIMIT[0] - self._heartbeat_reserve())
        if wait:
            raise RateLimitedError(wait, f"gateway commands ({self.COMMAND_LIMIT[0]} per {self.COMMAND_LIMIT[1]:g} s,"
                                         f" {self._heartbeat_reserve()} kept for heartbeats)")
        if op == opcodes.PRESENCE_UPDATE:
            if self._presences is None:
                self._presences = SlidingWindow(*self.PRESENCE_LIMIT)
            wait = self._presences.retry_after(now)
            if wait:
                raise RateLimitedError(wait, f"presence updates ({self.PRESENCE_LIMIT[0]} per "
                                             f"{self.PRESENCE_LIMIT[1]:g} s)")
            self._presences.hit(now)
        self._commands.hit(now)
        self._write(data)

    # -- internals: connection ---------------------------------------------
    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _heartbeat_reserve(self) -> int:
        """Commands kept free per window for heartbeats (and gateway-requested ones)."""
        interval = self._gateway.heartbeat_interval or 41.25
        beats = math.ceil(self.COMMAND_LIMIT[1] / interval) + 1
        return min(beats + 1, self.COMMAND_LIMIT[0] // 2)

    def _url(self) -> str:
        base = self._base_url
        if self._gateway.can_resume and self._gateway.resume_url:
            base = self._gateway.resume_url
        return _gateway_url(base, self.version, self.encoding, self.compression)

    async def _open(self) -> bool:
        """Open a websocket; True when it is live, False when it was lost or abandoned meanwhile.

        Whoever awaits this (connect() or the reconnect task) is the pending
        attempt until it returns: a connection lost inside its own handshake
        (picows delivers the frames that came with the 101 before ws_connect()
        returns, so op 7 or a close right after HELLO lands here) does not start
        another attempt in _start_reconnect(); the caller sees False and makes
        the next one.  With True, the live connection owns what comes next.
        """
        url = self._url()
        self._decoder.reset()
        self._gateway.connection_opened()
        self._commands.clear()
        self._cancel_heartbeat()
        listener = _Listener(self)
        self._listener = listener
        self._debug(f"connecting to {url}")
        # The handshake runs as a task of its own that nobody cancels: cancelling ws_connect()
        # mid-handshake leaves picows' socket open, unreachable.  An attempt that is cancelled
        # (close(), a failure) abandons it instead, and the listener closes it once it opens.
        handshake = asyncio.ensure_future(picows.ws_connect(
            lambda: listener, url,
            websocket_handshake_timeout=self.connect_timeout,
            max_frame_size=self._max_message_size,
            enable_auto_pong=True,
        ))
        handshake.add_done_callback(_retrieve)
        self._handshake = handshake
        try:
            await asyncio.shield(handshake)
        except asyncio.CancelledError:
            if listener.intent is None:
                if listener.transport is not None:  # open already: close it now
                    self._leave(listener, "close", close_codes.CLIENT_CLOSE, "closing")
                else:  # still opening: on_ws_connected closes it
                    listener.intent = "close"
            raise
        except Exception as exc:
            if self._listener is listener:
                self._listener = None
            raise ConnectionFailedError(url, exc) from exc
        finally:
            if self._handshake is handshake:
                self._handshake = None
        if self._closing or self._listener is not listener:
            # close() or a failure (or the loss of this very connection) came during the handshake.
            if listener.intent is None:
                self._leave(listener, "close", close_codes.CLIENT_CLOSE, "closing")
            return False
        self._hello_timer = asyncio.get_running_loop().call_later(self.hello_timeout, self._hello_overdue, listener)
        return True

    def _hello_overdue(self, listener: _Listener) -> None:
        if listener is self._listener and listener.intent is None and not listener.disconnected \
                and not self._gateway.hello_received:
            self._reconnect_now(close_codes.CLIENT_ZOMBIE, f"zombie connection: no HELLO within "
                                                           f"{self.hello_timeout:g} s")

    def _open_transport(self) -> picows.WSTransport:
        listener = self._listener
        if listener is None or listener.transport is None or listener.disconnected or listener.intent:
            raise NotConnectedError(f"the shard has no open connection (status {self._status.name})")
        return listener.transport

    def _write(self, data: bytes) -> None:
        transport = self._open_transport()
        transport.send(_MSG_BINARY if self._encoder.binary else _MSG_TEXT, data)

    def _leave(self, listener: _Listener, intent: str, code: int, reason: str, *, handshake: bool = False) -> None:
        """Close a connection on our side, saying why (never 1000/1001).

        With ``handshake`` the socket stays open until the gateway answers the
        close frame (the caller bounds the wait); otherwise it goes at once,
        which is what a zombie or a reconnect wants.
        """
        listener.intent = intent
        transport = listener.transport
        if transport is not None and not listener.disconnected:
            try:
                transport.send_close(cast(picows.WSCloseCode, code),
                                     reason.encode()[:120].decode("utf-8", "ignore").encode())
            finally:
                if not handshake:
                    transport.disconnect()

    def _reconnect_now(self, code: int, reason: str) -> None:
        """Leave the current connection and resume on a new one."""
        self._debug(f"reconnecting to resume: {reason}")
        listener = self._listener
        self._cancel_heartbeat()
        if not self._closing:
            self._status = ShardStatus.RECONNECTING  # decided now; the next attempt starts once this socket is gone
        if listener is not None and not listener.disconnected:
            self._leave(listener, "reconnect", code, reason)
        else:
            self._start_reconnect()

    def _on_disconnected(self, listener: _Listener) -> None:
        if listener is not self._listener:
            return
        self._count_unsettled()
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self._cancel_heartbeat()
        self._fail_pings(NotConnectedError("the connection closed before the pong arrived"))
        if self._closing or listener.intent == "close":
            return
        if listener.intent == "reconnect":
            self._start_reconnect()
            return
        decision = self._gateway.connection_lost(listener.close_code, listener.close_reason)
        if isinstance(decision, Fail):
            self._fail(decision.error)
        else:
            self._debug(f"connection lost: {decision.reason}")
            self._start_reconnect()

    # The lifecycle invariant.  In every status but CLOSED and CONNECTED exactly one
    # thing is under way, so the shard can never go silent:
    #   - a pending attempt: the reconnect task (backing off or opening), or connect()
    #     awaiting its handshake (self._handshake), or
    #   - one live connection (self._listener), whose loss reaches _on_disconnected(),
    #     which starts the next attempt or stops the shard with a ``close`` event.
    # CLOSED has neither; CONNECTED has the live connection and no attempt.  Only
    # _start_reconnect() starts an attempt and only when none is pending; an attempt
    # ends by handing over a live connection (_open() -> True) or by trying again.
    # _lifecycle_violation() checks this (the tests call it at every loop iteration).

    def _start_reconnect(self) -> None:
        """Open a new connection: it resumes when a session exists, identifies otherwise.

        Only reached for losses after which Discord expects a reconnect (see
        ``GatewayState.connection_lost``) or when we left on purpose (op 7,
        op 9 d=true, zombie, bad data): a session that is gone is never
        re-identified behind the user's back.
        """
        self._listener = None
        if self._closing:
            return
        self._status = ShardStatus.RECONNECTING
        if self._handshake is None:
            self._spawn_attempt()
        # else: the connection was lost inside the handshake of the pending attempt, which
        # sees _open() return False and makes the next attempt itself.

    def _spawn_attempt(self) -> None:
        if not self._closing and self._reconnect_task is None:
            self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        try:
            while not self._closing:
                delay = self._backoff(self._reconnect_attempt)
                self._reconnect_attempt += 1
                if delay:
                    self._debug(f"waiting {delay:.2f} s before reconnect attempt {self._reconnect_attempt}")
                    await asyncio.sleep(delay)
                    if self._closing:
                        return
                try:
                    if await self._open():
                        return  # the live connection owns what comes next
                except ConnectionFailedError as exc:
                    self._debug(f"reconnect attempt {self._reconnect_attempt} failed: {exc}")
        finally:
            if self._reconnect_task is asyncio.current_task():
                self._reconnect_task = None

    def _count_unsettled(self) -> None:
        """Backoff bookkeeping when a connection ends: did the gateway answer it?

        Backoff protects a gateway that does not answer (refused, timed out) and
        spreads shards that fell together.  A connection that got HELLO proves the
        gateway is up: what ended it (op 7, a reset right after HELLO, a resumable
        close mid-resume) is a new fault, retried at once like the first one, so
        fault-to-RESUMED stays one round trip instead of 0.5-1 s of sleep.  Only
        ``reconnect_unsettled_limit`` such connections in a row are retried at
        once; then backoff grows again, so a gateway that drops every session
        before READY/RESUMED is not hammered.
        """
        gateway = self._gateway
        if gateway.established:
            self._unsettled = 0
        elif gateway.hello_received:
            self._unsettled += 1
            if self._unsettled <= self.reconnect_unsettled_limit:
                self._reconnect_attempt = 0

    def _backoff(self, attempt: int) -> float:
        if attempt == 0:
            return self.reconnect_first_delay
        ceiling: float = min(self.reconnect_max_delay, self.reconnect_base_delay * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)  # jitter: shards that fell together spread out

    def _lifecycle_violation(self) -> Optional[str]:
        """What breaks the lifecycle invariant (see above) right now, or None."""
        attempt = self._reconnect_task is not None or self._handshake is not None
        listener = self._listener
        live = listener is not None and not listener.disconnected
        status = self._status
        if status == ShardStatus.CLOSED:
            if self._reconnect_task is not None or live:
                return f"CLOSED with {'a reconnect task' if self._reconnect_task else 'a live connection'}"
        elif status == ShardStatus.CONNECTED:
            if not live:
                return "CONNECTED without a live connection"
        elif status != ShardStatus.CLOSING:
            if self._closing:
                return f"{status.name} after close()"
            if not attempt and not live:
                return f"{status.name} with no pending attempt and no live connection"
            if self._reconnect_task is not None and live and self._handshake is None:
                return f"{status.name} with a reconnect task beside a live connection"
        return None

    def _fail(self, error: ShardError) -> None:
        """Stop for good: status CLOSED, then the ``close`` event and the end of every event stream."""
        self._closing = True
        self._cancel_heartbeat()
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        listener, self._listener = self._listener, None
        if listener is not None and not listener.disconnected:
            self._leave(listener, "close", close_codes.CLIENT_CLOSE, "stopping")
        self._status = ShardStatus.CLOSED
        self._debug(f"shard stopped: {error}")
        self._finish(error)
        self._emit("close", error)

    def _finish(self, error: Optional[ShardError]) -> None:
        self._fail_pings(NotConnectedError("the shard closed before the pong arrived"))
        self._end_streams(error if error is not None else EventStream.END)

    def _fail_pings(self, error: Exception) -> None:
        pings, self._pings = self._pings, []
        for _, _, future in pings:
            if not future.done():
                future.set_exception(error)

    # -- internals: incoming ------------------------------------------------
    def _on_payload(self, payload: Any) -> None:
        # The per-dispatch hot path: every check here is paid once per event.
        # A tuple is a raw dispatch (t, s, raw) from a raw_dispatches decoder.
        if type(payload) is tuple or (payload.get("op") == 0 and payload.get("t") not in _NOT_EVENTS):
            gateway = self._gateway
            if gateway.resuming:
                gateway.replayed += 1
            callbacks = self._event_callbacks
            if callbacks is None:
                self._emit("event", payload)
            else:
                # _emit() inlined for the common case (no once() listener): one
                # Python call less per event and per callback.
                for callback in callbacks:
                    try:
                        result = callback(payload)
                    except Exception as exc:
                        self._callback_failed("event", callback, exc)
                        continue
                    if result is not None:
                        self._schedule(result, "event", callback)
            if self._streams:
                for ref in self._streams:
                    stream = ref()
                    if stream is not None:
                        stream._queue.put_nowait(payload)
            return
        self._apply(self._gateway.receive(payload, self._now()))

    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if action.payload["op"] == opcodes.IDENTIFY and self.identify_queue is not None:
                    self._identify_later(action.payload)
                else:
                    self._send_internal(action.payload)
            elif isinstance(action, Emit):
                if action.name in ("ready", "resumed"):
                    self._status = ShardStatus.CONNECTED
                    self._reconnect_attempt = 0
                self._emit(action.name, action.value)
            elif isinstance(action, Reconnect):
                self._reconnect_now(action.code, action.reason)
                return
            elif isinstance(action, Fail):
                self._fail(action.error)
                return
        self._schedule_heartbeat()

    def _identify_later(self, payload: dict[str, Any]) -> None:
        """IDENTIFY once the identify queue lets this shard through; heartbeats go on meanwhile."""
        self._cancel_identify()
        listener = self._listener
        self._identify_task = task = asyncio.ensure_future(self._identify_when_allowed(payload, listener))
        task.add_done_callback(self._identify_done)

    async def _identify_when_allowed(self, payload: dict[str, Any], listener: Optional[_Listener]) -> None:
        assert self.identify_queue is not None
        self._debug("waiting for the identify queue")
        try:
            await self.identify_queue.acquire(self.id)
        except ShardError as exc:  # the daily budget is spent: identifying would reset the token
            self._fail(exc)
            return
        if listener is not self._listener or listener is None or listener.intent is not None:
            # The connection went while we waited; the next connection asks again.
            self._debug("the connection closed while waiting to identify; the granted slot goes unused")
            return
        self._send_internal(payload)

    def _identify_done(self, task: asyncio.Task[None]) -> None:
        if self._identify_task is task:
            self._identify_task = None
        if not task.cancelled() and task.exception() is not None:
            self._fail(ShardError(f"the identify queue failed: {task.exception()!r}"))

    def _cancel_identify(self) -> None:
        task, self._identify_task = self._identify_task, None
        if task is not None and not task.done():
            task.cancel()

    def _send_internal(self, payload: dict[str, Any]) -> None:
        """Commands the protocol requires (heartbeat, identify, resume): counted, never refused."""
        op = payload["op"]
        if op == opcodes.IDENTIFY:
            self._status = ShardStatus.IDENTIFYING
        self._commands.hit(self._now())
        try:
            self._write(self._encoder.encode(payload))
        except NotConnectedError:
            return
        if op == opcodes.HEARTBEAT:
            self._debug(f"heartbeat sent (seq {payload['d']})")

    def _on_pong(self, data: bytes) -> None:
        for entry in self._pings:
            payload, sent_at, future = entry
            if payload == data:
                self._pings.remove(entry)
                ms = (self._now() - sent_at) * 1000.0
                self._gateway.last_ping = ms
                if not future.done():
                    future.set_result(ms)
                return

    # -- internals: heartbeat timer ----------------------------------------
    def _schedule_heartbeat(self) -> None:
        at = self._gateway.next_heartbeat_at
        timer = self._heartbeat_timer
        if timer is not None:
            if at is not None and timer.when() == at:
                return
            timer.cancel()
            self._heartbeat_timer = None
        if at is not None and self._loop is not None:
            self._heartbeat_timer = self._loop.call_at(at, self._heartbeat_due)

    def _cancel_heartbeat(self) -> None:
        # The identify wait belongs to the connection as the heartbeat does: they end together.
        self._cancel_identify()
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None

    def _heartbeat_due(self) -> None:
        self._heartbeat_timer = None
        if self._listener is None or self._listener.intent is not None:
            return
        self._apply(self._gateway.heartbeat_due(self._now()))


# Cached: every shard of a process connects to the same one or two bases, and building
# the query string costs about as much CPU as the rest of a connect.
@functools.lru_cache(maxsize=256)
def _gateway_url(base: str, version: int, encoding: str, compression: int) -> str:
    if "://" not in base:
        base = "wss://" + base
    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    query.update(v=str(version), encoding=encoding)
    if compression == 2:
        query["compress"] = "zlib-stream"
    elif compression == 3:
        query["compress"] = "zstd-stream"
    else:
        query.pop("compress", None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark an abandoned handshake's exception as seen (its attempt already reported or left)."""
    if not future.cancelled():
        future.exception()


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
