"""The identify rules: buckets of shard_id % max_concurrency, one IDENTIFY per bucket per interval, the budget."""
from __future__ import annotations

import asyncio

import pytest

from fastshard import LocalIdentifyQueue, SessionStartLimitError
from fastshard.identify_queue import IdentifySchedule
from fastshard.sharding import parse_shard_ids, shard_for, split_ranges


def test_schedule_spaces_each_bucket_by_the_interval() -> None:
    s = IdentifySchedule(max_concurrency=2, interval=5.0)
    assert s.grant(0, 0.0) is None
    assert s.grant(1, 0.0) is None          # another bucket: at once
    assert s.grant(2, 1.0) == 5.05          # bucket 0 is busy until 5.0 plus the 1% margin
    assert s.grant(2, 5.0) == 5.05
    assert s.grant(2, 5.05) is None
    assert s.grant(3, 4.9) == 5.05
    assert s.spent == 3


def test_schedule_budget_is_never_overspent_and_resets() -> None:
    s = IdentifySchedule(max_concurrency=4, interval=0.0)
    s.set_budget(total=10, remaining=2, reset_after=100.0, now=0.0)
    assert s.grant(0, 0.0) is None and s.grant(1, 0.0) is None
    with pytest.raises(SessionStartLimitError) as info:
        s.grant(2, 1.0)
    assert info.value.remaining == 0 and info.value.reset_after == pytest.approx(99.0)
    assert "resets in 99 s" in str(info.value)
    assert s.available(100.0) == 10
    assert s.grant(2, 100.0) is None        # after the reset the total is back
    assert s.available(100.0) == 9


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_schedule_rejects_bad_max_concurrency(bad: object) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        IdentifySchedule(bad)  # type: ignore[arg-type]


async def test_local_queue_orders_lowest_id_first_and_spaces_buckets() -> None:
    queue = LocalIdentifyQueue(max_concurrency=2, interval=0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    granted: list[tuple[int, float]] = []

    async def identify(shard_id: int) -> None:
        await queue.acquire(shard_id)
        granted.append((shard_id, loop.time() - start))

    await asyncio.gather(*(identify(i) for i in [5, 3, 1, 4, 2, 0]))
    order = [sid for sid, _ in granted]
    for bucket in (0, 1):  # within a bucket, lowest shard id first
        assert [i for i in order if i % 2 == bucket] == sorted(i for i in order if i % 2 == bucket)
    by_id = dict(granted)
    for bucket in (0, 1):
        times = [by_id[i] for i in sorted(by_id) if i % 2 == bucket]
        assert all(b - a >= 0.095 for a, b in zip(times, times[1:])), times
    assert by_id[0] < 0.05 and by_id[1] < 0.05
    assert queue.spent == 6


async def test_local_queue_cancelled_wait_keeps_no_place_and_spends_nothing() -> None:
    queue = LocalIdentifyQueue(max_concurrency=1, interval=0.05)
    queue.set_budget(total=100, remaining=3, reset_after=3600)
    await queue.acquire(0)
    waiter = asyncio.ensure_future(queue.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(queue.acquire(2), 1.0)  # the cancelled one did not take the slot
    assert queue.spent == 2 and queue.remaining == 1


async def test_local_queue_refuses_when_the_budget_is_spent() -> None:
    queue = LocalIdentifyQueue(max_concurrency=4, interval=0.0)
    queue.set_budget(total=1000, remaining=1, reset_after=60)
    await queue.acquire(0)
    with pytest.raises(SessionStartLimitError, match="only 0 session starts are left"):
        await queue.acquire(1)


def test_shard_for_follows_the_formula() -> None:
    guild = 175928847299117063
    assert shard_for(guild, 16) == (guild >> 22) % 16
    assert shard_for(str(guild), 16) == (guild >> 22) % 16
    assert shard_for(None, 16) == 0


def test_shard_id_ranges() -> None:
    assert parse_shard_ids("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    with pytest.raises(ValueError, match="not a valid range"):
        parse_shard_ids("5-2")
    with pytest.raises(ValueError, match="not a shard id"):
        parse_shard_ids("a")


def test_split_ranges_keeps_identify_rounds_together() -> None:
    groups = split_ranges(range(32), 3, max_concurrency=4)
    assert [g[0] for g in groups] == [0, 12, 24]
    assert sum(groups, []) == list(range(32))
    for g in groups:
        assert g[0] % 4 == 0 and (g[-1] + 1) % 4 == 0
    assert split_ranges(range(4), 3, max_concurrency=4) == [[0, 1, 2, 3], [], []]
