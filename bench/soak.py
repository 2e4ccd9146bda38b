"""``python -m bench soak``: a million dispatches through a thousand seeded faults.

The gateway (``bench/soak_gateway.py``, the simulator in its own process)
streams dispatches to one ``WebsocketShard`` per encoding x compression and
fires faults of every kind at random moments (TCP resets, resumable closes,
op 7, op 9 d=true, zombies, garbage, zlib-stream messages split in pieces,
faults right after HELLO and during a resume's replay).  This process checks
what the shard's user saw:

- every sequence number exactly once, in order (READY/RESUMED's own excepted);
- every sampled ``d`` equal to what the gateway sent;
- one IDENTIFY per leg, then only RESUMEs, each with the sequence the shard
  held when it reconnected; every ``resumed`` reports the replay it carried;
- status CONNECTED at the end of each leg, no ``close`` event;
- RSS growth bounded, tasks and file descriptors back to their baseline.

It prints events/s under faults and fault-to-RESUMED latency (median, p95,
max, also per kind).  ``--quick`` is the short form ``tests/test_soak.py`` runs.
Nothing is asserted about speed; the exit status is 1 when a check failed.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .processes import Child

__all__ = ["SoakResult", "run_soak", "main", "COMBINATIONS"]

COMBINATIONS = [(e, c) for e in ("json", "etf") for c in (0, 1, 2, 3)]
RSS_GROWTH_LIMIT_MIB = 32.0   # between the end of the first leg and the end of the run
CATCH_UP_TIMEOUT = 60.0       # s for the shard to receive what the gateway sent


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class LegResult:
    encoding: str
    compression: int
    events: int = 0
    seconds: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[tuple[str, float]] = field(default_factory=list)  # (kind, seconds) per resumable fault
    connections: int = 0
    mid_replay_hits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.encoding} + {('none', 'payload', 'zlib-stream', 'zstd-stream')[self.compression]}"


@dataclass
class SoakResult:
    legs: list[LegResult]
    problems: list[str]
    rss_mib: list[float]
    baseline: dict[str, int]
    final: dict[str, int]

    @property
    def events(self) -> int:
        return sum(leg.events for leg in self.legs)

    @property
    def faults(self) -> list[dict[str, Any]]:
        return [f for leg in self.legs for f in leg.faults]

    @property
    def latencies(self) -> list[tuple[str, float]]:
        return [x for leg in self.legs for x in leg.latencies]

    @property
    def ok(self) -> bool:
        return not self.problems and not any(leg.problems for leg in self.legs)


class _Gateway(Child):
    """``bench.soak_gateway`` with a line protocol: one command, a ready line, one result line."""

    def __init__(self, seed: int) -> None:
        super().__init__("soak_gateway", "--seed", str(seed))
        line = self.readline()
        if not line.startswith("PORT "):
            raise self.died(f"did not start (printed {line!r})")
        self.url = f"ws://127.0.0.1:{int(line.split()[1])}"

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise self.died("exited")
        return line

    def read_json(self) -> dict[str, Any]:
        return json.loads(self.readline())  # type: ignore[no-any-return]


class _Watcher:
    """Everything the shard's user sees during one leg, checked as it arrives."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.ranges: list[list[int]] = []
        self.samples: dict[int, Any] = {}
        self.problems: list[str] = []
        self.attempts: list[Any] = []       # shard.sequence as each connection attempt started
        self.resumed: list[tuple[float, int]] = []  # (monotonic time, attempt number)
        self.closes: list[BaseException] = []
        self._since_attempt = 0
        self.last = 0
        shard.on("event", self.on_event)
        shard.on("resumed", self.on_resumed)
        shard.on("debug", self.on_debug)
        shard.on("close", self.closes.append)

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def on_event(self, payload: dict[str, Any]) -> None:
        s = payload["s"]
        if s <= self.last:
            self.problem(f"sequence {s} after {self.last}: duplicated or out of order")
        elif self.ranges and s == self.last + 1:
            self.ranges[-1][1] = s
        else:
            self.ranges.append([s, s])
        self.last = max(self.last, s)
        self._since_attempt += 1
        if s % _sample_every() == 0:
            self.samples[s] = payload["d"]

    def on_resumed(self, data: dict[str, Any]) -> None:
        if data.get("replayed") != self._since_attempt:
            self.problem(f"resumed reported replayed={data.get('replayed')} after {self._since_attempt} "
                         "dispatches on the resume connection")
        self.resumed.append((time.monotonic(), len(self.attempts) - 1))

    def on_debug(self, message: str) -> None:
        if message.startswith("connecting to "):
            self.attempts.append(self.shard.sequence)
            self._since_attempt = 0


def _sample_every() -> int:
    from .soak_gateway import SAMPLE_EVERY
    return SAMPLE_EVERY


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _leg(gateway: _Gateway, encoding: str, compression: int, events: int, faults: int,
               seed: int) -> LegResult:
    from fastshard import ShardStatus, WebsocketShard
    from fastshard.testing.protocol import Op

    result = LegResult(encoding, compression)
    loop = asyncio.get_running_loop()
    shard = WebsocketShard(token="soak-token", intents=513, url=gateway.url, encoding=encoding,
                           compression=compression)
    watch = _Watcher(shard)
    gateway.send({"encoding": encoding, "compression": compression, "events": events, "faults": faults,
                  "seed": seed})
    await loop.run_in_executor(None, gateway.read_json)  # {"ready": ...}
    started = time.monotonic()
    await shard.connect()
    sent = await loop.run_in_executor(None, gateway.read_json)
    problems = result.problems
    if sent["error"]:
        problems.append(f"gateway: {sent['error']} (shard {shard.status.name}; last debug lines elsewhere)")
    last = sent["ranges"][-1][1] if sent["ranges"] else 0
    if not await _until(lambda: watch.last >= last or bool(watch.closes), CATCH_UP_TIMEOUT):
        problems.append(f"the shard saw up to sequence {watch.last} of {last} ({shard.status.name})")
    result.seconds = time.monotonic() - started
    result.events = sum(b - a + 1 for a, b in watch.ranges)
    if shard.status != ShardStatus.CONNECTED:
        problems.append(f"status {shard.status.name} at the end, not CONNECTED")
    problems += [f"close event: {exc!r}" for exc in watch.closes]
    problems += watch.problems
    if watch.ranges != sent["ranges"]:
        problems.append(f"sequence numbers seen {_short(watch.ranges)} differ from those sent "
                        f"{_short(sent['ranges'])}")
    samples = {int(s): (_big_ints_as_str(d) if encoding == "etf" else d) for s, d in sent["samples"].items()}
    wrong = [s for s, d in samples.items() if watch.samples.get(s) != d]
    if wrong:
        problems.append(f"{len(wrong)} of {len(samples)} sampled d differ from what was sent, e.g. seq {wrong[0]}")
    conns = sent["connections"]
    result.connections = len(conns)
    if len(conns) != len(watch.attempts):
        problems.append(f"{len(watch.attempts)} connection attempts but the gateway saw {len(conns)} connections")
    for i, (conn, held) in enumerate(zip(conns, watch.attempts)):
        for op, seq in conn["commands"]:
            if i == 0:
                if op != Op.IDENTIFY:
                    problems.append(f"the first connection sent op {op}, not IDENTIFY")
            elif op != Op.RESUME:
                problems.append(f"connection #{conn['index']} sent op {op} instead of RESUME")
            elif seq != held:
                problems.append(f"connection #{conn['index']} resumed from seq {seq}, the shard held {held}")
    result.faults = sent["faults"]
    result.mid_replay_hits = sent["mid_replay_hits"]
    # A fault's RESUMED is the first on a later connection than the one it hit (the one it
    # hit may have sent its own RESUMED just before the fault).
    resumed_on = [(t, conns[n]["index"]) for t, n in watch.resumed if n < len(conns)]
    for fault in result.faults:
        if fault["resumable"] and not fault["stage"]:
            later = [t for t, index in resumed_on if index > fault["conn"]]
            if later:
                result.latencies.append((fault["kind"], later[0] - fault["t"]))
            else:
                problems.append(f"no RESUMED after the {fault['kind']} fault at seq {fault['seq']}")
    await shard.close()
    return result


def _big_ints_as_str(value: Any) -> Any:
    """What the shard's ETF decoder makes of a value by default (``big_ints_as_str=True``):
    integers past 32 bits, which ETF sends as bignums, arrive as strings."""
    if isinstance(value, dict):
        return {k: _big_ints_as_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_big_ints_as_str(v) for v in value]
    if type(value) is int and not -2 ** 31 <= value < 2 ** 31:
        return str(value)
    return value


def _short(ranges: list[list[int]]) -> str:
    text = json.dumps(ranges)
    return text if len(text) < 200 else text[:200] + "..."


async def run_soak(events: int, faults: int, *, seed: int = 1,
                   combinations: Sequence[tuple[str, int]] = tuple(COMBINATIONS),
                   progress: Callable[[str], None] = lambda line: None) -> SoakResult:
    """Run the soak: ``events`` and ``faults`` shared out over ``combinations``, one leg each."""
    gateway = _Gateway(seed)
    legs: list[LegResult] = []
    problems: list[str] = []
    rss: list[float] = []
    try:
        await asyncio.sleep(0)
        baseline = {"tasks": len(asyncio.all_tasks()), "fds": _fds()}
        for n, (encoding, compression) in enumerate(combinations):
            share_e = events // len(combinations) + (1 if n < events % len(combinations) else 0)
            share_f = faults // len(combinations) + (1 if n < faults % len(combinations) else 0)
            try:
                leg = await _leg(gateway, encoding, compression, share_e, share_f, seed)
            except RuntimeError as exc:  # the gateway process died
                problems.append(str(exc))
                break
            legs.append(leg)
            gc.collect()
            rss.append(_rss_mib())
            progress(f"{leg.name}: {leg.events:,} events, {len(leg.faults)} faults, {leg.connections} "
                     f"connections, {leg.events / leg.seconds:,.0f} events/s"
                     + (f"; PROBLEMS: {leg.problems}" if leg.problems else ""))
        settled = await _until(lambda: len(asyncio.all_tasks()) <= baseline["tasks"] and _fds() <= baseline["fds"],
                               5.0)
        final = {"tasks": len(asyncio.all_tasks()), "fds": _fds()}
        if not settled:
            problems.append(f"tasks/fds not back to baseline: {final} after, {baseline} before")
        if len(rss) >= 2 and rss[-1] - rss[0] > RSS_GROWTH_LIMIT_MIB:
            problems.append(f"RSS grew {rss[-1] - rss[0]:.1f} MiB after the first leg (limit "
                            f"{RSS_GROWTH_LIMIT_MIB:g})")
    finally:
        gateway.stop()
    return SoakResult(legs, problems, rss, baseline, final)


def summary(result: SoakResult) -> list[str]:
    """The report's lines: per leg, then totals and fault-to-RESUMED latency."""
    lines = ["| combination | events | faults | connections | events/s | RESUMED after (median / p95 / max ms) |",
             "|---|---:|---:|---:|---:|---|"]
    for leg in result.legs:
        lat = [x for _, x in leg.latencies]
        lines.append(f"| {leg.name} | {leg.events:,} | {len(leg.faults)} | {leg.connections} | "
                     f"{leg.events / leg.seconds:,.0f} | {_lat(lat)} |")
    seconds = sum(leg.seconds for leg in result.legs)
    lat = [x for _, x in result.latencies]
    kinds: dict[str, int] = {}
    for fault in result.faults:
        kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    drawn = sum(1 for f in result.faults if not f["stage"])
    lines += ["", f"{result.events:,} events through {len(result.faults)} faults ({drawn} drawn, "
                  f"{len(result.faults) - drawn} second faults on resume connections; "
                  f"{', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) in {seconds:.1f} s: "
                  f"**{result.events / seconds:,.0f} events/s** under faults; "
                  f"{sum(leg.mid_replay_hits for leg in result.legs)} faults landed mid-replay.",
              f"Fault to RESUMED: **{_lat(lat)}** (median / p95 / max, {len(lat)} resumable faults).", "",
              "| fault | count | RESUMED after (median / p95 / max ms) |", "|---|---:|---|"]
    for kind in sorted({k for k, _ in result.latencies}):
        values = [x for k, x in result.latencies if k == kind]
        lines.append(f"| {kind} | {len(values)} | {_lat(values)} |")
    lines += ["", f"RSS at the end of each leg (MiB): {', '.join(f'{x:.1f}' for x in result.rss_mib)}; "
                  f"tasks {result.baseline['tasks']} -> {result.final['tasks']}, "
                  f"fds {result.baseline['fds']} -> {result.final['fds']}."]
    return lines


def _lat(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (f"{statistics.median(values) * 1000:.0f} / {_percentile(values, 0.95) * 1000:.0f} / "
            f"{max(values) * 1000:.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak",
        description="A gateway in another process streams dispatches through seeded random faults to one "
                    "shard per encoding x compression; checks that nothing is lost, duplicated or re-identified "
                    "and prints events/s under faults and fault-to-RESUMED latency.")
    parser.add_argument("--events", type=int, default=1_000_000, help="dispatches in all (default 1000000)")
    parser.add_argument("--faults", type=int, default=1000, help="faults in all (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    parser.add_argument("--quick", action="store_true", help="the short form: 40000 events, 40 faults")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.quick:
        args.events, args.faults = 40_000, 40
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)

    progress(f"soak: {args.events:,} events, {args.faults} faults, seed {args.seed}, "
             f"{len(COMBINATIONS)} combinations")
    result = asyncio.run(run_soak(args.events, args.faults, seed=args.seed, progress=progress))
    print("\n".join(summary(result)))
    for line in result.problems + [f"{leg.name}: {p}" for leg in result.legs for p in leg.problems]:
        print(f"problem: {line}", file=sys.stderr)
    return 0 if result.ok else 1
