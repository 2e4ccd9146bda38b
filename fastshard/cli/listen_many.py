"""``fastshard listen --shards ...``: run a ShardManager and watch every shard.

On a terminal a table redrawn in place (status, sequence, ping, events/s per
shard, identifies spent and remaining); piped, one line per event with its
shard id.  ``--sessions FILE`` resumes the sessions stored there and saves
them again on Ctrl-C, so the next run RESUMEs instead of identifying.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from typing import IO, Any

from ..errors import ShardError
from ..identify_queue import LocalIdentifyQueue
from ..manager import ShardManager
from ..session_store import FileSessionStore, MemorySessionStore, SessionStore
from .listen import EXIT_FAILURE, EXIT_OK, TICK, explain_failure, install_stop_signals
from .output import JsonlWriter, Stats, clean, event_line, open_output

__all__ = ["run_listen_many", "shard_table"]


def shard_table(manager: ShardManager, stats: dict[int, Stats], *, width: int, height: int) -> list[str]:
    """The lines of the live table: a header, one row per shard (as many as fit), a total."""
    spent = manager.identifies_spent
    remaining = manager.session_starts_remaining
    total_rate = 0.0
    rows = []
    for sid, summary in sorted(manager.status().items()):
        rate = stats[sid].recent_rate() if sid in stats else 0.0
        total_rate += rate
        ping = f"{summary.latency:.1f}" if summary.latency is not None else "-"
        seq = summary.sequence if summary.sequence is not None else "-"
        rows.append(f"{sid:>6}  {summary.status.name:<12} {seq!s:>10} {ping:>9} {rate:>9.1f} "
                    f"{summary.identifies:>5} {summary.resumes:>6}")
    head = (f"shards {len(rows)} of {manager.shard_count}  identifies spent {spent}, remaining "
            f"{remaining if remaining is not None else '-'}  {total_rate:.1f} events/s")
    lines = [head[:width], f"{'shard':>6}  {'status':<12} {'sequence':>10} {'ping ms':>9} {'events/s':>9} "
                           f"{'ident':>5} {'resume':>6}"[:width]]
    room = max(height - 3, 1)
    if len(rows) > room:
        lines += [r[:width] for r in rows[:room - 1]] + [f"... and {len(rows) - room + 1} more shards"]
    else:
        lines += [r[:width] for r in rows]
    return lines


class ManyListener:
    """One `fastshard listen --shards` run."""

    def __init__(self, args: argparse.Namespace, out: IO[str], err: IO[str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.tty = out.isatty()
        self.stats: dict[int, Stats] = {}
        self.total = Stats()
        self.writer: JsonlWriter | None = None
        self.sim: Any = None
        self.manager: ShardManager | None = None
        self.failure: BaseException | None = None
        self.stop = asyncio.Event()
        self._drawn = 0

    def error(self, text: str) -> int:
        print(f"fastshard: error: {text}", file=self.err, flush=True)
        return EXIT_FAILURE

    def info(self, text: str) -> None:
        print(f"-- {text}", file=self.out, flush=True)

    def on_event(self, shard_id: int, payload: dict[str, Any]) -> None:
        t, seq = payload.get("t"), payload.get("s")
        self.stats[shard_id].count(t, seq)
        self.total.count(t, seq)
        if self.writer is not None:
            self.writer.write({"shard": shard_id, **payload})
        if not self.tty and not self.args.quiet and (self.args.events is None or t in self.args.events):
            try:
                print(f"[{shard_id}] " + event_line(seq, t, payload.get("d")), file=self.out)
            except BrokenPipeError:
                self.stop.set()

    def on_close(self, shard_id: int, exc: BaseException) -> None:
        self.failure = exc
        self.stop.set()

    def on_debug(self, shard_id: Any, message: str) -> None:
        if self.args.debug:
            print(f"debug: [{shard_id}] {message}", file=self.err, flush=True)

    async def _ticker(self) -> None:
        assert self.manager is not None
        while True:
            if self.tty:
                size = shutil.get_terminal_size((120, 24))
                lines = shard_table(self.manager, self.stats, width=size.columns - 1, height=size.lines)
                up = f"\x1b[{self._drawn}F" if self._drawn else ""
                self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines) + "\x1b[J")
                self.out.flush()
                self._drawn = len(lines)
            else:
                try:
                    self.out.flush()
                except BrokenPipeError:
                    self.stop.set()
            await asyncio.sleep(TICK)

    async def _gateway(self) -> dict[str, Any] | int:
        """Where the manager connects: Discord (token), a given URL, or the built-in simulator."""
        args = self.args
        options: dict[str, Any] = {}
        if args.api_url:
            options["api_url"] = args.api_url.removesuffix("/gateway/bot")
        if args.url is not None:
            options["url"] = args.url
            if args.shard_count is None:
                options["shard_count"] = 1 if args.shard_ids is None else max(args.shard_ids) + 1
            options["max_concurrency"] = args.max_concurrency or 1
            return options
        if args.token is not None:
            return options
        from ..testing import GatewaySimulator

        shards = args.shard_count or 2
        self.sim = GatewaySimulator(seed=args.seed, guilds=args.guilds, event_rate=args.rate, shards=shards,
                                    max_concurrency=args.max_concurrency or 1,
                                    identify_interval=args.sim_identify_interval)
        try:
            await self.sim.start()
        except OSError as exc:
            return self.error(f"could not start the built-in simulator on loopback: {exc}")
        self.info(f"no token given: watching the built-in gateway simulator at {self.sim.url} ({shards} shards "
                  f"recommended, {args.guilds} guilds each, {args.rate:g} events/s per shard, seed {args.seed}); "
                  "--token or DISCORD_TOKEN connects to Discord")
        options["api_url"] = self.sim.api_url
        # The simulator's identify interval may be shortened (a testing hook); the queue must match it.
        options["identify_queue"] = LocalIdentifyQueue(args.max_concurrency or 1, interval=args.sim_identify_interval)
        return options

    async def run(self) -> int:
        args = self.args
        try:
            self.writer = open_output(args.output)
        except ValueError as exc:
            return self.error(str(exc))
        remove_signals = install_stop_signals(self.stop)
        ticker: asyncio.Task[None] | None = None
        try:
            options = await self._gateway()
            if isinstance(options, int):
                return options
            store: SessionStore = FileSessionStore(args.sessions) if args.sessions else MemorySessionStore()
            if args.shard_count is not None:
                options.setdefault("shard_count", args.shard_count)
            if args.max_concurrency is not None:
                options.setdefault("max_concurrency", args.max_concurrency)
            try:
                manager = ShardManager(
                    token=args.token or "fastshard-cli", intents=args.intents, shard_ids=args.shard_ids,
                    session_store=store, encoding=args.encoding, compression=args.compression, **options)
            except (TypeError, ValueError) as exc:
                return self.error(str(exc))
            self.manager = manager
            manager.on("event", self.on_event)
            manager.on("close", self.on_close)
            manager.on("debug", self.on_debug)
            try:
                await manager.start()
            except (ShardError, ValueError) as exc:
                return self.error(str(exc))
            self.stats = {sid: Stats() for sid in manager.shards}
            self.info(f"{len(manager.shards)} shards of {manager.shard_count}, max_concurrency "
                      f"{manager.max_concurrency}" + (f", sessions in {args.sessions}" if args.sessions else ""))
            ticker = asyncio.ensure_future(self._ticker())
            try:
                await asyncio.wait_for(self.stop.wait(), args.duration)
            except asyncio.TimeoutError:
                pass
            self.total.ended = self.total.clock()
            if self.failure is None:
                await manager.close()
            ticker.cancel()
            if self.failure is not None:
                return self.error(explain_failure(self.failure, intents=args.intents, resuming=False))
            print(self._summary(), file=self.out, flush=True)
            return EXIT_OK
        finally:
            if ticker is not None:
                ticker.cancel()
            remove_signals()
            if self.manager is not None and self.failure is not None:
                await self.manager.close()
            if self.sim is not None:
                await self.sim.stop()
            if self.writer is not None:
                self.writer.close()

    def _summary(self) -> str:
        manager = self.manager
        assert manager is not None
        lines = [f"-- summary: {self.total.total:,} events from {len(manager.shards)} shards in "
                 f"{self.total.elapsed():.1f} s ({self.total.average_rate():.1f} events/s)"]
        lines.append(f"   identifies spent {manager.identifies_spent}, resumes "
                     f"{sum(s.resumes for s in manager.status().values())}")
        for t, n in self.total.by_type.most_common(8):
            lines.append(f"     {clean(t, 40):<24} {n:>9,}")
        if self.args.sessions:
            lines.append(f"   sessions saved to {self.args.sessions}; run the same command again to resume them")
        return "\n".join(lines)


def run_listen_many(args: argparse.Namespace) -> int:
    return asyncio.run(ManyListener(args, sys.stdout, sys.stderr).run())
