"""The simulator as a sharded Discord: GET /gateway/bot, identify buckets, the budget, 4010/4011.

Clients here are independent of fastshard's shard (a raw ``websockets``
client and ``urllib``) so the simulator is checked against Discord's rules as
the docs state them, not against fastshard's reading of them; one test drives
real ``WebsocketShard``s through it as well.  Intervals are 0.2 s.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fastshard import LocalIdentifyQueue, ShardManager, WebsocketShard
from fastshard.cli.main import main as cli_main
from fastshard.testing import GatewaySimulator
from fastshard.testing.identify_limits import IdentifyLimiter, SessionStartBudget, rate_limit_key

PROPS = {"os": "linux", "browser": "test", "device": "test"}
INTERVAL = 0.2


# -- the rules as plain logic ---------------------------------------------------------

def test_rate_limit_key_is_shard_id_mod_max_concurrency() -> None:
    # gateway.mdx's example: 32 shards, max_concurrency 16 -> 16 and 0 share key 0.
    assert [rate_limit_key(s, 16) for s in (0, 15, 16, 31)] == [0, 15, 0, 15]
    assert {rate_limit_key(s, 1) for s in range(10)} == {0}


def test_limiter_allows_one_identify_per_key_per_interval() -> None:
    limiter = IdentifyLimiter(max_concurrency=2, interval=5.0)
    assert limiter.attempt(0, 4, now=100.0).allowed
    assert limiter.attempt(1, 4, now=100.0).allowed        # another key: same instant is fine
    refused = limiter.attempt(2, 4, now=104.9)                # key 0 again, 4.9 s later
    assert not refused.allowed and refused.key == 0 and refused.shard_id == 2
    assert limiter.retry_after(2, 104.9) == pytest.approx(0.1)
    # A refused IDENTIFY started no session, so it did not move key 0's window.
    assert limiter.attempt(2, 4, now=105.0).allowed
    assert not limiter.attempt(0, 4, now=109.0).allowed
    assert limiter.attempt(3, 4, now=105.0).allowed


def test_limiter_slack_forgives_scheduling_jitter_only() -> None:
    limiter = IdentifyLimiter(max_concurrency=1, interval=1.0, slack=0.1)
    assert limiter.attempt(0, 1, now=0.0).allowed
    assert not limiter.attempt(0, 1, now=0.85).allowed
    assert limiter.attempt(0, 1, now=0.95).allowed


@pytest.mark.parametrize("kwargs, word", [
    ({"max_concurrency": 0}, "max_concurrency"), ({"max_concurrency": 1.5}, "max_concurrency"),
    ({"interval": -1.0}, "identify_interval"), ({"interval": float("nan")}, "identify_interval"),
    ({"interval": 1.0, "slack": 2.0}, "slack"),
])
def test_limiter_rejects_bad_options_by_name(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        IdentifyLimiter(**kwargs)


def test_budget_counts_down_and_resets_after_the_window() -> None:
    budget = SessionStartBudget(total=2, reset_after=100.0, start=0.0)
    assert budget.remaining(10.0) == 2 and budget.reset_after_ms(10.0) == 90_000
    assert budget.spend(10.0) and budget.spend(11.0)
    assert budget.remaining(12.0) == 0
    assert not budget.spend(12.0) and budget.remaining(12.0) == 0  # never below zero
    assert budget.remaining(250.0) == 2 and budget.reset_after_ms(250.0) == 50_000
    with pytest.raises(ValueError, match="session_start_limit"):
        SessionStartBudget(total=-1)


# -- helpers ----------------------------------------------------------------------------

def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, Any], str]:
    headers = {"User-Agent": "DiscordBot (test, 1)"}
    if token is not None:
        headers["Authorization"] = token
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers["Content-Type"]


async def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, Any], str]:
    return await asyncio.to_thread(_get, url, token, method)


class RawShard:
    """One gateway connection with a JSON client that knows nothing of fastshard."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, sim: GatewaySimulator, url: str | None = None) -> RawShard:
        ws = await connect(f"{url or sim.url}?v=10&encoding=json", compression=None, max_size=None)
        shard = cls(ws)
        hello = await shard.recv()
        assert hello["op"] == 10
        return shard

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def identify(self, shard: Any, token: str = "tok") -> None:
        await self.ws.send(json.dumps({"op": 2, "d": {"token": token, "intents": 513, "properties": PROPS,
                                                      "shard": shard}}))

    async def resume(self, session_id: str, seq: int, token: str = "tok") -> None:
        await self.ws.send(json.dumps({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}}))

    async def ready(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """READY's d and the GUILD_CREATEs that follow it."""
        ready = await self.recv()
        assert ready["t"] == "READY", ready
        creates = [(await self.recv())["d"] for _ in ready["d"]["guilds"]]
        return ready["d"], creates

    async def closed(self) -> int | None:
        try:
            while True:
                await self.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


def sharded(**kw: Any) -> GatewaySimulator:
    kw.setdefault("identify_interval", INTERVAL)
    kw.setdefault("heartbeat_interval", 30.0)
    return GatewaySimulator(**kw)


# -- GET /gateway/bot --------------------------------------------------------------------

async def test_gateway_bot_has_discords_fields() -> None:
    async with sharded(shards=8, max_concurrency=4, session_start_limit=50, token="tok") as sim:
        assert sim.api_url == f"http://127.0.0.1:{sim.port}/api/v10"
        status, body, ctype = await get(sim.api_url + "/gateway/bot", "Bot tok")
        assert (status, ctype) == (200, "application/json")
        assert body["url"] == sim.url and body["shards"] == 8
        limit = body["session_start_limit"]
        assert set(limit) == {"total", "remaining", "reset_after", "max_concurrency"}
        assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (50, 50, 4)
        assert 86_000_000 < limit["reset_after"] <= 86_400_000   # milliseconds, under a day
        assert await get(sim.api_url + "/gateway") == (200, {"url": sim.url}, "application/json")
        # What the simulator saw: API requests are not websocket connections.
        assert sim.connections == []


@pytest.mark.parametrize("header", [None, "Bot wrong", "tok", "Bearer tok", "Bot "])
async def test_gateway_bot_refuses_a_missing_or_wrong_token_with_401(header: str | None) -> None:
    async with sharded(shards=2, token="tok") as sim:
        assert await get(sim.api_url + "/gateway/bot", header) == \
            (401, {"message": "401: Unauthorized", "code": 0}, "application/json")


async def test_unknown_api_paths_are_404_and_other_paths_still_websockets() -> None:
    async with sharded(shards=1) as sim:
        status, body, _ = await get(sim.api_url + "/users/@me", "Bot tok")
        assert (status, body) == (404, {"message": "404: Not Found", "code": 0})
        status, body, _ = await get(sim.api_url + "/gateway/bot", "Bot tok", method="DELETE")
        assert (status, body) == (405, {"message": "405: Method Not Allowed", "code": 0})
        assert (await get(f"http://127.0.0.1:{sim.port}/api/gateway/bot/", "Bot tok"))[0] == 200
        client = await RawShard.open(sim)        # the same port still speaks the gateway
        await client.identify([0, 1])
        await client.ready()
        await client.ws.close()


async def test_remaining_counts_every_identify_refused_too_but_never_resume() -> None:
    async with sharded(shards=2, max_concurrency=1, session_start_limit=10) as sim:
        async def remaining() -> int:
            return int((await get(sim.api_url + "/gateway/bot", "Bot tok"))[1]["session_start_limit"]["remaining"])

        first = await RawShard.open(sim)
        await first.identify([0, 2])
        ready, _ = await first.ready()
        assert await remaining() == 9
        second = await RawShard.open(sim)
        await second.identify([1, 2])              # same key, at once: refused...
        assert await second.recv() == {"op": 9, "d": False, "s": None, "t": None}
        assert await remaining() == 8              # ...and spent all the same
        assert sim.session_start_remaining == 8
        await first.ws.close(4900)                 # resumable
        again = await RawShard.open(sim, ready["resume_gateway_url"])
        await again.resume(ready["session_id"], 1)
        assert (await again.recv())["t"] == "GUILD_CREATE"   # replay, then RESUMED
        assert await remaining() == 8
        await again.ws.close()
        await second.ws.close()


# -- identify buckets --------------------------------------------------------------------

async def test_identify_too_fast_for_a_bucket_is_op_9_counted_and_not_a_close() -> None:
    async with sharded(shards=4, max_concurrency=2, identify_slack=0.0) as sim:
        a, b = await RawShard.open(sim), await RawShard.open(sim)
        await a.identify([0, 4])
        await a.ready()
        await b.identify([2, 4])                   # 2 % 2 == 0: the bucket 0 just used
        assert await b.recv() == {"op": 9, "d": False, "s": None, "t": None}
        assert sim.identify_violations == 1
        assert [(r.shard_id, r.key, r.allowed) for r in sim.identify_log] == [(0, 0, True), (2, 0, False)]
        assert not sim.connections[1].closed and sim.connections[1].server_close_code is None
        # The same connection may identify again once the bucket is free.
        await asyncio.sleep(sim.identify_limiter.retry_after(2, asyncio.get_running_loop().time()))
        await b.identify([2, 4])
        ready, _ = await b.ready()
        assert ready["shard"] == [2, 4]
        assert sim.identify_violations == 1
        await a.ws.close()
        await b.ws.close()


async def test_buckets_in_order_with_correct_spacing_have_no_violation() -> None:
    # gateway.mdx: with max_concurrency 2, shards 0-1 together, then 2-3, then 4-5.
    async with sharded(shards=6, max_concurrency=2) as sim:
        clients = []
        for first in (0, 2, 4):
            if first:
                await asyncio.sleep(INTERVAL)
            batch = [await RawShard.open(sim) for _ in range(2)]
            for offset, client in enumerate(batch):
                await client.identify([first + offset, 6])
            for client in batch:
                await client.ready()
            clients += batch
        assert sim.identify_violations == 0
        log = sim.identify_log
        assert [r.shard_id for r in log] == [0, 1, 2, 3, 4, 5] and all(r.allowed for r in log)
        for key in (0, 1):
            times = [r.at for r in log if r.key == key]
            assert all(later - earlier >= INTERVAL * 0.9 for earlier, later in zip(times, times[1:]))
        for client in clients:
            await client.ws.close()


async def test_websocket_shards_of_one_bucket_start_together() -> None:
    async with sharded(shards=4, max_concurrency=4, guilds=2) as sim:
        shards = [WebsocketShard(token="tok", intents=513, id=i, total=4, url=sim.url) for i in range(4)]
        ready: dict[int, asyncio.Future[Any]] = {}
        for shard in shards:
            fut = ready[shard.id] = asyncio.get_running_loop().create_future()
            shard.once("ready", lambda d, fut=fut: fut.done() or fut.set_result(d))
        try:
            await asyncio.gather(*(shard.connect() for shard in shards))
            data = await asyncio.wait_for(asyncio.gather(*ready.values()), 5)
        finally:
            await asyncio.gather(*(shard.close() for shard in shards))
        assert [d["shard"] for d in data] == [[i, 4] for i in range(4)]
        assert sim.identify_violations == 0 and sim.session_start_remaining == 996


async def test_shard_manager_starts_buckets_in_order_with_no_violation() -> None:
    # The manager takes shards and max_concurrency from the simulator's GET /gateway/bot.
    async with sharded(shards=8, max_concurrency=4, guilds=1, token="tok") as sim:
        manager = ShardManager(token="tok", intents=513, api_url=sim.api_url,
                               identify_queue=LocalIdentifyQueue(4, interval=INTERVAL))
        try:
            await manager.start()
            await manager.wait_ready(10)
            assert manager.shard_count == 8
        finally:
            await manager.close()
        assert sim.identify_violations == 0
        log = sim.identify_log
        assert sorted(r.shard_id for r in log[:4]) == [0, 1, 2, 3]     # bucket round 1...
        assert sorted(r.shard_id for r in log[4:]) == [4, 5, 6, 7]     # ...then round 2
        for key in range(4):
            first, second = (r.at for r in log if r.key == key)
            assert second - first >= INTERVAL * 0.9
        status, body, _ = await get(sim.api_url + "/gateway/bot", "Bot tok")
        assert body["session_start_limit"]["remaining"] == 992


async def test_unsharded_simulator_counts_but_lets_identifies_through() -> None:
    async with GatewaySimulator() as sim:
        assert not sim.enforce_session_limits
        clients = [await RawShard.open(sim) for _ in range(3)]
        for client in clients:
            await client.identify([0, 1])
            await client.ready()
        assert sim.identify_violations == 0 and sim.session_start_remaining == 997
        for client in clients:
            await client.ws.close()


# -- 4010, 4011 and routing ----------------------------------------------------------------

@pytest.mark.parametrize("shard", [[4, 4], [-1, 4], [0, 0], [1], [0, 1, 2], ["0", 4], [True, 4], "0,4", None])
async def test_invalid_shard_closes_4010(shard: Any) -> None:
    async with sharded(shards=4) as sim:
        client = await RawShard.open(sim)
        await client.identify(shard)
        assert await client.closed() == 4010
        assert sim.connections[0].server_close_code == 4010


async def test_sharding_required_4011_from_guilds_per_shard() -> None:
    # 4 x 3 = 12 guilds in all; at most 6 per shard: one shard is too few, two are enough.
    async with sharded(shards=4, guilds=3, max_guilds_per_shard=6) as sim:
        assert sim.guilds_per_session(1) == 12 and sim.guilds_per_session(3) == 4
        assert [sim.guilds_per_session(5, i) for i in range(5)] == [3, 3, 2, 2, 2]
        client = await RawShard.open(sim)
        await client.identify([0, 1])
        assert await client.closed() == 4011
        assert sim.connections[0].server_close_reason == "Sharding required."
        assert any("12 guilds per shard with 1 shards, at most 6" in line for line in sim.debug_log)
        client = await RawShard.open(sim)
        await client.identify([1, 2])
        ready, creates = await client.ready()
        assert len(ready["guilds"]) == 6
        await client.ws.close()


async def test_required_shards_still_closes_4011() -> None:
    async with GatewaySimulator(required_shards=3) as sim:
        client = await RawShard.open(sim)
        await client.identify([0, 2])
        assert await client.closed() == 4011
        status, body, _ = await get(sim.api_url + "/gateway/bot", "Bot tok")
        assert body["shards"] == 3


@pytest.mark.parametrize("num_shards", [4, 2, 5])
async def test_each_shard_gets_the_guilds_the_formula_routes_to_it(num_shards: int) -> None:
    async with sharded(shards=4, max_concurrency=8, guilds=3) as sim:
        seen: list[int] = []
        clients = []
        for shard_id in range(num_shards):
            client = await RawShard.open(sim)
            await client.identify([shard_id, num_shards])
            ready, creates = await client.ready()
            ids = [int(g["id"]) for g in creates]
            assert [int(g["id"]) for g in ready["guilds"]] == ids
            assert len(ids) == 12 // num_shards + (shard_id < 12 % num_shards)
            assert all((gid >> 22) % num_shards == shard_id for gid in ids)
            seen += ids
            clients.append(client)
        assert len(set(seen)) == len(seen) == 12
        for client in clients:
            await client.ws.close()


# -- the budget running out ----------------------------------------------------------------

async def test_identify_over_the_budget_ends_every_session_and_resets_the_token() -> None:
    async with sharded(shards=2, max_concurrency=2, session_start_limit=2, token="tok") as sim:
        a, b = await RawShard.open(sim), await RawShard.open(sim)
        await a.identify([0, 2])
        ready, _ = await a.ready()
        await b.identify([1, 2])
        await b.ready()
        assert sim.session_start_remaining == 0
        late = await RawShard.open(sim)
        await asyncio.sleep(INTERVAL)
        await late.identify([0, 2])
        assert [await c.closed() for c in (a, b, late)] == [4004, 4004, 4004]
        assert sim.token_resets == 1 and sim.session_start_remaining == 0
        # The old token is dead everywhere: REST, RESUME, IDENTIFY.
        assert (await get(sim.api_url + "/gateway/bot", "Bot tok"))[0] == 401
        resume = await RawShard.open(sim, ready["resume_gateway_url"])
        await resume.resume(ready["session_id"], 1)
        assert await resume.closed() == 4004
        status, body, _ = await get(sim.api_url + "/gateway/bot", f"Bot {sim.token}")
        assert status == 200 and body["session_start_limit"]["remaining"] == 0


def test_simulator_options_are_checked_by_name() -> None:
    for kwargs, word in [({"shards": 0}, "shards"), ({"max_concurrency": 0}, "max_concurrency"),
                         ({"identify_interval": -1}, "identify_interval"),
                         ({"session_start_limit": -1}, "session_start_limit"),
                         ({"max_guilds_per_shard": 0}, "max_guilds_per_shard")]:
        with pytest.raises(ValueError, match=word):
            GatewaySimulator(**kwargs)


# -- fastshard simulate ----------------------------------------------------------------------

async def test_simulate_cli_serves_a_sharded_gateway() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastshard", "simulate", "--shards", "4", "--max-concurrency", "2",
        "--identify-interval", "0.2", "--session-start-limit", "7", "--rate", "0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        api = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        assert api == "http" + url[2:] + "/api/v10"
        status, body, _ = await get(api + "/gateway/bot", "Bot any")
        assert status == 200 and body["url"] == url and body["shards"] == 4
        assert body["session_start_limit"] | {"reset_after": 0} == \
            {"total": 7, "remaining": 7, "max_concurrency": 2, "reset_after": 0}
        async with connect(url + "?v=10&encoding=json") as ws:
            client = RawShard(ws)
            assert (await client.recv())["op"] == 10
            await client.identify([0, 4])
            await client.ready()
        async with connect(url + "?v=10&encoding=json") as ws:
            client = RawShard(ws)
            await client.recv()
            await client.identify([2, 4])          # bucket 0 again within 0.2 s
            assert (await client.recv())["op"] == 9
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "1 identify violation(s)" in out.decode()


@pytest.mark.parametrize("argv, message", [
    (["--shards", "0"], "--shards: must be at least 1"),
    (["--max-concurrency", "x"], "--max-concurrency: expected a whole number"),
    (["--identify-interval", "-1"], "--identify-interval: must be 0 or more"),
    (["--session-start-limit", "-2"], "--session-start-limit: must be 0 or more"),
])
def test_simulate_cli_rejects_bad_sharding_flags(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["simulate", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
