"""The gateway session as a sans-I/O state machine.

It takes decoded payloads, timer ticks and connection losses together with the
current time, and returns actions for the I/O layer (``shard.py``) to carry
out.  It never touches a socket, a clock or a task, so every rule of the
protocol (when to identify or resume, heartbeat timing, zombie detection, what
a close code means) is testable without sleeping.

Dispatches other than READY and RESUMED never come here: the shard hands them
to the user directly, because they are the hot path.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

from . import close_codes, opcodes
from .errors import GatewayCloseError, InvalidSessionError, ShardError


class SequenceSource(Protocol):
    """Whatever tracks the sequence (the decoder, on the hot path)."""

    sequence: int | None


@dataclass(frozen=True)
class Send:
    """Send this payload now (not subject to the user's rate limit)."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Emit:
    """Fire a user event (``ready``, ``resumed``, ``debug``)."""

    name: str
    value: Any


@dataclass(frozen=True)
class Reconnect:
    """Close this connection with ``code`` (never 1000/1001) and resume on a new one."""

    code: int
    reason: str


@dataclass(frozen=True)
class Fail:
    """The shard stops for good: fire ``close`` with ``error``."""

    error: ShardError


Action = Union[Send, Emit, Reconnect, Fail]


class GatewayState:
    """One shard's session: identity, session id, heartbeat and resume bookkeeping."""

    def __init__(
        self,
        *,
        token: str,
        intents: int,
        shard: tuple[int, int],
        properties: dict[str, Any],
        compress: bool = False,
        large_threshold: int | None = None,
        presence: dict[str, Any] | None = None,
        session_id: str | None = None,
        resume_url: str | None = None,
        sequence: SequenceSource,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._token = token
        self._intents = intents
        self._shard = shard
        self._properties = properties
        self._compress = compress
        self._large_threshold = large_threshold
        self._presence = presence
        self._rand = rand
        self._seq = sequence
        self.session_id = session_id
        self.resume_url = resume_url
        #: Latency of the last heartbeat ACK, in milliseconds.
        self.last_ping: float | None = None
        self.connection_opened()

    # -- per-connection state ---------------------------------------------
    def connection_opened(self) -> None:
        """A new websocket is open: nothing is known about it yet."""
        self.hello_received = False
        self.heartbeat_interval: float | None = None
        self.next_heartbeat_at: float | None = None
        self._acked = True
        self._heartbeat_sent_at: float | None = None
        #: True between sending RESUME and receiving RESUMED.
        self.resuming = False
        #: Dispatches received while resuming (the replay), reported in ``resumed``.
        self.replayed = 0
        #: True once READY or RESUMED arrived on this connection.
        self.established = False

    @property
    def can_resume(self) -> bool:
        return self.session_id is not None

    def clear_session(self) -> None:
        self.session_id = None
        self.resume_url = None
        self._seq.sequence = None

    # -- inputs -----------------------------------------------------------
    def receive(self, payload: dict[str, Any], now: float) -> list[Action]:
        """A payload other than an ordinary dispatch arrived."""
        op = payload.get("op")
        d = payload.get("d")
        if op == opcodes.DISPATCH:
            return self._dispatch(payload.get("t"), d)
        if op == opcodes.HEARTBEAT_ACK:
            self._acked = True
            if self._heartbeat_sent_at is not None:
                self.last_ping = (now - self._heartbeat_sent_at) * 1000.0
            return []
        if op == opcodes.HELLO:
            return self._hello(d, now)
        if op == opcodes.HEARTBEAT:
            # The gateway asks for a heartbeat now; the regular schedule is unchanged.
            return [self._heartbeat(now)]
        if op == opcodes.RECONNECT:
            return [Reconnect(close_codes.CLIENT_RECONNECT, "gateway requested a reconnect (op 7)")]
        if op == opcodes.INVALID_SESSION:
            if d is True:
                return [Reconnect(close_codes.CLIENT_RECONNECT, "session invalidated but resumable (op 9)")]
            was_resuming = self.resuming
            self.clear_session()
            what = "the resume attempt was refused" if was_resuming else "the session was invalidated"
            return [Fail(InvalidSessionError(
                f"{what} (op 9 INVALID_SESSION, d={str(bool(d)).lower()}): the session data was cleared; "
                "call connect() again to identify a new session", resumable=bool(d)))]
        return [Emit("debug", f"ignored a payload with unknown op {op!r}")]

    def heartbeat_due(self, now: float) -> list[Action]:
        """The heartbeat timer fired (at ``next_heartbeat_at``)."""
        if self.heartbeat_interval is None:
            return []
        if not self._acked:
            self.next_heartbeat_at = None
            return [Reconnect(close_codes.CLIENT_ZOMBIE,
                              f"zombie connection: no heartbeat ACK within {self.heartbeat_interval:.3f} s")]
        self.next_heartbeat_at = now + self.heartbeat_interval
        return [self._heartbeat(now)]

    def connection_lost(self, code: int | None, reason: str) -> Reconnect | Fail:
        """The websocket closed without us asking: resume, or stop for good?"""
        why = close_codes.describe(code, reason)
        if code in close_codes.FATAL:
            self.clear_session()
            return Fail(GatewayCloseError(code, reason, why))
        if code in close_codes.SESSION_INVALIDATING:
            self.clear_session()
            return Fail(InvalidSessionError(why, code=code, reason=reason))
        if not self.can_resume:
            return Fail(GatewayCloseError(code or 1006, reason, f"{why}, before a session was established; "
                                                            "call connect() again to identify"))
        return Reconnect(code or 1006, why)

    # -- helpers ----------------------------------------------------------
    def _hello(self, d: Any, now: float) -> list[Action]:
        try:
            interval = float(d["heartbeat_interval"]) / 1000.0
        except (TypeError, KeyError, ValueError):
            return [Reconnect(close_codes.CLIENT_BAD_DATA, f"HELLO without a valid heartbeat_interval: {d!r}")]
        if interval <= 0:
            return [Reconnect(close_codes.CLIENT_BAD_DATA, f"HELLO with heartbeat_interval {interval * 1000} ms")]
        self.hello_received = True
        self.heartbeat_interval = interval
        # Jitter the first beat so that many shards started together do not beat in lockstep.
        self.next_heartbeat_at = now + interval * self._rand()
        self._acked = True
        if self.can_resume:
            self.resuming = True
            self.replayed = 0
            seq = self._seq.sequence
            return [Send({"op": opcodes.RESUME,
                          "d": {"token": self._token, "session_id": self.session_id,
                                "seq": 0 if seq is None else seq}})]
        return [Send({"op": opcodes.IDENTIFY, "d": self.identify_data()})]

    def identify_data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "token": self._token,
            "intents": self._intents,
            "properties": self._properties,
            "shard": list(self._shard),
            "compress": self._compress,
        }
        if self._large_threshold is not None:
            d["large_threshold"] = self._large_threshold
        if self._presence is not None:
            d["presence"] = self._presence
        return d

    def _heartbeat(self, now: float) -> Send:
        self._acked = False
        self._heartbeat_sent_at = now
        return Send({"op": opcodes.HEARTBEAT, "d": self._seq.sequence})

    def _dispatch(self, t: Any, d: Any) -> list[Action]:
        if t == "READY":
            if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
                return [Reconnect(close_codes.CLIENT_BAD_DATA, "READY without a session_id")]
            self.session_id = d["session_id"]
            url = d.get("resume_gateway_url")
            self.resume_url = url if isinstance(url, str) and url else None
            self.resuming = False
            self.established = True
            return [Emit("ready", d)]
        if t == "RESUMED":
            data = dict(d) if isinstance(d, dict) else {}
            data["replayed"] = self.replayed
            self.resuming = False
            self.established = True
            return [Emit("resumed", data)]
        return []
