"""``fastshard gateway``: run shards on Redis, in one process or in P supervised ones."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = ["add_parser", "run_gateway", "parse_shard_ids", "split_shards"]


def parse_shard_ids(text: str) -> list[int]:
    """``0-15`` or ``0,2,5-7``."""
    ids: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            a, b = int(low), int(high or low)
            if a < 0 or b < a:
                raise ValueError
            ids.update(range(a, b + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected shard ids like 0-15 or 0,2,5-7, got {text!r}") from None
    return sorted(ids)


def split_shards(shard_ids: list[int], processes: int, max_concurrency: int) -> list[list[int]]:
    """P consecutive ranges, cut only between identify buckets rounds (multiples of max_concurrency)."""
    blocks: dict[int, list[int]] = {}
    for shard_id in shard_ids:
        blocks.setdefault(shard_id // max_concurrency, []).append(shard_id)
    ordered = [blocks[k] for k in sorted(blocks)]
    processes = max(1, min(processes, len(ordered)))
    out: list[list[int]] = []
    start = 0
    for i in range(processes):
        end = start + (len(ordered) - start) // (processes - i)
        out.append([s for block in ordered[start:end] for s in block])
        start = end
    return out


def _ranges(ids: list[int]) -> str:
    parts: list[str] = []
    for shard_id in ids:
        if parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == shard_id - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{shard_id}"
        elif parts and "-" not in parts[-1] and int(parts[-1]) == shard_id - 1:
            parts[-1] = f"{parts[-1]}-{shard_id}"
        else:
            parts.append(str(shard_id))
    return ",".join(parts)


def add_parser(commands: Any, common: dict[str, Any]) -> None:
    p = commands.add_parser(
        "gateway", help="run shards that publish every event to Redis",
        description="Run shards with the identify queue, session store and event streams in Redis.\n"
                    "Workers read the events with `fastshard consume` or fastshard.redis.RedisConsumer.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(subparser=p, run=run_gateway)
    p.add_argument("--token", default=None, help="bot token (default: $DISCORD_TOKEN)")
    p.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db")
    p.add_argument("--shards", type=parse_shard_ids, default=None, metavar="IDS",
                   help="shard ids to run, like 0-15 (default: all of --shard-count)")
    p.add_argument("--shard-count", type=common["positive_int"], default=None, metavar="N",
                   help="total shards of the bot (default: Discord's recommendation from /gateway/bot)")
    p.add_argument("--max-concurrency", type=common["positive_int"], default=None, metavar="N",
                   help="identify buckets (default: from /gateway/bot)")
    p.add_argument("--url", default=None, help="gateway URL (default: from /gateway/bot)")
    p.add_argument("--api-url", default=None, metavar="URL",
                   help="REST base for GET /gateway/bot (default: Discord's; `fastshard simulate` prints its own)")
    p.add_argument("--processes", type=common["positive_int"], default=1, metavar="P",
                   help="split the shards over P supervised processes (default: 1)")
    p.add_argument("--metrics-port", type=common["port"], default=None, metavar="PORT",
                   help="serve Prometheus metrics here (process i of P uses PORT+i)")
    p.add_argument("--intents", type=common["intents"], default=common["default_intents"])
    p.add_argument("--encoding", choices=("json", "etf"), default="json")
    p.add_argument("--compression", type=int, choices=(0, 1, 2, 3), default=2,
                   help="0 none, 1 payload, 2 zlib-stream (default), 3 zstd-stream")
    p.add_argument("--prefix", default="fastshard", help="Redis key prefix (default: fastshard)")
    p.add_argument("--maxlen", type=int, default=100_000, help="events kept per stream (MAXLEN ~; 0: all)")
    p.add_argument("--max-buffer", type=common["positive_int"], default=50_000,
                   help="events held while Redis is behind before the shards pause (default: 50000)")
    p.add_argument("--identify-interval", type=float, default=5.0, help=argparse.SUPPRESS)


def _resolve(args: argparse.Namespace) -> None:
    args.token = args.token or os.environ.get("DISCORD_TOKEN")
    if not args.token:
        args.subparser.error("a token is needed: --token or DISCORD_TOKEN")
    args.gateway_info = None
    if args.url is None or args.shard_count is None or args.max_concurrency is None:
        from ..rest import API_URL, GatewayLookupError, fetch_gateway_bot

        try:
            info = asyncio.run(fetch_gateway_bot(args.token, api_url=args.api_url or API_URL))
        except GatewayLookupError as exc:
            print(f"fastshard gateway: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        args.gateway_info = info
        args.url = args.url or info.url
        args.shard_count = args.shard_count or info.shards
        args.max_concurrency = args.max_concurrency or info.max_concurrency or 1
    if args.shards is None:
        args.shards = list(range(args.shard_count))
    if args.shards[-1] >= args.shard_count:
        args.subparser.error(f"--shards goes up to {args.shards[-1]} but --shard-count is {args.shard_count}")


async def _set_budget(args: argparse.Namespace) -> None:
    """Seed the shared session budget from /gateway/bot, once, before any shard identifies."""
    import redis.asyncio

    from ..redis import RedisIdentifyQueue

    info = args.gateway_info
    if info is None or info.session_start_remaining is None:
        return
    client = redis.asyncio.Redis.from_url(args.redis)
    try:
        queue = RedisIdentifyQueue(client, args.max_concurrency, args.identify_interval, args.prefix)
        total = info.session_start_total if info.session_start_total is not None else info.session_start_remaining
        await queue.set_budget(total, info.session_start_remaining, (info.session_start_reset_after_ms or 0) / 1000)
    finally:
        await client.aclose()


def run_gateway(args: argparse.Namespace) -> int:
    _resolve(args)
    asyncio.run(_set_budget(args))
    if args.processes > 1:
        return _supervise(args)
    return asyncio.run(_run_one(args, args.metrics_port))


def _child_argv(args: argparse.Namespace, shards: list[int], metrics_port: int | None) -> list[str]:
    argv = [sys.executable, "-m", "fastshard", "gateway", "--redis", args.redis, "--shards", _ranges(shards),
            "--shard-count", str(args.shard_count), "--max-concurrency", str(args.max_concurrency),
            "--url", args.url, "--intents", str(args.intents), "--encoding", args.encoding,
            "--compression", str(args.compression), "--prefix", args.prefix, "--maxlen", str(args.maxlen),
            "--max-buffer", str(args.max_buffer), "--identify-interval", str(args.identify_interval)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    return argv


def _supervise(args: argparse.Namespace) -> int:
    """One child per range; a child that dies is started again (it resumes its shards from Redis)."""
    groups = split_shards(args.shards, args.processes, args.max_concurrency)
    env = dict(os.environ, DISCORD_TOKEN=args.token)  # not on the command line: others can read that
    children: list[subprocess.Popen[bytes] | None] = [None] * len(groups)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            for i, shards in enumerate(groups):
                child = children[i]
                if child is None or child.poll() is not None:
                    if child is not None:
                        print(f"fastshard gateway: process {i} (shards {_ranges(shards)}) exited with "
                              f"{child.returncode}; starting it again", file=sys.stderr, flush=True)
                    port = None if args.metrics_port is None else args.metrics_port + i
                    children[i] = subprocess.Popen(_child_argv(args, shards, port), env=env)
            time.sleep(0.2)
    finally:
        for child in children:
            if child is not None and child.poll() is None:
                child.terminate()
        for child in children:
            if child is not None:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
    return 0


async def _run_one(args: argparse.Namespace, metrics_port: int | None) -> int:
    import redis.asyncio

    from ..redis import RedisGateway

    client = redis.asyncio.Redis.from_url(args.redis)
    gateway = RedisGateway(client, token=args.token, intents=args.intents, shard_ids=args.shards,
                           shard_count=args.shard_count, url=args.url, max_concurrency=args.max_concurrency,
                           identify_interval=args.identify_interval, prefix=args.prefix, maxlen=args.maxlen,
                           max_buffer=args.max_buffer, encoding=args.encoding, compression=args.compression)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = None
    if metrics_port is not None:
        from ..redis.metrics import GatewayMetrics

        metrics = GatewayMetrics(gateway, metrics_port)
        metrics.start()
    await gateway.start()
    print(f"fastshard gateway: shards {_ranges(args.shards)} of {args.shard_count} on {args.redis}",
          file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            if gateway.manager.error is not None:
                print(f"fastshard gateway: shard {gateway.manager.error_shard}: {gateway.manager.error}",
                      file=sys.stderr)
                return 1
    finally:
        if metrics is not None:
            metrics.stop()
        await gateway.close()
        await client.aclose()
    return 0
