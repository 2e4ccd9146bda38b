"""Hostile gateway input through the public API (issue 8, section 3).

A real shard against the simulator on loopback: every kind of bad data must
take the documented bad-data path (close 4903, RESUME, nothing lost), never
an exception out of the frame callback and never an oversized payload.
"""
from __future__ import annotations

import zlib

import pytest

from fastshard import close_codes
from fastshard.testing.encoding import encode_payload

MB = 1 << 20


async def connect_ready(shard, rec):
    await shard.connect()
    await rec.until(lambda: rec.ready, 5.0, "READY")


async def _bad_data_resumes(sim, shard, rec, send_bad, debug_says: str) -> None:
    """Send something bad on connection 0; the shard must close 4903, resume, lose nothing."""
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    await conn.dispatch("TYPING_START", {"n": 1})
    await rec.until(lambda: any(e["t"] == "TYPING_START" for e in rec.events), what="first event")
    await send_bad(conn)
    code, _ = await conn.wait_closed()
    assert code == close_codes.CLIENT_BAD_DATA == 4903
    await rec.until(lambda: rec.resumed, what="RESUMED after bad data")
    assert any("undecodable" in d and debug_says in d for d in rec.debug), rec.debug[-5:]
    await sim.connections[1].dispatch("TYPING_START", {"n": 2})
    await rec.until(lambda: len([e for e in rec.events if e["t"] == "TYPING_START"]) == 2)
    assert [e["d"]["n"] for e in rec.events if e["t"] == "TYPING_START"] == [1, 2]
    assert not rec.closes


def _etf_bomb(declared_d: int) -> bytes:
    """A compressed ETF dispatch whose d is a binary of `declared_d` zero bytes."""
    inner = (b"t\x00\x00\x00\x04" + b"m\x00\x00\x00\x02opa\x00" + b"m\x00\x00\x00\x01tw\x0eMESSAGE_CREATE"
             + b"m\x00\x00\x00\x01sa\x63" + b"m\x00\x00\x00\x01dm" + declared_d.to_bytes(4, "big")
             + b"\0" * declared_d)
    return b"\x83P" + len(inner).to_bytes(4, "big") + zlib.compress(inner, 9)


@pytest.mark.parametrize("compression", [0, 1, 2, 3])
async def test_etf_compressed_term_bomb_is_refused_like_json_payload_compression(make_sim, make_shard,
                                                                                 compression):
    bomb = _etf_bomb(32 * MB)
    assert len(bomb) < 40_000            # 32 KB on the wire for a 32 MiB d

    async def send(conn):
        if compression in (2, 3):
            await conn.send_encoded(bomb)    # inside the connection's transport stream
        else:
            await conn.send_raw(bomb)        # a binary frame as it is
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, encoding="etf", compression=compression, max_message_size=MB)
    await _bad_data_resumes(sim, shard, rec, send, "max_message_size")
    assert all(e["t"] != "MESSAGE_CREATE" for e in rec.events)


@pytest.mark.parametrize("encoding", ["json", "etf"])
@pytest.mark.parametrize("payload", [{"op": 0, "t": {}, "d": {}}, {"op": 0, "t": {}, "s": 50, "d": {}},
                                     {"op": 0, "t": None, "s": 50, "d": {}},
                                     {"op": 0, "t": "MESSAGE_CREATE", "s": "50", "d": {}}])
async def test_dispatch_without_a_str_t_takes_the_bad_data_path(make_sim, make_shard, encoding, payload):
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, encoding=encoding)

    async def send(conn):
        await conn.send_encoded(encode_payload(payload, encoding))
    await _bad_data_resumes(sim, shard, rec, send, "dispatch (op 0) whose")


@pytest.mark.parametrize("encoding", ["json", "etf"])
async def test_bad_dispatch_with_disabled_events(make_sim, make_shard, encoding):
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, encoding=encoding, disabled_events={"PRESENCE_UPDATE"})
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    await conn.dispatch("TYPING_START", {"n": 1})
    await rec.until(lambda: any(e["t"] == "TYPING_START" for e in rec.events))
    await conn.send_encoded(encode_payload({"op": 0, "t": {}, "d": {}}, encoding))
    code, _ = await conn.wait_closed()
    assert code == 4903
    await rec.until(lambda: rec.resumed, what="RESUMED")
    assert any("dispatch (op 0) whose t is dict" in d for d in rec.debug)
    assert not rec.closes
