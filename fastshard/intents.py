"""Gateway intents: names <-> bits, and which ones are privileged.

Values and the privileged set follow Discord's gateway documentation
(docs/events/gateway, "List of Intents" and "Privileged Intents").  Discord
renamed two intents over time; the old names are still accepted on input so
intent strings copied from older bots keep working.
"""
from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "INTENTS",
    "PRIVILEGED",
    "NON_PRIVILEGED",
    "ALL_INTENTS",
    "DEFAULT_INTENTS",
    "PORTAL_NAMES",
    "parse_intents",
    "intent_names",
    "privileged_names",
    "portal_labels",
]

# name -> bit, in bit order (the order names are printed in).
INTENTS: dict[str, int] = {
    "GUILDS": 1 << 0,
    "GUILD_MEMBERS": 1 << 1,
    "GUILD_MODERATION": 1 << 2,
    "GUILD_EXPRESSIONS": 1 << 3,
    "GUILD_INTEGRATIONS": 1 << 4,
    "GUILD_WEBHOOKS": 1 << 5,
    "GUILD_INVITES": 1 << 6,
    "GUILD_VOICE_STATES": 1 << 7,
    "GUILD_PRESENCES": 1 << 8,
    "GUILD_MESSAGES": 1 << 9,
    "GUILD_MESSAGE_REACTIONS": 1 << 10,
    "GUILD_MESSAGE_TYPING": 1 << 11,
    "DIRECT_MESSAGES": 1 << 12,
    "DIRECT_MESSAGE_REACTIONS": 1 << 13,
    "DIRECT_MESSAGE_TYPING": 1 << 14,
    "MESSAGE_CONTENT": 1 << 15,
    "GUILD_SCHEDULED_EVENTS": 1 << 16,
    "AUTO_MODERATION_CONFIGURATION": 1 << 20,
    "AUTO_MODERATION_EXECUTION": 1 << 21,
    "GUILD_MESSAGE_POLLS": 1 << 24,
    "DIRECT_MESSAGE_POLLS": 1 << 25,
}

# Former names Discord used for the same bits.
_ALIASES: dict[str, str] = {
    "GUILD_BANS": "GUILD_MODERATION",
    "GUILD_EMOJIS_AND_STICKERS": "GUILD_EXPRESSIONS",
    "GUILD_EMOJIS": "GUILD_EXPRESSIONS",
}

# Privileged intents must be switched on for the application in the developer
# portal before a bot may request them, otherwise the gateway closes with 4014.
PRIVILEGED: int = INTENTS["GUILD_MEMBERS"] | INTENTS["GUILD_PRESENCES"] | INTENTS["MESSAGE_CONTENT"]
ALL_INTENTS: int = sum(INTENTS.values())  # the bits are distinct, so the sum is their union
NON_PRIVILEGED: int = ALL_INTENTS & ~PRIVILEGED
# What a bot gets without asking: everything that needs no portal switch.
DEFAULT_INTENTS: int = NON_PRIVILEGED

# The labels of the switches on the developer portal's Bot page.
PORTAL_NAMES: dict[str, str] = {
    "GUILD_PRESENCES": "Presence Intent",
    "GUILD_MEMBERS": "Server Members Intent",
    "MESSAGE_CONTENT": "Message Content Intent",
}

# Group words accepted by parse_intents besides single intent names.
_GROUPS: dict[str, int] = {
    "ALL": ALL_INTENTS,
    "DEFAULT": DEFAULT_INTENTS,
    "NON_PRIVILEGED": NON_PRIVILEGED,
    "PRIVILEGED": PRIVILEGED,
    "NONE": 0,
}


def _parse_number(text: str) -> int | None:
    try:
        value = int(text, 0)  # decimal, 0x..., 0b...
    except ValueError:
        return None
    if value < 0:
        raise ValueError(f"intents must not be negative, got {text}")
    return value


def parse_intents(text: str | int) -> int:
    """Turn ``"guilds,guild_messages"``, ``"513"``, ``"0x201"`` or ``"default"`` into a bit field.

    Names are case-insensitive, separated by commas, ``|``, ``+`` or spaces,
    and may be mixed with numbers.  Group words: ``all``, ``default`` (every
    non-privileged intent), ``non_privileged``, ``privileged``, ``none``.
    Raises ValueError naming the unknown word and the closest known names.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise TypeError(f"intents must be a string or an int, not {type(text).__name__}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"intents must not be negative, got {text}")
        return text
    words = [w for w in text.replace("|", ",").replace("+", ",").replace(" ", ",").split(",") if w]
    if not words:
        raise ValueError("no intents given (use a number, names like guilds,guild_messages, or 'none')")
    value = 0
    for word in words:
        number = _parse_number(word)
        if number is not None:
            value |= number
            continue
        name = word.strip().upper().replace("-", "_")
        if name.startswith("INTENT_"):
            name = name[len("INTENT_"):]
        name = _ALIASES.get(name, name)
        if name in INTENTS:
            value |= INTENTS[name]
        elif name in _GROUPS:
            value |= _GROUPS[name]
        else:
            known = list(INTENTS) + list(_GROUPS) + list(_ALIASES)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(c.lower() for c in close)}?)" if close else ""
            raise ValueError(f"unknown intent {word!r}{hint}; known intents: "
                             + ", ".join(n.lower() for n in INTENTS))
    return value


def intent_names(value: int) -> list[str]:
    """The names of the bits set in ``value``; unknown bits appear as ``1 << N``."""
    names = [name for name, bit in INTENTS.items() if value & bit]
    unknown = value & ~ALL_INTENTS
    bit = 0
    while unknown >> bit:
        if (unknown >> bit) & 1:
            names.append(f"1 << {bit}")
        bit += 1
    return names


def privileged_names(value: int) -> list[str]:
    """The privileged intents among ``value``, by name (empty when there are none)."""
    return intent_names(value & PRIVILEGED)


def portal_labels(names: Iterable[str]) -> list[str]:
    """The developer-portal switch label for each privileged intent name."""
    return [PORTAL_NAMES.get(name, name) for name in names]

