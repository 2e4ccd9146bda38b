"""The simulator's world: consistent dispatches, intents, large_threshold, and
the answers to send opcodes 3, 4, 8, 31 and 43, seen by a raw JSON client."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fastshard.intents import INTENTS
from fastshard.testing import GatewaySimulator, TrafficGenerator
from fastshard.testing.commands import VOICE_ENDPOINT
from fastshard.testing.intents_filter import apply_intents

PROPS = {"os": "linux", "browser": "test", "device": "test"}
ALL = sum(INTENTS.values())
UNPRIVILEGED = ALL & ~(INTENTS["GUILD_MEMBERS"] | INTENTS["GUILD_PRESENCES"] | INTENTS["MESSAGE_CONTENT"])


class Raw:
    """JSON, no compression: enough to read what the simulator says."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send(json.dumps({"op": op, "d": d}))

    async def dispatches(self, n: int) -> list[dict[str, Any]]:
        out = []
        while len(out) < n:
            p = await self.recv()
            if p["op"] == 0:
                out.append(p)
        return out

    async def nothing(self, within: float = 0.15) -> None:
        with pytest.raises(asyncio.TimeoutError):
            p = await self.recv(within)
            while p["op"] == 11:  # heartbeat ACKs are not answers
                p = await self.recv(within)


async def _identify(sim: GatewaySimulator, intents: int, **extra: Any) -> tuple[Raw, dict[str, Any], list[dict[str, Any]]]:
    ws = await connect(f"{sim.url}?v=10&encoding=json", compression=None, max_size=None)
    raw = Raw(ws)
    assert (await raw.recv())["op"] == 10
    await raw.send(2, {"token": "t", "intents": intents, "properties": PROPS, **extra})
    ready = (await raw.recv())["d"]
    creates = [p["d"] for p in await raw.dispatches(len(ready["guilds"]))]
    return raw, ready, creates


class Tracker:
    """A client's cache: what it was shown, so every later event can be checked against it."""

    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        self.channels: dict[str, str] = {}          # id -> guild
        self.members: dict[str, set[str]] = {}      # guild -> user ids shown
        self.messages: dict[str, str] = {}          # id -> channel
        self.left: set[str] = set()                 # members who left
        self.problems: list[str] = []

    def guild_create(self, g: dict[str, Any]) -> None:
        for c in g["channels"]:
            self.channels[c["id"]] = g["id"]
            if c.get("parent_id") and not any(p["id"] == c["parent_id"] and p["type"] == 4 for p in g["channels"]):
                self.problems.append(f"channel {c['id']} has a parent that is not a category")
        self.members[g["id"]] = {m["user"]["id"] for m in g["members"]}
        if self.bot_id not in self.members[g["id"]]:
            self.problems.append(f"the bot is not a member of {g['id']}")

    def _channel(self, d: dict[str, Any], t: str) -> None:
        if self.channels.get(d["channel_id"]) != d["guild_id"]:
            self.problems.append(f"{t} in unknown channel {d['channel_id']}")

    def _member(self, guild_id: str, user_id: str, t: str) -> None:
        if user_id not in self.members.get(guild_id, ()):
            self.problems.append(f"{t} about a member never shown: {user_id}")

    def event(self, t: str, d: dict[str, Any]) -> None:
        if t == "MESSAGE_CREATE":
            self._channel(d, t)
            if d["author"]["id"] in self.left or any(u["id"] in self.left for u in d["mentions"]):
                self.problems.append(f"message naming a member who left: {d['id']}")
            self.messages[d["id"]] = d["channel_id"]
            if d["type"] == 19:
                ref = d["message_reference"]
                if ref["message_id"] not in self.messages or d["referenced_message"]["id"] != ref["message_id"]:
                    self.problems.append(f"reply to an unknown message {ref}")
        elif t in ("MESSAGE_UPDATE", "MESSAGE_DELETE"):
            self._channel(d, t)
            if self.messages.get(d["id"]) != d["channel_id"]:
                self.problems.append(f"{t} of a message that does not exist: {d['id']}")
            if t == "MESSAGE_DELETE":
                self.messages.pop(d["id"], None)
        elif t == "MESSAGE_REACTION_ADD":
            self._channel(d, t)
            if self.messages.get(d["message_id"]) != d["channel_id"]:
                self.problems.append(f"reaction to a message that does not exist: {d['message_id']}")
        elif t == "TYPING_START":
            self._channel(d, t)
            if d["user_id"] in self.left:
                self.problems.append(f"typing by a member who left: {d['user_id']}")
        elif t == "PRESENCE_UPDATE":
            self._member(d["guild_id"], d["user"]["id"], t)
        elif t == "GUILD_MEMBER_UPDATE":
            self._member(d["guild_id"], d["user"]["id"], t)
        elif t == "VOICE_STATE_UPDATE":
            self._member(d["guild_id"], d["user_id"], t)
            if d["channel_id"] is not None:
                self._channel(d, t)
        elif t == "GUILD_MEMBER_ADD":
            self.members[d["guild_id"]].add(d["user"]["id"])
        elif t == "GUILD_MEMBER_REMOVE":
            self._member(d["guild_id"], d["user"]["id"], t)
            self.members[d["guild_id"]].discard(d["user"]["id"])
            self.left.add(d["user"]["id"])
        elif t == "GUILD_MEMBERS_CHUNK":
            self.members.setdefault(d["guild_id"], set()).update(m["user"]["id"] for m in d["members"])


async def test_the_stream_names_only_what_the_client_was_shown() -> None:
    async with GatewaySimulator(guilds=3, large_guilds=1, seed=2, event_rate=20_000, event_limit=1500) as sim:
        raw, ready, creates = await _identify(sim, ALL)
        tracker = Tracker(ready["user"]["id"])
        for g in creates:
            tracker.guild_create(g)
            assert g["owner_id"] in {m["user"]["id"] for m in g["members"]} or g["large"]
        events = await raw.dispatches(1500)
        for p in events:
            tracker.event(p["t"], p["d"])
        assert tracker.problems == []
        kinds = {p["t"] for p in events}
        assert kinds == {"MESSAGE_CREATE", "PRESENCE_UPDATE", "TYPING_START", "MESSAGE_REACTION_ADD",
                         "GUILD_MEMBER_UPDATE", "MESSAGE_UPDATE", "VOICE_STATE_UPDATE", "MESSAGE_DELETE",
                         "GUILD_MEMBER_ADD", "GUILD_MEMBER_REMOVE"}
        assert any(p["d"].get("type") == 19 for p in events if p["t"] == "MESSAGE_CREATE")
        await raw.ws.close()


def test_a_generator_stream_is_consistent_and_deleted_messages_are_gone() -> None:
    gen = TrafficGenerator(8)
    tracker = Tracker(gen.bot_user["id"])
    for _, g in gen.guild_burst(3):
        tracker.guild_create(g)
    with pytest.raises(LookupError):
        gen.message_update()  # nothing to edit yet
    for t, d in gen.steady_stream(2000):
        tracker.event(t, d)
    assert tracker.problems == []
    deleted = gen.message_delete()
    assert deleted["id"] not in gen.world.guilds[deleted["guild_id"]].messages
    # The README example: a message in one of the session's guilds.
    message = TrafficGenerator(1, ["81384788765712384"]).message_create()
    assert message["guild_id"] == "81384788765712384"


async def test_unprivileged_intents_filter_events_and_fields() -> None:
    async with GatewaySimulator(guilds=2, seed=3, guild_members=40, event_rate=20_000, event_limit=300) as sim:
        intents = INTENTS["GUILDS"] | INTENTS["GUILD_MESSAGES"]
        raw, ready, creates = await _identify(sim, intents)
        bot_id = ready["user"]["id"]
        for g in creates:
            # No GUILD_PRESENCES: only the bot (and members in voice, whose states need GUILD_VOICE_STATES).
            world = sim.world.guilds[g["id"]]
            assert {m["user"]["id"] for m in g["members"]} == {bot_id} | set(world.voice_states)
            assert g["presences"] == [] and g["voice_states"] == [] and g["member_count"] == 40
        events = await raw.dispatches(300)
        assert {p["t"] for p in events} <= {"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"}
        created = [p["d"] for p in events if p["t"] == "MESSAGE_CREATE"]
        mentioned = [m for m in created if any(u["id"] == bot_id for u in m["mentions"])]
        assert mentioned and all(m["content"] for m in mentioned)  # the bot sees what it is mentioned in
        others = [m for m in created if m not in mentioned]
        assert others and all(m["content"] == "" and m["embeds"] == [] and m["attachments"] == [] for m in others)
        await raw.ws.close()


def test_apply_intents_table() -> None:
    bot = "1"
    message = {"guild_id": "9", "author": {"id": "2"}, "mentions": [], "content": "hi", "embeds": [{}],
               "attachments": [], "components": [], "poll": {}}
    assert apply_intents("PRESENCE_UPDATE", {"guild_id": "9"}, INTENTS["GUILDS"], bot) is None
    assert apply_intents("TYPING_START", {"channel_id": "5"}, INTENTS["GUILD_MESSAGE_TYPING"], bot) is None
    assert apply_intents("TYPING_START", {"channel_id": "5"}, INTENTS["DIRECT_MESSAGE_TYPING"], bot) is not None
    assert apply_intents("GUILD_MEMBER_UPDATE", {"guild_id": "9", "user": {"id": bot}}, 0, bot) is not None
    assert apply_intents("GUILD_MEMBER_UPDATE", {"guild_id": "9", "user": {"id": "2"}}, 0, bot) is None
    stripped = apply_intents("MESSAGE_CREATE", message, INTENTS["GUILD_MESSAGES"], bot)
    assert stripped["content"] == "" and stripped["embeds"] == [] and "poll" not in stripped
    assert message["content"] == "hi"  # the world's copy is untouched
    own = dict(message, author={"id": bot})
    assert apply_intents("MESSAGE_CREATE", own, INTENTS["GUILD_MESSAGES"], bot)["content"] == "hi"
    dm = dict(message, guild_id=None)
    assert apply_intents("MESSAGE_CREATE", dm, INTENTS["DIRECT_MESSAGES"], bot)["content"] == "hi"
    assert apply_intents("GUILD_MEMBERS_CHUNK", {}, 0, bot) == {}


@pytest.mark.parametrize("threshold", [50, 250])
async def test_large_threshold_decides_large_and_leaves_plain_offline_members_out(threshold: int) -> None:
    async with GatewaySimulator(guilds=1, seed=4, guild_members=120) as sim:
        raw, _, (g,) = await _identify(sim, ALL, large_threshold=threshold)
        world = sim.world.guilds[g["id"]]
        shown = {m["user"]["id"] for m in g["members"]}
        assert g["member_count"] == 120 and g["large"] is (threshold == 50)
        if threshold == 250:
            assert shown == set(world.members)
        else:
            assert shown < set(world.members)
            for uid, m in world.members.items():
                plain = not m["roles"] and not m["nick"] and uid not in world.presences \
                    and uid not in world.voice_states and uid != world.bot_id
                assert (uid in shown) is not plain
        await raw.ws.close()


async def test_request_guild_members_like_discord() -> None:
    sim = GatewaySimulator(guilds=1, seed=5, large_guilds=1)
    sim.request_all_members_interval = 60.0
    async with sim:
        raw, _, (g,) = await _identify(sim, ALL)
        world = sim.world.guilds[g["id"]]
        # Everyone: query "" and limit 0, 1000 per chunk, presences on request, nonce echoed.
        await raw.send(8, {"guild_id": g["id"], "query": "", "limit": 0, "presences": True, "nonce": "all"})
        chunks = [p["d"] for p in await raw.dispatches(2)]
        assert [(c["chunk_index"], c["chunk_count"]) for c in chunks] == [(0, 2), (1, 2)]
        assert [len(c["members"]) for c in chunks] == [1000, len(world.members) - 1000]
        assert {m["user"]["id"] for c in chunks for m in c["members"]} == set(world.members)
        assert all(c["nonce"] == "all" and "not_found" not in c for c in chunks)
        assert {p["user"]["id"] for c in chunks for p in c["presences"]} == set(world.presences)
        # Again within 30 s: RATE_LIMITED (change-log, "Introducing Rate Limit When Requesting All Guild Members").
        await raw.send(8, {"guild_id": g["id"], "query": "", "limit": 0, "nonce": "again"})
        (limited,) = await raw.dispatches(1)
        assert limited["t"] == "RATE_LIMITED" and limited["d"]["opcode"] == 8
        assert 0 < limited["d"]["retry_after"] <= 60 and limited["d"]["meta"] == {"guild_id": g["id"], "nonce": "again"}
        # A username prefix, at most `limit`.
        someone = next(iter(world.members.values()))["user"]["username"]
        await raw.send(8, {"guild_id": g["id"], "query": someone[:3].upper(), "limit": 5})
        (chunk,) = [p["d"] for p in await raw.dispatches(1)]
        assert 1 <= len(chunk["members"]) <= 5 and "presences" not in chunk and "nonce" not in chunk
        assert all(m["user"]["username"].startswith(someone[:3].lower()) or
                   (m["nick"] or "").lower().startswith(someone[:3].lower()) for m in chunk["members"])
        # user_ids, with the unknown ones in not_found; a nonce over 32 bytes is ignored.
        known = list(world.members)[:3]
        await raw.send(8, {"guild_id": g["id"], "user_ids": known + ["42"], "nonce": "x" * 33})
        (chunk,) = [p["d"] for p in await raw.dispatches(1)]
        assert [m["user"]["id"] for m in chunk["members"]] == known and chunk["not_found"] == ["42"]
        assert "nonce" not in chunk
        # Another guild: Discord answers nothing.
        await raw.send(8, {"guild_id": "1", "query": "", "limit": 0})
        await raw.nothing()
        await raw.ws.close()


async def test_request_all_members_needs_guild_members_and_presences_need_guild_presences() -> None:
    async with GatewaySimulator(guilds=1, seed=6, guild_members=30) as sim:
        raw, _, (g,) = await _identify(sim, UNPRIVILEGED)
        await raw.send(8, {"guild_id": g["id"], "query": "", "limit": 0})
        await raw.nothing()
        uid = next(u for u in sim.world.guilds[g["id"]].presences)
        await raw.send(8, {"guild_id": g["id"], "user_ids": uid, "presences": True})
        (chunk,) = [p["d"] for p in await raw.dispatches(1)]
        assert [m["user"]["id"] for m in chunk["members"]] == [uid] and "presences" not in chunk
        await raw.ws.close()


async def test_identify_presence_is_the_bots_presence_in_guild_create() -> None:
    async with GatewaySimulator(guilds=2, seed=12) as sim:
        presence = {"since": None, "activities": [{"name": "tests", "type": 0}], "status": "dnd", "afk": False}
        raw, ready, creates = await _identify(sim, ALL, presence=presence)
        for g in creates:
            (own,) = [p for p in g["presences"] if p["user"]["id"] == ready["user"]["id"]]
            assert own["status"] == "dnd" and own["activities"] == [{"name": "tests", "type": 0}]
        await raw.ws.close()


async def test_voice_join_move_and_leave() -> None:
    async with GatewaySimulator(guilds=1, seed=7) as sim:
        raw, ready, (g,) = await _identify(sim, UNPRIVILEGED)
        voice = [c["id"] for c in g["channels"] if c["type"] == 2]
        await raw.send(4, {"guild_id": g["id"], "channel_id": voice[0], "self_mute": False, "self_deaf": True})
        state, server = await raw.dispatches(2)
        assert state["t"] == "VOICE_STATE_UPDATE" and server["t"] == "VOICE_SERVER_UPDATE"
        assert state["d"]["user_id"] == ready["user"]["id"] and state["d"]["channel_id"] == voice[0]
        assert state["d"]["session_id"] == ready["session_id"] and state["d"]["self_deaf"] is True
        assert server["d"]["guild_id"] == g["id"] and server["d"]["endpoint"] == VOICE_ENDPOINT and server["d"]["token"]
        await raw.send(4, {"guild_id": g["id"], "channel_id": None, "self_mute": False, "self_deaf": False})
        (left,) = await raw.dispatches(1)
        assert left["t"] == "VOICE_STATE_UPDATE" and left["d"]["channel_id"] is None
        # Not a voice channel of the guild: nothing happens.
        text = next(c["id"] for c in g["channels"] if c["type"] == 0)
        await raw.send(4, {"guild_id": g["id"], "channel_id": text, "self_mute": False, "self_deaf": False})
        await raw.nothing()
        await raw.ws.close()


async def test_voice_without_voice_states_intent_gets_only_the_server_update() -> None:
    async with GatewaySimulator(guilds=1, seed=7) as sim:
        raw, _, (g,) = await _identify(sim, INTENTS["GUILDS"])
        voice = next(c["id"] for c in g["channels"] if c["type"] == 2)
        await raw.send(4, {"guild_id": g["id"], "channel_id": voice, "self_mute": False, "self_deaf": False})
        (server,) = await raw.dispatches(1)
        assert server["t"] == "VOICE_SERVER_UPDATE"
        await raw.ws.close()


async def test_soundboard_channel_info_and_presence_are_answered() -> None:
    async with GatewaySimulator(guilds=2, seed=8) as sim:
        raw, _, creates = await _identify(sim, UNPRIVILEGED)
        ids = [g["id"] for g in creates]
        await raw.send(31, {"guild_ids": ids + ["1"]})
        sounds = await raw.dispatches(2)
        assert [p["t"] for p in sounds] == ["SOUNDBOARD_SOUNDS"] * 2
        assert [p["d"]["guild_id"] for p in sounds] == ids
        assert [p["d"]["soundboard_sounds"] for p in sounds] == [g["soundboard_sounds"] for g in creates]
        await raw.send(43, {"guild_id": ids[0], "fields": ["status", "voice_start_time"]})
        (info,) = await raw.dispatches(1)
        voice = [c["id"] for c in creates[0]["channels"] if c["type"] == 2]
        assert info["t"] == "CHANNEL_INFO" and [c["id"] for c in info["d"]["channels"]] == voice
        assert all(set(c) == {"id", "status", "voice_start_time"} for c in info["d"]["channels"])
        await raw.send(3, {"since": None, "activities": [], "status": "idle", "afk": False})
        await raw.nothing()  # Discord sends the bot nothing back
        assert sim.world.bot_presence["status"] == "idle"
        bot_id = sim.world.bot_user["id"]
        assert all(sim.world.guilds[gid].presences[bot_id]["status"] == "idle" for gid in ids)
        await raw.ws.close()


@pytest.mark.parametrize("op,d", [
    (5, {}),                                             # not a send opcode
    (8, {"guild_id": "x", "query": "", "limit": 0}),     # not a snowflake
    (8, {"guild_id": "1", "query": "", "limit": -1}),
    (4, {"guild_id": "1", "channel_id": None, "self_mute": "no", "self_deaf": False}),
    (31, {"guild_ids": "1"}),
    (43, {"guild_id": "1", "fields": ["topic"]}),
    (3, {"status": "asleep", "activities": [], "afk": False}),
])
async def test_bad_commands_close_like_discord(op: int, d: Any) -> None:
    async with GatewaySimulator(guilds=1, seed=9) as sim:
        raw, _, _ = await _identify(sim, UNPRIVILEGED)
        await raw.send(op, d)
        with pytest.raises(ConnectionClosed):
            while True:
                await raw.recv()
        code = raw.ws.protocol.close_rcvd.code
        assert code == (4001 if op == 5 else 4002)


async def test_same_seed_same_world_and_stream() -> None:
    async def run() -> list[Any]:
        async with GatewaySimulator(guilds=2, seed=11, event_rate=20_000, event_limit=200) as sim:
            raw, ready, creates = await _identify(sim, ALL)
            events = await raw.dispatches(200)
            await raw.ws.close()
            return [ready["user"], ready["guilds"], creates, [(p["t"], p["d"]) for p in events]]
    assert await run() == await run()
