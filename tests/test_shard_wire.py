"""Wire-level rules checked with a hand-scripted websocket server (not the simulator)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from conftest import Recorder
from fastshard import ShardStatus, WebsocketShard

Handler = Callable[[ServerConnection, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A server whose n-th connection (from 0) runs ``handler(ws, n)``; yields its URL."""
    count = 0

    async def run(ws: ServerConnection) -> None:
        nonlocal count
        n, count = count, count + 1
        await handler(ws, n)

    async with serve(run, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def recv_json(ws: ServerConnection, timeout: float = 2.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


HELLO = json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}})
READY = json.dumps({"op": 0, "t": "READY", "s": 1, "d": {"session_id": "s1", "resume_gateway_url": None,
                                                         "user": {"id": "1"}}})


async def test_nothing_is_sent_before_hello():
    early: list[str] = []
    identified = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            early.append(await asyncio.wait_for(ws.recv(), 0.3))  # the client must stay silent
        await ws.send(HELLO)
        if (await recv_json(ws))["op"] == 2:
            identified.set()
        await ws.send(READY)
        await ws.wait_closed()

    async with scripted(handler) as url:
        shard = WebsocketShard(token="t", intents=1, url=url)
        await shard.connect()
        await asyncio.wait_for(identified.wait(), 2)
        assert early == []
        await shard.close()


async def test_op7_before_hello_reconnects():
    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 0:
            await ws.send(json.dumps({"op": 7, "d": None}))
            await ws.wait_closed()
            codes.append(ws.close_code)
            return
        await ws.send(HELLO)
        assert (await recv_json(ws))["op"] == 2
        await ws.send(READY)
        await ws.wait_closed()

    codes: list[int | None] = []
    async with scripted(handler) as url:
        shard = WebsocketShard(token="t", intents=1, url=url)
        rec = Recorder(shard)
        await shard.connect()
        await rec.until(lambda: rec.ready, what="READY on the second connection")
        assert codes and codes[0] not in (None, 1000, 1001)
        assert shard.status == ShardStatus.CONNECTED
        await shard.close()


async def test_loss_before_a_session_ends_the_shard_with_advice():
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(HELLO)
        await recv_json(ws)  # IDENTIFY, then the network fails
        ws.transport.abort()

    async with scripted(handler) as url:
        shard = WebsocketShard(token="t", intents=1, url=url)
        rec = Recorder(shard)
        await shard.connect()
        await rec.until(lambda: rec.closes)
        assert "connect() again" in str(rec.closes[0]) and shard.status == ShardStatus.CLOSED


async def test_close_without_a_code_is_a_resumable_loss():
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(HELLO)
        first = await recv_json(ws)
        if n == 0:
            await ws.send(READY)
            await ws.close()  # 1000 from the *server* does not end the session
            return
        assert first["op"] == 6 and first["d"]["session_id"] == "s1"
        await ws.send(json.dumps({"op": 0, "t": "RESUMED", "s": 2, "d": None}))
        await ws.wait_closed()

    async with scripted(handler) as url:
        shard = WebsocketShard(token="t", intents=1, url=url)
        rec = Recorder(shard)
        await shard.connect()
        await rec.until(lambda: rec.resumed)
        assert rec.resumed[0] == {"replayed": 0} and shard.sequence == 2
        await shard.close()


async def test_close_during_the_handshake_leaves_no_connection():
    closed = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.wait_closed()
        closed.set()

    async with scripted(handler) as url:
        shard = WebsocketShard(token="t", intents=1, url=url)
        connecting = asyncio.ensure_future(shard.connect())
        await asyncio.sleep(0)  # the handshake is under way
        await shard.close()
        await connecting
        assert shard.status == ShardStatus.CLOSED
        await asyncio.wait_for(closed.wait(), 2)  # the server saw the socket go
