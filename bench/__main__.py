"""``python -m bench``: the whole benchmark suite, written to latest.md / latest.png.

Also ``fastshard bench [ARGS]`` (the CLI runs this in a subprocess) or
``bench.__main__.main(argv)`` from Python.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
PARTS = ("e2e", "memory", "codec")

# (full, quick)
_DEFAULTS = {
    "events": (20_000, 2_000),
    "guilds": (100, 10),
    "repeat": (5, 3),
    "shards": (100, 10),
    "memory_repeat": (3, 1),
    "codec_events": (5_000, 500),
    "codec_guilds": (50, 4),
    "codec_rounds": (7, 2),
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="fastshard's benchmark suite: end to end over loopback (json/etf x compression 0-3, "
                    "fastshard vs discord.py's shape vs a plain websockets loop), memory per idle shard, "
                    "wire sizes and codec micro-benchmarks. Writes latest.md, latest.png and latest.json.",
        epilog="Figures are medians over repeats; nothing is asserted about speed. bench/README.md explains "
               "every figure. `python -m bench soak --help`: the fault soak (a million dispatches through a "
               "thousand faults).")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run in under a minute (small workloads, fewer repeats); numbers are rough")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"where to write latest.md/png/json (default: {DEFAULT_OUTPUT})")
    p.add_argument("--events", type=_positive, metavar="N",
                   help="steady-state events per end-to-end run (default 20000; quick 2000)")
    p.add_argument("--guilds", type=_positive, metavar="G",
                   help="GUILD_CREATEs in the end-to-end burst (default 100; quick 10)")
    p.add_argument("--repeat", type=_positive, metavar="K",
                   help="end-to-end repeats, medians over them (default 5; quick 3)")
    p.add_argument("--shards", type=_positive, metavar="S",
                   help="idle shards per memory measurement (default 100; quick 10)")
    p.add_argument("--only", metavar="PARTS",
                   help=f"comma-separated subset of {','.join(PARTS)} (wire sizes are always reported)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["soak"]:
        from .soak import main as soak
        return soak(args_list[1:])
    if args_list[:1] == ["scale"]:  # python -m bench scale [--quick]: bench/scale.py
        from .scale import main as scale_main
        return scale_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    parts = set(PARTS)
    if args.only:
        parts = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = parts - set(PARTS)
        if unknown:
            parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    q = 1 if args.quick else 0
    settings = {name: values[q] for name, values in _DEFAULTS.items()}
    for name in ("events", "guilds", "repeat", "shards"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    settings["steady"], settings["burst"] = settings["events"], settings["guilds"]

    # Imported here so that --help works without the benchmark extras installed.
    from .environment import describe
    from .processes import ROOT
    from .report import Report, wire_table, write_report

    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    env = describe(ROOT, args_list)
    progress(f"fastshard benchmarks on {env['cpu']} ({env['cores']} cores), {env['python']}, "
             f"decoder {env['decoder']}")
    counts = {"steady": settings["steady"], "burst": settings["burst"]}
    progress("wire sizes")
    wire = wire_table(counts)
    errors: list[str] = []
    e2e = memory = codec = None
    if "e2e" in parts:
        from .e2e import run_e2e
        e2e = run_e2e(counts, settings["repeat"], progress)
        errors += e2e.errors
        errors += _wire_mismatches(e2e, wire)
    if "memory" in parts:
        from .memory import run_memory
        memory = run_memory(settings["shards"], settings["memory_repeat"], progress)
        errors += memory.errors
    if "codec" in parts:
        from .bench_codec import run_codec
        codec = run_codec({"steady": settings["codec_events"], "burst": settings["codec_guilds"]},
                          settings["codec_rounds"], progress, errors)
        errors += [f"codec {s.title} ({s.workload}), {row.name}: {row.error}"
                   for s in codec for row in s.rows if row.error]
    settings["elapsed_s"] = round(time.perf_counter() - started, 1)
    report = Report(env, settings, wire, e2e, memory, codec, errors)
    paths = write_report(report, args.output)
    progress("wrote " + ", ".join(str(p) for p in paths))
    for line in errors:
        print(f"problem: {line}", file=sys.stderr)
    # The report is written either way; a run with missing figures must not pass for a clean one.
    return 1 if errors else 0


def _wire_mismatches(e2e: object, wire: dict) -> list[str]:
    """fastshard's own byte count must equal the stream's size: a check on both."""
    from .e2e import E2EResult

    assert isinstance(e2e, E2EResult)
    out = []
    for (workload, e, c), w in wire.items():
        seen = e2e.wire_per_event(workload, e, c)
        if seen is not None and abs(seen - w["bytes_per_event"]) > 0.01:
            out.append(f"{workload} {e} c{c}: WebsocketShard.bytes_received says {seen:.1f} bytes/event, "
                       f"the stream sent {w['bytes_per_event']:.1f}")
    return out


if __name__ == "__main__":
    sys.exit(main())
