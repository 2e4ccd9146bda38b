"""The gateway simulator in a process of its own, for the memory benchmark.

``python -m bench.simulator_process --guilds 1`` prints ``PORT <n>`` once it
listens and runs until its stdin closes.  Idle shards need a live gateway
(HELLO, IDENTIFY -> READY + GUILD_CREATEs, heartbeat ACKs), not a blast; the
heartbeat interval is long so that clients without a heartbeat loop (the
baselines) are not closed for a missed heartbeat during a measurement.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from fastshard.testing import GatewaySimulator

__all__ = ["main"]


async def _serve(guilds: int, members: int | None) -> None:
    async with GatewaySimulator(guilds=guilds, guild_members=members, heartbeat_interval=600.0,
                                seed=1) as sim:
        print(f"PORT {sim.port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_process")
    parser.add_argument("--guilds", type=int, default=1, help="GUILD_CREATEs after each READY")
    parser.add_argument("--members", type=int, default=None, help="members per GUILD_CREATE (default: varied)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.guilds, args.members))


if __name__ == "__main__":
    main()
