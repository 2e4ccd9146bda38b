"""``python -m bench scale``: a ShardManager of thousands of shards against the bare floor.

The lean gateway (``bench/scale_server.py``) runs in its own process; every
figure is a fresh client process (``bench/scale_clients.py``), fastshard and
the floor interleaved in each repeat, medians over the repeats, ratios the
median of per-repeat ratios.  Writes ``scale.md`` and ``scale.json`` to the
output directory and prints the table.  bench/README.md, "Scale:
ShardManager", explains every figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .processes import Server, run_json

__all__ = ["main", "run_scale"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
IMPLS = ("fastshard", "floor")
#: (label, compression, extra): the memory rows.
MEMORY_ROWS = [
    ("RSS idle, none", 0, "none"),
    ("RSS idle, zlib-stream", 2, "none"),
    ("RSS idle, zstd-stream", 3, "none"),
    ("RSS after one 58.7 KB GUILD_CREATE, zlib-stream", 2, "guild"),
    ("RSS after one GUILD_CREATE, zstd-stream", 3, "guild"),
    ("RSS after a 2.4 MB burst, none", 0, "burst"),
    ("RSS after a 2.4 MB burst, zstd-stream", 3, "burst"),
]
#: A burst leaves about 2.3 MiB per shard: more shards than this would not fit the machine.
BURST_MAX_SHARDS = 1000
#: Up to this many shards, fastshard's and the floor's memory processes run at once (the
#: server's descriptors bound it: two processes' connections must fit its RLIMIT_NOFILE).
#: Bursts never run together: the server queues 2.4 MB per connection.
TOGETHER_MAX_SHARDS = 2000


@dataclass
class Settings:
    ns: list[int]
    repeat: int
    heartbeat_n: int
    heartbeat_interval: float
    heartbeat_window: float
    #: (N, max_concurrency, identify interval)
    startups: list[tuple[int, int, float]]


# A short identify interval no shorter than 0.5 s: the server's 10% slack must stay above the
# tens of milliseconds of scheduling jitter of a loaded 2-core machine.
FULL = Settings([1000, 10_000], 3, 10_000, 2.0, 4.0, [(64, 16, 5.0), (1000, 32, 0.5)])
QUICK = Settings([100], 1, 100, 0.2, 1.0, [(64, 16, 0.5)])


@dataclass
class Row:
    label: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median(self, impl: str) -> float | None:
        values = self.samples.get(impl)
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


@dataclass
class ScaleResult:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    startups: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: int = 0


def run_scale(settings: Settings, progress: Callable[[str], None] = print) -> ScaleResult:
    result = ScaleResult(settings)
    server = Server("scale_server")
    runs = iter(range(1_000_000))

    def measure(mode: str, impl: str, **options: Any) -> dict[str, Any] | None:
        args = [mode, "--impl", impl, "--url", server.url, "--run", f"{mode}-{impl}-{next(runs)}"]
        for name, value in options.items():
            args += [f"--{name}", str(value)]
        out = run_json("scale_clients", *args, timeout=900)
        if out.get("error"):
            result.errors.append(f"{mode} {impl} {options}: {out['error']}")
            return None
        result.violations += int(out.get("violations") or 0)
        return out

    def paired(row: Row, mode: str, value: Callable[[dict[str, Any]], float], *, together: bool = False,
               **options: Any) -> None:
        """One repeat: fastshard then the floor, moments apart (or at once: RSS is per process); their ratio."""
        got = {}
        if together:
            with ThreadPoolExecutor(max_workers=2) as pool:
                outs = list(pool.map(lambda impl: measure(mode, impl, **options), IMPLS))
        else:
            outs = [measure(mode, impl, **options) for impl in IMPLS]
        for impl, out in zip(IMPLS, outs):
            if out is not None:
                got[impl] = value(out)
                row.samples.setdefault(impl, []).append(got[impl])
        if len(got) == 2 and got["floor"]:
            row.ratios.append(got["fastshard"] / got["floor"])

    try:
        for n in settings.ns:
            for label, compression, extra in MEMORY_ROWS:
                shards = min(n, BURST_MAX_SHARDS) if extra == "burst" else n
                if extra == "burst" and shards != n and BURST_MAX_SHARDS in settings.ns:
                    continue  # already measured at that N
                row = Row(f"{label} (N = {shards:,})", "KiB")
                progress(f"  {row.label}")
                for _ in range(settings.repeat):
                    paired(row, "memory", lambda o: o["per_shard_bytes"] / 1024, n=shards, compression=compression,
                           extra=extra, together=extra != "burst" and shards <= TOGETHER_MAX_SHARDS)
                result.rows.append(row)
        for n in settings.ns:
            wall = Row(f"connect storm to READY, zlib-stream, wall (N = {n:,})", "s")
            cpu = Row(f"connect storm, CPU per shard (N = {n:,})", "us")
            gc_share = Row(f"connect storm, cyclic GC share of that CPU (N = {n:,})", "%")
            progress(f"  {wall.label}")
            for _ in range(settings.repeat):
                got = {}
                for impl in IMPLS:
                    out = measure("storm", impl, n=n, compression=2)
                    if out is None:
                        continue
                    got[impl] = out
                    wall.samples.setdefault(impl, []).append(out["wall_s"])
                    cpu.samples.setdefault(impl, []).append(out["cpu_s"] / n * 1e6)
                    gc_share.samples.setdefault(impl, []).append(100 * out["gc_cpu_s"] / out["cpu_s"])
                if len(got) == 2:
                    wall.ratios.append(got["fastshard"]["wall_s"] / got["floor"]["wall_s"])
                    cpu.ratios.append(got["fastshard"]["cpu_s"] / got["floor"]["cpu_s"])
            result.rows += [wall, cpu, gc_share]
        hb = Row(f"idle CPU per heartbeat round trip (N = {settings.heartbeat_n:,}, "
                 f"interval {settings.heartbeat_interval:g} s)", "us")
        progress(f"  {hb.label}")
        for _ in range(settings.repeat):
            paired(hb, "heartbeat", lambda o: o["cpu_per_rtt_s"] * 1e6, n=settings.heartbeat_n, compression=2,
                   interval=settings.heartbeat_interval, window=settings.heartbeat_window)
        result.rows.append(hb)
        for n, m, interval in settings.startups:
            progress(f"  start-up N = {n}, max_concurrency {m}, interval {interval:g} s")
            samples = [out for _ in range(settings.repeat)
                       if (out := measure("startup", "fastshard", n=n, m=m, interval=interval, compression=2))]
            if samples:
                result.startups.append({
                    "n": n, "m": m, "interval": interval, "limit_s": samples[0]["limit_s"],
                    "wall_s": statistics.median(s["wall_s"] for s in samples),
                    "handshake_s": statistics.median(s["handshake_s"] for s in samples),
                    "ratio": statistics.median(s["ratio"] for s in samples),
                    "min_gap_s": min(s["min_gap_s"] for s in samples if s["min_gap_s"] is not None),
                    "identify_span_s": statistics.median(s["identify_span_s"] for s in samples),
                    "short_gaps": sum(s["short_gaps"] for s in samples),
                    "violations": sum(s["violations"] for s in samples),
                    "identifies": samples[0]["identifies"], "samples": samples})
    finally:
        server.stop()
    return result


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:,.1f}"


def render(result: ScaleResult, started: str, elapsed: float, command: str) -> str:
    s = result.settings
    lines = [f"## Scale: ShardManager ({started})", "",
             f"Command: `{command}`; {s.repeat} repeat(s), medians; ratio = fastshard / floor, the median of "
             f"per-repeat ratios (lower is better; the goals are <= 1.05 for memory, <= 1.1 for storm CPU). "
             f"{elapsed:.0f} s.", "",
             "| per shard | unit | fastshard | floor | fastshard / floor |", "|---|---|---:|---:|---:|"]
    for row in result.rows:
        ratio = row.ratio()
        lines.append(f"| {row.label} | {row.unit} | {_fmt(row.median('fastshard'), row.unit)} | "
                     f"{_fmt(row.median('floor'), row.unit)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} |")
    lines += ["", "| start-up (fastshard) | limit (ceil(N/M)-1)*interval | one handshake | READY after | "
              "vs limit + handshake | first to last IDENTIFY | smallest gap per key | gaps < interval | "
              "identify violations |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for st in result.startups:
        lines.append(f"| N = {st['n']}, M = {st['m']}, interval {st['interval']:g} s | {st['limit_s']:.2f} s | "
                     f"{st['handshake_s'] * 1000:.1f} ms | {st['wall_s']:.2f} s | {st['ratio']:.3f}x | "
                     f"{st['identify_span_s']:.2f} s | {st['min_gap_s']:.3f} s | {st['short_gaps']} | "
                     f"{st['violations']} |")
    lines += ["", f"Identify violations counted by the server over every run: {result.violations}."]
    if result.errors:
        lines += ["", "### Problems", ""] + [f"- {e}" for e in result.errors]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 100, one repeat, short intervals: under 30 s (CI)")
    p.add_argument("--n", type=int, action="append", metavar="N",
                   help="shard counts for memory and the storm (repeatable; default 1000 and 10000)")
    p.add_argument("--repeat", type=int, help="repeats per figure (default 3; quick 1)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"where scale.md and scale.json go (default {DEFAULT_OUTPUT})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    base = QUICK if args.quick else FULL
    settings = Settings(args.n or base.ns, args.repeat or base.repeat, base.heartbeat_n,
                        base.heartbeat_interval, base.heartbeat_window, base.startups)
    if args.n:
        settings.heartbeat_n = max(args.n)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {message}", flush=True)

    progress(f"scale benchmark: N = {', '.join(map(str, settings.ns))}, {settings.repeat} repeat(s)")
    result = run_scale(settings, progress)
    text = render(result, started, time.perf_counter() - t0,
                  " ".join(["python -m bench scale", *args_list]))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scale.md").write_text(text)
    raw = {"settings": settings.__dict__, "startups": result.startups, "errors": result.errors,
           "violations": result.violations,
           "rows": [{"label": r.label, "unit": r.unit, "samples": r.samples, "ratios": r.ratios} for r in result.rows]}
    (args.output / "scale.json").write_text(json.dumps(raw, indent=1))
    print(text)
    for line in result.errors:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if result.errors or result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
