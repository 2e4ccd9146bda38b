"""Resident memory per connected idle shard.

The gateway simulator runs in its own process; each measurement is a fresh
client process (``python -m bench.clients memory``) that connects one client
and closes it (first-use imports and caches are not per-shard costs), reads
its RSS, connects ``shards`` clients (each past READY and its GUILD_CREATE),
collects garbage and reads its RSS again: (after - before) / shards.  A fresh
process per figure, because memory freed by one measurement would be reused
by the next and make it look cheaper.
"""
from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .clients import IMPLEMENTATIONS, supports, worker_impl
from .processes import Server, run_json
from .workloads import COMBINATIONS

__all__ = ["MemoryResult", "run_memory"]

GUILDS = 1


@dataclass
class MemoryResult:
    shards: int
    samples: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def per_shard(self, impl: str, encoding: str, compression: int) -> float | None:
        values = self.samples.get((impl, encoding, compression))
        return statistics.median(values) if values else None


def run_memory(shards: int, repeat: int, progress: Callable[[str], None] = print) -> MemoryResult:
    result = MemoryResult(shards)
    server = Server("simulator_process", "--guilds", str(GUILDS))
    try:
        plan = [(impl, e, c) for e, c in COMBINATIONS for impl in IMPLEMENTATIONS if supports(impl, e, c)]
        def measure(job: tuple[str, str, int]) -> dict[str, Any]:
            impl, e, c = job
            return run_json("clients", "memory", "--impl", worker_impl(impl, c), "--url", server.url,
                            "--encoding", e, "--compression", str(c), "--shards", str(shards),
                            "--guilds", str(GUILDS))

        # Two at a time: RSS is per process, so concurrency does not skew it, and
        # most of each process's life is interpreter start-up and imports.
        with ThreadPoolExecutor(max_workers=2) as pool:
            for r in range(1, repeat + 1):
                progress(f"  memory: repeat {r}/{repeat}, {len(plan)} processes of {shards} clients")
                for (impl, e, c), out in zip(plan, pool.map(measure, plan)):
                    if out.get("error") or out.get("per_shard_bytes") is None:
                        result.errors.append(f"memory {impl} {e} c{c}: {out.get('error')}")
                        continue
                    result.samples.setdefault((impl, e, c), []).append(out["per_shard_bytes"])
    finally:
        server.stop()
    return result
