"""Per-message decode path: fastshard's Cython decoder vs the floor and vs discord.py.

Run:  python bench/bench_decode.py [--steady 20000] [--guilds 100] [--rounds 7]

Everything is measured side by side in one run, on the simulator's realistic
traffic (fastshard.testing.traffic), as JSON over zlib-stream (and zstd-stream):

* ``bare``: zlib_ng decompressobj + orjson.loads, nothing else (the floor);
* ``fastshard feed_frame``: MessageDecoder fed picows frames (frame -> event dict,
  sequence tracked), the shard's real path;
* ``fastshard feed``: the same from bytes;
* ``fastshard, decompressobj``: feed_frame with zlib_ng's decompressobj in
  place of zlib-ng's C API (the fallback backend, see fastshard/_inflate.pyx);
* ``fastshard, 2 events disabled``: feed_frame with PRESENCE_UPDATE and
  TYPING_START in ``disabled_events`` (dropped after peeking op/t/s);
* ``discord.py``: discord.py's own decompression context object
  (``discord.utils._ZlibDecompressionContext`` / ``_ZstdDecompressionContext``)
  + ``discord.utils._from_json``, exactly what ``DiscordWebSocket.received_message`` does;
* ``discord.py + bookkeeping``: the same plus the rest of received_message's
  per-message work that our decoder also does (sequence) or skips (logging);
* ``reference``: fastshard's plain-Python PyMessageDecoder.

Each round runs every path once over the whole stream with a fresh
decompression context (interleaved, so machine noise hits all paths alike);
the medians over rounds are printed.  The GUILD_CREATE burst keeps every
decoded guild alive until the end of the burst, as a bot's cache does, so the
garbage collector sees what it sees in production.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import statistics
import sys
import time
import zlib
from pathlib import Path

import orjson
import zstandard
from picows.picows import WSMsgType, _make_test_ws_frame
from zlib_ng import zlib_ng

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import discord  # noqa: F401  (the package, so the second copy of discord.utils can import relatively)
import discord.utils as discord_utils_zstd

from fastshard._decoder import MessageDecoder
from fastshard._inflate import ZLIB_BACKEND, use_zlib_c_api
from fastshard.codec import PyMessageDecoder
from fastshard.testing.traffic import TrafficGenerator


# CPU time of this process: the machine is shared, and wall time would count
# other processes' slices against whichever path happened to be running.
_clock = time.process_time


def discord_utils_without_zstd():
    """A second copy of discord.utils as it loads when zstandard is absent: its zlib-stream context."""
    saved = sys.modules.get("zstandard")
    sys.modules["zstandard"] = None  # type: ignore[assignment]
    try:
        spec = importlib.util.find_spec("discord.utils")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.modules["zstandard"] = saved
    assert hasattr(module, "_ZlibDecompressionContext"), "discord.py no longer has a zlib context"
    return module


def make_traffic(seed: int, steady: int, guilds: int) -> tuple[list[bytes], list[bytes]]:
    gen = TrafficGenerator(seed)
    seq = 0
    steady_raw, burst_raw = [], []
    for t, d in gen.guild_burst(guilds):
        seq += 1
        burst_raw.append(orjson.dumps({"t": t, "s": seq, "op": 0, "d": d}))
    for t, d in gen.steady_stream(steady):
        seq += 1
        steady_raw.append(orjson.dumps({"t": t, "s": seq, "op": 0, "d": d}))
    return steady_raw, burst_raw


def zlib_stream(messages: list[bytes]) -> list[bytes]:
    c = zlib.compressobj()
    return [c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def zstd_stream(messages: list[bytes]) -> list[bytes]:
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(m) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for m in messages]


# -- the paths (each returns the elapsed seconds for the whole stream) -----------

def run_bare_zlib(wire, keep):
    out = []
    d = zlib_ng.decompressobj()
    decompress, loads = d.decompress, orjson.loads
    t0 = _clock()
    for m in wire:
        p = loads(decompress(m))
        if keep:
            out.append(p)
    return _clock() - t0


def run_bare_zstd(wire, keep):
    out = []
    decompress = zstandard.ZstdDecompressor().decompressobj().decompress
    loads = orjson.loads
    t0 = _clock()
    for m in wire:
        p = loads(decompress(m))
        if keep:
            out.append(p)
    return _clock() - t0


def run_inflate_only(wire, keep):
    decompress = zlib_ng.decompressobj().decompress
    t0 = _clock()
    for m in wire:
        decompress(m)
    return _clock() - t0


def run_fast_frames(frames, compression, keep, c_api=True):
    out = []
    use_zlib_c_api(c_api)
    try:
        feed_frame = MessageDecoder("json", compression).feed_frame
    finally:
        use_zlib_c_api(True)
    t0 = _clock()
    for f in frames:
        p = feed_frame(f)
        if keep:
            out.append(p)
    return _clock() - t0


def run_fast_disabled(frames, compression, keep):
    # PRESENCE_UPDATE + TYPING_START: ~40% of the steady mix, dropped after the
    # op/t/s peek without decoding d.
    out = []
    feed_frame = MessageDecoder("json", compression,
                                disabled_events=("PRESENCE_UPDATE", "TYPING_START")).feed_frame
    t0 = _clock()
    for f in frames:
        p = feed_frame(f)
        if keep:
            out.append(p)
    return _clock() - t0


def run_fast_bytes(wire, compression, keep):
    out = []
    feed = MessageDecoder("json", compression).feed
    t0 = _clock()
    for m in wire:
        p = feed(m, True)
        if keep:
            out.append(p)
    return _clock() - t0


def run_reference(wire, compression, keep):
    out = []
    feed = PyMessageDecoder("json", compression).feed
    t0 = _clock()
    for m in wire:
        p = feed(m, True)
        if keep:
            out.append(p)
    return _clock() - t0


def run_discord(wire, context_class, keep):
    out = []
    ctx = context_class()
    from_json = discord_utils_zstd._from_json
    t0 = _clock()
    for m in wire:
        msg = ctx.decompress(m)
        if msg is None:
            continue
        p = from_json(msg)
        if keep:
            out.append(p)
    return _clock() - t0


def run_discord_with_bookkeeping(wire, context_class, keep):
    """discord.py's received_message up to what our decoder returns: the same
    decode plus its per-message bookkeeping (log_receive, the debug log call,
    reading t/op/d/s, the sequence), without dispatching anything."""
    from discord.gateway import DiscordWebSocket, _log

    class Shim:
        shard_id = 0
        sequence = None
        log_receive = DiscordWebSocket.log_receive

    ws = Shim()
    out = []
    ctx = context_class()
    from_json = discord_utils_zstd._from_json
    t0 = _clock()
    for m in wire:
        msg = ctx.decompress(m)
        if msg is None:
            continue
        ws.log_receive(msg)
        msg = from_json(msg)
        _log.debug("For Shard ID %s: WebSocket Event: %s", ws.shard_id, msg)
        msg.get("t")
        msg.get("op")
        msg.get("d")
        seq = msg.get("s")
        if seq is not None:
            ws.sequence = seq
        if keep:
            out.append(msg)
    return _clock() - t0


def measure(paths: dict, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        # rotate the order so no path always runs first (cold caches) or last
        for name in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            times[name].append(paths[name]())
    return {name: statistics.median(v) for name, v in times.items()}


def report(title: str, medians: dict[str, float], n: int, baseline: str, per_message: bool) -> None:
    print(f"\n{title} ({n} messages, median of rounds)")
    base = medians[baseline]
    for name, t in medians.items():
        value = f"{t / n * 1e6:8.2f} us/msg" if per_message else f"{t:8.4f} s"
        print(f"  {name:28s} {value}   {t / base:5.2f}x {baseline}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steady", type=int, default=20000)
    ap.add_argument("--guilds", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    discord_zlib = discord_utils_without_zstd()._ZlibDecompressionContext
    discord_zstd = getattr(discord_utils_zstd, "_ZstdDecompressionContext", None)

    steady_raw, burst_raw = make_traffic(args.seed, args.steady, args.guilds)
    print(f"fastshard decode benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"Python {sys.version.split()[0]}, discord.py {discord.__version__}")
    print(f"steady: {len(steady_raw)} dispatches, {sum(map(len, steady_raw)) / 1e6:.1f} MB JSON; "
          f"burst: {len(burst_raw)} GUILD_CREATE, {sum(map(len, burst_raw)) / 1e6:.1f} MB JSON")

    print(f"zlib-stream backend in use: {ZLIB_BACKEND}")
    for label, compression, make_wire, bare, discord_ctx in (
            ("zlib-stream", 2, zlib_stream, run_bare_zlib, discord_zlib),
            ("zstd-stream", 3, zstd_stream, run_bare_zstd, discord_zstd)):
        for part, raw, keep in (("steady state", steady_raw, False), ("GUILD_CREATE burst", burst_raw, True)):
            if not raw:
                continue
            wire = make_wire(raw)
            frames = [_make_test_ws_frame(WSMsgType.BINARY, m, True, False) for m in wire]
            paths = {
                "bare inflate+orjson.loads": lambda: bare(wire, keep),
                "fastshard feed_frame": lambda: run_fast_frames(frames, compression, keep),
                "fastshard feed": lambda: run_fast_bytes(wire, compression, keep),
            }
            if compression == 2:
                paths["fastshard, decompressobj"] = lambda: run_fast_frames(frames, compression, keep, False)
                paths["bare zlib-ng inflate only"] = lambda: run_inflate_only(wire, keep)
                if not keep:
                    paths["fastshard, 2 events disabled"] = lambda: run_fast_disabled(frames, compression, keep)
            if discord_ctx is not None:
                paths["discord.py"] = lambda: run_discord(wire, discord_ctx, keep)
                paths["discord.py + bookkeeping"] = lambda: run_discord_with_bookkeeping(wire, discord_ctx, keep)
            paths["fastshard reference (Py)"] = lambda: run_reference(wire, compression, keep)
            medians = measure(paths, args.rounds)
            report(f"JSON + {label}, {part}", medians, len(wire), "fastshard feed_frame",
                   per_message=not keep)
            fast = medians["fastshard feed_frame"]
            print(f"  => fastshard vs bare: {fast / medians['bare inflate+orjson.loads']:.3f}x the floor", end="")
            if "discord.py" in medians:
                print(f"; {medians['discord.py'] / fast:.2f}x faster than discord.py", end="")
            print()


if __name__ == "__main__":
    main()
