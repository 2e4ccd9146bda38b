"""A real redis-server for the fastshard.redis tests: a free port, a temp dir, stopped afterwards.

Without the binary the tests skip, saying so, except in CI (``CI=true``)
where a missing redis-server is a failure: ``.ci/run`` installs it.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from fastshard.redis.server import RedisServer, redis_server_binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """redis-server with AOF persistence on (so a restart keeps what was acknowledged)."""
    if redis_server_binary() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed; .ci/run installs it (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server) - the Redis tests need a real one")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """Wait until ``check()`` (sync, or returning an awaitable) is true; fail loudly after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)
