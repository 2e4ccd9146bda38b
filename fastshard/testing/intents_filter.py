"""Which dispatches, and which of their fields, a session's intents let through.

The table is Discord's "List of Intents" (developers/events/gateway.mdx):
an event listed under an intent reaches a client only if it identified
with that intent (the guild intent for events with a ``guild_id``, the
direct-message one otherwise).  MESSAGE_CONTENT is a field rule: without it
``content``, ``embeds``, ``attachments``, ``components`` and ``poll`` are
empty, except in DMs, in the bot's own messages and where it is mentioned.
GUILD_CREATE's member list is shaped by :meth:`World.guild_create`.
"""
from __future__ import annotations

from typing import Any

from ..intents import INTENTS

__all__ = ["EVENT_INTENTS", "allowed", "apply_intents", "strip_message_content"]

_I = INTENTS
_GUILD, _DM = 0, 1

# event -> (intent for guild events, intent for DM events); 0: no DM variant.
EVENT_INTENTS: dict[str, tuple[int, int]] = {}
for _names, _bits in (
    (("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE",
      "GUILD_ROLE_DELETE", "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "THREAD_CREATE",
      "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC", "THREAD_MEMBER_UPDATE", "STAGE_INSTANCE_CREATE",
      "STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE", "VOICE_CHANNEL_STATUS_UPDATE",
      "VOICE_CHANNEL_START_TIME_UPDATE"), (_I["GUILDS"], 0)),
    (("CHANNEL_PINS_UPDATE",), (_I["GUILDS"], _I["DIRECT_MESSAGES"])),
    (("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE"), (_I["GUILD_MEMBERS"], 0)),
    (("GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE"), (_I["GUILD_MODERATION"], 0)),
    (("GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE", "GUILD_SOUNDBOARD_SOUND_CREATE",
      "GUILD_SOUNDBOARD_SOUND_UPDATE", "GUILD_SOUNDBOARD_SOUND_DELETE", "GUILD_SOUNDBOARD_SOUNDS_UPDATE"),
     (_I["GUILD_EXPRESSIONS"], 0)),
    (("GUILD_INTEGRATIONS_UPDATE", "INTEGRATION_CREATE", "INTEGRATION_UPDATE", "INTEGRATION_DELETE"),
     (_I["GUILD_INTEGRATIONS"], 0)),
    (("WEBHOOKS_UPDATE",), (_I["GUILD_WEBHOOKS"], 0)),
    (("INVITE_CREATE", "INVITE_DELETE"), (_I["GUILD_INVITES"], 0)),
    (("VOICE_CHANNEL_EFFECT_SEND", "VOICE_STATE_UPDATE"), (_I["GUILD_VOICE_STATES"], 0)),
    (("PRESENCE_UPDATE",), (_I["GUILD_PRESENCES"], 0)),
    (("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"), (_I["GUILD_MESSAGES"], _I["DIRECT_MESSAGES"])),
    (("MESSAGE_DELETE_BULK",), (_I["GUILD_MESSAGES"], 0)),
    (("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL",
      "MESSAGE_REACTION_REMOVE_EMOJI"), (_I["GUILD_MESSAGE_REACTIONS"], _I["DIRECT_MESSAGE_REACTIONS"])),
    (("TYPING_START",), (_I["GUILD_MESSAGE_TYPING"], _I["DIRECT_MESSAGE_TYPING"])),
    (("GUILD_SCHEDULED_EVENT_CREATE", "GUILD_SCHEDULED_EVENT_UPDATE", "GUILD_SCHEDULED_EVENT_DELETE",
      "GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE"), (_I["GUILD_SCHEDULED_EVENTS"], 0)),
    (("AUTO_MODERATION_RULE_CREATE", "AUTO_MODERATION_RULE_UPDATE", "AUTO_MODERATION_RULE_DELETE"),
     (_I["AUTO_MODERATION_CONFIGURATION"], 0)),
    (("AUTO_MODERATION_ACTION_EXECUTION",), (_I["AUTO_MODERATION_EXECUTION"], 0)),
    (("MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE"),
     (_I["GUILD_MESSAGE_POLLS"], _I["DIRECT_MESSAGE_POLLS"])),
):
    for _name in _names:
        EVENT_INTENTS[_name] = _bits

_CONTENT_FIELDS = {"content": "", "embeds": [], "attachments": [], "components": []}


def allowed(t: str, d: Any, intents: int, bot_id: str | None = None) -> bool:
    """Whether a client with ``intents`` receives dispatch ``t`` with data ``d``."""
    bits = EVENT_INTENTS.get(t)
    if bits is None:
        return True  # not intent-bound (READY, GUILD_MEMBERS_CHUNK, VOICE_SERVER_UPDATE, ...)
    # "Guild Member Update is sent for current-user updates regardless of GUILD_MEMBERS."
    if t == "GUILD_MEMBER_UPDATE" and bot_id is not None and isinstance(d, dict) \
            and (d.get("user") or {}).get("id") == bot_id:
        return True
    in_guild = isinstance(d, dict) and d.get("guild_id") is not None
    bit = bits[_GUILD] if in_guild else bits[_DM]
    return bool(bit) and bool(intents & bit)


def strip_message_content(message: dict[str, Any], bot_id: str | None) -> dict[str, Any]:
    """The message as an app without MESSAGE_CONTENT sees it."""
    if message.get("guild_id") is None:
        return message  # DMs keep their content
    author = message.get("author") or {}
    if bot_id is not None and (author.get("id") == bot_id
                               or any(u.get("id") == bot_id for u in message.get("mentions") or ())):
        return message
    stripped = dict(message)
    for name, empty in _CONTENT_FIELDS.items():
        if name in stripped:
            stripped[name] = type(empty)()
    stripped.pop("poll", None)
    referenced = stripped.get("referenced_message")
    if isinstance(referenced, dict):
        stripped["referenced_message"] = strip_message_content(referenced, bot_id)
    return stripped


def apply_intents(t: str, d: Any, intents: int, bot_id: str | None = None) -> Any:
    """``d`` as a client with ``intents`` receives it, or None if it gets no such dispatch."""
    if not allowed(t, d, intents, bot_id):
        return None
    if t in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not intents & _I["MESSAGE_CONTENT"] and isinstance(d, dict):
        return strip_message_content(d, bot_id)
    return d
