"""WebsocketShard against the gateway simulator over a real loopback socket."""
from __future__ import annotations

import asyncio
import socket

import pytest

from conftest import MATRIX
from fastshard import (ConnectionFailedError, GatewayCloseError, InvalidSessionError, NotConnectedError,
                       PayloadTooLargeError, RateLimitedError, ShardStatus, WebsocketShard)
from fastshard.testing import TrafficGenerator

SAMPLE_ID = "1234567890123456789"


async def connect_ready(shard, rec, timeout=5.0):
    await shard.connect()
    await rec.until(lambda: rec.ready, timeout, "READY")


@pytest.mark.parametrize("impl", ["cython", "python"])
@pytest.mark.parametrize("encoding,compression", MATRIX)
async def test_identify_ready_and_events_in_every_encoding(make_sim, make_shard, monkeypatch, encoding, compression,
                                                           impl):
    if impl == "python":  # the plain-Python reference decoder must behave the same
        monkeypatch.setenv("FASTSHARD_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("FASTSHARD_PURE_PYTHON", raising=False)
    sim = await make_sim(guilds=3)
    shard, rec = make_shard(sim, encoding=encoding, compression=compression, id=1, total=2,
                            large_threshold=100, presence={"status": "idle", "activities": [], "since": None,
                                                           "afk": False})
    stream = shard.events()
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    identify = (await conn.wait_for_op(2))["d"]
    assert identify["token"] == "test-token" and identify["intents"] == 513
    assert identify["shard"] == [1, 2] and identify["compress"] is (compression == 1)
    assert identify["large_threshold"] == 100 and identify["presence"]["status"] == "idle"
    assert set(identify["properties"]) == {"os", "browser", "device"}
    assert conn.query["v"] == "10" and conn.query["encoding"] == encoding
    assert conn.compression == compression
    assert conn.received[0]["op"] == 2  # nothing was sent before HELLO's answer
    assert type(shard._decoder).__name__ == ("PyMessageDecoder" if impl == "python" else "MessageDecoder")

    ready = rec.ready[0]
    assert ready["session_id"] == shard.session_id and shard.resume_url == sim.resume_url
    assert shard.status == ShardStatus.CONNECTED
    await rec.until(lambda: len(rec.events) == 3, what="3 GUILD_CREATEs")
    assert [e["t"] for e in rec.events] == ["GUILD_CREATE"] * 3

    message = TrafficGenerator(7).message_create()
    seq = await conn.dispatch("MESSAGE_CREATE", message)
    await rec.until(lambda: len(rec.events) == 4, what="MESSAGE_CREATE")
    event = rec.events[-1]
    assert event == {"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": message}  # snowflakes come back as str
    assert shard.sequence == seq
    assert rec.seqs() == [2, 3, 4, 5]
    got = [await asyncio.wait_for(stream.__anext__(), 2) for _ in range(4)]
    assert got == rec.events

    # Commands go out in the shard's encoding (ETF with binary keys: atom keys would get 4002).
    presence = {"since": None, "activities": [{"name": "tests", "type": 0}], "status": "dnd", "afk": False}
    await shard.send({"op": 3, "d": presence})
    assert (await conn.wait_for_op(3))["d"] == presence
    assert not conn.atom_keys and not conn.closed
    assert shard.bytes_received > 0
    if compression == 0:
        assert shard.bytes_decoded == shard.bytes_received
    else:  # GUILD_CREATEs compress well in every mode, ETF's compressed terms included
        assert shard.bytes_decoded > 2 * shard.bytes_received


async def test_etf_big_ints_can_be_ints(make_sim, make_shard):
    sim = await make_sim(guilds=0)
    shard, rec = make_shard(sim, encoding="etf", big_ints_as_str=False)
    await connect_ready(shard, rec)
    await sim.connections[0].dispatch("TYPING_START", {"channel_id": SAMPLE_ID, "timestamp": 1700000000})
    await rec.until(lambda: rec.events)
    assert rec.events[0]["d"] == {"channel_id": int(SAMPLE_ID), "timestamp": 1700000000}


async def test_fragmented_and_split_messages(make_sim, make_shard):
    sim = await make_sim(guilds=0)
    for compression in (0, 2):
        shard, rec = make_shard(sim, compression=compression)
        await connect_ready(shard, rec)
        conn = sim.connections[-1]
        conn.split_messages = 5
        conn.fragment_frames = True
        traffic = TrafficGenerator(3)
        sent = [traffic.message_create() for _ in range(5)]
        for d in sent:
            await conn.dispatch("MESSAGE_CREATE", d)
        await rec.until(lambda: len(rec.events) == 5)
        assert [e["d"] for e in rec.events] == sent
        await shard.close()


async def test_heartbeats_acks_and_ping(make_sim, make_shard):
    sim = await make_sim(guilds=1, heartbeat_interval=0.05)
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    third = await conn.wait_for_op(1, count=3)
    assert third["d"] == shard.sequence == 2  # READY (1) + one GUILD_CREATE (2)
    assert shard.last_ping is not None and shard.last_ping >= 0
    ms = await shard.ping(b"hello")
    assert isinstance(ms, float) and shard.last_ping == ms
    with pytest.raises(ValueError, match="125 bytes"):
        await shard.ping("x" * 126)


async def test_op1_gets_an_immediate_heartbeat(sim, make_shard):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    assert conn.heartbeats == 0  # the default 41.25 s interval has not passed
    await conn.request_heartbeat()
    beat = await conn.wait_for_op(1, timeout=1.0)
    assert beat["d"] == shard.sequence


async def test_zombie_connection_is_closed_and_resumed(make_sim, make_shard):
    sim = await make_sim(guilds=1, heartbeat_interval=0.05, heartbeat_timeout=10.0)
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    first = sim.connections[0]
    first.ack_heartbeats = False
    code, _ = await first.wait_closed()
    assert code not in (None, 1000, 1001)
    second = await sim.wait_connection(1)
    resume = await second.wait_for_op(6)
    assert resume["d"] == {"token": "test-token", "session_id": shard.session_id, "seq": 2}
    assert second.path == "/resume"
    await rec.until(lambda: rec.resumed, what="RESUMED")
    assert shard.status == ShardStatus.CONNECTED
    assert any("zombie" in line for line in rec.debug)


async def test_network_loss_resumes_with_replay_and_loses_nothing(make_sim, make_shard):
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim)
    shard.reconnect_first_delay = 0.2  # room to dispatch while the shard is away
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    session = sim.sessions[shard.session_id]
    await conn.dispatch("TYPING_START", {"n": 1})
    await conn.drop()
    for n in range(2, 5):
        await session.dispatch("TYPING_START", {"n": n})  # buffered: nobody is connected
    await rec.until(lambda: rec.resumed, what="RESUMED")
    assert shard.status == ShardStatus.CONNECTED
    assert rec.resumed[0]["replayed"] == 3
    await sim.connections[1].dispatch("TYPING_START", {"n": 5})
    await rec.until(lambda: len(rec.events) == 6)
    assert [e["d"]["n"] for e in rec.events[1:]] == [1, 2, 3, 4, 5]
    seqs = rec.seqs()
    assert seqs == sorted(set(seqs))
    # RESUMED carries s too: the tracked sequence includes it.
    assert shard.sequence == session.seq


async def test_status_is_reconnecting_while_the_gateway_is_down(make_sim, make_shard):
    sim = await make_sim(guilds=0)
    shard, rec = make_shard(sim)
    shard.connect_timeout = 0.5  # an attempt caught by the server shutting down fails fast
    await connect_ready(shard, rec)
    port = sim.port
    await sim.connections[0].drop()
    await sim.stop()  # nothing listens: attempts fail and back off
    await rec.until(lambda: sum("reconnect attempt" in d and "failed" in d for d in rec.debug) >= 3,
                    what="failed attempts")
    assert shard.status == ShardStatus.RECONNECTING
    assert any("waiting" in d for d in rec.debug)
    # A gateway comes back on the same port but knows nothing of the session: declared dead.
    await make_sim(port=port, guilds=0)
    await rec.until(lambda: rec.closes, what="close event")
    assert isinstance(rec.closes[0], InvalidSessionError)
    assert shard.status == ShardStatus.CLOSED and shard.session_id is None


@pytest.mark.parametrize("how", ["op7", "op9-resumable", "close-4000", "close-1001"])
async def test_resumable_requests_resume(sim, make_shard, how):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    if how == "op7":
        await conn.reconnect()
    elif how == "op9-resumable":
        await conn.invalidate_session(True)
    else:
        await conn.close(int(how.split("-")[1]))
    await rec.until(lambda: rec.resumed, what="RESUMED")
    assert (await sim.connections[1].wait_for_op(6))["d"]["session_id"] == shard.session_id
    if how.startswith("op"):
        code, _ = await conn.wait_closed()
        assert code not in (1000, 1001)
    assert not rec.closes


async def test_refused_resume_closes_with_invalid_session(sim, make_shard):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    sim.sessions[shard.session_id].invalidate()
    await sim.connections[0].drop()
    await rec.until(lambda: rec.closes, what="close event")
    error = rec.closes[0]
    assert isinstance(error, InvalidSessionError) and "connect() again" in str(error)
    assert shard.status == ShardStatus.CLOSED
    assert shard.session_id is None and shard.sequence is None
    # connect() again identifies a new session
    await shard.connect()
    await rec.until(lambda: len(rec.ready) == 2, what="second READY")
    assert (await sim.connections[-1].wait_for_op(2))["op"] == 2


async def test_op9_not_resumable_ends_the_shard(sim, make_shard):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    await sim.connections[0].invalidate_session(False)
    await rec.until(lambda: rec.closes)
    assert isinstance(rec.closes[0], InvalidSessionError) and shard.session_id is None


@pytest.mark.parametrize("code", [4007, 4009])
async def test_session_invalidating_close_codes(sim, make_shard, code):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    await sim.connections[0].close(code, "nope")
    await rec.until(lambda: rec.closes)
    assert isinstance(rec.closes[0], InvalidSessionError) and str(code) in str(rec.closes[0])
    assert shard.session_id is None and len(sim.connections) == 1


async def test_bad_token_is_fatal_and_explained(make_sim, make_shard):
    sim = await make_sim(token="the-right-token")
    shard, rec = make_shard(sim, token="Bot wrong")
    stream = shard.events()
    await shard.connect()
    await rec.until(lambda: rec.closes)
    error = rec.closes[0]
    assert isinstance(error, GatewayCloseError) and error.code == 4004
    assert "token was rejected" in str(error) and "Reset Token" in str(error)
    assert shard.status == ShardStatus.CLOSED and len(sim.connections) == 1
    with pytest.raises(GatewayCloseError):
        await asyncio.wait_for(stream.__anext__(), 1)


async def test_disallowed_intents_are_fatal_and_explained(make_sim, make_shard):
    sim = await make_sim(allowed_intents=0)
    shard, rec = make_shard(sim, intents=(1 << 0) | (1 << 1))  # GUILDS | GUILD_MEMBERS (privileged)
    await shard.connect()
    await rec.until(lambda: rec.closes)
    assert rec.closes[0].code == 4014 and "Privileged Gateway Intents" in str(rec.closes[0])


async def test_close_keeps_the_session_resumable(sim, make_shard):
    shard, rec = make_shard(sim)
    stream = shard.events()
    await connect_ready(shard, rec)
    await rec.until(lambda: len(rec.events) == 2)
    session_id, sequence, resume_url = shard.session_id, shard.sequence, shard.resume_url
    await shard.close()
    assert shard.status == ShardStatus.CLOSED and not rec.closes
    code, _ = await sim.connections[0].wait_closed()
    assert code not in (None, 1000, 1001)
    assert (shard.session_id, shard.sequence, shard.resume_url) == (session_id, sequence, resume_url)
    assert [p async for p in stream] == rec.events  # the iterator ends after close()
    with pytest.raises(NotConnectedError):
        await shard.send({"op": 3, "d": {}})

    # A new shard picks the session up where this one left it.
    await sim.sessions[session_id].dispatch("TYPING_START", {"missed": True})
    other, orec = make_shard(sim, url=resume_url, session=session_id, sequence=sequence)
    await other.connect()
    await orec.until(lambda: orec.resumed)
    assert orec.resumed[0]["replayed"] == 1 and orec.events[0]["d"] == {"missed": True}
    assert (await sim.connections[1].wait_for_op(6))["d"]["seq"] == sequence


async def test_close_frame_reaches_the_gateway_while_events_stream(make_sim, make_shard):
    # Closing the socket with unread data makes the kernel send RST, which can
    # discard our close frame on the server: close() waits for the handshake.
    sim = await make_sim(guilds=1, event_rate=5000)
    for _ in range(8):  # the race lost about one close in three before the fix
        shard, rec = make_shard(sim)
        await connect_ready(shard, rec)
        await rec.until(lambda: len(rec.events) > 200, what="a busy stream")
        await shard.close()
        code, reason = await sim.connections[-1].wait_closed()
        assert code == 4900 and "resumable" in reason


async def test_a_dropped_event_iterator_is_released(sim, make_shard):
    import gc
    import weakref

    shard, rec = make_shard(sim)
    stream = shard.events()
    kept = shard.events()
    ref = weakref.ref(stream)
    del stream
    gc.collect()
    assert ref() is None  # the shard does not keep it alive to fill its queue forever
    await connect_ready(shard, rec)
    await rec.until(lambda: len(rec.events) == 2)
    assert [await asyncio.wait_for(kept.__anext__(), 1) for _ in range(2)] == rec.events


async def test_connect_failure_is_clear():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        shard = WebsocketShard(token="t", intents=1, url=f"ws://127.0.0.1:{port}")
        with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}"):
            await shard.connect()
    assert shard.status == ShardStatus.CLOSED


async def test_send_validates_and_enforces_limits(sim, make_shard):
    shard, rec = make_shard(sim)
    with pytest.raises(NotConnectedError):
        await shard.send({"op": 3, "d": {}})
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    with pytest.raises(TypeError, match="op"):
        await shard.send({"op": "3", "d": {}})
    with pytest.raises(ValueError, match="'d'"):
        await shard.send({"op": 3})
    with pytest.raises(ValueError, match="4001"):
        await shard.send({"op": 0, "d": {}})
    with pytest.raises(PayloadTooLargeError, match="4096"):
        await shard.send({"op": 3, "d": {"x": "a" * 5000}})

    presence = {"since": None, "activities": [], "status": "online", "afk": False}
    for _ in range(5):
        await shard.send({"op": 3, "d": presence})
    with pytest.raises(RateLimitedError) as info:
        await shard.send({"op": 3, "d": presence})
    assert 19 < info.value.retry_after <= 20.0

    sent = 6  # IDENTIFY + 5 presences
    while True:
        try:
            await shard.send({"op": 4, "d": {"guild_id": SAMPLE_ID, "channel_id": None,
                                             "self_mute": False, "self_deaf": False}})
        except RateLimitedError as exc:
            assert 0 < exc.retry_after <= 60.0 and "heartbeats" in str(exc)
            break
        sent += 1
    assert 110 <= sent < 120  # room is kept for heartbeats
    await conn.wait_for_op(4, count=sent - 6)
    await conn.request_heartbeat()  # heartbeats still go out
    await conn.wait_for_op(1)
    assert not conn.closed and not rec.closes  # the gateway never had to close 4008


async def test_callbacks_sync_async_once_off_and_errors(sim, make_shard):
    shard, rec = make_shard(sim)
    seen: list[str] = []
    done = asyncio.Event()

    @shard.on("event")
    async def slow(payload):
        await asyncio.sleep(0)
        seen.append("async:" + payload["t"])
        done.set()

    def once(payload):
        seen.append("once")

    def broken(payload):
        raise RuntimeError("user bug")

    async def broken_async(payload):
        raise KeyError("async user bug")

    shard.once("event", once)
    shard.on("event", broken)
    shard.on("event", broken_async)
    removed = shard.on("event", lambda p: seen.append("removed"))
    shard.off("event", removed)
    with pytest.raises(ValueError, match="unknown event"):
        shard.on("message", print)
    await connect_ready(shard, rec)
    await rec.until(lambda: len(rec.events) == 2)
    await asyncio.wait_for(done.wait(), 2)
    await rec.until(lambda: any("async user bug" in d for d in rec.debug))
    assert seen.count("once") == 1 and "removed" not in seen
    assert any("user bug" in d and "broken" in d for d in rec.debug)
    assert shard.status == ShardStatus.CONNECTED  # the read loop survived


@pytest.mark.parametrize("encoding,compression,garbage", [
    ("json", 0, "{not json"),
    ("json", 2, b"\x00\x01garbage\x00\x00\xff\xff"),
    ("json", 3, b"\x28\xb5\x2f\xfd garbage"),
    ("etf", 0, b"\x83\x74\x00\x00\x00\x05"),  # a map that claims 5 pairs and ends
    ("etf", 1, b"\x83\x50\x00\x00\x10\x00corrupt"),
])
async def test_garbage_from_the_network_resumes_without_losing_events(make_sim, make_shard, encoding,
                                                                        compression, garbage):
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, encoding=encoding, compression=compression)
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    await conn.dispatch("TYPING_START", {"n": 1})
    await rec.until(lambda: len(rec.events) == 2)
    await conn.send_raw(garbage)
    await rec.until(lambda: rec.resumed, what="RESUMED after garbage")
    assert any("undecodable" in d for d in rec.debug)
    code, _ = await conn.wait_closed()
    assert code not in (1000, 1001)
    await sim.connections[1].dispatch("TYPING_START", {"n": 2})
    await rec.until(lambda: len(rec.events) == 3)
    assert [e["d"].get("n") for e in rec.events[1:]] == [1, 2]


async def test_disabled_events_are_dropped_but_counted(make_sim, make_shard):
    sim = await make_sim(guilds=1)
    shard, rec = make_shard(sim, disabled_events={"TYPING_START"})
    await connect_ready(shard, rec)
    conn = sim.connections[0]
    await conn.dispatch("TYPING_START", {"n": 1})
    seq = await conn.dispatch("MESSAGE_DELETE", {"id": SAMPLE_ID, "channel_id": SAMPLE_ID})
    await rec.until(lambda: len(rec.events) == 2)
    assert [e["t"] for e in rec.events] == ["GUILD_CREATE", "MESSAGE_DELETE"]
    assert shard.sequence == seq


def test_invalid_options_name_the_option():
    cases = [
        (dict(token=123, intents=1), TypeError, "token"),
        (dict(token="", intents=1), ValueError, "token"),
        (dict(token="t", intents=-1), ValueError, "intents"),
        (dict(token="t", intents=True), TypeError, "intents"),
        (dict(token="t", intents=1, id=3, total=3), ValueError, "id"),
        (dict(token="t", intents=1, total=0), ValueError, "total"),
        (dict(token="t", intents=1, encoding="xml"), ValueError, "encoding"),
        (dict(token="t", intents=1, compression=4), ValueError, "compression"),
        (dict(token="t", intents=1, large_threshold=10), ValueError, "large_threshold"),
        (dict(token="t", intents=1, presence="online"), TypeError, "presence"),
        (dict(token="t", intents=1, sequence=-1), ValueError, "sequence"),
        (dict(token="t", intents=1, url=""), ValueError, "url"),
    ]
    for kwargs, exc, name in cases:
        with pytest.raises(exc, match=name):
            WebsocketShard(**kwargs)
    shard = WebsocketShard(token="t", intents=1, id=4)
    assert shard.total == 5 and shard.status == ShardStatus.CLOSED and shard.last_ping is None


async def test_connect_twice_is_refused(sim, make_shard):
    shard, rec = make_shard(sim)
    await connect_ready(shard, rec)
    with pytest.raises(Exception, match="close\\(\\) it first"):
        await shard.connect()
