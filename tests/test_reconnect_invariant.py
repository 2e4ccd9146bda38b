"""The shard's lifecycle invariant under every fault at every moment of a connection's life.

In every status but CLOSED and CONNECTED there is exactly one pending attempt
or one live connection (see ``WebsocketShard._start_reconnect``).  Each test
fires one fault at one moment and checks, at every event loop iteration, that
the invariant holds; then that the shard resumed (never identified again) and
the user saw every dispatch exactly once in order, or, when the moment is
close(), that it closed with nothing left behind.  The last test covers the
moment an IDENTIFY waits on its identify queue.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

import pytest
from websockets.exceptions import ConnectionClosed

from fastshard import ShardStatus
from fastshard.testing import SimConnection
from fastshard.testing.protocol import Op

FAULTS = ["reset", "close-4000", "op7", "op9", "zombie", "garbage"]
MOMENTS = ["before-hello", "after-hello", "mid-replay", "during-close", "close-mid-reconnect"]
REPLAY = 3000  # dispatches the resume must replay in "mid-replay": several socket buffers


async def _hello(conn: SimConnection) -> None:
    interval_ms = max(1, round(conn.sim.heartbeat_interval * 1000))
    await conn.send_payload({"op": Op.HELLO, "s": None, "t": None, "d": {"heartbeat_interval": interval_ms}})


async def fire(conn: SimConnection, fault: str, *, hello_sent: bool) -> None:
    """One fault on ``conn``, from the gateway's side."""
    with contextlib.suppress(ConnectionClosed):
        if fault == "reset":
            conn.ws.transport.abort()
        elif fault == "close-4000":
            await conn.close(4000, "unknown error")
        elif fault == "op7":
            await conn.reconnect()
        elif fault == "op9":
            await conn.invalidate_session(True)
        elif fault == "garbage":
            await conn.send_raw("{not json")
        elif fault == "zombie":
            # Stop answering: no ACK, and (before HELLO) no HELLO either.
            conn.ack_heartbeats = False
            if not hello_sent:
                await conn.ws.wait_closed()  # the handler sends nothing until the client gives up


class Watch:
    """Checks the invariant at every loop iteration until stopped."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.violations: list[str] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            problem = self.shard._lifecycle_violation()
            if problem and problem not in self.violations:
                self.violations.append(problem)
            await asyncio.sleep(0)

    async def stop(self) -> list[str]:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        return self.violations


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_every_fault_at_every_moment(make_sim, make_shard, fault, moment):
    shard_box: list[Any] = []
    pending: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        pending.add(task)

    async def before_hello(conn: SimConnection) -> None:
        if conn.index != 1:
            return
        if moment == "before-hello":
            await fire(conn, fault, hello_sent=False)
        elif moment == "after-hello":
            # HELLO and the fault leave in one segment: the shard meets the fault inside its handshake.
            await _hello(conn)
            await fire(conn, fault, hello_sent=True)
            if fault == "zombie":
                await conn.ws.wait_closed()  # never answers the RESUME either
        elif moment == "close-mid-reconnect":
            spawn(shard_box[0].close())  # the shard is inside the resume connection's handshake

    sim = await make_sim(guilds=1, heartbeat_interval=0.05, heartbeat_timeout=5.0, before_hello=before_hello)
    shard, rec = make_shard(sim)
    shard.hello_timeout = 0.2
    shard_box.append(shard)
    watch = Watch(shard)
    baseline_tasks = len(asyncio.all_tasks())
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    first = sim.connections[0]
    session = sim.sessions[shard.session_id]
    await first.dispatch("TYPING_START", {"n": 1})
    await rec.until(lambda: len(rec.events) == 2, what="the first event")

    if moment in ("during-close", "close-mid-reconnect"):
        if moment == "during-close":
            closing = asyncio.ensure_future(shard.close())
            await asyncio.sleep(0)  # close() has sent its close frame: the fault meets a closing shard
            await fire(first, fault, hello_sent=True)
            await closing
        else:
            await first.reconnect()  # the hook closes the shard inside the resume handshake
            await rec.until(lambda: pending and all(t.done() for t in pending), what="close() to return")
        for task in pending:
            task.result()
        assert shard.status == ShardStatus.CLOSED and not rec.closes
        await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in sim.connections)), 5.0)
        assert len(sim.connections) <= 2  # nothing reconnected after close()
        if moment == "close-mid-reconnect":
            # The socket opened under a close() was closed with a frame, not left to a timeout.
            assert sim.connections[1].close_code == 4900
        assert shard._reconnect_task is None
        assert await watch.stop() == []
        await rec.until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, what="tasks back to baseline")
        return

    if moment == "mid-replay":
        for n in range(REPLAY):
            session.record("TYPING_START", {"n": 1000 + n})  # buffered, not sent: the resume replays them
        hit = False

        def on_event(payload: dict[str, Any]) -> None:
            nonlocal hit
            replay_start = rec.events[1]["s"]
            if not hit and shard.status != ShardStatus.CONNECTED and payload["s"] > replay_start + 100:
                hit = True
                spawn(fire(sim.connections[-1], fault, hello_sent=True))
        shard.on("event", on_event)
    await first.reconnect()
    await rec.until(lambda: rec.resumed and shard.status == ShardStatus.CONNECTED
                    and len(rec.events) == 2 + (REPLAY if moment == "mid-replay" else 0),
                    timeout=10.0, what=f"RESUMED and every event after {fault} {moment}")
    if moment == "mid-replay":
        assert hit, "the fault never met the replay"
    await sim.connections[-1].dispatch("TYPING_START", {"n": "last"})
    await rec.until(lambda: rec.events[-1]["d"].get("n") == "last", what="the event after RESUMED")
    assert await watch.stop() == []
    assert not rec.closes
    sent = session.missed_after(0)  # every dispatch but READY/RESUMED, as the gateway sent it
    assert rec.seqs() == [p["s"] for p in sent]
    assert [e["d"] for e in rec.events] == [p["d"] for p in sent]
    identifies = [p for c in sim.connections for p in c.received if p.get("op") == Op.IDENTIFY]
    assert len(identifies) == 1
    assert len(sim.connections) >= 3 or moment == "mid-replay"  # the fault cost a connection
    for task in pending:
        await task


class Gate:
    """An identify queue that lets IDENTIFY through when the test opens it."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0

    async def acquire(self, shard_id: int) -> None:
        self.waiting += 1
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_every_fault_while_identify_waits_on_its_queue(make_sim, make_shard, fault):
    sim = await make_sim(guilds=1, heartbeat_interval=0.05, heartbeat_timeout=5.0)
    gate = Gate()
    shard, rec = make_shard(sim, identify_queue=gate)
    watch = Watch(shard)
    await shard.connect()
    await rec.until(lambda: gate.waiting == 1, what="IDENTIFY waiting on the queue")
    await fire(sim.connections[0], fault, hello_sent=True)

    def identifies() -> list[tuple[int, dict[str, Any]]]:
        return [(c.index, p) for c in sim.connections for p in c.received if p.get("op") == Op.IDENTIFY]

    if fault in ("reset", "close-4000"):
        # Lost before any session existed: the shard stops and says so; the wait is given up.
        await rec.until(lambda: rec.closes, what="close event")
        assert shard.status == ShardStatus.CLOSED and gate.waiting == 0
        gate.opened.set()
        assert identifies() == []
    else:
        # The shard left on purpose: it identifies on a new connection, once the queue allows.
        await rec.until(lambda: len(sim.connections) >= 2 and gate.waiting == 1, what="the wait on a new connection")
        assert sim.connections[0].closed
        gate.opened.set()
        await rec.until(lambda: rec.ready and shard.status == ShardStatus.CONNECTED, what="READY")
        assert [index for index, _ in identifies()] == [len(sim.connections) - 1]
        assert not rec.closes
    assert await watch.stop() == []
