"""What each gateway close code means, and what the shard does about it.

Sources: Discord's "Gateway Close Event Codes" table (v10).  Codes the docs
mark as reconnectable are resumed, except 4007 and 4009, after which Discord
says to start a new session: those end the shard with InvalidSessionError and
clear the session.  The rest are fatal: reconnecting would fail the same way.
"""
from __future__ import annotations

from typing import NamedTuple


class CloseCodeInfo(NamedTuple):
    name: str
    meaning: str
    advice: str


#: Close codes after which the session is resumed on a new connection.
RESUMABLE = frozenset({4000, 4001, 4002, 4003, 4005, 4008})
#: Close codes after which the session is dead; a new one must be identified.
SESSION_INVALIDATING = frozenset({4007, 4009})
#: Close codes after which reconnecting cannot succeed without the user changing something.
FATAL = frozenset({4004, 4010, 4011, 4012, 4013, 4014})

#: Codes fastshard itself sends.  Never 1000/1001: those end the session on Discord.
CLIENT_CLOSE = 4900          # close(): the session stays resumable
CLIENT_ZOMBIE = 4901         # no heartbeat ACK within an interval
CLIENT_RECONNECT = 4902      # op 7, or op 9 with d=true
CLIENT_BAD_DATA = 4903       # undecodable data from the gateway

CLOSE_CODES: dict[int, CloseCodeInfo] = {
    4000: CloseCodeInfo("UNKNOWN_ERROR", "Discord had an unknown error", "the shard resumes by itself"),
    4001: CloseCodeInfo("UNKNOWN_OPCODE", "an invalid opcode or payload for an opcode was sent",
                        "check the payloads passed to send()"),
    4002: CloseCodeInfo("DECODE_ERROR", "an invalid payload was sent", "check the payloads passed to send()"),
    4003: CloseCodeInfo("NOT_AUTHENTICATED", "a payload was sent before identifying",
                        "wait for the 'ready' event before sending"),
    4004: CloseCodeInfo("AUTHENTICATION_FAILED", "the token was rejected",
                        "check the bot token (Developer Portal > your application > Bot > Reset Token)"),
    4005: CloseCodeInfo("ALREADY_AUTHENTICATED", "more than one IDENTIFY was sent",
                        "do not send IDENTIFY yourself; the shard does it"),
    4007: CloseCodeInfo("INVALID_SEQ", "the sequence sent when resuming was invalid",
                        "call connect() again to identify a new session"),
    4008: CloseCodeInfo("RATE_LIMITED", "payloads were sent too quickly", "send fewer commands"),
    4009: CloseCodeInfo("SESSION_TIMED_OUT", "the session timed out",
                        "call connect() again to identify a new session"),
    4010: CloseCodeInfo("INVALID_SHARD", "an invalid shard was sent when identifying",
                        "check id and total (id must be below total)"),
    4011: CloseCodeInfo("SHARDING_REQUIRED", "the session would handle too many guilds",
                        "use more shards (GET /gateway/bot says how many)"),
    4012: CloseCodeInfo("INVALID_API_VERSION", "the gateway version is invalid", "use version=10"),
    4013: CloseCodeInfo("INVALID_INTENTS", "the intents value is invalid",
                        "check the intents bitfield"),
    4014: CloseCodeInfo("DISALLOWED_INTENTS", "a privileged intent was requested that is not enabled",
                        "enable it in the Developer Portal (your application > Bot > Privileged Gateway Intents), "
                        "or remove it from intents"),
}


def describe(code: int | None, reason: str = "") -> str:
    """A sentence a person can act on, for a close code received from the gateway."""
    if code is None:
        return "the connection was lost without a close frame"
    info = CLOSE_CODES.get(code)
    said = f" ({reason})" if reason else ""
    if info is None:
        return f"the gateway closed the connection with code {code}{said}"
    return f"the gateway closed the connection with {code} {info.name}{said}: {info.meaning}; {info.advice}"
