"""Redis benchmarks: gateway-process CPU per event, gateway -> Redis -> workers, memory per shard.

``python -m bench.bench_redis [--events N] [--repeats R] [--quick]`` starts its
own redis-server (no persistence) and blast server, runs every client of
:mod:`bench.redis_clients` once per repeat, interleaved, and prints medians
and the per-repeat ratios to the floor.  See bench/README.md for the numbers.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .processes import Server, run_json

__all__ = ["main", "RedisServerProcess"]

CLIENTS = ("floor", "fastshard", "redispy", "decode")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServerProcess:
    """redis-server on a free port in a temp dir, without persistence (benchmarks only)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="fastshard-bench-redis-")
        self.port = _free_port()
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command over a plain socket (the parent needs no redis client)."""
        packed = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode()) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(packed)
            return s.recv(1 << 16)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_per_event(events: int, repeats: int) -> dict[str, Any]:
    redis = RedisServerProcess()
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
        redis.stop()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redis", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a few thousand events, one repeat: proves it runs")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats = 3000, 1
    results = {"cpu": cpu_per_event(args.events, args.repeats)}
    cpu = results["cpu"]
    print(f"gateway-process CPU per event, JSON + zlib-stream, steady mix, {cpu['events']} events, "
          f"median of {cpu['repeats']}:")
    for client, entry in cpu["clients"].items():
        ratio = f"  {entry['x_floor']:.2f}x floor" if "x_floor" in entry else ""
        print(f"  {client:10s} {entry['cpu_us_per_event']:6.2f} us/event  {entry['events_per_s']:9.0f} events/s{ratio}")
    for error in cpu["errors"]:
        print(f"  error: {error}", file=sys.stderr)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))
    return 1 if cpu["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
