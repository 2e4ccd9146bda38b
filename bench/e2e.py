"""End to end: the blast server streams each workload to each client, repeat after repeat.

One blast server process, one worker process per client (see
:mod:`bench.clients`).  With 2 cores the server and the measured client each
have one; the other workers wait on their stdin.  Runs are interleaved: every
repeat runs every combination with every client in turn, so the ratios pair
runs made moments apart.  A warm-up run per client and combination goes first.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from .blast_server import WARMUP_EVENTS
from .clients import IMPLEMENTATIONS, RAW_CLIENTS, supports, worker_impl
from .processes import Server, Worker
from .workloads import COMBINATIONS, connection_stream, wire_digest

__all__ = ["Run", "E2EResult", "run_e2e", "TRANSPORT_COMBINATION"]

TRANSPORT_COMBINATION = ("json", 2)


@dataclass
class Run:
    cpu_us_per_event: float
    events_per_s: float
    wire_per_event: float | None   # fastshard's own count; None for the baselines


@dataclass
class E2EResult:
    """Runs per (workload, impl, encoding, compression), plus every problem seen."""

    runs: dict[tuple[str, str, str, int], list[Run]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def cpu(self, workload: str, impl: str, encoding: str, compression: int) -> float | None:
        runs = self.runs.get((workload, impl, encoding, compression))
        return statistics.median(r.cpu_us_per_event for r in runs) if runs else None

    def rate(self, workload: str, impl: str, encoding: str, compression: int) -> float | None:
        runs = self.runs.get((workload, impl, encoding, compression))
        return statistics.median(r.events_per_s for r in runs) if runs else None

    def ratio(self, workload: str, baseline: str, encoding: str, compression: int) -> float | None:
        """Median of per-repeat ratios baseline CPU / fastshard CPU (runs of the same repeat)."""
        fast = self.runs.get((workload, "fastshard", encoding, compression))
        base = self.runs.get((workload, baseline, encoding, compression))
        if not fast or not base or len(fast) != len(base):
            return None
        return statistics.median(b.cpu_us_per_event / f.cpu_us_per_event for b, f in zip(base, fast))

    def wire_per_event(self, workload: str, encoding: str, compression: int) -> float | None:
        runs = self.runs.get((workload, "fastshard", encoding, compression))
        values = [r.wire_per_event for r in runs or () if r.wire_per_event is not None]
        return statistics.median(values) if values else None


def run_e2e(counts: dict[str, int], repeat: int, progress: Callable[[str], None] = print) -> E2EResult:
    """``counts``: workload -> events (guilds for ``burst``)."""
    result = E2EResult()
    server = Server("blast_server", "--steady", str(counts.get("steady", 1)), "--burst", str(counts.get("burst", 1)))
    workers: dict[str, Worker] = {}
    try:
        for impl in IMPLEMENTATIONS:
            for compression in (0, 3):
                name = worker_impl(impl, compression)
                if name not in workers:
                    workers[name] = Worker("clients", "worker", "--impl", name)
        workers["raw"] = Worker("clients", "worker", "--impl", "raw")

        def run(workload: str, impl: str, encoding: str, compression: int, events: int) -> dict[str, Any]:
            worker = workers["raw" if impl in RAW_CLIENTS else worker_impl(impl, compression)]
            return worker.request({"impl": impl, "url": f"{server.url}/{workload}", "encoding": encoding,
                                   "compression": compression, "events": events})

        plan = [(impl, e, c) for e, c in COMBINATIONS for impl in IMPLEMENTATIONS if supports(impl, e, c)]
        # Transport alone, on the combination of the target: what each websocket library costs.
        plan += [(impl, *TRANSPORT_COMBINATION) for impl in RAW_CLIENTS]
        progress(f"  end to end: warm-up ({len(plan)} client x combination runs)")
        for impl, e, c in plan:
            out = run("warmup", impl, e, c, WARMUP_EVENTS)
            if out.get("error"):
                result.errors.append(f"warm-up {impl} {e} c{c}: {out['error']}")
        for r in range(1, repeat + 1):
            for workload, count in counts.items():
                progress(f"  end to end: repeat {r}/{repeat}, {workload}")
                for impl, e, c in plan:
                    if impl in RAW_CLIENTS and workload != "steady":
                        continue
                    out = run(workload, impl, e, c, count)
                    if out.get("error"):
                        result.errors.append(f"{workload} {impl} {e} c{c} (repeat {r}): {out['error']}")
                        continue
                    wire = out.get("wire_bytes")
                    result.runs.setdefault((workload, impl, e, c), []).append(Run(
                        out["cpu_s"] / out["events"] * 1e6, out["events"] / out["wall_s"],
                        None if wire is None else wire / out["events"]))
        _check_streams(server, counts, result)
    finally:
        for worker in workers.values():
            worker.stop()
        server.stop()
    # Ratios pair repeats: drop the partner runs of a failed run so pairs stay aligned.
    for key, runs in list(result.runs.items()):
        if key[1] in RAW_CLIENTS:
            continue
        fast = result.runs.get((key[0], "fastshard", key[2], key[3]), [])
        if len(runs) != len(fast):
            result.errors.append(f"{key}: {len(runs)} runs vs {len(fast)} fastshard runs; no ratio")
    return result


def _check_streams(server: Server, counts: dict[str, int], result: E2EResult) -> None:
    """The server's packed streams must be byte-identical to the report's wire figures."""
    for line in list(server.lines):
        parts = line.split()
        if len(parts) != 5 or parts[0] != "STREAM":
            continue
        workload, encoding, compression, digest = parts[1], parts[2], int(parts[3]), parts[4]
        local = connection_stream(workload, counts[workload], encoding, compression)
        if wire_digest(local.event_messages) != digest:
            result.errors.append(f"blast server's {workload} {encoding} c{compression} stream differs from "
                                 "the report's packing (wire figures would not match what was sent)")
