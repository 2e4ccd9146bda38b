"""Regression: a resume connection lost while the reconnect attempt still awaits its handshake.

The simulator's ``before_hello`` hook runs right after the 101 response is
written, without yielding, so whatever it sends leaves in the same TCP segment
as the handshake.  picows processes those frames inside the same
``data_received`` as the 101, before ``ws_connect()`` returns to the shard: the
connection is lost while ``_open()`` is still awaiting, which left the shard
RECONNECTING forever (no attempt running, no listener, no ``close`` event).
"""
from __future__ import annotations

import pytest

from fastshard import ShardStatus
from fastshard.testing import SimConnection
from fastshard.testing.protocol import Op


async def _hello(conn: SimConnection) -> None:
    interval_ms = max(1, round(conn.sim.heartbeat_interval * 1000))
    await conn.send_payload({"op": Op.HELLO, "s": None, "t": None, "d": {"heartbeat_interval": interval_ms}})


def _fault_after_hello(how: str):
    """A ``before_hello`` hook: on the first resume connection, HELLO then ``how`` at once."""
    done = False

    async def hook(conn: SimConnection) -> None:
        nonlocal done
        if done or conn.path != "/resume":
            return
        done = True
        await _hello(conn)
        if how == "op7":
            await conn.reconnect()
        elif how == "op9":
            await conn.invalidate_session(True)
        elif how == "close-4000":
            await conn.close(4000, "unknown error")
        elif how == "reset":
            conn.ws.transport.abort()
    return hook


@pytest.mark.parametrize("how", ["op7", "op9", "close-4000", "reset"])
async def test_resume_connection_lost_inside_the_handshake_is_retried(make_sim, make_shard, how):
    sim = await make_sim(guilds=1, before_hello=_fault_after_hello(how))
    shard, rec = make_shard(sim)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    first = sim.connections[0]
    await first.dispatch("TYPING_START", {"n": 1})
    await first.reconnect()  # resume connection #1 meets the fault inside its handshake
    await rec.until(lambda: rec.resumed, what=f"RESUMED after {how} inside the handshake")
    assert shard.status == ShardStatus.CONNECTED and not rec.closes
    resumes = [p for c in sim.connections[1:] for p in c.received if p["op"] == Op.RESUME]
    last = rec.events[-1]["s"]  # the TYPING_START before the fault
    assert len(sim.connections) == 3  # the lost resume connection, then one more attempt
    assert resumes and [r["d"]["seq"] for r in resumes] == [last] * len(resumes)
    assert not any(p["op"] == Op.IDENTIFY for c in sim.connections[1:] for p in c.received)
    await sim.connections[-1].dispatch("TYPING_START", {"n": 2})
    await rec.until(lambda: len(rec.events) == 3, what="the event after RESUMED")
    assert [e["d"].get("n") for e in rec.events[1:]] == [1, 2]


def _op7_after_hello_on_resume(times: int):
    """A ``before_hello`` hook: the first ``times`` resume connections get HELLO + op 7 at once."""
    left = times

    async def hook(conn: SimConnection) -> None:
        nonlocal left
        if conn.path == "/resume" and left > 0:
            left -= 1
            await _hello(conn)
            await conn.reconnect()
    return hook


@pytest.mark.parametrize("losses,backoff", [(3, False), (5, True)])
async def test_a_gateway_that_answered_is_retried_at_once(make_sim, make_shard, losses, backoff):
    # The gateway answers every attempt (HELLO), then loses it: up to reconnect_unsettled_limit (3)
    # such connections in a row are retried at once; past that, backoff applies again.
    sim = await make_sim(guilds=1, before_hello=_op7_after_hello_on_resume(losses))
    shard, rec = make_shard(sim)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    await sim.connections[0].reconnect()
    await rec.until(lambda: rec.resumed, what="RESUMED")
    assert len(sim.connections) == losses + 2
    waits = [line for line in rec.debug if line.startswith("waiting")]
    assert bool(waits) == backoff, waits
    assert shard.status == ShardStatus.CONNECTED and not rec.closes
