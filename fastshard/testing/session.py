"""A simulated gateway session: sequence numbers and the replay buffer.

A session outlives its connections (that is what RESUME is for), so the
sequence and the dispatches a client may still ask for live here, not on the
connection.
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import orjson
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from .connection import SimConnection

__all__ = ["SimSession", "UNBUFFERED_EVENTS"]

# READY and RESUMED take a sequence number but are never replayed: a replayed
# RESUMED would tell the client that replay ended early.
UNBUFFERED_EVENTS = frozenset({"READY", "RESUMED"})


def _freeze(payload: dict[str, Any]) -> bytes | dict[str, Any]:
    try:
        return orjson.dumps(payload)
    except TypeError:
        # Not JSON-able (e.g. an int past 64 bits for an ETF test): keep it as is.
        return payload


def _thaw(stored: bytes | dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(stored) if isinstance(stored, bytes) else stored


class SimSession:
    """One session as the gateway keeps it between connections."""

    def __init__(self, session_id: str, identify: dict[str, Any], shard: tuple[int, int],
                 intents: int, guild_ids: list[str], *, replay_buffer: int = 50_000) -> None:
        self.session_id = session_id
        self.identify = identify
        self.shard = shard
        self.intents = intents
        self.guild_ids = guild_ids
        self.seq = 0
        self.connection: SimConnection | None = None
        self.invalidated = False
        self.detached_at: float | None = None  # loop time the last connection ended
        self.replay_buffer = replay_buffer
        self._seqs: list[int] = []
        # Kept as compact JSON: a long-running simulator streaming events would
        # otherwise hold tens of thousands of nested dicts per session.
        self._payloads: list[bytes | dict[str, Any]] = []
        self._dropped_upto = 0  # highest sequence number pushed out of the buffer

    def __repr__(self) -> str:
        return f"<SimSession {self.session_id} seq={self.seq} shard={list(self.shard)}>"

    def record(self, t: str, d: Any) -> dict[str, Any]:
        """Take the next sequence number for a dispatch and keep it for replay."""
        self.seq += 1
        payload = {"op": 0, "t": t, "s": self.seq, "d": d}
        if t not in UNBUFFERED_EVENTS:
            self._seqs.append(self.seq)
            self._payloads.append(_freeze(payload))
            # Trim in batches: deleting from the front of a long list on every
            # dispatch would cost a memmove of the whole buffer each time.
            if len(self._seqs) > self.replay_buffer + max(1, self.replay_buffer // 4):
                drop = len(self._seqs) - self.replay_buffer
                self._dropped_upto = self._seqs[drop - 1]
                del self._seqs[:drop], self._payloads[:drop]
        return payload

    async def dispatch(self, t: str, d: Any) -> int:
        """Send to the attached connection, or only buffer while disconnected."""
        payload = self.record(t, d)
        conn = self.connection
        if conn is not None and not conn.closed:
            try:
                await conn.send_payload(payload)
            except ConnectionClosed:
                pass  # stays in the buffer: the client's RESUME replays it
        return int(payload["s"])

    def can_replay_from(self, seq: int) -> bool:
        """Whether every dispatch after ``seq`` is still in the buffer."""
        return seq >= self._dropped_upto

    def missed_after(self, seq: int) -> list[dict[str, Any]]:
        """Buffered dispatches with ``s > seq`` in order."""
        i = bisect.bisect_right(self._seqs, seq)
        return [_thaw(raw) for raw in self._payloads[i:]]

    @property
    def buffered(self) -> int:
        return len(self._seqs)

    def invalidate(self) -> None:
        """Forget the session: a later RESUME gets op 9 ``d: false``."""
        self.invalidated = True
        self._seqs.clear()
        self._payloads.clear()
