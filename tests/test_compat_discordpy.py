"""Unmodified discord.py against the simulator: what a bot author sees.

Only discord.py's REST side is replaced (HTTPClient.request answers the
three routes it calls at start-up); its gateway is the real library talking
to the real simulator over loopback.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from fastshard.testing import GatewaySimulator
from fastshard.testing.commands import VOICE_ENDPOINT
from sim_compat import RESUME_KNOBS, library_log, run_every_fault_knob, wait_for

pytestmark = pytest.mark.timeout(60)

# What discord.py logs when a dispatch names something it does not know.
DISCARDED = ("Discarding", "Unknown event", "unknown member", "unknown channel", "Unknown OP")


discord_log = library_log("discord", DISCARDED)


class VoiceWebsocketReached(Exception):
    """Raised where discord.py would open the voice websocket."""


@pytest.fixture
def fake_rest(monkeypatch):
    """discord.py's REST side, answered locally; records voice websocket attempts."""
    state: dict[str, Any] = {"sim": None, "routes": [], "voice_urls": []}

    async def request(self: HTTPClient, route: Route, **kwargs: Any) -> Any:
        sim: GatewaySimulator = state["sim"]
        state["routes"].append((route.method, route.path))
        bot = sim.world.bot_user
        if (route.method, route.path) == ("GET", "/users/@me"):
            return dict(bot, verified=True, mfa_enabled=False, flags=0)
        if (route.method, route.path) == ("GET", "/oauth2/applications/@me"):
            return {"id": sim.world.application_id, "name": bot["username"], "icon": None, "description": "",
                    "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64, "flags": 0,
                    "owner": dict(bot, bot=False, id="1"), "summary": ""}
        if (route.method, route.path) == ("GET", "/gateway/bot"):
            return {"url": sim.url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}
        raise AssertionError(f"unexpected REST call {route.method} {route.path}")

    real_ws_connect = HTTPClient.ws_connect

    async def ws_connect(self: HTTPClient, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        if url.startswith(f"wss://{VOICE_ENDPOINT}"):
            state["voice_urls"].append(url)
            raise VoiceWebsocketReached(url)
        return await real_ws_connect(self, url, compress=compress)

    monkeypatch.setattr(HTTPClient, "request", request)
    monkeypatch.setattr(HTTPClient, "ws_connect", ws_connect)

    def point_at(sim: GatewaySimulator) -> None:
        state["sim"] = sim
        # discord.Client connects to DEFAULT_GATEWAY (it never asks GET /gateway/bot).
        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sim.url))

    state["point_at"] = point_at
    return state


class Bot(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.all(), heartbeat_timeout=1.0, max_messages=5000,
                         guild_ready_timeout=0.2)  # READY's guilds all arrive at once here
        self.messages: list[discord.Message] = []
        self.edits: list[tuple[discord.Message, discord.Message]] = []
        self.deletes: list[discord.Message] = []
        self.presences = 0
        self.member_updates = 0
        self.reactions = 0
        self.resumes = 0

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # discord.py waits 5 s before a re-IDENTIFY; the simulator needs no such spacing here

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        self.edits.append((before, after))

    async def on_message_delete(self, message: discord.Message) -> None:
        self.deletes.append(message)

    async def on_presence_update(self, before: discord.Member, after: discord.Member) -> None:
        self.presences += 1

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        self.member_updates += 1

    async def on_reaction_add(self, reaction: discord.Reaction, user: discord.Member) -> None:
        self.reactions += 1

    async def on_resumed(self) -> None:
        self.resumes += 1


async def _start(sim: GatewaySimulator, fake_rest: dict[str, Any]) -> tuple[Bot, asyncio.Task[None]]:
    fake_rest["point_at"](sim)
    bot = Bot()
    await bot.login("sim-token")
    task = asyncio.get_running_loop().create_task(bot.connect())
    await asyncio.wait_for(bot.wait_until_ready(), 10)
    return bot, task


async def _stop(bot: Bot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await asyncio.wait_for(task, 5)


async def test_discordpy_sees_a_consistent_chunked_world(fake_rest, discord_log) -> None:
    # Sizes either side of discord.py's large_threshold (250): one large guild needs chunking.
    async with GatewaySimulator(guilds=3, large_guilds=1, heartbeat_interval=0.2, seed=3,
                                event_rate=4000, event_limit=600) as sim:
        bot, task = await _start(sim, fake_rest)
        conn = sim.connections[0]
        session = conn.session
        assert session is not None
        assert len(bot.guilds) == 3
        # Once the stream (members joining and leaving too) is over, the caches match the world.
        await wait_for(lambda: session.seq >= 3 + 3 + 600, what="600 streamed events")  # READY, 3 GUILD_CREATE, chunks
        await wait_for(lambda: bot.ws.sequence == session.seq, what="the client caught up")
        for guild in bot.guilds:
            world = sim.world.guilds[str(guild.id)]
            assert guild.me is not None and guild.me.id == bot.user.id
            assert guild.owner is not None and guild.owner.id == int(world.owner_id)
            assert guild.chunked and guild.member_count == len(guild.members) == len(world.members)
            text = guild.text_channels[0]
            assert text.category is not None  # channels have real parents
            perms = text.permissions_for(guild.me)
            assert perms.view_channel and perms.send_messages and perms.read_message_history
            assert guild.voice_channels and guild.voice_channels[0].permissions_for(guild.me).connect
        # The large guild's GUILD_CREATE left offline members out; chunking brought them all.
        assert max(g.member_count or 0 for g in bot.guilds) > 1000

        assert len(bot.messages) > 100
        for message in bot.messages:
            assert isinstance(message.channel, discord.TextChannel), message.channel
            assert isinstance(message.author, discord.Member)
            assert message.content  # MESSAGE_CONTENT intent: content arrives
        replies = [m for m in bot.messages if m.type is discord.MessageType.reply]
        assert replies and all(m.reference is not None and m.reference.message_id for m in replies)
        assert bot.edits and all(before.id == after.id and after.edited_at for before, after in bot.edits)
        assert bot.deletes
        assert bot.presences > 50 and bot.member_updates > 10 and bot.reactions > 10
        assert any("has connected to Gateway" in m for m in discord_log.messages)  # the log is captured
        assert discord_log.discarded() == []
        await _stop(bot, task)
    assert [m for m, _ in fake_rest["routes"]] == ["GET", "GET"]


async def test_discordpy_voice_connect_reaches_the_voice_websocket(fake_rest, discord_log) -> None:
    async with GatewaySimulator(guilds=1, heartbeat_interval=0.2, seed=5) as sim:
        bot, task = await _start(sim, fake_rest)
        guild = bot.guilds[0]
        channel = guild.voice_channels[0]
        with pytest.raises(VoiceWebsocketReached):
            await channel.connect(timeout=5, reconnect=False)
        url = fake_rest["voice_urls"][0]
        assert url.startswith(f"wss://{VOICE_ENDPOINT}/")
        conn = sim.connections[0]
        joins = [p["d"] for p in conn.received if p["op"] == 4]
        assert int(joins[0]["channel_id"]) == channel.id and int(joins[0]["guild_id"]) == guild.id
        # discord.py gave up and left voice: the simulator saw op 4 with no channel and told it so.
        await wait_for(lambda: len([p for p in conn.received if p["op"] == 4]) >= 2, what="leave voice")
        assert [p["d"]["channel_id"] for p in conn.received if p["op"] == 4][-1] is None
        await wait_for(lambda: guild.me.voice is None, what="the bot's voice state cleared")
        assert str(bot.user.id) not in sim.world.guilds[str(guild.id)].voice_states
        await _stop(bot, task)


async def test_discordpy_resumes_from_every_fault_knob(fake_rest, discord_log) -> None:
    sim = GatewaySimulator(guilds=2, heartbeat_interval=0.1, seed=9)
    sim.request_all_members_interval = 0.0  # discord.py chunks again after re-identifying
    async with sim:
        bot, task = await _start(sim, fake_rest)
        await run_every_fault_knob(sim, lambda mid: any(m.id == mid for m in bot.messages))
        assert bot.resumes == len(RESUME_KNOBS)
        await wait_for(lambda: all(g.chunked for g in bot.guilds), what="chunking again")
        assert discord_log.discarded() == []
        await _stop(bot, task)
