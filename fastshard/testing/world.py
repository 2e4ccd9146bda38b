"""One consistent Discord world: guilds, channels, roles, members, messages, voice.

Every dispatch the simulator sends is made from, and applied to, a
:class:`World`, so a client only ever hears about channels, members and
messages that exist.  Each guild is built from its own seeded RNG (seed and
guild id), so a guild looks the same whichever session or generator asks
for it first; state changes (a message posted, a member renamed) are shared
by everything that uses the world.

World objects are replaced, never mutated in place, so a payload built
earlier keeps showing the state it was built from.
"""
from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["World", "GuildState", "ObjectMaker", "DISCORD_EPOCH_MS", "PERMISSIONS"]

DISCORD_EPOCH_MS = 1420070400000
# Virtual clock start (2024-06-01 UTC): fixed so output never depends on "now".
CLOCK_START_MS = 1717200000000

_WORDS = ("the", "a", "gg", "lol", "raid", "tonight", "who", "is", "up", "for", "ranked", "patch",
          "notes", "are", "out", "check", "this", "meme", "bot", "pls", "help", "server", "role",
          "voice", "chat", "brb", "afk", "nice", "ship", "it", "deploy", "friday", "café", "naïve",
          "über", "日本語", "🎉", "🔥", "👍", "ok", "anyone", "seen", "my", "keys", "python", "asyncio")
_NAMES = ("ash", "birch", "cedar", "dune", "ember", "fjord", "grove", "haze", "iris", "juniper",
          "kestrel", "lumen", "moss", "nova", "onyx", "pike", "quill", "rune", "sable", "tarn",
          "umber", "vale", "wren", "yarrow", "zephyr", "Zoë", "Ångström", "Mañana")
_GAMES = ("Minecraft", "League of Legends", "Visual Studio Code", "Spotify", "Elden Ring",
          "Counter-Strike 2", "Stardew Valley", "Factorio")
ONLINE_STATUSES = ("online", "online", "online", "idle", "dnd")
EMOJI = ("👍", "🔥", "😂", "🎉", "❤️", "👀")
_FEATURES = ("COMMUNITY", "NEWS", "INVITE_SPLASH", "ANIMATED_ICON", "BANNER", "VANITY_URL",
             "ROLE_ICONS", "THREADS_ENABLED", "MEMBER_VERIFICATION_GATE_ENABLED", "DISCOVERABLE")

# Permission bits (developers/topics/permissions.mdx) the world's roles use.
PERMISSIONS = {
    "CREATE_INSTANT_INVITE": 1 << 0, "ADD_REACTIONS": 1 << 6, "VIEW_CHANNEL": 1 << 10,
    "SEND_MESSAGES": 1 << 11, "MANAGE_MESSAGES": 1 << 13, "EMBED_LINKS": 1 << 14,
    "ATTACH_FILES": 1 << 15, "READ_MESSAGE_HISTORY": 1 << 16, "CONNECT": 1 << 20, "SPEAK": 1 << 21,
    "MOVE_MEMBERS": 1 << 24, "USE_VAD": 1 << 25, "CHANGE_NICKNAME": 1 << 26,
}
_EVERYONE_PERMS = sum(PERMISSIONS[p] for p in ("CREATE_INSTANT_INVITE", "ADD_REACTIONS", "VIEW_CHANNEL",
                                               "SEND_MESSAGES", "EMBED_LINKS", "ATTACH_FILES",
                                               "READ_MESSAGE_HISTORY", "CONNECT", "SPEAK", "USE_VAD",
                                               "CHANGE_NICKNAME"))
_BOT_PERMS = _EVERYONE_PERMS | PERMISSIONS["MANAGE_MESSAGES"] | PERMISSIONS["MOVE_MEMBERS"]

# Default sizes: a varied small guild, or a large one (~1000 of them sent in GUILD_CREATE).
GUILD_SIZES = (2, 5, 12, 25, 40, 80, 150, 250)
LARGE_GUILD_SIZE = 1600
MESSAGES_KEPT = 500  # per guild, like a client's message cache: older ones are forgotten


class ObjectMaker:
    """Discord-shaped objects from one RNG and a virtual clock."""

    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)
        self._clock_ms = CLOCK_START_MS
        self._increment = 0

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

    def activity(self) -> dict[str, Any]:
        rng = self.rng
        created = self._clock_ms - rng.randrange(10**7)
        if rng.random() < 0.4:
            return {"type": 4, "state": self._sentence(1, 6), "name": "Custom Status", "id": "custom",
                    "emoji": {"name": rng.choice(EMOJI)} if rng.random() < 0.5 else None, "created_at": created}
        return {"type": 0, "name": rng.choice(_GAMES), "id": "%016x" % rng.getrandbits(64),
                "created_at": created, "timestamps": {"start": created - rng.randrange(10**7)},
                "application_id": self._past_snowflake()}

    def presence(self, user_id: str, status: str | None = None) -> dict[str, Any]:
        """A presence as GUILD_CREATE carries it (no ``guild_id``)."""
        rng = self.rng
        status = status or rng.choice(ONLINE_STATUSES)
        return {"user": {"id": user_id}, "status": status,
                "client_status": {rng.choice(("desktop", "mobile", "web")): status},
                "broadcast": None, "activities": [self.activity() for _ in range(rng.choice((0, 1, 1, 2)))]}


@dataclass
class GuildState:
    """A guild as it is now.  Dicts are keyed by id, in creation order."""

    id: str
    bot_id: str
    owner_id: str
    static: dict[str, Any]                 # guild fields that never change
    roles: dict[str, dict[str, Any]]
    channels: dict[str, dict[str, Any]]
    members: dict[str, dict[str, Any]]     # user id -> member with "user"
    presences: dict[str, dict[str, Any]]   # user id -> presence; offline members have none
    emojis: list[dict[str, Any]]
    soundboard_sounds: list[dict[str, Any]]
    voice_states: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> state, no guild_id
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)      # newest last
    departures: int = 0                    # members who left so far (generators refresh their views)

    def channel_ids(self, kind: int) -> list[str]:
        return [cid for cid, c in self.channels.items() if c["type"] == kind]

    @property
    def text_channel_ids(self) -> list[str]:
        return self.channel_ids(0)

    @property
    def voice_channel_ids(self) -> list[str]:
        return self.channel_ids(2)

    def add_message(self, message: dict[str, Any]) -> None:
        self.messages[message["id"]] = message
        while len(self.messages) > MESSAGES_KEPT:
            del self.messages[next(iter(self.messages))]

    def remove_member(self, user_id: str) -> dict[str, Any]:
        """A member leaves: gone from members, presences and voice."""
        member = self.members.pop(user_id)
        self.presences.pop(user_id, None)
        self.voice_states.pop(user_id, None)
        self.departures += 1
        return member

    def shown_members(self, intents: int, large_threshold: int) -> list[str]:
        """Whose members GUILD_CREATE carries, by the rule in gateway-events.mdx
        (Request Guild Members, Guild Create): without GUILD_PRESENCES only the
        bot and members in voice; past ``large_threshold`` only members who are
        online, have a role or a nickname, or are in voice; otherwise all."""
        in_voice = self.voice_states.keys()
        if not intents & 1 << 8:
            return [uid for uid in self.members if uid == self.bot_id or uid in in_voice]
        if len(self.members) > large_threshold:
            return [uid for uid, m in self.members.items()
                    if uid == self.bot_id or uid in in_voice or uid in self.presences or m["roles"] or m["nick"]]
        return list(self.members)


class _GuildBuilder(ObjectMaker):
    """Builds one guild from its own seed, so creation order does not matter."""

    def __init__(self, world: World, guild_id: str) -> None:
        super().__init__(f"guild:{world.seed}:{guild_id}")
        self.world = world
        self.guild_id = guild_id

    def member(self, user: dict[str, Any], role_ids: list[str]) -> dict[str, Any]:
        rng = self.rng
        roles = rng.sample(role_ids, rng.randint(1, min(3, len(role_ids)))) if rng.random() < 0.35 else []
        return {
            "roles": roles,
            "premium_since": None if rng.random() < 0.9 else self.iso(self._clock_ms - rng.randrange(10**10)),
            "pending": False, "nick": self._name() if rng.random() < 0.2 else None, "mute": False,
            "joined_at": self.iso(self._clock_ms - rng.randrange(10**11)), "flags": rng.choice((0, 0, 2, 10)),
            "deaf": False, "communication_disabled_until": None, "banner": None, "avatar": None,
            "user": user,
        }

    def role(self, role_id: str, position: int, name: str, permissions: int,
             managed: bool = False) -> dict[str, Any]:
        rng = self.rng
        color = 0 if role_id == self.guild_id else rng.choice((0, 0x1ABC9C, 0x3498DB, 0xE91E63, 0xF1C40F))
        role: dict[str, Any] = {
            "id": role_id, "name": name, "description": None, "permissions": str(permissions),
            "position": position, "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "hoist": rng.random() < 0.3, "managed": managed, "mentionable": rng.random() < 0.2,
            "icon": None, "unicode_emoji": None, "flags": 0,
        }
        if managed:
            role["tags"] = {"bot_id": self.world.bot_user["id"]}
        return role

    def channel(self, kind: int, position: int, parent_id: str | None,
                role_ids: list[str]) -> dict[str, Any]:
        rng = self.rng
        # Overwrites on ordinary roles only: the bot always sees its channels.
        overwrites = [{"id": rid, "type": 0, "allow": str(PERMISSIONS["MANAGE_MESSAGES"] if rng.random() < 0.3 else 0),
                       "deny": str(PERMISSIONS["SEND_MESSAGES"] if rng.random() < 0.3 else 0)}
                      for rid in rng.sample(role_ids, rng.randint(0, min(2, len(role_ids))))]
        channel: dict[str, Any] = {
            "id": self._past_snowflake(), "type": kind, "name": "-".join(self._sentence(1, 3).split()),
            "position": position, "flags": 0, "permission_overwrites": overwrites,
            "version": self._clock_ms - rng.randrange(10**10), "guild_id": self.guild_id,
        }
        if parent_id is not None:
            channel["parent_id"] = parent_id
        if kind == 0:
            channel.update({"topic": self._sentence() if rng.random() < 0.5 else None, "nsfw": False,
                            "last_message_id": None, "rate_limit_per_user": 0,
                            "icon_emoji": None, "theme_color": None})
        elif kind == 2:
            channel.update({"bitrate": 64000, "user_limit": rng.choice((0, 0, 10, 25)), "rtc_region": None,
                            "nsfw": False, "rate_limit_per_user": 0, "last_message_id": None})
        return channel

    def build(self, members: int | None, large: bool) -> GuildState:
        rng = self.rng
        gid = self.guild_id
        bot = self.world.bot_user
        if members is None:
            members = LARGE_GUILD_SIZE if large else rng.choice(GUILD_SIZES)
        members = max(2, members)  # the bot and the owner
        role_ids = [self._past_snowflake() for _ in range(rng.randint(2, 12))]
        bot_role_id = self._past_snowflake()
        roles = {gid: self.role(gid, 0, "@everyone", _EVERYONE_PERMS)}
        for i, rid in enumerate(role_ids):
            roles[rid] = self.role(rid, i + 1, self._sentence(1, 2), _EVERYONE_PERMS | rng.choice(
                (0, PERMISSIONS["MANAGE_MESSAGES"], PERMISSIONS["MOVE_MEMBERS"])))
        roles[bot_role_id] = self.role(bot_role_id, len(roles), bot["username"], _BOT_PERMS, managed=True)
        channels: dict[str, dict[str, Any]] = {}
        categories = [self.channel(4, i, None, role_ids) for i in range(rng.randint(1, 4))]
        for c in categories:
            channels[c["id"]] = c
        for kind, count in ((0, rng.randint(3, 15)), (2, rng.randint(1, 4))):
            for i in range(count):
                c = self.channel(kind, i, rng.choice(categories)["id"], role_ids)
                channels[c["id"]] = c
        users = [self.user(bot=rng.random() < 0.03) for _ in range(members - 1)]
        member_map = {bot["id"]: dict(self.member(bot, role_ids), roles=[bot_role_id])}
        for user in users:
            member_map[user["id"]] = self.member(user, role_ids)
        owner_id = users[0]["id"]
        presences = {u["id"]: self.presence(u["id"]) for u in users if rng.random() < 0.3}
        presences[bot["id"]] = self.presence(bot["id"], "online")
        static = {
            "id": gid, "name": self._sentence(1, 3).title(), "icon": self._hash(), "icon_hash": None,
            "splash": None, "discovery_splash": None, "owner_id": owner_id, "afk_channel_id": None,
            "afk_timeout": 300, "widget_enabled": False, "verification_level": rng.randint(0, 4),
            "default_message_notifications": rng.randint(0, 1), "explicit_content_filter": rng.randint(0, 2),
            "stickers": [], "features": rng.sample(_FEATURES, rng.randint(0, len(_FEATURES))),
            "mfa_level": rng.randint(0, 1), "application_id": None,
            "system_channel_id": next(cid for cid, c in channels.items() if c["type"] == 0),
            "system_channel_flags": 0, "rules_channel_id": None, "max_presences": None,
            "max_members": 500000, "vanity_url_code": None,
            "description": self._sentence() if rng.random() < 0.3 else None, "banner": None,
            "premium_tier": rng.randint(0, 3), "premium_subscription_count": rng.randint(0, 30),
            "preferred_locale": "en-US", "public_updates_channel_id": None, "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50, "nsfw_level": 0, "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None, "incidents_data": None, "inventory_settings": None,
            "hub_type": None, "latest_onboarding_question_id": None, "home_header": None,
            "version": self._clock_ms, "region": "deprecated",
            "joined_at": self.iso(self._clock_ms - rng.randrange(10**11)), "unavailable": False, "lazy": True,
        }
        emojis = [{"id": self._past_snowflake(), "name": self._name(), "roles": [], "require_colons": True,
                   "managed": False, "animated": rng.random() < 0.2, "available": True}
                  for _ in range(rng.randint(0, 20))]
        sounds = [{"name": self._name(), "sound_id": self._past_snowflake(), "volume": 1.0,
                   "emoji_id": None, "emoji_name": rng.choice(EMOJI), "guild_id": gid, "available": True,
                   "user": rng.choice(users)} for _ in range(rng.randint(0, 3))]
        guild = GuildState(id=gid, bot_id=bot["id"], owner_id=owner_id, static=static, roles=roles,
                           channels=channels, members=member_map, presences=presences, emojis=emojis,
                           soundboard_sounds=sounds)
        # A few members already sit in voice when the bot connects.
        for user in rng.sample(users, min(len(users) - 1, rng.randint(0, 3))):
            guild.voice_states[user["id"]] = {
                "user_id": user["id"], "channel_id": rng.choice(guild.voice_channel_ids),
                "session_id": self._hash(), "deaf": False, "mute": False, "self_deaf": False,
                "self_mute": rng.random() < 0.3, "self_video": False, "suppress": False,
                "request_to_speak_timestamp": None, "member": member_map[user["id"]]}
        return guild


class World:
    """Every guild the simulator knows, and the bot user they share."""

    def __init__(self, seed: int | str = 0) -> None:
        self.seed = seed
        maker = ObjectMaker(f"bot:{seed}")
        self.application_id = maker.snowflake(CLOCK_START_MS - 86_400_000 * 900)
        self.bot_user = maker.user(bot=True, user_id=self.application_id)
        self.bot_presence: dict[str, Any] = {"status": "online", "activities": []}
        self.guilds: dict[str, GuildState] = {}

    def guild(self, guild_id: str, members: int | None = None, large: bool = False) -> GuildState:
        """The guild with this id, built (with ``members`` members) on first use."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            guild = self.guilds[guild_id] = _GuildBuilder(self, guild_id).build(members, large)
        return guild

    # -- payloads ------------------------------------------------------------
    def guild_create(self, guild: GuildState, intents: int, large_threshold: int) -> tuple[dict[str, Any], list[str]]:
        """GUILD_CREATE's ``d`` as a client with ``intents`` sees it, and the member ids it shows."""
        shown = guild.shown_members(intents, large_threshold)
        voice = intents & 1 << 7
        # Presences come with GUILD_PRESENCES only, and only for members shown.
        presences = [guild.presences[uid] for uid in shown if uid in guild.presences] if intents & 1 << 8 else []
        payload = dict(guild.static)
        payload.update({
            "roles": list(guild.roles.values()), "emojis": list(guild.emojis),
            "large": len(guild.members) > large_threshold, "member_count": len(guild.members),
            # Without GUILD_VOICE_STATES Discord sends no voice states (the docs leave it open).
            "voice_states": [{k: v for k, v in s.items() if k != "member"} for s in guild.voice_states.values()]
            if voice else [],
            "members": [guild.members[uid] for uid in shown],
            "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in guild.channels.values()],
            "threads": [], "presences": presences, "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": list(guild.soundboard_sounds), "embedded_activities": [],
            "activity_instances": [], "application_command_counts": {},
        })
        return payload, shown
