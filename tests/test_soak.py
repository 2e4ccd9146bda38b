"""The soak's short form: a gateway in another process, tens of faults, tens of thousands of events.

``python -m bench soak`` runs the long form (a million dispatches, a thousand
faults); this is the same code with a smaller share, so the suite proves what
the soak proves: nothing lost, duplicated, altered or re-identified, a RESUME
with the right seq after every fault, nothing left behind.
"""
from __future__ import annotations

import pytest

from bench.soak import _Watcher, run_soak
from bench.soak_gateway import FAULT_KINDS
from fastshard import WebsocketShard

pytestmark = pytest.mark.timeout(90)


async def test_short_soak_loses_nothing_through_every_kind_of_fault():
    result = await run_soak(24_000, 40, seed=1)
    problems = result.problems + [f"{leg.name}: {p}" for leg in result.legs for p in leg.problems]
    assert problems == []
    assert len(result.legs) == 8 and result.events >= 24_000
    assert {f["kind"] for f in result.faults} == set(FAULT_KINDS)
    assert len(result.faults) >= 30
    assert sum(leg.mid_replay_hits for leg in result.legs) >= 1
    resumable = [f for f in result.faults if f["resumable"] and not f["stage"]]
    assert len(result.latencies) == len(resumable)  # a RESUMED after every resumable fault
    assert result.final == result.baseline  # tasks and file descriptors


def test_the_soak_checks_can_fail():
    shard = WebsocketShard(token="t", intents=1)
    watch = _Watcher(shard)
    for s in (2, 3, 5, 5, 4):
        watch.on_event({"op": 0, "t": "TYPING_START", "s": s, "d": {}})
    assert watch.ranges == [[2, 3], [5, 5]]
    assert len(watch.problems) == 2 and "duplicated or out of order" in watch.problems[0]
    watch.on_debug("connecting to ws://x")
    watch.on_event({"op": 0, "t": "TYPING_START", "s": 6, "d": {}})
    watch.on_resumed({"replayed": 0})
    assert "replayed=0 after 1" in watch.problems[-1]
