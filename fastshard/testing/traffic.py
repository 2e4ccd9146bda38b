"""Deterministic, realistic Discord gateway traffic about one consistent world.

Objects have the shapes Discord's v10 gateway sends (snowflakes as strings,
ISO timestamps, nested members/users/roles), with varied sizes and some
non-ASCII text, so decoders and benchmarks see what a real bot sees.  Every
event is about the generator's :class:`~fastshard.testing.world.World`: a
message is posted in a channel of its guild by a member, an edit, delete or
reaction names a message that exists, and a presence, member or voice update
names a member the client was shown.  Events change the world (a deleted
message is gone).  The same seed always yields the same payloads: the
generator has its own ``random.Random`` and a virtual clock, never the wall
clock.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .intents_filter import EVENT_INTENTS
from .world import DISCORD_EPOCH_MS, EMOJI, GuildState, ObjectMaker, World

__all__ = ["TrafficGenerator", "DISCORD_EPOCH_MS", "STEADY_MIX", "CHUNK_SIZE"]

# Steady-state mix of a mid-sized bot with the usual intents (weights ~ %).
STEADY_MIX: tuple[tuple[str, int], ...] = (
    ("MESSAGE_CREATE", 30), ("PRESENCE_UPDATE", 25), ("TYPING_START", 14),
    ("MESSAGE_REACTION_ADD", 9), ("GUILD_MEMBER_UPDATE", 7), ("MESSAGE_UPDATE", 6),
    ("VOICE_STATE_UPDATE", 5), ("MESSAGE_DELETE", 4), ("GUILD_MEMBER_ADD", 1), ("GUILD_MEMBER_REMOVE", 1),
)
CHUNK_SIZE = 1000           # members per GUILD_MEMBERS_CHUNK (gateway-events.mdx)
QUERY_LIMIT = 100           # a prefix query or a user_ids list returns at most this many
ALL_INTENTS_VIEW = (1 << 26) - 1


def _member_only(member: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in member.items() if k != "user"}


class TrafficGenerator(ObjectMaker):
    """Generates gateway dispatch data (the ``d`` of op 0) about one world, deterministically.

    ``guild_ids`` are the guilds its events are about (a guild is made on
    first use; without any, the first event makes one).  Several generators
    may share a ``world``: the simulator has one world and one generator per
    session.
    """

    def __init__(self, seed: int | str = 0, guild_ids: Iterable[str] | None = None, *,
                 world: World | None = None) -> None:
        super().__init__(seed)
        self.seed = seed
        self.world = world if world is not None else World(seed)
        self.application_id = self.world.application_id
        self.bot_user = self.world.bot_user
        self.guild_ids: list[str] = []
        # Members the client was shown, per guild (None: all of them).
        self._known: dict[str, dict[str, None]] = {}
        self._actors: dict[str, list[str]] = {}
        self._departures: dict[str, int] = {}  # guild.departures when _actors was built
        for guild_id in guild_ids or ():
            self._add_guild(guild_id)

    # -- the world as this client knows it ---------------------------------
    def _add_guild(self, guild_id: str) -> None:
        if guild_id not in self.guild_ids:
            self.guild_ids.append(guild_id)

    def guild(self, guild_id: str) -> GuildState:
        """The world's guild (made with default contents on first use)."""
        self._add_guild(guild_id)
        return self.world.guild(guild_id)

    def _pick_guild(self, guild_id: str | None, usable: Callable[[GuildState], bool] | None = None
                    ) -> GuildState | None:
        if guild_id is not None:
            guild = self.guild(guild_id)
            return guild if usable is None or usable(guild) else None
        if not self.guild_ids:
            self._add_guild(self._past_snowflake())
        candidates = [self.world.guild(gid) for gid in self.guild_ids]
        if usable is not None:
            candidates = [g for g in candidates if usable(g)]
        return self.rng.choice(candidates) if candidates else None

    def _tell(self, guild: GuildState, user_ids: Iterable[str]) -> None:
        """The client now knows these members (GUILD_CREATE, a chunk, GUILD_MEMBER_ADD)."""
        known = self._known.get(guild.id)
        if known is None:  # never built a GUILD_CREATE for it: the client knows everyone
            known = self._known[guild.id] = dict.fromkeys(guild.members)
        actors = self.known_members(guild.id)
        for uid in user_ids:
            if uid not in known:
                known[uid] = None
                if uid != guild.bot_id:
                    actors.append(uid)

    def known_members(self, guild_id: str) -> list[str]:
        """Ids of the members of ``guild_id`` the client was shown (GUILD_CREATE, chunks), bot excluded."""
        guild = self.guild(guild_id)
        actors = self._actors.get(guild_id)
        if actors is None or self._departures.get(guild_id) != guild.departures:
            # First use, or members left (perhaps through another generator of the world).
            known = self._known.get(guild_id)
            ids = guild.members if known is None else known
            actors = self._actors[guild_id] = [uid for uid in ids if uid != guild.bot_id and uid in guild.members]
            self._departures[guild_id] = guild.departures
        return actors

    def _actor(self, guild: GuildState) -> str:
        return self.rng.choice(self.known_members(guild.id))

    def _has_actors(self, guild: GuildState) -> bool:
        return bool(self.known_members(guild.id))

    def _author(self, guild: GuildState) -> str:
        # A message tells the client who wrote it, so any member may post.
        if self._has_actors(guild):
            return self._actor(guild)
        return self.rng.choice([uid for uid in guild.members if uid != guild.bot_id])

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

    def guild_create(self, guild_id: str | None = None, members: int | None = None, *, large: bool = False,
                     intents: int = ALL_INTENTS_VIEW, large_threshold: int = 250) -> dict[str, Any]:
        """GUILD_CREATE's ``d`` as a client with ``intents`` and ``large_threshold`` sees it.

        ``members`` (the bot and the owner included) sizes a guild made by this
        call; it defaults to a varied size, ``large=True`` to 1600 members of
        which about 1000 are sent (hundreds of KB of JSON).
        """
        gid = guild_id or self._past_snowflake()
        self._add_guild(gid)
        guild = self.world.guild(gid, members, large)
        payload, shown = self.world.guild_create(guild, intents, large_threshold)
        self._known[gid] = {}
        self._actors[gid] = []
        self._departures[gid] = guild.departures
        self._tell(guild, shown)
        return payload

    def member_chunks(self, guild_id: str, *, query: str | None = "", limit: int = 0,
                      user_ids: list[str] | None = None, presences: bool = False,
                      nonce: str | None = None) -> list[dict[str, Any]]:
        """The GUILD_MEMBERS_CHUNKs answering op 8 (Request Guild Members), as Discord sends them:
        members whose username or nick starts with ``query`` (all for ``""``
        and ``limit`` 0) or those in ``user_ids`` (unknown ids in ``not_found``),
        up to 1000 per chunk, with their presences if asked."""
        guild = self.guild(guild_id)
        not_found: list[str] | None = None
        if user_ids is not None:
            wanted = list(dict.fromkeys(str(u) for u in user_ids))[:QUERY_LIMIT]
            ids = [uid for uid in wanted if uid in guild.members]
            not_found = [uid for uid in wanted if uid not in guild.members]
        else:
            prefix = (query or "").lower()
            if prefix:
                cap = min(limit, QUERY_LIMIT) if limit > 0 else QUERY_LIMIT
                ids = [uid for uid, m in guild.members.items()
                       if m["user"]["username"].lower().startswith(prefix)
                       or (m["nick"] or "").lower().startswith(prefix)][:cap]
            else:
                ids = list(guild.members)[:limit] if limit > 0 else list(guild.members)
        self._tell(guild, ids)
        pieces = [ids[i:i + CHUNK_SIZE] for i in range(0, len(ids), CHUNK_SIZE)] or [[]]
        chunks = []
        for index, piece in enumerate(pieces):
            chunk: dict[str, Any] = {"guild_id": guild.id, "members": [guild.members[uid] for uid in piece],
                                     "chunk_index": index, "chunk_count": len(pieces)}
            if not_found is not None:
                chunk["not_found"] = not_found
            if presences:
                chunk["presences"] = [guild.presences[uid] for uid in piece if uid in guild.presences]
            if nonce is not None:
                chunk["nonce"] = nonce
            chunks.append(chunk)
        return chunks

    def members_chunk(self, guild_id: str, limit: int = 10, nonce: Any = None) -> dict[str, Any]:
        """The first GUILD_MEMBERS_CHUNK for ``query: "", limit``."""
        return self.member_chunks(guild_id, limit=limit, nonce=nonce)[0]

    # -- steady-state events -------------------------------------------------
    def _mention(self, guild: GuildState, user_id: str) -> dict[str, Any]:
        member = guild.members[user_id]
        return dict(member["user"], member=_member_only(member))

    def message_create(self, guild_id: str | None = None) -> dict[str, Any]:
        """A new message by a member in one of the guild's text channels (sometimes a reply)."""
        rng = self.rng
        guild = self._pick_guild(guild_id)
        assert guild is not None
        author = guild.members[self._author(guild)]
        channel_id = rng.choice(guild.text_channel_ids)
        message_id = self.snowflake()
        mentioned = rng.sample(self.known_members(guild.id), min(len(self.known_members(guild.id)),
                                                                 rng.choice((0, 0, 0, 1, 2))))
        if rng.random() < 0.05:
            mentioned.append(guild.bot_id)  # the bot sees content it is mentioned in
        embeds = []
        if rng.random() < 0.1:
            embeds.append({"type": "rich", "title": self._sentence(2, 6), "description": self._sentence(5, 60),
                           "color": 0x5865F2, "fields": [{"name": self._sentence(1, 3), "value": self._sentence(1, 10),
                                                          "inline": rng.random() < 0.5} for _ in range(rng.randint(0, 5))]})
        attachments = []
        if rng.random() < 0.05:
            attachments.append({"id": self.snowflake(), "filename": "image.png", "size": rng.randint(10**3, 10**7),
                                "url": f"https://cdn.discordapp.com/attachments/{channel_id}/{message_id}/image.png",
                                "proxy_url": f"https://media.discordapp.net/attachments/{channel_id}/{message_id}/image.png",
                                "width": 1280, "height": 720, "content_type": "image/png", "placeholder": self._hash(),
                                "placeholder_version": 1})
        message: dict[str, Any] = {
            "type": 0, "tts": False, "timestamp": self.iso(self._clock_ms),
            "pinned": False, "nonce": str(rng.getrandbits(60)),
            "mentions": [self._mention(guild, uid) for uid in mentioned], "mention_roles": [],
            "mention_everyone": False, "member": _member_only(author), "id": message_id,
            "flags": 0, "embeds": embeds, "edited_timestamp": None, "content": self._sentence(),
            "components": [], "channel_type": 0, "channel_id": channel_id,
            "author": author["user"], "attachments": attachments, "guild_id": guild.id,
        }
        earlier = [m for m in guild.messages.values() if m["channel_id"] == channel_id]
        if earlier and rng.random() < 0.1:
            # A reply (type 19) names the message it answers (developers/resources/message.mdx).
            target = rng.choice(earlier[-20:])
            message["type"] = 19
            message["message_reference"] = {"type": 0, "message_id": target["id"], "channel_id": channel_id,
                                            "guild_id": guild.id}
            message["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}
        guild.add_message(message)
        return message

    def _with_message(self, guild_id: str | None) -> tuple[GuildState, dict[str, Any]] | None:
        guild = self._pick_guild(guild_id, lambda g: bool(g.messages))
        if guild is None:
            return None
        recent = list(guild.messages.values())[-50:]
        return guild, self.rng.choice(recent)

    def _message_update(self, guild_id: str | None) -> dict[str, Any] | None:
        found = self._with_message(guild_id)
        if found is None:
            return None
        guild, old = found
        edited = dict(old, content=self._sentence(), edited_timestamp=self.iso(self._tick()))
        guild.messages[old["id"]] = edited
        return edited

    def _message_delete(self, guild_id: str | None) -> dict[str, Any] | None:
        found = self._with_message(guild_id)
        if found is None:
            return None
        guild, message = found
        del guild.messages[message["id"]]
        return {"id": message["id"], "channel_id": message["channel_id"], "guild_id": guild.id}

    def _message_reaction_add(self, guild_id: str | None) -> dict[str, Any] | None:
        rng = self.rng
        found = self._with_message(guild_id)
        if found is None:
            return None
        guild, message = found
        member = guild.members[self._author(guild)]
        emoji: dict[str, Any] = ({"name": rng.choice(EMOJI), "id": None} if rng.random() < 0.7 or not guild.emojis
                                 else {k: rng.choice(guild.emojis)[k] for k in ("name", "id", "animated")})
        return {"user_id": member["user"]["id"], "type": 0, "message_id": message["id"],
                "message_author_id": message["author"]["id"], "member": member,
                "emoji": emoji, "channel_id": message["channel_id"], "burst": False,
                "guild_id": guild.id, "burst_colors": []}

    def _typing_start(self, guild_id: str | None) -> dict[str, Any] | None:
        guild = self._pick_guild(guild_id)
        assert guild is not None
        member = guild.members[self._author(guild)]
        return {"user_id": member["user"]["id"], "timestamp": self._tick() // 1000, "member": member,
                "channel_id": self.rng.choice(guild.text_channel_ids), "guild_id": guild.id}

    def _presence_update(self, guild_id: str | None) -> dict[str, Any] | None:
        guild = self._pick_guild(guild_id, self._has_actors)
        if guild is None:
            return None
        self._tick()
        user_id = self._actor(guild)
        presence: dict[str, Any]
        if self.rng.random() < 0.2:
            presence = {"user": {"id": user_id}, "status": "offline", "client_status": {},
                        "broadcast": None, "activities": []}
            guild.presences.pop(user_id, None)
        else:
            presence = guild.presences[user_id] = self.presence(user_id)
        return dict(presence, guild_id=guild.id)

    def _guild_member_update(self, guild_id: str | None) -> dict[str, Any] | None:
        rng = self.rng
        guild = self._pick_guild(guild_id, self._has_actors)
        if guild is None:
            return None
        self._tick()
        old = guild.members[self._actor(guild)]
        ordinary = [rid for rid, r in guild.roles.items() if rid != guild.id and not r["managed"]]
        if rng.random() < 0.5:
            member = dict(old, nick=None if old["nick"] else self._name())
        else:
            member = dict(old, roles=rng.sample(ordinary, rng.randint(0, min(3, len(ordinary)))))
        guild.members[old["user"]["id"]] = member
        return dict(member, guild_id=guild.id)

    def _voice_state_update(self, guild_id: str | None) -> dict[str, Any] | None:
        rng = self.rng
        guild = self._pick_guild(guild_id, self._has_actors)
        if guild is None:
            return None
        user_id = self._actor(guild)
        old = guild.voice_states.get(user_id)
        if old is not None and rng.random() < 0.5:
            del guild.voice_states[user_id]
            return dict(old, channel_id=None, guild_id=guild.id, member=guild.members[user_id])
        state = {"user_id": user_id, "channel_id": rng.choice(guild.voice_channel_ids),
                 "session_id": old["session_id"] if old else self._hash(), "deaf": False, "mute": False,
                 "self_deaf": rng.random() < 0.1, "self_mute": rng.random() < 0.3, "self_video": False,
                 "suppress": False, "request_to_speak_timestamp": None, "member": guild.members[user_id]}
        guild.voice_states[user_id] = state
        return dict(state, guild_id=guild.id)

    def _guild_member_add(self, guild_id: str | None) -> dict[str, Any] | None:
        guild = self._pick_guild(guild_id)
        assert guild is not None
        self._tick()
        user = self.user(bot=self.rng.random() < 0.03)
        member: dict[str, Any] = {"roles": [], "premium_since": None, "pending": False, "nick": None, "mute": False,
                  "joined_at": self.iso(self._clock_ms), "flags": 0, "deaf": False,
                  "communication_disabled_until": None, "banner": None, "avatar": None, "user": user}
        guild.members[user["id"]] = member
        self._tell(guild, [user["id"]])  # GUILD_MEMBER_ADD tells the client about the member
        return dict(member, guild_id=guild.id)

    def _guild_member_remove(self, guild_id: str | None) -> dict[str, Any] | None:
        # Someone the client knows leaves (never the owner): later events never name them.
        def leavable(g: GuildState) -> bool:
            return any(uid != g.owner_id for uid in self.known_members(g.id))
        guild = self._pick_guild(guild_id, leavable)
        if guild is None:
            return None
        user_id = self.rng.choice([uid for uid in self.known_members(guild.id) if uid != guild.owner_id])
        member = guild.remove_member(user_id)
        self._known.get(guild.id, {}).pop(user_id, None)
        return {"guild_id": guild.id, "user": member["user"]}

    def _message_create(self, guild_id: str | None) -> dict[str, Any] | None:
        return self.message_create(guild_id)

    _MAKERS: dict[str, Callable[[TrafficGenerator, str | None], dict[str, Any] | None]] = {
        "MESSAGE_CREATE": _message_create, "PRESENCE_UPDATE": _presence_update,
        "TYPING_START": _typing_start, "MESSAGE_REACTION_ADD": _message_reaction_add,
        "GUILD_MEMBER_UPDATE": _guild_member_update, "MESSAGE_UPDATE": _message_update,
        "VOICE_STATE_UPDATE": _voice_state_update, "MESSAGE_DELETE": _message_delete,
        "GUILD_MEMBER_ADD": _guild_member_add, "GUILD_MEMBER_REMOVE": _guild_member_remove,
    }

    def event(self, t: str, guild_id: str | None = None) -> dict[str, Any]:
        """The ``d`` of one steady-state event type by its name.

        Raises LookupError when the world has nothing it could be about yet
        (no message to edit, delete or react to; no member the client knows).
        """
        try:
            maker = self._MAKERS[t]
        except KeyError:
            raise ValueError(f"no generator for event {t!r}; known: {sorted(self._MAKERS)}") from None
        d = maker(self, guild_id)
        if d is None:
            need = "a message" if t.startswith("MESSAGE_") else "a member the client was shown"
            raise LookupError(f"no {t} possible yet: the guilds have no {need} (dispatch a MESSAGE_CREATE first)")
        return d

    def message_update(self, guild_id: str | None = None) -> dict[str, Any]:
        """An edit of a message that exists (LookupError if there is none yet)."""
        return self.event("MESSAGE_UPDATE", guild_id)

    def message_delete(self, guild_id: str | None = None) -> dict[str, Any]:
        """The deletion of a message that exists; it is gone afterwards."""
        return self.event("MESSAGE_DELETE", guild_id)

    def message_reaction_add(self, guild_id: str | None = None) -> dict[str, Any]:
        return self.event("MESSAGE_REACTION_ADD", guild_id)

    def presence_update(self, guild_id: str | None = None) -> dict[str, Any]:
        return self.event("PRESENCE_UPDATE", guild_id)

    def typing_start(self, guild_id: str | None = None) -> dict[str, Any]:
        return self.event("TYPING_START", guild_id)

    def guild_member_update(self, guild_id: str | None = None) -> dict[str, Any]:
        return self.event("GUILD_MEMBER_UPDATE", guild_id)

    def voice_state_update(self, guild_id: str | None = None) -> dict[str, Any]:
        return self.event("VOICE_STATE_UPDATE", guild_id)

    def guild_member_add(self, guild_id: str | None = None) -> dict[str, Any]:
        """A new member joins (and the client is told about them)."""
        return self.event("GUILD_MEMBER_ADD", guild_id)

    def guild_member_remove(self, guild_id: str | None = None) -> dict[str, Any]:
        """A known member (not the owner) leaves; later events never name them."""
        return self.event("GUILD_MEMBER_REMOVE", guild_id)

    def steady_stream(self, n: int, intents: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``n`` events in a realistic steady-state mix, as ``(t, d)`` pairs.

        With ``intents``, only events a client with those intents receives;
        an event the world cannot have yet (an edit before any message) is
        replaced by another draw.
        """
        mix = [(t, w) for t, w in STEADY_MIX if intents is None or intents & EVENT_INTENTS[t][0]]
        if not mix:
            return []
        names = [t for t, _ in mix]
        weights = [w for _, w in mix]
        out: list[tuple[str, dict[str, Any]]] = []
        misses = 0
        while len(out) < n and misses < 100:
            t = self.rng.choices(names, weights)[0]
            d = self._MAKERS[t](self, None)
            if d is None:
                misses += 1  # e.g. only edits allowed and no message yet: give up after a while
                continue
            misses = 0
            out.append((t, d))
        return out

    def guild_burst(self, n_guilds: int) -> list[tuple[str, dict[str, Any]]]:
        """``n_guilds`` GUILD_CREATEs of varied sizes (about 1 in 20 large), as after READY."""
        burst = []
        for _ in range(n_guilds):
            large = self.rng.random() < 0.05
            burst.append(("GUILD_CREATE", self.guild_create(self._past_snowflake(), large=large)))
        return burst
