"""Redis benchmarks: gateway-process CPU per event, gateway -> Redis -> workers, memory per shard.

``python -m bench.bench_redis [--events N] [--repeats R] [--quick]`` starts its
own redis-server (no persistence) and blast server, runs every client of
:mod:`bench.redis_clients` once per repeat, interleaved, and prints medians
and the per-repeat ratios to the floor.  See bench/README.md for the numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fastshard.redis.server import RedisServer

from .processes import Child, Server, Worker, run_json

__all__ = ["main"]

CLIENTS = ("floor", "gateway", "fastshard", "redispy", "decode")


def _redis() -> RedisServer:
    return RedisServer(persistence=False).start()  # benchmarks keep nothing


def cpu_per_event(events: int, repeats: int) -> dict[str, Any]:
    redis = _redis()
    blast = Server("blast_server", "--steady", str(events))
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CLIENTS}
    errors: list[str] = []
    try:
        for repeat in range(repeats + 1):  # repeat 0 warms up every client and the server's cache
            for client in CLIENTS:
                redis.command("FLUSHALL")
                result = run_json("redis_clients", "--client", client, "--url", f"{blast.url}/steady",
                                  "--redis-port", str(redis.port), "--events", str(events))
                if result.get("error"):
                    errors.append(f"{client}: {result['error']}")
                    continue
                if repeat:
                    runs[client].append(result)
    finally:
        blast.stop()
        redis.remove()
    out: dict[str, Any] = {"events": events, "repeats": repeats, "errors": errors, "clients": {}}
    for client, results in runs.items():
        if not results:
            continue
        cpu = [r["cpu_s"] / events * 1e6 for r in results]
        rate = [events / r["wall_s"] for r in results]
        entry = {"cpu_us_per_event": statistics.median(cpu), "events_per_s": statistics.median(rate)}
        if client != "floor" and len(results) == len(runs["floor"]):
            entry["x_floor"] = statistics.median(
                r["cpu_s"] / f["cpu_s"] for r, f in zip(results, runs["floor"]))
        out["clients"][client] = entry
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _group_lag(redis: RedisServer) -> tuple[int, int]:
    """(lag, pending) of group ``bench`` on stream 0, parsed from a raw XINFO GROUPS reply."""
    reply = redis.command("XINFO", "GROUPS", "{fastshard}:events:0").split(b"\r\n")
    values: dict[bytes, int] = {}
    for i, item in enumerate(reply[:-1]):
        if item in (b"lag", b"pending") and reply[i + 1].startswith(b":"):
            values[item] = int(reply[i + 1][1:])
    return values.get(b"lag", 0), values.get(b"pending", 0)


def pipeline(workload: str, events: int, workers: int) -> dict[str, Any]:
    """gateway -> Redis -> ``workers`` worker processes of one group: events/s, latency, lag."""
    redis = _redis()
    blast = Server("blast_server", "--steady", str(events), "--burst", str(events))
    children: list[Worker] = []
    try:
        children = [Worker("redis_pipeline", "--role", "worker", "--redis-port", str(redis.port))
                    for _ in range(workers)]
        for child in children:
            assert child.proc.stdout is not None
            if child.proc.stdout.readline().strip() != "READY":
                raise child.died("did not start")
        count = events if workload == "steady" else events  # one message per event in both workloads
        gateway = Child("redis_pipeline", "--role", "gateway", "--url", f"{blast.url}/{workload}",
                        "--redis-port", str(redis.port), "--events", str(count))
        max_lag = 0
        started = time.perf_counter()
        while gateway.proc.poll() is None:
            max_lag = max(max_lag, sum(_group_lag(redis)))
            time.sleep(0.01)
        assert gateway.proc.stdout is not None
        published = json.loads(gateway.proc.stdout.read().strip().splitlines()[-1])
        gateway.stop()
        deadline = time.monotonic() + 60
        while True:
            lag, pending = _group_lag(redis)
            max_lag = max(max_lag, lag + pending)
            if lag == 0 and pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        drained = time.perf_counter() - started
        results = []
        for child in children:
            assert child.proc.stdin is not None and child.proc.stdout is not None
            child.proc.stdin.close()
            results.append(json.loads(child.proc.stdout.readline()))
    finally:
        for child in children:
            child.stop()
        blast.stop()
        redis.remove()
    latencies = [x for r in results for x in r["latencies_ms"]]
    return {"workload": workload, "events": events, "workers": workers,
            "received": sum(r["count"] for r in results), "per_worker": [r["count"] for r in results],
            "gateway_events_per_s": published["published"] / published["wall_s"],
            "gateway_cpu_us_per_event": published["cpu_s"] / published["published"] * 1e6,
            # From the first XADD to the last event in a worker's hands (machine clock, one host).
            "end_to_end_events_per_s": events / (max(r["last"] for r in results)
                                                 - min(r["first_xadd_ms"] for r in results
                                                       if r["first_xadd_ms"] is not None) / 1000.0),
            "drain_s": drained,
            "latency_p50_ms": _percentile(latencies, 0.5), "latency_p99_ms": _percentile(latencies, 0.99),
            "max_lag": max_lag}


def memory_per_shard(shards: int) -> dict[str, Any]:
    redis = _redis()
    sim = Server("simulator_process", "--guilds", "1", "--members", "20")
    try:
        return run_json("redis_pipeline", "--role", "memory", "--url", sim.url, "--redis-port", str(redis.port),
                        "--shards", str(shards))
    finally:
        sim.stop()
        redis.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redis", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a few thousand events, one repeat: proves it runs")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in the pipeline run")
    parser.add_argument("--shards", type=int, default=100, help="shards in the memory run")
    parser.add_argument("--burst", type=int, default=500, help="GUILD_CREATEs in the burst run")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats, args.burst, args.shards = 3000, 1, 200, 10
    results: dict[str, Any] = {"cpu": cpu_per_event(args.events, args.repeats)}
    results["steady"] = pipeline("steady", args.events, args.workers)
    results["burst"] = pipeline("burst", args.burst, args.workers)
    results["memory"] = memory_per_shard(args.shards)
    cpu = results["cpu"]
    print(f"gateway-process CPU per event, JSON + zlib-stream, steady mix, {cpu['events']} events, "
          f"median of {cpu['repeats']}:")
    for client, entry in cpu["clients"].items():
        ratio = f"  {entry['x_floor']:.2f}x floor" if "x_floor" in entry else ""
        print(f"  {client:10s} {entry['cpu_us_per_event']:6.2f} us/event  {entry['events_per_s']:9.0f} events/s{ratio}")
    for error in cpu["errors"]:
        print(f"  error: {error}", file=sys.stderr)
    for name in ("steady", "burst"):
        r = results[name]
        print(f"gateway -> Redis -> {r['workers']} workers, {r['workload']}, {r['events']} events: "
              f"{r['end_to_end_events_per_s']:.0f} events/s end to end (gateway alone "
              f"{r['gateway_events_per_s']:.0f}/s, {r['gateway_cpu_us_per_event']:.2f} us/event), "
              f"XADD -> worker p50 {r['latency_p50_ms']:.1f} ms p99 {r['latency_p99_ms']:.1f} ms, "
              f"max lag {r['max_lag']}, received {r['received']} {r['per_worker']}")
    mem = results["memory"]
    if mem.get("error"):
        print(f"memory: {mem['error']}", file=sys.stderr)
    else:
        print(f"gateway memory with the publisher on: {mem['per_shard_bytes'] / 1024:.1f} KiB per shard "
              f"({mem['shards']} shards)")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))
    return 1 if cpu["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
