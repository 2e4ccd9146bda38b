"""ShardManager against the simulator over loopback: buckets, sessions, re-identify, fatal closes."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from fastshard import (FileSessionStore, GatewayCloseError, LocalIdentifyQueue, MemorySessionStore, SessionInfo,
                       SessionStartLimitError, ShardManager, ShardStatus)
from fastshard.rest import GatewayLookupError
from fastshard.testing import GatewaySimulator

ROOT = Path(__file__).resolve().parent.parent


class Seen:
    """What a manager's user saw, by event name, as (shard_id, value)."""

    def __init__(self, manager: ShardManager) -> None:
        self.by_name: dict[str, list[tuple[Any, Any]]] = {n: [] for n in ("event", "ready", "resumed", "close",
                                                                           "debug")}
        for name, items in self.by_name.items():
            manager.on(name, lambda sid, value, items=items: items.append((sid, value)))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out; debug: {self.by_name['debug'][-10:]}")
            await asyncio.sleep(0.01)


class Managers(list[ShardManager]):
    sims: list[GatewaySimulator]


@pytest_asyncio.fixture
async def managers() -> AsyncIterator[Managers]:
    made = Managers()
    made.sims = []
    yield made
    for m in made:
        await m.close()
    # Whatever a test did, the manager never identified faster than the buckets allow.
    for sim in made.sims:
        assert sim.identify_violations == 0, sim.identify_log


async def sharded_sim(make_sim: Any, shards: int = 3, max_concurrency: int = 1, **kw: Any) -> GatewaySimulator:
    kw.setdefault("guilds", 1)
    kw.setdefault("heartbeat_interval", 1.0)
    kw.setdefault("identify_interval", 0.05)
    sim: GatewaySimulator = await make_sim(shards=shards, max_concurrency=max_concurrency, **kw)
    return sim


def make(made: Managers, sim: GatewaySimulator, **kw: Any) -> tuple[ShardManager, Seen]:
    """A manager that learns everything from the simulator's GET /gateway/bot."""
    made.sims.append(sim)
    kw.setdefault("token", "test-token")
    kw.setdefault("intents", 513)
    kw.setdefault("api_url", sim.api_url)
    kw.setdefault("identify_queue", LocalIdentifyQueue(sim.max_concurrency or 1, interval=sim.identify_interval))
    manager = ShardManager(**kw)
    manager.reconnect_base_delay = 0.01
    manager.reconnect_max_delay = 0.05
    made.append(manager)
    return manager, Seen(manager)


async def run_and_close(made: Managers, sim: GatewaySimulator, path: Path) -> None:
    """A first manager that identifies every shard, then closes, its sessions saved at ``path``."""
    first, _ = make(made, sim, session_store=FileSessionStore(path))
    await first.start()
    await first.wait_ready(5)
    await first.close()


def identify_shards(sim: GatewaySimulator) -> list[int]:
    """Shard ids of every IDENTIFY the server received, in arrival order."""
    out = []
    for conn in sim.connections:
        for payload in conn.received:
            if payload.get("op") == 2:
                out.append(payload["d"]["shard"][0])
    return out


def resume_count(sim: GatewaySimulator) -> int:
    return sum(1 for conn in sim.connections for p in conn.received if p.get("op") == 6)


def connection_of(sim: GatewaySimulator, shard_id: int) -> Any:
    for conn in reversed(sim.connections):
        if conn.session is not None and conn.session.shard[0] == shard_id and not conn.closed:
            return conn
    raise AssertionError(f"no open connection for shard {shard_id}")


async def test_events_carry_the_shard_id_they_came_from(make_sim: Any, managers: Managers) -> None:
    sim = await sharded_sim(make_sim, guilds=2)
    manager, seen = make(managers, sim)
    stream = manager.events()
    await manager.start()
    await manager.wait_ready(5)
    assert sorted(sid for sid, _ in seen.by_name["ready"]) == [0, 1, 2]
    for sid in (2, 0, 1):
        await connection_of(sim, sid).dispatch("TYPING_START", {"shard_marker": sid})
    await seen.until(lambda: sum(1 for _, p in seen.by_name["event"] if p["t"] == "TYPING_START") == 3)
    typing = [(sid, p["d"]["shard_marker"]) for sid, p in seen.by_name["event"] if p["t"] == "TYPING_START"]
    assert sorted(typing) == [(0, 0), (1, 1), (2, 2)]
    streamed = []
    async for sid, payload in stream:
        if payload["t"] == "TYPING_START":
            streamed.append((sid, payload["d"]["shard_marker"]))
            if len(streamed) == 3:
                break
    assert streamed == [(2, 2), (0, 0), (1, 1)]
    # GUILD_CREATEs arrive on the shard the formula names.
    for sid, payload in seen.by_name["event"]:
        if payload["t"] == "GUILD_CREATE":
            assert manager.shard_for(payload["d"]["id"]) == sid
    assert manager.shard_for(None) == 0
    assert set(manager.status()) == {0, 1, 2}
    assert all(s.status == ShardStatus.CONNECTED and s.identifies == 1 for s in manager.status().values())
    assert manager.identifies_spent == 3


async def test_every_identify_waits_for_its_bucket(make_sim: Any, managers: Managers) -> None:
    # The server sees arrival times, which scheduling on a loaded machine can bring closer
    # than the client spaced them: a generous slack, still far from the ~0 gap of no queue.
    sim = await sharded_sim(make_sim, shards=8, max_concurrency=2, identify_interval=0.2, identify_slack=0.06)
    manager, seen = make(managers, sim)
    await manager.start()
    await manager.wait_ready(5)
    log = [r for r in sim.identify_log if r.allowed]
    assert sorted(r.shard_id for r in log) == list(range(8)) and len(sim.identify_log) == 8
    for bucket in (0, 1):
        ids = [r.shard_id for r in log if r.key == bucket]
        assert ids == sorted(ids)  # lowest id first within a bucket: rounds 0-1, 2-3, 4-5, 6-7
        times = [r.at for r in log if r.key == bucket]
        assert all(b - a >= 0.14 for a, b in zip(times, times[1:])), times  # measured at the server
    assert manager.identifies_spent == 8 and manager.max_concurrency == 2 and manager.shard_count == 8
    assert sim.session_start_remaining == manager.session_starts_remaining


async def test_not_enough_session_starts_refuses_before_spending_any(make_sim: Any, managers: Managers) -> None:
    sim = await sharded_sim(make_sim, shards=3, session_start_limit=2)
    manager, _ = make(managers, sim)
    with pytest.raises(SessionStartLimitError) as info:
        await manager.start()
    assert info.value.remaining == 2 and info.value.needed == 3
    assert "3 shards must identify but only 2 session starts are left" in str(info.value)
    assert sim.identify_log == [] and manager.shards == {}


async def test_a_rejected_token_raises_from_start(make_sim: Any) -> None:
    sim = await sharded_sim(make_sim, token="the-real-token")
    manager = ShardManager(token="a-wrong-token", intents=513, api_url=sim.api_url)
    with pytest.raises(GatewayLookupError, match="rejected the token"):
        await manager.start()


async def test_resume_on_restart_spends_no_identify(make_sim: Any, managers: Managers,
                                                    tmp_path: Path) -> None:
    sim = await sharded_sim(make_sim)
    path = tmp_path / "sessions.json"
    await run_and_close(managers, sim, path)
    # Closed with 4900: the sessions stay resumable on the gateway.
    assert {c.close_code for c in sim.connections} == {4900}
    stored = await FileSessionStore(path).load_all()
    assert sorted(stored) == [0, 1, 2] and all(s.shard_count == 3 for s in stored.values())
    identifies = len(identify_shards(sim))

    second, seen = make(managers, sim, session_store=FileSessionStore(path))
    await second.start()
    await second.wait_ready(5)
    assert sorted(sid for sid, _ in seen.by_name["resumed"]) == [0, 1, 2]
    assert len(identify_shards(sim)) == identifies and resume_count(sim) == 3
    assert second.identifies_spent == 0


async def test_a_changed_shard_count_identifies_afresh(make_sim: Any, managers: Managers) -> None:
    sim = await sharded_sim(make_sim)
    store = MemorySessionStore()
    for sid in range(2):
        await store.save(sid, SessionInfo(f"old-{sid}", 10, sim.resume_url, shard_count=2))
    manager, seen = make(managers, sim, session_store=store)
    await manager.start()
    await manager.wait_ready(5)
    assert resume_count(sim) == 0 and sorted(identify_shards(sim)) == [0, 1, 2]
    assert all(info.shard_count == 3 for info in store.sessions.values())


@pytest.mark.parametrize("how", ["op9", "4009", "4007"])
async def test_a_dead_session_is_identified_again_through_the_queue(make_sim: Any, managers: Managers,
                                                                     how: str) -> None:
    sim = await sharded_sim(make_sim)
    queue = LocalIdentifyQueue(1, interval=0.05)
    manager, seen = make(managers, sim, identify_queue=queue)
    await manager.start()
    await manager.wait_ready(5)
    await asyncio.sleep(0.06)  # the bucket's last IDENTIFY is an interval old: re-identifying need not wait
    conn = connection_of(sim, 1)
    old_session = conn.session.session_id
    if how == "op9":
        await conn.invalidate_session(False)
    else:
        await conn.close(int(how))
    await seen.until(lambda: sum(1 for sid, _ in seen.by_name["ready"] if sid == 1) == 2)
    assert identify_shards(sim).count(1) == 2 and queue.spent == 4
    assert manager.shards[1].session_id != old_session
    assert manager.status()[1].identifies == 2
    assert seen.by_name["close"] == []  # not the application's end
    assert all(s.status == ShardStatus.CONNECTED for s in manager.shards.values())


async def test_a_fatal_close_stops_every_shard_resumably(make_sim: Any, managers: Managers,
                                                         tmp_path: Path) -> None:
    sim = await sharded_sim(make_sim)
    store = FileSessionStore(tmp_path / "s.json")
    manager, seen = make(managers, sim, session_store=store)
    stream = manager.events()
    await manager.start()
    await manager.wait_ready(5)
    await connection_of(sim, 2).close(4004, "Authentication failed.")
    await seen.until(lambda: bool(seen.by_name["close"]))
    (sid, error), = seen.by_name["close"]
    assert sid == 2 and isinstance(error, GatewayCloseError) and error.code == 4004
    assert all(s.status == ShardStatus.CLOSED for s in manager.shards.values())
    others = [c for c in sim.connections if c.session is not None and c.session.shard[0] != 2]
    assert {c.close_code for c in others} == {4900}
    assert sorted((await FileSessionStore(tmp_path / "s.json").load_all())) == [0, 1]
    with pytest.raises(GatewayCloseError):
        await manager.wait_ready(1)
    with pytest.raises(GatewayCloseError):
        async for _ in stream:
            pass


async def test_sharding_required_says_to_take_the_count_from_gateway_bot(make_sim: Any,
                                                                         managers: Managers) -> None:
    sim = await sharded_sim(make_sim, shards=4, guilds=3, max_guilds_per_shard=4)
    manager, seen = make(managers, sim, shard_count=2)  # 12 guilds over 2 shards: 6 each, more than 4
    await manager.start()
    with pytest.raises(GatewayCloseError) as info:
        await manager.wait_ready(5)
    assert info.value.code == 4011
    assert "GET /gateway/bot" in str(info.value) and "it recommends 4" in str(info.value)


async def test_restart_in_another_process_resumes_and_replays_exactly_once(
        make_sim: Any, managers: Managers, tmp_path: Path) -> None:
    sim = await sharded_sim(make_sim)
    path = tmp_path / "sessions.json"
    await run_and_close(managers, sim, path)
    identifies = len(identify_shards(sim))
    # While no process holds the shards, Discord keeps dispatching into the sessions.
    sent: dict[int, list[int]] = {}
    for session in sim.sessions.values():
        sent[session.shard[0]] = [await session.dispatch("TYPING_START", {"n": n}) for n in range(5)]
    script = f"""
import asyncio, json, sys
from fastshard import FileSessionStore, LocalIdentifyQueue, ShardManager
async def main():
    m = ShardManager(token="test-token", intents=513, api_url={sim.api_url!r},
                     identify_queue=LocalIdentifyQueue(1, interval=0.05), session_store=FileSessionStore({str(path)!r}))
    seen = {{"event": 0, "resumed": 0}}
    done = asyncio.Event()
    def out(kind, sid, value):
        print(json.dumps([kind, sid, value]), flush=True)
        seen[kind] = seen.get(kind, 0) + 1
        # A shard's RESUMED follows its replay: wait for both, every shard's.
        if seen["event"] >= 15 and seen["resumed"] >= 3:
            done.set()
    m.on("resumed", lambda sid, d: out("resumed", sid, d.get("replayed")))
    m.on("ready", lambda sid, d: out("ready", sid, None))
    events = m.events()
    await m.start()
    async def typing():
        async for sid, payload in events:
            if payload["t"] == "TYPING_START":
                out("event", sid, payload["s"])
    reader = asyncio.ensure_future(typing())
    await asyncio.wait_for(done.wait(), 20)
    reader.cancel()
    await m.close()
asyncio.run(main())
"""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert not [line for line in lines if line[0] == "ready"], "the restarted process identified"
    assert sorted(sid for kind, sid, _ in lines if kind == "resumed") == [0, 1, 2]
    assert all(replayed == 5 for kind, _, replayed in lines if kind == "resumed")
    for sid in range(3):
        assert [s for kind, i, s in lines if kind == "event" and i == sid] == sent[sid]
    assert len(identify_shards(sim)) == identifies


async def test_close_saves_the_sequence_at_close(make_sim: Any, managers: Managers) -> None:
    sim = await sharded_sim(make_sim)
    store = MemorySessionStore()
    manager, seen = make(managers, sim, session_store=store, shard_count=1)
    await manager.start()
    await manager.wait_ready(5)
    for n in range(4):
        await connection_of(sim, 0).dispatch("TYPING_START", {"n": n})
    await seen.until(lambda: sum(1 for _, p in seen.by_name["event"] if p["t"] == "TYPING_START") == 4)
    await manager.close()
    assert store.sessions[0].sequence == manager.shards[0].sequence == connection_of_closed_seq(sim)


def connection_of_closed_seq(sim: GatewaySimulator) -> int:
    (session,) = sim.sessions.values()
    return session.seq


async def test_start_without_a_reachable_api_says_so() -> None:
    manager = ShardManager(token="t", intents=1, api_url="http://127.0.0.1:9/api/v10")
    with pytest.raises(GatewayLookupError, match="could not reach"):
        await manager.start()


def test_bad_options_name_themselves() -> None:
    with pytest.raises(TypeError, match="'compresion'"):
        ShardManager(token="t", intents=1, compresion=2)
    with pytest.raises(TypeError, match="'total'.*shard_count"):
        ShardManager(token="t", intents=1, total=4)
    with pytest.raises(ValueError, match="compression"):
        ShardManager(token="t", intents=1, compression=9)
    with pytest.raises(ValueError, match="shard_ids"):
        ShardManager(token="t", intents=1, shard_ids=[0, 4], shard_count=4)
    with pytest.raises(ValueError, match="shard_count"):
        ShardManager(token="t", intents=1, shard_count=0)
    with pytest.raises(TypeError, match="session_store"):
        ShardManager(token="t", intents=1, session_store=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shard_ids"):
        ShardManager(token="t", intents=1, shard_ids="0-3")  # type: ignore[arg-type]


async def test_send_goes_to_the_named_shard(make_sim: Any, managers: Managers) -> None:
    sim = await sharded_sim(make_sim)
    manager, _ = make(managers, sim)
    await manager.start()
    await manager.wait_ready(5)
    await manager.send(1, {"op": 3, "d": {"since": None, "activities": [], "status": "idle", "afk": False}})
    conn = connection_of(sim, 1)
    await conn.wait_for_op(3)
    with pytest.raises(ValueError, match="no shard 7"):
        await manager.send(7, {"op": 3, "d": {}})
    assert manager.latency is None or manager.latency >= 0
