"""``fastshard consume``: print the events of a consumer group (a debugging tool)."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import orjson

__all__ = ["add_parser", "run_consume"]


def add_parser(commands: Any, common: dict[str, Any]) -> None:
    p = commands.add_parser(
        "consume", help="print the events a gateway published to Redis",
        description="Read the event streams through a consumer group and print one JSON line per event\n"
                    '({"shard", "seq", "t", "d"}), acking each after it is printed.')
    p.set_defaults(subparser=p, run=run_consume)
    p.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db")
    p.add_argument("--group", required=True, help="consumer group (one per service)")
    p.add_argument("--consumer", default=None, help="this consumer's name (default: host-pid-random)")
    p.add_argument("--shards", default=None, metavar="IDS", help="only these shards, like 0-3")
    p.add_argument("--events", type=common["event_names"], default=None, metavar="NAMES",
                   help="only these events, comma-separated (others are acked unprinted)")
    p.add_argument("--claim-idle", type=common["positive_float"], default=30.0, metavar="SECONDS",
                   help="claim events another consumer left unacked this long (default: 30)")
    p.add_argument("--max-deliveries", type=common["positive_int"], default=5,
                   help="deliveries before an event goes to the dead-letter stream (default: 5)")
    p.add_argument("--prefix", default="fastshard")
    p.add_argument("--no-data", action="store_true", help="print shard, seq and t only")
    # Testing hook: stop acking (and reading) after N events, as a worker that hangs.
    p.add_argument("--stall-after", type=int, default=None, help=argparse.SUPPRESS)


def run_consume(args: argparse.Namespace) -> int:
    return asyncio.run(_consume(args))


async def _consume(args: argparse.Namespace) -> int:
    import redis.asyncio

    from ..redis import RedisConsumer
    from .gateway import parse_shard_ids

    client = redis.asyncio.Redis.from_url(args.redis)
    shards = parse_shard_ids(args.shards) if args.shards else None
    consumer = RedisConsumer(client, args.group, args.consumer, shards=shards, events=args.events,
                             claim_idle=args.claim_idle, max_deliveries=args.max_deliveries, prefix=args.prefix)
    task = asyncio.ensure_future(_print_events(consumer, args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except (asyncio.CancelledError, BrokenPipeError):
        pass
    finally:
        await client.aclose()
    return 0


async def _print_events(consumer: Any, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    printed = 0
    async with consumer:
        async for event in consumer:
            if args.stall_after is not None and printed >= args.stall_after:
                await asyncio.Event().wait()
            line: dict[str, Any] = {"shard": event.shard_id, "seq": event.sequence, "t": event.name}
            if not args.no_data:
                line["d"] = event.data
            out.write(orjson.dumps(line) + b"\n")
            out.flush()
            await event.ack()
            printed += 1
