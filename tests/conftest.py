"""Shared fixtures: a gateway simulator on loopback and shards pointed at it."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from fastshard import WebsocketShard
from fastshard.testing import GatewaySimulator

ENCODINGS = ["json", "etf"]
COMPRESSIONS = [0, 1, 2, 3]
MATRIX = [(e, c) for e in ENCODINGS for c in COMPRESSIONS]


class Recorder:
    """Collects what a shard's user sees, with waits that fail loudly instead of hanging."""

    def __init__(self, shard: WebsocketShard) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready: list[dict[str, Any]] = []
        self.resumed: list[dict[str, Any]] = []
        self.closes: list[BaseException] = []
        self.debug: list[str] = []
        self._changed = asyncio.Event()
        shard.on("event", self._add(self.events))
        shard.on("ready", self._add(self.ready))
        shard.on("resumed", self._add(self.resumed))
        shard.on("close", self._add(self.closes))
        shard.on("debug", self._add(self.debug))

    def _add(self, target: list[Any]) -> Callable[[Any], None]:
        def add(value: Any) -> None:
            target.append(value)
            self._changed.set()
        return add

    async def until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what or predicate}; debug log: {self.debug[-15:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except asyncio.TimeoutError:
                pass

    def seqs(self) -> list[int]:
        return [p["s"] for p in self.events]


@pytest_asyncio.fixture
async def make_sim() -> AsyncIterator[Callable[..., Any]]:
    sims: list[GatewaySimulator] = []

    async def make(**kw: Any) -> GatewaySimulator:
        sim = GatewaySimulator(**kw)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest_asyncio.fixture
async def sim(make_sim: Callable[..., Any]) -> GatewaySimulator:
    return await make_sim(guilds=2)


@pytest_asyncio.fixture
async def make_shard() -> AsyncIterator[Callable[..., tuple[WebsocketShard, Recorder]]]:
    shards: list[WebsocketShard] = []

    def make(sim: GatewaySimulator, **kw: Any) -> tuple[WebsocketShard, Recorder]:
        kw.setdefault("token", "test-token")
        kw.setdefault("intents", 513)
        kw.setdefault("url", sim.url)
        shard = WebsocketShard(**kw)
        shard.reconnect_base_delay = 0.01
        shard.reconnect_max_delay = 0.05
        shards.append(shard)
        return shard, Recorder(shard)

    yield make
    for shard in shards:
        await shard.close()


@pytest.fixture
def matrix_params() -> list[tuple[str, int]]:
    return MATRIX

pytest_plugins = ["redis_fixtures"]
