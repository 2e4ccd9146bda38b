"""Gateway v10 numbers the simulator speaks: opcodes, close codes, intents."""
from __future__ import annotations

from enum import IntEnum

__all__ = ["Op", "Close", "CLOSE_REASONS", "PRIVILEGED_INTENTS", "ALL_INTENTS", "CLIENT_OPS",
           "API_VERSION"]

API_VERSION = "10"


class Op(IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31
    REQUEST_CHANNEL_INFO = 43


# What a client may send; anything else is close 4001.
CLIENT_OPS = frozenset({1, 2, 3, 4, 6, 8, 31, 43})


class Close(IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


CLOSE_REASONS = {
    Close.UNKNOWN_ERROR: "Unknown error.",
    Close.UNKNOWN_OPCODE: "Unknown opcode.",
    Close.DECODE_ERROR: "Error while decoding payload.",
    Close.NOT_AUTHENTICATED: "Not authenticated.",
    Close.AUTHENTICATION_FAILED: "Authentication failed.",
    Close.ALREADY_AUTHENTICATED: "Already authenticated.",
    Close.INVALID_SEQ: "Invalid seq.",
    Close.RATE_LIMITED: "Rate limited.",
    Close.SESSION_TIMED_OUT: "Session timed out.",
    Close.INVALID_SHARD: "Invalid shard.",
    Close.SHARDING_REQUIRED: "Sharding required.",
    Close.INVALID_API_VERSION: "Invalid API version.",
    Close.INVALID_INTENTS: "Invalid intent(s).",
    Close.DISALLOWED_INTENTS: "Disallowed intent(s).",
}

GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
# Every intent bit Discord documents (0-16, 20, 21, 24, 25); others are 4013.
ALL_INTENTS = (1 << 17) - 1 | 1 << 20 | 1 << 21 | 1 << 24 | 1 << 25
