"""What the ShardManager does for many shards in one process (the figures are in bench/README.md, "Scale")."""
from __future__ import annotations

import gc
from typing import Any, Iterator

import pytest

from fastshard import ShardManager


@pytest.fixture
def gc_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(10, saved[1], saved[2])  # low enough that 4 shards raise it (5 per shard)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def _manager(sim: Any, shards: int) -> ShardManager:
    return ShardManager(token="t", intents=513, shard_count=shards, max_concurrency=shards, url=sim.url)


async def test_gc_threshold_is_raised_while_the_shards_connect_and_restored_at_ready(
        make_sim: Any, gc_thresholds: tuple[int, int, int]) -> None:
    sim = await make_sim(guilds=0)
    manager = _manager(sim, 4)
    await manager.start()
    assert gc.get_threshold() == (20, *gc_thresholds[1:])
    await manager.wait_ready(timeout=10)
    assert gc.get_threshold() == gc_thresholds
    assert len({c.session.session_id for c in sim.connections if c.session}) == 4
    await manager.close()
    assert gc.get_threshold() == gc_thresholds


async def test_gc_threshold_is_restored_by_close_before_ready_and_spares_a_users_own(
        make_sim: Any, gc_thresholds: tuple[int, int, int]) -> None:
    sim = await make_sim(guilds=0, hello_delay=30.0)  # nobody gets READY
    manager = _manager(sim, 4)
    await manager.start()
    assert gc.get_threshold()[0] == 20
    await manager.close()
    assert gc.get_threshold() == gc_thresholds

    other = _manager(sim, 4)
    await other.start()
    gc.set_threshold(333)  # the application's own setting, made meanwhile, stays
    await other.close()
    assert gc.get_threshold()[0] == 333


async def test_no_gc_change_when_disabled(make_sim: Any, gc_thresholds: tuple[int, int, int]) -> None:
    sim = await make_sim(guilds=0)
    manager = _manager(sim, 4)
    manager.startup_gc_threshold = None
    await manager.start()
    assert gc.get_threshold() == gc_thresholds
    await manager.wait_ready(timeout=10)
    await manager.close()
