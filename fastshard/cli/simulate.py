"""``fastshard simulate``: run the gateway simulator alone until Ctrl-C."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

__all__ = ["run_simulate"]


async def _serve(args: argparse.Namespace) -> int:
    from ..testing import GatewaySimulator

    sim = GatewaySimulator(args.host, args.port, seed=args.seed, guilds=args.guilds,
                           heartbeat_interval=args.heartbeat_interval, token=args.require_token,
                           allowed_intents=args.allowed_intents, event_rate=args.rate,
                           shards=args.shards, max_concurrency=args.max_concurrency,
                           identify_interval=args.identify_interval,
                           session_start_limit=args.session_start_limit,
                           max_guilds_per_shard=args.max_guilds_per_shard)
    try:
        await sim.start()
    except OSError as exc:
        print(f"fastshard: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows
                signal.signal(sig, lambda s, f: loop.call_soon_threadsafe(stop.set))
    try:
        # The URLs go first, each alone on its line, so scripts can read them.
        print(sim.url, flush=True)
        print(sim.api_url, flush=True)
        print(f"-- gateway simulator: {args.guilds} guilds, {args.rate:g} events/s per connection, "
              f"seed {args.seed}, heartbeat {args.heartbeat_interval:g} s"
              + (", token required" if args.require_token else ", any token accepted"), flush=True)
        if sim.enforce_session_limits:
            print(f"-- sharded: GET {sim.api_url}/gateway/bot recommends {sim.recommended_shards} shard(s); "
                  f"max_concurrency {sim.max_concurrency}, one IDENTIFY per key per "
                  f"{sim.identify_interval:g} s, {sim.session_start_remaining} session starts", flush=True)
        print(f"-- try: fastshard listen --url {sim.url}   (Ctrl-C stops the simulator)", flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        await sim.stop()
    print(f"-- stopped after {len(sim.connections)} connection(s), {len(sim.sessions)} session(s)"
          + (f", {sim.identify_violations} identify violation(s)" if sim.enforce_session_limits else ""),
          flush=True)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
