"""picows' read buffer is given back after large frames (issue 9, "Where it goes").

A real shard on a loopback connection to the simulator: a burst of large
dispatches grows picows' read buffer (it doubles whenever a read fills it);
once the connection is quiet the buffer must be back to KEEP_CAPACITY, while
every event still arrives intact.  Measured on the buffer's capacity itself,
not on RSS.
"""
from __future__ import annotations

import asyncio
import random
import string

import pytest

_readbuf = pytest.importorskip("fastshard._readbuf")
read_buffer_capacity = _readbuf.read_buffer_capacity
KEEP = _readbuf.KEEP_CAPACITY


@pytest.fixture(autouse=True)
def _no_real_delays(monkeypatch):
    # a connection busy when its trim came due is looked at again at once
    monkeypatch.setattr(_readbuf, "RECHECK_DELAY", 0.0)


async def _quiet(loops: int = 5) -> None:
    for _ in range(loops):          # event loop iterations, not time
        await asyncio.sleep(0)


@pytest.mark.parametrize("impl", ["cython", "python"])
@pytest.mark.parametrize("compression", [0, 2])
async def test_read_buffer_shrinks_after_a_burst(make_sim, make_shard, monkeypatch, impl, compression):
    assert _readbuf.UNSUPPORTED is None
    if impl == "python":
        monkeypatch.setenv("FASTSHARD_PURE_PYTHON", "1")
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, compression=compression)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    transport = shard._listener.transport
    assert read_buffer_capacity(transport) <= KEEP
    seen_capacity: list[int] = []
    shard.on("event", lambda payload: seen_capacity.append(read_buffer_capacity(transport)))
    conn = sim.connections[0]
    blob = "".join(random.Random(1).choices(string.ascii_letters, k=400_000))   # ~300 KB even compressed
    for n in range(6):
        await conn.dispatch("MESSAGE_CREATE", {"n": n, "content": blob})
    await rec.until(lambda: len([e for e in rec.events if e["t"] == "MESSAGE_CREATE"]) == 6, what="burst")
    assert max(seen_capacity) > 4 * KEEP          # the burst did grow it (picows doubles it)
    await _quiet()
    assert read_buffer_capacity(transport) <= KEEP
    # and the connection still works, small and large frames alike
    await conn.dispatch("MESSAGE_CREATE", {"n": 6, "content": blob})
    await conn.dispatch("TYPING_START", {"n": 7})
    await rec.until(lambda: any(e["t"] == "TYPING_START" for e in rec.events), what="after the trim")
    got = [e["d"] for e in rec.events if e["t"] in ("MESSAGE_CREATE", "TYPING_START")]
    assert [d["n"] for d in got] == list(range(8))
    assert all(d["content"] == blob for d in got[:7])
    await _quiet()
    assert read_buffer_capacity(transport) <= KEEP


async def test_no_trim_while_frames_keep_arriving(make_sim, make_shard):
    """A busy connection is left alone: the next read would grow the buffer again."""
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    trimmer = shard._decoder.read_buffer_trimmer
    transport = shard._listener.transport
    conn = sim.connections[0]
    blob = "x" * 300_000
    await conn.dispatch("MESSAGE_CREATE", {"content": blob})
    await rec.until(lambda: len(rec.events) == 2, what="the large event")
    # frames arrive at every loop iteration: the pending trim sees them and waits
    for n in range(3):
        await conn.dispatch("TYPING_START", {"n": n})
        await asyncio.sleep(0)
    await rec.until(lambda: len(rec.events) == 5)
    await _quiet()
    assert read_buffer_capacity(transport) <= KEEP
    assert trimmer.supported and trimmer.trims == 1   # once, after the last frame
