"""ETF codec speed: fastshard._etf vs erlpack, and vs orjson on the JSON form.

Realistic traffic from the simulator's TrafficGenerator (fixed seed), encoded
the way Discord encodes it (fastshard.testing.encoding: atom map keys,
snowflakes as big integers in ETF, strings in JSON).  All candidates run
interleaved in the same process, round after round; the report gives the
median per-message time of each and the ratios, so machine noise hits all of
them alike; times are process CPU time.

    python bench/bench_etf.py                 # prints the table (about a minute)
    python bench/bench_etf.py --rounds 5      # quicker
    python -m pytest bench/bench_etf.py --benchmark-enable   # pytest-benchmark form

Targets (issue 3): decode >= 10x faster than erlpack.unpack, and within 1.3x
of orjson.loads on the JSON form of the same payloads.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import platform
import statistics
import sys
import time
from typing import Any, Callable

import erlpack
import orjson

if __name__ == "__main__" and __package__ is None:  # run from a checkout without installing
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from fastshard import _etf  # noqa: E402
from fastshard.testing.encoding import encode_payload  # noqa: E402
from fastshard.testing.traffic import TrafficGenerator  # noqa: E402

SEED = 20261128


def gateway_payloads(kind: str, n: int) -> list[dict[str, Any]]:
    gen = TrafficGenerator(SEED)
    events = gen.steady_stream(n) if kind == "steady" else gen.guild_burst(n)
    return [{"op": 0, "t": t, "s": i + 1, "d": d} for i, (t, d) in enumerate(events)]


def gateway_commands() -> list[dict[str, Any]]:
    """What a bot sends: identify, heartbeats, presence, member requests, voice."""
    return [
        {"op": 2, "d": {"token": "Bot " + "x" * 70, "intents": 3276799,
                        "properties": {"os": "linux", "browser": "fastshard", "device": "fastshard"},
                        "shard": [3, 16], "compress": False, "large_threshold": 250}},
        {"op": 1, "d": 1234},
        {"op": 3, "d": {"since": None, "activities": [{"name": "with ETF", "type": 0}],
                        "status": "online", "afk": False}},
        {"op": 8, "d": {"guild_id": 175928847299117063, "query": "", "limit": 0, "presences": True,
                        "nonce": "abc123"}},
        {"op": 4, "d": {"guild_id": 175928847299117063, "channel_id": 175928847299117064,
                        "self_mute": False, "self_deaf": True}},
    ]


def per_message_seconds(fn: Callable[[Any], Any], items: list[Any]) -> float:
    # Every pass starts from a freshly collected heap, so a full collection
    # triggered by the previous candidate's garbage is not billed to this one.
    if gc.isenabled():
        gc.collect()
    # CPU time of this process, not wall time: other work on a shared machine
    # then shows up as cache noise at worst, not as time we were preempted.
    start = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - start) / len(items)


def race(candidates: dict[str, tuple[Callable[[Any], Any], list[Any]]], rounds: int,
         pause_gc: bool = False) -> dict[str, float]:
    """Median per-message seconds of each candidate, run interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    was_enabled = gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        for name, (fn, items) in candidates.items():  # warm-up (caches, allocator)
            per_message_seconds(fn, items)
        for _ in range(rounds):
            for name, (fn, items) in candidates.items():
                samples[name].append(per_message_seconds(fn, items))
    finally:
        if was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def big_ints_to_str(value: Any) -> Any:
    """JSON as the ETF rule sees it: every integer outside 32 bits (ETF's
    SMALL_BIG, e.g. an activity's created_at) decodes to str."""
    if isinstance(value, dict):
        return {k: big_ints_to_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [big_ints_to_str(v) for v in value]
    if type(value) is int and not -2**31 <= value < 2**31:
        return str(value)
    return value


def check_equal_results(etf: list[bytes], js: list[bytes]) -> None:
    """The comparison is only fair if both give the same objects."""
    for e, j in zip(etf, js):
        if _etf.decode(e) != big_ints_to_str(orjson.loads(j)):
            raise SystemExit("fastshard ETF decode and orjson disagree on the same payload")


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    base = medians[baseline]
    for name, seconds in medians.items():
        ratio = seconds / base
        print(f"  {name:<34} {seconds * 1e6:10.2f} us/msg   {ratio:6.2f}x {baseline}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steady", type=int, default=5000, help="steady-state dispatches")
    parser.add_argument("--guilds", type=int, default=60, help="GUILD_CREATEs in the burst")
    parser.add_argument("--no-gc", action="store_true", help="pause the cyclic GC while timing")
    args = parser.parse_args(argv)

    print(f"ETF codec benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"Python {platform.python_version()}, {platform.machine()}, seed {SEED}, "
          f"{args.rounds} rounds, medians of process CPU time")

    data = {}
    for kind, n in (("steady", args.steady), ("burst", args.guilds)):
        payloads = gateway_payloads(kind, n)
        etf = [encode_payload(p, "etf") for p in payloads]
        js = [encode_payload(p, "json") for p in payloads]
        check_equal_results(etf, js)
        data[kind] = (n, etf, js)
    # Only bytes stay alive while timing, so the cyclic GC (when enabled)
    # does not walk the generator's object graph on every collection.
    del payloads
    gc.collect()

    # The message decoder pauses the GC around large payloads, so the burst is
    # shown both ways.
    scenarios = [("steady", True), ("burst", True)] if args.no_gc else [
        ("steady", False), ("burst", False), ("burst", True)]
    for kind, pause_gc in scenarios:
        n, etf, js = data[kind]
        label = (f"steady state: {n} dispatches, {sum(map(len, etf)) / n:.0f} B ETF / "
                 f"{sum(map(len, js)) / n:.0f} B JSON per message" if kind == "steady" else
                 f"GUILD_CREATE burst: {n} guilds, {sum(map(len, etf)) / 1e6:.1f} MB ETF / "
                 f"{sum(map(len, js)) / 1e6:.1f} MB JSON")
        label += ", GC paused" if pause_gc else ", GC enabled"
        medians = race({
            "fastshard._etf.decode (ETF)": (_etf.decode, etf),
            "orjson.loads (JSON)": (orjson.loads, js),
            "erlpack.unpack (ETF)": (erlpack.unpack, etf),
        }, args.rounds if kind == "steady" else max(3, args.rounds // 2), pause_gc)
        report(label, medians, "orjson.loads (JSON)")
        print(f"  -> fastshard is {medians['erlpack.unpack (ETF)'] / medians['fastshard._etf.decode (ETF)']:.1f}x "
              f"faster than erlpack.unpack, {medians['fastshard._etf.decode (ETF)'] / medians['orjson.loads (JSON)']:.2f}x "
              "orjson.loads' time (targets: >= 10x, <= 1.3x)")

    commands = gateway_commands() * 200
    medians = race({
        "fastshard._etf.encode": (_etf.encode, commands),
        "erlpack.pack": (erlpack.pack, commands),
        "orjson.dumps (JSON, for scale)": (orjson.dumps, commands),
    }, args.rounds, args.no_gc)
    report("encode: gateway commands (identify, heartbeat, presence, op 8, op 4)", medians, "fastshard._etf.encode")
    print(f"  -> fastshard is {medians['erlpack.pack'] / medians['fastshard._etf.encode']:.1f}x faster than erlpack.pack")


# -- pytest-benchmark form -------------------------------------------------

def _bench_data() -> tuple[list[bytes], list[bytes]]:
    payloads = gateway_payloads("steady", 1000)
    return [encode_payload(p, "etf") for p in payloads], [encode_payload(p, "json") for p in payloads]


def _run_all(fn: Callable[[Any], Any], items: list[Any]) -> None:
    for item in items:
        fn(item)


def test_decode_fastshard(benchmark: Any) -> None:
    etf, _ = _bench_data()
    benchmark(_run_all, _etf.decode, etf)


def test_decode_erlpack(benchmark: Any) -> None:
    etf, _ = _bench_data()
    benchmark(_run_all, erlpack.unpack, etf)


def test_decode_orjson_json_form(benchmark: Any) -> None:
    _, js = _bench_data()
    benchmark(_run_all, orjson.loads, js)


def test_encode_fastshard(benchmark: Any) -> None:
    benchmark(_run_all, _etf.encode, gateway_commands() * 200)


def test_encode_erlpack(benchmark: Any) -> None:
    benchmark(_run_all, erlpack.pack, gateway_commands() * 200)


if __name__ == "__main__":
    main(sys.argv[1:])
