"""Unmodified hikari against the simulator: what a bot author sees.

Only hikari's REST side is replaced (RESTClientImpl._request answers GET
/gateway/bot, the one route GatewayBot.start calls); the gateway is the
real hikari shard talking to the real simulator over loopback.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

import hikari
import hikari.impl.shard
import pytest
from hikari.impl.rest import RESTClientImpl

from fastshard.testing import GatewaySimulator
from fastshard.testing.commands import VOICE_ENDPOINT
from sim_compat import RESUME_KNOBS, library_log, run_every_fault_knob, wait_for

pytestmark = pytest.mark.timeout(60)

DISCARDED = ("unknown event", "unrecognised entity", "unknown opcode")


hikari_log = library_log("hikari", DISCARDED)


@pytest.fixture
def fake_rest(monkeypatch):
    state: dict[str, Any] = {"sim": None, "routes": []}

    async def _request(self: RESTClientImpl, compiled_route: Any, **kwargs: Any) -> Any:
        sim: GatewaySimulator = state["sim"]
        key = (compiled_route.method, compiled_route.compiled_path)
        state["routes"].append(key)
        if key == ("GET", "/gateway/bot"):
            return {"url": sim.url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}
        raise AssertionError(f"unexpected REST call {key}")

    monkeypatch.setattr(RESTClientImpl, "_request", _request)
    # hikari backs off reconnects that follow a start within 30 s; the fault tests reconnect at once.
    monkeypatch.setattr(hikari.impl.shard, "_BACKOFF_WINDOW", 0.0)
    return state


class Seen:
    """What the bot's listeners saw, resolved through hikari's cache."""

    def __init__(self, bot: hikari.GatewayBot) -> None:
        self.bot = bot
        self.messages: list[hikari.GuildMessageCreateEvent] = []
        self.unresolved: list[str] = []
        self.edits = self.deletes = self.presences = self.member_updates = self.resumes = 0
        self.message_ids: set[int] = set()
        bot.subscribe(hikari.GuildMessageCreateEvent, self.on_message)
        bot.subscribe(hikari.GuildMessageUpdateEvent, self.on_edit)
        bot.subscribe(hikari.GuildMessageDeleteEvent, self.on_delete)
        bot.subscribe(hikari.PresenceUpdateEvent, self.on_presence)
        bot.subscribe(hikari.MemberUpdateEvent, self.on_member_update)
        bot.subscribe(hikari.ShardResumedEvent, self.on_resumed)

    async def on_message(self, event: hikari.GuildMessageCreateEvent) -> None:
        self.messages.append(event)
        self.message_ids.add(int(event.message_id))
        if event.get_channel() is None or event.get_guild() is None or event.member is None:
            self.unresolved.append(f"message {event.message_id} in {event.channel_id}")

    async def on_edit(self, event: hikari.GuildMessageUpdateEvent) -> None:
        self.edits += 1
        if event.old_message is None:
            self.unresolved.append(f"edit of uncached message {event.message_id}")

    async def on_delete(self, event: hikari.GuildMessageDeleteEvent) -> None:
        self.deletes += 1
        # hikari's cache hands back no old_message for a message a cached reply still
        # references, so "seen created" is the check here.
        if int(event.message_id) not in self.message_ids:
            self.unresolved.append(f"delete of unseen message {event.message_id}")

    async def on_presence(self, event: hikari.PresenceUpdateEvent) -> None:
        self.presences += 1
        if self.bot.cache.get_member(event.guild_id, event.user_id) is None:
            self.unresolved.append(f"presence of unknown member {event.user_id}")

    async def on_member_update(self, event: hikari.MemberUpdateEvent) -> None:
        self.member_updates += 1
        if event.old_member is None:
            self.unresolved.append(f"update of unknown member {event.user_id}")

    async def on_resumed(self, event: hikari.ShardResumedEvent) -> None:
        self.resumes += 1


async def _start(sim: GatewaySimulator, fake_rest: dict[str, Any]) -> tuple[hikari.GatewayBot, Seen]:
    fake_rest["sim"] = sim
    # hikari reads the application id from the token's first part (base64 of the bot id).
    token = base64.b64encode(sim.world.bot_user["id"].encode()).decode().rstrip("=") + ".sim.token"
    bot = hikari.GatewayBot(token, intents=hikari.Intents.ALL, banner=None, logs=None,
                            suppress_optimization_warning=True)
    seen = Seen(bot)
    await asyncio.wait_for(bot.start(check_for_updates=False), 10)
    return bot, seen


def _cached_members(bot: hikari.GatewayBot, guild_id: str) -> int:
    return len(bot.cache.get_members_view_for_guild(int(guild_id)))


async def test_hikari_sees_a_consistent_chunked_world(fake_rest, hikari_log) -> None:
    async with GatewaySimulator(guilds=3, large_guilds=1, heartbeat_interval=0.2, seed=4,
                                event_rate=4000, event_limit=600) as sim:
        bot, seen = await _start(sim, fake_rest)
        session = sim.connections[0].session
        assert session is not None
        me = bot.get_me()
        assert me is not None and str(me.id) == sim.world.bot_user["id"]
        # hikari chunks every guild at start-up; once the stream is over (members joined and
        # left meanwhile), its caches hold exactly the world's members.
        await wait_for(lambda: session.seq >= 600 and all(
            _cached_members(bot, gid) == len(sim.world.guilds[gid].members) for gid in session.guild_ids),
            what="chunking and the stream")
        for gid in session.guild_ids:
            guild = bot.cache.get_guild(int(gid))
            assert guild is not None
            own = guild.get_my_member()
            assert own is not None
            owner = bot.cache.get_member(guild.id, guild.owner_id)
            assert owner is not None
            channels = bot.cache.get_guild_channels_view_for_guild(guild.id)
            text = next(c for c in channels.values() if isinstance(c, hikari.GuildTextChannel))
            assert text.parent_id in channels
            perms = hikari.Permissions.NONE
            for role in own.get_roles():
                perms |= role.permissions
            assert perms & hikari.Permissions.SEND_MESSAGES and perms & hikari.Permissions.CONNECT
        await wait_for(lambda: session.seq >= 600 and len(seen.messages) >= 100, what="the stream")
        await asyncio.sleep(0.2)  # let the last dispatches reach the listeners
        assert seen.unresolved == []
        assert seen.edits and seen.deletes and seen.presences > 50 and seen.member_updates > 10
        replies = [e for e in seen.messages if e.message.type == hikari.MessageType.REPLY]
        assert replies and all(e.message.referenced_message is not None for e in replies)
        assert hikari_log.discarded() == []
        await bot.close()
    assert fake_rest["routes"] == [("GET", "/gateway/bot")]


class VoiceWebsocketReached(Exception):
    """Raised where a voice library would open the voice websocket."""


class RecordingVoice:
    """A voice_connection_type: hikari hands it what the voice websocket needs."""

    calls: list[dict[str, Any]] = []

    @classmethod
    async def initialize(cls, **kwargs: Any) -> Any:
        cls.calls.append(kwargs)
        raise VoiceWebsocketReached(kwargs["endpoint"])


async def test_hikari_voice_connect_reaches_the_voice_websocket(fake_rest, hikari_log) -> None:
    async with GatewaySimulator(guilds=1, heartbeat_interval=0.2, seed=6) as sim:
        bot, _ = await _start(sim, fake_rest)
        gid = sim.connections[0].session.guild_ids[0]
        channel_id = sim.world.guilds[gid].voice_channel_ids[0]
        RecordingVoice.calls.clear()
        with pytest.raises(VoiceWebsocketReached):
            await bot.voice.connect_to(int(gid), int(channel_id), RecordingVoice)  # type: ignore[arg-type]
        call = RecordingVoice.calls[0]
        assert call["endpoint"] == f"wss://{VOICE_ENDPOINT}" and call["token"]  # hikari adds the scheme
        assert call["session_id"] == sim.connections[0].session.session_id
        assert int(call["channel_id"]) == int(channel_id)
        # hikari left the channel after the failure: op 4 with no channel, answered.
        conn = sim.connections[0]
        await wait_for(lambda: [p["d"]["channel_id"] for p in conn.received if p["op"] == 4][-1:] == [None],
                        what="leave voice")
        await wait_for(lambda: sim.world.bot_user["id"] not in sim.world.guilds[gid].voice_states,
                        what="the bot's voice state cleared")
        # op 43 (hikari's request_channel_info) is answered with CHANNEL_INFO, not closed 4001.
        info_task = asyncio.ensure_future(bot.wait_for(hikari.ChannelInfoEvent, timeout=5))
        await bot.request_channel_info(int(gid), fields=[hikari.api.ChannelInfoField.STATUS,
                                                         hikari.api.ChannelInfoField.VOICE_START_TIME])
        info = await info_task
        assert int(info.guild_id) == int(gid)
        assert {int(c) for c in info.channels} == {int(c) for c in sim.world.guilds[gid].voice_channel_ids}
        assert conn.server_close_code is None
        assert hikari_log.discarded() == []
        await bot.close()


async def test_hikari_resumes_from_every_fault_knob(fake_rest, hikari_log) -> None:
    sim = GatewaySimulator(guilds=2, heartbeat_interval=0.1, seed=10)
    sim.request_all_members_interval = 0.0  # hikari chunks again after re-identifying
    async with sim:
        bot, seen = await _start(sim, fake_rest)
        await run_every_fault_knob(sim, lambda mid: mid in seen.message_ids)
        assert seen.resumes == len(RESUME_KNOBS)
        assert seen.unresolved == [] and hikari_log.discarded() == []
        await bot.close()
