"""Deterministic, realistic Discord gateway traffic from a seed.

Objects have the shapes Discord's v10 gateway sends (snowflakes as strings,
ISO timestamps, nested members/users/roles), with varied sizes and some
non-ASCII text, so decoders and benchmarks see what a real bot sees.  The
same seed always yields the same payloads: it uses its own ``random.Random``
and a virtual clock, never the wall clock.
"""
from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["TrafficGenerator", "DISCORD_EPOCH_MS", "STEADY_MIX"]

DISCORD_EPOCH_MS = 1420070400000
# Virtual clock start (2024-06-01 UTC): fixed so output never depends on "now".
_CLOCK_START_MS = 1717200000000

_WORDS = ("the", "a", "gg", "lol", "raid", "tonight", "who", "is", "up", "for", "ranked", "patch",
          "notes", "are", "out", "check", "this", "meme", "bot", "pls", "help", "server", "role",
          "voice", "chat", "brb", "afk", "nice", "ship", "it", "deploy", "friday", "café", "naïve",
          "über", "日本語", "🎉", "🔥", "👍", "ok", "anyone", "seen", "my", "keys", "python", "asyncio")
_NAMES = ("ash", "birch", "cedar", "dune", "ember", "fjord", "grove", "haze", "iris", "juniper",
          "kestrel", "lumen", "moss", "nova", "onyx", "pike", "quill", "rune", "sable", "tarn",
          "umber", "vale", "wren", "yarrow", "zephyr", "Zoë", "Ångström", "Mañana")
_GAMES = ("Minecraft", "League of Legends", "Visual Studio Code", "Spotify", "Elden Ring",
          "Counter-Strike 2", "Stardew Valley", "Factorio")
_STATUSES = ("online", "online", "online", "idle", "dnd", "offline")
_EMOJI = ("👍", "🔥", "😂", "🎉", "❤️", "👀")
_FEATURES = ("COMMUNITY", "NEWS", "INVITE_SPLASH", "ANIMATED_ICON", "BANNER", "VANITY_URL",
             "ROLE_ICONS", "THREADS_ENABLED", "MEMBER_VERIFICATION_GATE_ENABLED", "DISCOVERABLE")

# Steady-state mix of a mid-sized bot with the usual intents (weights ~ %).
STEADY_MIX: tuple[tuple[str, int], ...] = (
    ("MESSAGE_CREATE", 30), ("PRESENCE_UPDATE", 25), ("TYPING_START", 14),
    ("MESSAGE_REACTION_ADD", 9), ("GUILD_MEMBER_UPDATE", 7), ("MESSAGE_UPDATE", 6),
    ("VOICE_STATE_UPDATE", 5), ("MESSAGE_DELETE", 4),
)


@dataclass
class _Guild:
    """Ids a guild's events keep referring to, so a stream is self-consistent."""

    id: str
    name: str
    owner_id: str
    role_ids: list[str]
    text_channel_ids: list[str]
    voice_channel_ids: list[str]
    category_ids: list[str]
    users: list[dict[str, Any]] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)


class TrafficGenerator:
    """Generates gateway dispatch data (the ``d`` of op 0) deterministically."""

    def __init__(self, seed: int | str = 0, guild_ids: Iterable[str] | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._clock_ms = _CLOCK_START_MS
        self._increment = 0
        self._guilds: dict[str, _Guild] = {}
        self.application_id = self.snowflake(_CLOCK_START_MS - 86_400_000 * 900)
        self.bot_user = self.user(bot=True, user_id=self.application_id)
        for guild_id in guild_ids or ():
            self._guild(guild_id)

    # -- primitives --------------------------------------------------------
    def _tick(self) -> int:
        self._clock_ms += self.rng.randint(1, 400)
        return self._clock_ms

    def snowflake(self, at_ms: int | None = None) -> str:
        """A snowflake id (as a string, like JSON) at ``at_ms`` or the virtual now."""
        ms = self._tick() if at_ms is None else at_ms
        self._increment = (self._increment + 1) & 0xFFF
        value = (ms - DISCORD_EPOCH_MS) << 22 | self.rng.randrange(32) << 17 | 1 << 12 | self._increment
        return str(value)

    def _past_snowflake(self, max_days: int = 2000) -> str:
        return self.snowflake(self._clock_ms - self.rng.randrange(86_400_000 * max_days))

    @staticmethod
    def iso(ms: int) -> str:
        stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
        return stamp.isoformat(timespec="microseconds")

    def _hash(self) -> str:
        return "%032x" % self.rng.getrandbits(128)

    def _sentence(self, lo: int = 1, hi: int = 24) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(lo, hi)))

    def _name(self) -> str:
        return f"{self.rng.choice(_NAMES)}{self.rng.randrange(10_000)}"

    # -- objects -----------------------------------------------------------
    def user(self, *, bot: bool = False, user_id: str | None = None) -> dict[str, Any]:
        name = self._name()
        user: dict[str, Any] = {
            "id": user_id or self._past_snowflake(),
            "username": name.lower(),
            "global_name": None if bot else name.capitalize(),
            "discriminator": "0",
            "avatar": self._hash() if self.rng.random() < 0.8 else None,
            "avatar_decoration_data": None,
            "public_flags": self.rng.choice((0, 0, 0, 64, 128, 256, 4194304)),
            "primary_guild": None,
            "clan": None,
        }
        if bot:
            user["bot"] = True
        return user

    def _guild(self, guild_id: str) -> _Guild:
        guild = self._guilds.get(guild_id)
        if guild is None:
            rng = self.rng
            guild = _Guild(
                id=guild_id,
                name=self._sentence(1, 3).title(),
                owner_id=self._past_snowflake(),
                role_ids=[self._past_snowflake() for _ in range(rng.randint(2, 12))],
                text_channel_ids=[self._past_snowflake() for _ in range(rng.randint(3, 15))],
                voice_channel_ids=[self._past_snowflake() for _ in range(rng.randint(1, 4))],
                category_ids=[self._past_snowflake() for _ in range(rng.randint(1, 4))],
            )
            guild.users = [self.user(bot=rng.random() < 0.05) for _ in range(rng.randint(8, 40))]
            self._guilds[guild_id] = guild
        return guild

    def _pick_guild(self) -> _Guild:
        if not self._guilds:
            self._guild(self._past_snowflake())
        return self._guilds[self.rng.choice(list(self._guilds))]

    def member(self, guild: _Guild, user: dict[str, Any], *, with_user: bool = True) -> dict[str, Any]:
        rng = self.rng
        member: dict[str, Any] = {
            "roles": rng.sample(guild.role_ids, rng.randint(0, min(4, len(guild.role_ids)))),
            "premium_since": None if rng.random() < 0.9 else self.iso(self._clock_ms - rng.randrange(10**10)),
            "pending": False,
            "nick": None if rng.random() < 0.7 else self._name(),
            "mute": False,
            "joined_at": self.iso(self._clock_ms - rng.randrange(10**11)),
            "flags": rng.choice((0, 0, 2, 10)),
            "deaf": False,
            "communication_disabled_until": None,
            "banner": None,
            "avatar": None,
        }
        if with_user:
            member["user"] = user
        return member

    def _role(self, guild: _Guild, role_id: str, position: int) -> dict[str, Any]:
        rng = self.rng
        color = rng.choice((0, 0x1ABC9C, 0x3498DB, 0xE91E63, 0xF1C40F))
        return {
            "id": role_id, "name": "@everyone" if role_id == guild.id else self._sentence(1, 2),
            "description": None, "permissions": str(rng.getrandbits(41)), "position": position,
            "color": color, "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "hoist": rng.random() < 0.3, "managed": False, "mentionable": rng.random() < 0.2,
            "icon": None, "unicode_emoji": None, "flags": 0,
        }

    def _channel(self, guild: _Guild, channel_id: str, kind: int, position: int) -> dict[str, Any]:
        rng = self.rng
        channel: dict[str, Any] = {
            "id": channel_id, "type": kind, "name": "-".join(self._sentence(1, 3).split()),
            "position": position, "flags": 0,
            "permission_overwrites": [
                {"id": rid, "type": 0, "allow": str(rng.getrandbits(20)), "deny": str(rng.getrandbits(12))}
                for rid in rng.sample(guild.role_ids, rng.randint(0, min(3, len(guild.role_ids))))
            ],
            "version": self._clock_ms - rng.randrange(10**10),
        }
        if kind != 4:
            channel["parent_id"] = rng.choice(guild.category_ids)
        if kind == 0:
            channel.update({"topic": self._sentence() if rng.random() < 0.5 else None, "nsfw": False,
                            "last_message_id": self._past_snowflake(30), "rate_limit_per_user": 0,
                            "icon_emoji": None, "theme_color": None})
        elif kind == 2:
            channel.update({"bitrate": 64000, "user_limit": rng.choice((0, 5, 10)), "rtc_region": None,
                            "nsfw": False, "rate_limit_per_user": 0, "last_message_id": None})
        return channel

    def _activity(self) -> dict[str, Any]:
        rng = self.rng
        created = self._clock_ms - rng.randrange(10**7)
        if rng.random() < 0.4:
            return {"type": 4, "state": self._sentence(1, 6), "name": "Custom Status", "id": "custom",
                    "emoji": {"name": rng.choice(_EMOJI)} if rng.random() < 0.5 else None, "created_at": created}
        return {"type": 0, "name": rng.choice(_GAMES), "id": "%016x" % rng.getrandbits(64),
                "created_at": created, "timestamps": {"start": created - rng.randrange(10**7)},
                "application_id": self._past_snowflake()}

    def _presence(self, guild: _Guild, user: dict[str, Any], *, in_guild_create: bool) -> dict[str, Any]:
        rng = self.rng
        status = rng.choice(_STATUSES[:-1])
        presence: dict[str, Any] = {
            "user": {"id": user["id"]},
            "status": status,
            "client_status": {rng.choice(("desktop", "mobile", "web")): status},
            "broadcast": None,
            "activities": [self._activity() for _ in range(rng.choice((0, 1, 1, 2)))],
        }
        if not in_guild_create:
            presence["guild_id"] = guild.id
        return presence

    # -- session-level payloads ----------------------------------------------
    def ready(self, session_id: str, resume_gateway_url: str, shard: tuple[int, int] | list[int],
              guild_ids: Iterable[str]) -> dict[str, Any]:
        """READY's ``d``: the bot user, unavailable guilds, shard, application."""
        return {
            "v": 10,
            "user_settings": {},
            "user": dict(self.bot_user, verified=True, mfa_enabled=False, email=None, flags=0),
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": resume_gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": gid, "unavailable": True} for gid in guild_ids],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east", "us-central", "atlanta", "us-south", "us-west"],
            "game_relationships": [],
            "auth": {},
            "application": {"id": self.application_id, "flags": 565248},
            "shard": list(shard),
            "_trace": ['["gateway-sim",{"micros":0.0}]'],
        }

    def guild_create(self, guild_id: str | None = None, members: int | None = None,
                     *, large: bool = False) -> dict[str, Any]:
        """GUILD_CREATE's ``d``.  ``members`` defaults to a varied size;
        ``large=True`` gives ~1000 members with presences (hundreds of KB of JSON)."""
        rng = self.rng
        guild = self._guild(guild_id or self._past_snowflake())
        if members is None:
            members = 1000 if large else rng.choice((2, 5, 12, 25, 40, 80, 150, 250))
        while len(guild.users) < members:
            guild.users.append(self.user(bot=rng.random() < 0.03))
        users = guild.users[:members]
        role_ids = [guild.id] + guild.role_ids
        channels = ([self._channel(guild, cid, 4, i) for i, cid in enumerate(guild.category_ids)]
                    + [self._channel(guild, cid, 0, i) for i, cid in enumerate(guild.text_channel_ids)]
                    + [self._channel(guild, cid, 2, i) for i, cid in enumerate(guild.voice_channel_ids)])
        online = [u for u in users if rng.random() < 0.4]
        member_count = members if not large else members * rng.randint(5, 40)
        return {
            "id": guild.id, "name": guild.name, "icon": self._hash(), "icon_hash": None, "splash": None,
            "discovery_splash": None, "owner_id": guild.owner_id, "afk_channel_id": None, "afk_timeout": 300,
            "widget_enabled": False, "verification_level": rng.randint(0, 4),
            "default_message_notifications": rng.randint(0, 1), "explicit_content_filter": rng.randint(0, 2),
            "roles": [self._role(guild, rid, i) for i, rid in enumerate(role_ids)],
            "emojis": [{"id": self._past_snowflake(), "name": self._name(), "roles": [], "require_colons": True,
                        "managed": False, "animated": rng.random() < 0.2, "available": True}
                       for _ in range(rng.randint(0, 20))],
            "stickers": [], "features": rng.sample(_FEATURES, rng.randint(0, len(_FEATURES))),
            "mfa_level": rng.randint(0, 1), "application_id": None,
            "system_channel_id": guild.text_channel_ids[0], "system_channel_flags": 0,
            "rules_channel_id": None, "max_presences": None, "max_members": 500000,
            "vanity_url_code": None, "description": self._sentence() if rng.random() < 0.3 else None,
            "banner": None, "premium_tier": rng.randint(0, 3), "premium_subscription_count": rng.randint(0, 30),
            "preferred_locale": "en-US", "public_updates_channel_id": None, "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50, "nsfw_level": 0, "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None, "incidents_data": None, "inventory_settings": None,
            "hub_type": None, "latest_onboarding_question_id": None, "home_header": None,
            "version": self._clock_ms, "region": "deprecated",
            # Gateway-only fields.
            "joined_at": self.iso(self._clock_ms - rng.randrange(10**11)), "large": member_count > 250,
            "unavailable": False, "member_count": member_count, "lazy": True,
            "voice_states": [], "members": [self.member(guild, u) for u in users], "channels": channels,
            "threads": [], "presences": [self._presence(guild, u, in_guild_create=True) for u in online],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "embedded_activities": [], "activity_instances": [], "application_command_counts": {},
        }

    def members_chunk(self, guild_id: str, limit: int = 10, nonce: Any = None) -> dict[str, Any]:
        """GUILD_MEMBERS_CHUNK's ``d`` answering op 8."""
        guild = self._guild(guild_id)
        users = guild.users[:max(1, limit)]
        chunk: dict[str, Any] = {"guild_id": guild.id, "members": [self.member(guild, u) for u in users],
                                 "chunk_index": 0, "chunk_count": 1}
        if nonce is not None:
            chunk["nonce"] = nonce
        return chunk

    # -- steady-state events -------------------------------------------------
    def _author(self, guild: _Guild) -> dict[str, Any]:
        return self.rng.choice(guild.users)

    def message_create(self, guild_id: str | None = None) -> dict[str, Any]:
        rng = self.rng
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        author = self._author(guild)
        message_id = self.snowflake()
        guild.message_ids.append(message_id)
        del guild.message_ids[:-200]
        mentions = [dict(u, member=self.member(guild, u, with_user=False))
                    for u in rng.sample(guild.users, rng.choice((0, 0, 0, 1, 2)))]
        embeds = []
        if rng.random() < 0.1:
            embeds.append({"type": "rich", "title": self._sentence(2, 6), "description": self._sentence(5, 60),
                           "color": 0x5865F2, "fields": [{"name": self._sentence(1, 3), "value": self._sentence(1, 10),
                                                          "inline": rng.random() < 0.5} for _ in range(rng.randint(0, 5))]})
        attachments = []
        if rng.random() < 0.05:
            attachments.append({"id": self.snowflake(), "filename": "image.png", "size": rng.randint(10**3, 10**7),
                                "url": f"https://cdn.discordapp.com/attachments/{message_id}/image.png",
                                "proxy_url": f"https://media.discordapp.net/attachments/{message_id}/image.png",
                                "width": 1280, "height": 720, "content_type": "image/png", "placeholder": self._hash(),
                                "placeholder_version": 1})
        return {
            "type": 0 if rng.random() < 0.9 else 19, "tts": False, "timestamp": self.iso(self._clock_ms),
            "pinned": False, "nonce": str(rng.getrandbits(60)), "mentions": mentions, "mention_roles": [],
            "mention_everyone": False, "member": self.member(guild, author, with_user=False), "id": message_id,
            "flags": 0, "embeds": embeds, "edited_timestamp": None, "content": self._sentence(),
            "components": [], "channel_type": 0, "channel_id": rng.choice(guild.text_channel_ids),
            "author": author, "attachments": attachments, "guild_id": guild.id,
        }

    def message_update(self, guild_id: str | None = None) -> dict[str, Any]:
        message = self.message_create(guild_id)
        message["edited_timestamp"] = self.iso(self._tick())
        return message

    def message_delete(self, guild_id: str | None = None) -> dict[str, Any]:
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        message_id = self.rng.choice(guild.message_ids) if guild.message_ids else self._past_snowflake(1)
        return {"id": message_id, "channel_id": self.rng.choice(guild.text_channel_ids), "guild_id": guild.id}

    def presence_update(self, guild_id: str | None = None) -> dict[str, Any]:
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        self._tick()
        return self._presence(guild, self._author(guild), in_guild_create=False)

    def typing_start(self, guild_id: str | None = None) -> dict[str, Any]:
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        user = self._author(guild)
        return {"user_id": user["id"], "timestamp": self._tick() // 1000,
                "member": self.member(guild, user), "channel_id": self.rng.choice(guild.text_channel_ids),
                "guild_id": guild.id}

    def guild_member_update(self, guild_id: str | None = None) -> dict[str, Any]:
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        self._tick()
        member = self.member(guild, self._author(guild))
        member["guild_id"] = guild.id
        return member

    def message_reaction_add(self, guild_id: str | None = None) -> dict[str, Any]:
        rng = self.rng
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        user = self._author(guild)
        emoji: dict[str, Any] = ({"name": rng.choice(_EMOJI), "id": None} if rng.random() < 0.7
                                 else {"name": self._name(), "id": self._past_snowflake(), "animated": False})
        return {"user_id": user["id"], "type": 0,
                "message_id": rng.choice(guild.message_ids) if guild.message_ids else self._past_snowflake(1),
                "message_author_id": self._author(guild)["id"], "member": self.member(guild, user),
                "emoji": emoji, "channel_id": rng.choice(guild.text_channel_ids), "burst": False,
                "guild_id": guild.id, "burst_colors": []}

    def voice_state_update(self, guild_id: str | None = None) -> dict[str, Any]:
        rng = self.rng
        guild = self._guild(guild_id) if guild_id else self._pick_guild()
        user = self._author(guild)
        return {"member": self.member(guild, user), "user_id": user["id"], "suppress": False,
                "session_id": self._hash(), "self_video": False, "self_mute": rng.random() < 0.3,
                "self_deaf": rng.random() < 0.1, "request_to_speak_timestamp": None, "mute": False,
                "deaf": False, "channel_id": rng.choice(guild.voice_channel_ids + [None]), "guild_id": guild.id}

    _MAKERS = {
        "MESSAGE_CREATE": "message_create", "PRESENCE_UPDATE": "presence_update",
        "TYPING_START": "typing_start", "MESSAGE_REACTION_ADD": "message_reaction_add",
        "GUILD_MEMBER_UPDATE": "guild_member_update", "MESSAGE_UPDATE": "message_update",
        "VOICE_STATE_UPDATE": "voice_state_update", "MESSAGE_DELETE": "message_delete",
    }

    def event(self, t: str, guild_id: str | None = None) -> dict[str, Any]:
        """The ``d`` of one steady-state event type by its name."""
        try:
            maker = self._MAKERS[t]
        except KeyError:
            raise ValueError(f"no generator for event {t!r}; known: {sorted(self._MAKERS)}") from None
        return getattr(self, maker)(guild_id)  # type: ignore[no-any-return]

    def steady_stream(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        """``n`` events in a realistic steady-state mix, as ``(t, d)`` pairs."""
        names = [name for name, _ in STEADY_MIX]
        weights = [weight for _, weight in STEADY_MIX]
        return [(t, self.event(t)) for t in self.rng.choices(names, weights, k=n)]

    def guild_burst(self, n_guilds: int) -> list[tuple[str, dict[str, Any]]]:
        """``n_guilds`` GUILD_CREATEs of varied sizes (about 1 in 20 large), as after READY."""
        burst = []
        for _ in range(n_guilds):
            large = self.rng.random() < 0.05
            burst.append(("GUILD_CREATE", self.guild_create(self._past_snowflake(), large=large)))
        return burst
