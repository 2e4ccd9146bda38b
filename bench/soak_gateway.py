"""The soak's gateway: the simulator in a process of its own, firing seeded faults into a stream.

``python -m bench.soak_gateway`` prints ``PORT <n>`` once it listens, then
reads one JSON command per line on stdin (``{"encoding", "compression",
"events", "faults", "seed"}``: one leg), answers ``{"ready": ...}``, waits for
the shard to IDENTIFY,
dispatches ``events`` through the session (so that RESUME replays them) with
``faults`` faults at random moments, and answers one JSON line: what it sent
(sequence ranges, sampled ``d``), what each connection received (IDENTIFY /
RESUME and their seq) and every fault with its monotonic time.  It ends when
its stdin closes.

It drives the simulator through its public API only (``GatewaySimulator``,
``SimConnection``'s fault knobs, ``SimSession.dispatch``).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from fastshard.testing import GatewaySimulator, SimConnection, TrafficGenerator
from fastshard.testing.protocol import Op

__all__ = ["main", "FAULT_KINDS", "SAMPLE_EVERY", "HEARTBEAT_INTERVAL"]

#: Every kind of fault the soak fires.  "after-hello" and "mid-resume" are compound: a
#: first fault, then a second one on the resume connection right after HELLO (in the same
#: segment as the handshake) or while it replays.  "split" is no disconnection: zlib-stream
#: messages split in three websocket messages (other compressions: fragmented frames).
FAULT_KINDS = ("reset", "close", "op7", "op9", "zombie", "garbage", "split", "after-hello", "mid-resume")
RESUMABLE = frozenset(FAULT_KINDS) - {"split"}
SAMPLE_EVERY = 97          # the shard's user checks the d of every 97th sequence number
HEARTBEAT_INTERVAL = 0.3   # s: a zombie is noticed within two intervals
DETACHED_BUFFER = 3000     # dispatches buffered while the shard is away, then the stream waits
POOL = 4096                # distinct dispatches, cycled (a multiple of BATCH)
BATCH = 64                 # dispatches between yields to the event loop (heartbeats must be read)
ATTACH_TIMEOUT = 30.0      # s without the shard back: the leg reports "stuck"

GARBAGE: dict[tuple[str, int], bytes | str] = {
    ("json", 0): "{not json", ("json", 1): "{not json",
    ("etf", 0): b"\x83\x74\x00\x00\x00\x05", ("etf", 1): b"\x83\x50\x00\x00\x10\x00corrupt",
}
for _e in ("json", "etf"):
    GARBAGE[(_e, 2)] = b"\x00\x01garbage\x00\x00\xff\xff"
    GARBAGE[(_e, 3)] = b"\x28\xb5\x2f\xfd garbage"


def _hello_payload(sim: GatewaySimulator) -> dict[str, Any]:
    return {"op": Op.HELLO, "s": None, "t": None,
            "d": {"heartbeat_interval": max(1, round(sim.heartbeat_interval * 1000))}}


class Leg:
    """One shard's stream through its faults."""

    def __init__(self, sim: GatewaySimulator, command: dict[str, Any]) -> None:
        self.sim = sim
        self.encoding: str = command["encoding"]
        self.compression: int = command["compression"]
        self.events: int = command["events"]
        self.faults: int = command["faults"]
        self.rng = random.Random(f"soak:{command['seed']}:{self.encoding}:{self.compression}")
        self.first_connection = len(sim.connections)
        self.fired: list[dict[str, Any]] = []
        self.ranges: list[list[int]] = []
        self.samples: dict[int, Any] = {}
        self.after_hello: str | None = None   # armed for the next connection's handshake
        self.mid_resume: str | None = None    # armed for the next connection's replay
        self.mid_replay_hits = 0
        self.session: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- faults -------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record(self, kind: str, conn: SimConnection, stage: str = "") -> None:
        session = conn.session
        self.fired.append({"kind": kind, "stage": stage, "t": time.monotonic(), "conn": conn.index,
                           "seq": session.seq if session is not None else None,
                           "resumable": kind in RESUMABLE})

    async def _disconnect(self, conn: SimConnection, how: str, *, wait: bool = False) -> None:
        """One fault that ends ``conn`` (or makes the shard end it)."""
        with contextlib.suppress(ConnectionClosed):
            if how == "reset":
                conn.ws.transport.abort()
            elif how == "close":
                # close() writes the frame at once, then waits for the closing handshake.
                closing = conn.close(self.rng.choice((4000, 1001)), "soak")
                if wait:
                    await closing
                else:
                    self._spawn(closing)
            elif how == "op7":
                await conn.reconnect()
            elif how == "op9":
                await conn.invalidate_session(True)
            elif how == "zombie":
                conn.ack_heartbeats = False
            elif how == "garbage":
                await conn.send_raw(GARBAGE[(self.encoding, self.compression)])

    async def fire(self, conn: SimConnection) -> bool:
        """The next random fault on ``conn``; True when the shard must reconnect."""
        kind = self.rng.choice(FAULT_KINDS)
        self._record(kind, conn)
        if kind == "split":
            if self.compression == 2:
                conn.split_messages = 3
            else:
                conn.fragment_frames = True
            return False
        if kind == "after-hello":
            self.after_hello = self.rng.choice(("op7", "close", "reset", "op9"))
            await self._disconnect(conn, "op7")
        elif kind == "mid-resume":
            self.mid_resume = self.rng.choice(("reset", "op7", "close", "garbage"))
            await self._disconnect(conn, self.rng.choice(("reset", "op7")))
        else:
            await self._disconnect(conn, kind)
        return True

    async def before_hello(self, conn: SimConnection) -> None:
        """The simulator's hook: runs right after the 101 is written, before HELLO."""
        if conn.path != "/resume":
            return
        if self.after_hello is not None:
            how, self.after_hello = self.after_hello, None
            # HELLO and the fault leave with the handshake, in one segment.
            with contextlib.suppress(ConnectionClosed):
                await conn.send_payload(_hello_payload(self.sim))
            self._record(how, conn, "after-hello")
            await self._disconnect(conn, how, wait=True)
        elif self.mid_resume is not None:
            how, self.mid_resume = self.mid_resume, None
            await asyncio.sleep(0.05)  # the stream buffers meanwhile: the resume has a replay to send
            self._fault_during_replay(conn, how, after=self.rng.randint(1, 50))

    def _fault_during_replay(self, conn: SimConnection, how: str, after: int) -> None:
        """Fire ``how`` after the ``after``-th replayed dispatch (or at RESUMED, if the replay is shorter).

        The simulator writes a replay without yielding (loopback sockets take it
        all), so no other task can land in the middle of it: this connection's
        ``send_payload`` is wrapped for the one resume instead.
        """
        send = conn.send_payload
        count = 0

        async def send_payload(payload: dict[str, Any]) -> None:
            nonlocal count
            resumed = payload.get("t") == "RESUMED"
            if resumed or payload.get("op") == Op.DISPATCH:
                count += 1
                if resumed or count >= after:
                    conn.send_payload = send  # type: ignore[method-assign]
                    if not resumed:
                        await send(payload)
                        self.mid_replay_hits += 1
                    self._record(how, conn, "mid-resume")
                    await self._disconnect(conn, how)
                    if not resumed:
                        return
            await send(payload)

        conn.send_payload = send_payload  # type: ignore[method-assign]

    # -- the stream -----------------------------------------------------------
    async def _attached(self, not_to: SimConnection | None = None) -> SimConnection:
        """The session's connection once the shard is back (on a connection other than ``not_to``)."""
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while True:
            conn = self.session.connection
            if conn is not None and conn is not not_to and not conn.closed:
                return conn
            if time.monotonic() > deadline:
                raise TimeoutError(f"the shard did not come back within {ATTACH_TIMEOUT:g} s")
            await asyncio.sleep(0.001)

    def _note(self, seq: int, d: Any) -> None:
        ranges = self.ranges
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
        if seq % SAMPLE_EVERY == 0:
            self.samples[seq] = d

    async def run(self) -> dict[str, Any]:
        conn = await self.sim.wait_connection(self.first_connection, timeout=ATTACH_TIMEOUT)
        await conn.wait_for_op(Op.IDENTIFY, timeout=ATTACH_TIMEOUT)
        while conn.session is None:
            await asyncio.sleep(0.001)
        self.session = session = conn.session
        if session.seq > 1:
            self.ranges.append([2, session.seq])  # the GUILD_CREATEs after READY
        # A pool of generated dispatches, cycled: generating each one costs more than sending it.
        pool = TrafficGenerator(f"soak-stream:{self.rng.random()}", session.guild_ids).steady_stream(POOL)
        # Random spacing that always fits: every drawn fault fires before the stream ends.
        weights = [self.rng.random() + 0.05 for _ in range(self.faults)]
        gaps = [max(1, int(w / sum(weights) * self.events * 0.98)) for w in weights]
        next_fault = gaps.pop() if gaps else None
        faulted: SimConnection | None = None
        error = None
        sent = 0
        try:
            while sent < self.events:
                for t, d in pool[sent % POOL:sent % POOL + min(BATCH, self.events - sent)]:
                    if next_fault is not None and sent >= next_fault:
                        target = await self._attached(faulted)
                        faulted = target if await self.fire(target) else faulted
                        next_fault = sent + gaps.pop() if gaps else None
                    if session.connection is None and session.buffered >= DETACHED_BUFFER:
                        await self._attached()
                    self._note(await session.dispatch(t, d), d)
                    sent += 1
                await asyncio.sleep(0)
            await self._attached(faulted)
        except TimeoutError as exc:
            error = str(exc)
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5.0)
        conns = self.sim.connections[self.first_connection:]
        return {
            "error": error, "sent": sent, "final_seq": session.seq, "ranges": self.ranges,
            "samples": self.samples, "faults": self.fired, "mid_replay_hits": self.mid_replay_hits,
            "connections": [{"index": c.index, "path": c.path,
                             "commands": [[p.get("op"), (p.get("d") or {}).get("seq")] for p in c.received
                                          if p.get("op") in (Op.IDENTIFY, Op.RESUME)]} for c in conns],
        }


async def _serve(seed: int) -> None:
    legs: list[Leg] = []

    async def before_hello(conn: SimConnection) -> None:
        if legs:
            await legs[-1].before_hello(conn)

    sim = GatewaySimulator(guilds=2, seed=seed, heartbeat_interval=HEARTBEAT_INTERVAL,
                           heartbeat_timeout=60.0, rate_limit=(1_000_000, 60.0), replay_buffer=200_000,
                           before_hello=before_hello)
    async with sim:
        print(f"PORT {sim.port}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            leg = Leg(sim, json.loads(line))
            legs.append(leg)
            sys.stdout.write(json.dumps({"ready": leg.first_connection}) + "\n")  # now the shard may connect
            sys.stdout.flush()
            result = await leg.run()
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_gateway")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.seed))


if __name__ == "__main__":
    main()
