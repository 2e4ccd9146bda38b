"""What Discord answers to a client's send opcodes 3, 4, 8, 31 and 43 (sans-I/O).

Each function takes the session's :class:`TrafficGenerator` (its view of the
world) and the command's ``d``, changes the world as Discord would, and
returns the dispatches to send, as ``(t, d)`` pairs, before intents are
applied.  A malformed command raises :class:`BadCommand` (the connection
closes 4002, as for any payload Discord cannot read).
"""
from __future__ import annotations

from typing import Any

from ..intents import INTENTS
from .traffic import TrafficGenerator

__all__ = ["BadCommand", "request_guild_members", "update_voice_state", "update_presence",
           "request_soundboard_sounds", "request_channel_info", "MembersRateLimit", "VOICE_ENDPOINT"]

# VOICE_SERVER_UPDATE's endpoint has no scheme (voice-connections.mdx); a
# client opens wss://<endpoint>, which tests intercept.
VOICE_ENDPOINT = "sim-voice.discord.media:443"
NONCE_MAX_BYTES = 32
Dispatches = list[tuple[str, dict[str, Any]]]


class BadCommand(ValueError):
    """A command whose ``d`` Discord could not use."""


def _snowflake(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    raise BadCommand(f"{what} must be a snowflake, not {value!r}")


def _object(d: Any, op: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise BadCommand(f"{op} needs an object as d, not {type(d).__name__}")
    return d


class MembersRateLimit:
    """Request Guild Members for *all* members: 1 per guild per bot every 30 s
    (change-log "Introducing Rate Limit When Requesting All Guild Members")."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def retry_after(self, guild_id: str, now: float) -> float:
        """0.0 and the request counts, or the seconds still to wait."""
        last = self._last.get(guild_id)
        if last is not None and now - last < self.interval:
            return round(self.interval - (now - last), 3)
        self._last[guild_id] = now
        return 0.0


def request_guild_members(gen: TrafficGenerator, intents: int, d: Any, limiter: MembersRateLimit,
                          now: float) -> Dispatches:
    """Op 8: GUILD_MEMBERS_CHUNKs, a RATE_LIMITED, or nothing (as Discord, for a request it refuses)."""
    d = _object(d, "REQUEST_GUILD_MEMBERS")
    raw_guild = d.get("guild_id")
    if isinstance(raw_guild, list):  # one guild per request (gateway-events.mdx)
        if len(raw_guild) != 1:
            raise BadCommand("REQUEST_GUILD_MEMBERS takes one guild_id per request")
        raw_guild = raw_guild[0]
    guild_id = _snowflake(raw_guild, "guild_id")
    nonce = d.get("nonce")
    # An invalid nonce is ignored: the chunks then carry none.
    if not isinstance(nonce, str) or len(nonce.encode()) > NONCE_MAX_BYTES:
        nonce = None
    presences = d.get("presences") is True and bool(intents & INTENTS["GUILD_PRESENCES"])
    user_ids = d.get("user_ids")
    query, limit = d.get("query"), d.get("limit")
    if user_ids is not None:
        wanted = [_snowflake(u, "user_ids") for u in (user_ids if isinstance(user_ids, list) else [user_ids])]
    elif not isinstance(query, str) or type(limit) is not int or limit < 0:
        raise BadCommand("REQUEST_GUILD_MEMBERS needs user_ids, or query (a string) and limit (an integer >= 0)")
    if guild_id not in gen.guild_ids:
        return []  # not one of this session's guilds: Discord answers nothing
    if user_ids is not None:
        return [("GUILD_MEMBERS_CHUNK", c)
                for c in gen.member_chunks(guild_id, user_ids=wanted, presences=presences, nonce=nonce)]
    if query == "":
        if not intents & INTENTS["GUILD_MEMBERS"]:
            return []  # the whole list needs GUILD_MEMBERS; Discord sends no chunk without it
        if limit == 0:
            wait = limiter.retry_after(guild_id, now)
            if wait:
                meta: dict[str, Any] = {"guild_id": guild_id}
                if nonce is not None:
                    meta["nonce"] = nonce
                return [("RATE_LIMITED", {"opcode": 8, "retry_after": wait, "meta": meta})]
    return [("GUILD_MEMBERS_CHUNK", c)
            for c in gen.member_chunks(guild_id, query=query, limit=limit, presences=presences, nonce=nonce)]


def update_voice_state(gen: TrafficGenerator, session_id: str, d: Any) -> Dispatches:
    """Op 4: join, move or leave voice.  Joining or moving gets the bot's
    VOICE_STATE_UPDATE then VOICE_SERVER_UPDATE (voice-connections.mdx);
    leaving gets the VOICE_STATE_UPDATE with ``channel_id: null``."""
    d = _object(d, "UPDATE_VOICE_STATE")
    guild_id = _snowflake(d.get("guild_id"), "guild_id")
    raw_channel = d.get("channel_id")
    channel_id = None if raw_channel is None else _snowflake(raw_channel, "channel_id")
    if not isinstance(d.get("self_mute", False), bool) or not isinstance(d.get("self_deaf", False), bool):
        raise BadCommand("self_mute and self_deaf must be booleans")
    if guild_id not in gen.guild_ids:
        return []
    guild = gen.guild(guild_id)
    bot_id = guild.bot_id
    old = guild.voice_states.get(bot_id)
    if channel_id is None:
        if old is None:
            return []
        del guild.voice_states[bot_id]
        return [("VOICE_STATE_UPDATE", dict(old, channel_id=None, guild_id=guild_id))]
    channel = guild.channels.get(channel_id)
    if channel is None or channel["type"] not in (2, 13):
        return []  # not a voice channel of this guild: nothing happens
    # A full channel would get no answer, but the bot's role has MOVE_MEMBERS,
    # which bypasses user_limit (voice-connections.mdx), so it always joins.
    state = {"user_id": bot_id, "channel_id": channel_id, "session_id": session_id, "deaf": False,
             "mute": False, "self_deaf": bool(d.get("self_deaf")), "self_mute": bool(d.get("self_mute")),
             "self_video": False, "suppress": False, "request_to_speak_timestamp": None,
             "member": guild.members[bot_id]}
    guild.voice_states[bot_id] = state
    server = {"token": "%016x" % gen.rng.getrandbits(64), "guild_id": guild_id, "endpoint": VOICE_ENDPOINT}
    return [("VOICE_STATE_UPDATE", dict(state, guild_id=guild_id)), ("VOICE_SERVER_UPDATE", server)]


_STATUSES = ("online", "dnd", "idle", "invisible", "offline")


def update_presence(gen: TrafficGenerator, d: Any) -> Dispatches:
    """Op 3: the bot's presence changes; Discord sends the bot nothing back."""
    d = _object(d, "UPDATE_PRESENCE")
    if d.get("status") not in _STATUSES or not isinstance(d.get("activities", []), list) \
            or not isinstance(d.get("afk", False), bool):
        raise BadCommand(f"presence needs a status in {_STATUSES}, activities and afk")
    gen.world.bot_presence = {"status": d["status"], "activities": list(d.get("activities") or [])}
    for guild_id in gen.guild_ids:  # a later GUILD_CREATE shows the new presence
        guild = gen.guild(guild_id)
        if d["status"] in ("invisible", "offline"):
            guild.presences.pop(guild.bot_id, None)
        else:
            guild.presences[guild.bot_id] = {"user": {"id": guild.bot_id}, "status": d["status"],
                                             "client_status": {"web": d["status"]}, "broadcast": None,
                                             "activities": list(d.get("activities") or [])}
    return []


def request_soundboard_sounds(gen: TrafficGenerator, d: Any) -> Dispatches:
    """Op 31: one SOUNDBOARD_SOUNDS per requested guild of the session."""
    d = _object(d, "REQUEST_SOUNDBOARD_SOUNDS")
    ids = d.get("guild_ids")
    if not isinstance(ids, list):
        raise BadCommand("REQUEST_SOUNDBOARD_SOUNDS needs guild_ids (a list)")
    out: Dispatches = []
    for raw in ids:
        guild_id = _snowflake(raw, "guild_ids")
        if guild_id in gen.guild_ids:
            sounds = list(gen.guild(guild_id).soundboard_sounds)
            out.append(("SOUNDBOARD_SOUNDS", {"soundboard_sounds": sounds, "guild_id": guild_id}))
    return out


_CHANNEL_FIELDS = ("status", "voice_start_time")


def request_channel_info(gen: TrafficGenerator, d: Any) -> Dispatches:
    """Op 43: CHANNEL_INFO with the requested ephemeral fields of the guild's voice channels."""
    d = _object(d, "REQUEST_CHANNEL_INFO")
    guild_id = _snowflake(d.get("guild_id"), "guild_id")
    fields = d.get("fields")
    if not isinstance(fields, list) or any(f not in _CHANNEL_FIELDS for f in fields):
        raise BadCommand(f"REQUEST_CHANNEL_INFO fields must be a list of {_CHANNEL_FIELDS}")
    if guild_id not in gen.guild_ids:
        return []
    guild = gen.guild(guild_id)
    occupied = {s["channel_id"] for s in guild.voice_states.values()}
    channels = []
    for channel_id in guild.voice_channel_ids:
        info: dict[str, Any] = {"id": channel_id}
        if "status" in fields:
            info["status"] = None
        if "voice_start_time" in fields:
            # The session started when the virtual clock began, if anyone is in it.
            info["voice_start_time"] = guild.static["version"] // 1000 if channel_id in occupied else None
        channels.append(info)
    return [("CHANNEL_INFO", {"guild_id": guild_id, "channels": channels})]
