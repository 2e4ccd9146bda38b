"""Gateway opcodes (Discord API v10), as plain ints for cheap comparisons on the hot path."""
from __future__ import annotations

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

#: Opcodes a client may send; anything else is closed with 4001 by Discord.
SENDABLE = frozenset({HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE, RESUME,
                      REQUEST_GUILD_MEMBERS, REQUEST_SOUNDBOARD_SOUNDS})
