"""``fastshard listen``: connect one shard and watch its events.

Everything the user sees goes through :class:`Display`; events are counted
and written to the JSONL file from the shard's callbacks, which run inline in
the read loop, so they only do cheap work and the screen is redrawn from a
timer a few times per second.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
from typing import IO, Any, Callable

from ..rest import GatewayLookupError, fetch_gateway_bot
from .output import (JsonlWriter, Stats, disallowed_intents_message, event_line, open_output, resume_command,
                          status_line, summary_text)
from ..errors import ConnectionFailedError, GatewayCloseError, InvalidSessionError, ShardError
from ..intents import intent_names

__all__ = ["run_listen", "Display", "explain_failure", "install_stop_signals"]

EXIT_OK, EXIT_FAILURE = 0, 1
TICK = 0.25          # screen redraw period: a live line without flooding the terminal
PING_EVERY = 10.0    # websocket pings, so the status line shows a latency before the first heartbeat ACK
TTY_LINES_PER_TICK = 200  # a terminal cannot show 10k lines/s usefully; a pipe gets every line


class Display:
    """Event lines, info lines and (on a terminal) a status line redrawn in place."""

    def __init__(self, out: IO[str], *, tty: bool, quiet: bool, only: frozenset[str] | None) -> None:
        self.out = out
        self.tty = tty
        self.quiet = quiet
        self.only = only
        self.width = shutil.get_terminal_size((120, 24)).columns if tty else 240
        self._pending: list[str] = []
        self._skipped = 0
        self.broken = False  # stdout went away (e.g. piped into `head`)

    def wants(self, t: Any) -> bool:
        return not self.quiet and (self.only is None or t in self.only)

    def event(self, seq: Any, t: Any, d: Any) -> None:
        if self.tty and len(self._pending) >= TTY_LINES_PER_TICK:
            self._skipped += 1
            return
        self._pending.append(event_line(seq, t, d, self.width - 1))

    def info(self, text: str) -> None:
        """A line about the connection itself, shown at once (also with --quiet)."""
        self._pending.append(f"-- {text}")
        self.flush()

    def flush(self, status: str | None = None) -> None:
        if self.broken:
            return
        lines = self._pending
        self._pending = []
        if self._skipped:
            lines.append(f"-- {self._skipped:,} more events not shown (use --events or --quiet on a terminal)")
            self._skipped = 0
        try:
            if self.tty:
                text = "".join(f"\r\x1b[K{line}\n" for line in lines)
                if status is not None:
                    text += "\r\x1b[K" + status[: self.width - 1]
                self.out.write(text)
            elif lines:
                self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        except BrokenPipeError:
            self.broken = True

    def finish(self) -> None:
        """Print what is pending and take the status line off the screen."""
        self.flush()
        if self.tty and not self.broken:
            self.out.write("\r\x1b[K")
            self.out.flush()

    def print(self, text: str) -> None:
        self.finish()
        if not self.broken:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except BrokenPipeError:
                self.broken = True


def _without_api_advice(message: str) -> str:
    # The library's messages tell programmers to "call connect() again"; on the
    # command line the equivalent is running the command again.
    for cut in ("; call connect() again", ": the session data was cleared", ", before a session was established"):
        message = message.split(cut)[0]
    return message


def explain_failure(exc: BaseException, *, intents: int, resuming: bool) -> str:
    """The message for why the shard stopped for good, phrased for the command line."""
    if isinstance(exc, GatewayCloseError):
        if exc.code == 4004:
            return ("the gateway rejected the token (close 4004 AUTHENTICATION_FAILED). Copy the bot token again "
                    "from https://discord.com/developers/applications (your app -> Bot -> Reset Token) and pass it "
                    "with --token or DISCORD_TOKEN.")
        if exc.code == 4014:
            return disallowed_intents_message(intents)
        if exc.code == 4013:
            return (f"the gateway refused the intents value {intents} (close 4013 INVALID_INTENTS): "
                    f"it asked for {', '.join(intent_names(intents)) or 'none'}; check --intents.")
        if exc.code == 4011:
            return ("this bot is in too many guilds for one shard (close 4011 SHARDING_REQUIRED): "
                    "connect with --shard ID/TOTAL, TOTAL being at least the count Discord recommends.")
        if exc.code == 4010:
            return "the gateway refused the shard (close 4010 INVALID_SHARD): check --shard ID/TOTAL."
        if exc.code in (1006, 1000, 1001) or exc.code < 4000:
            return (f"{_without_api_advice(str(exc))}, before a session was established; "
                    "is the URL a Discord gateway?")
        return _without_api_advice(str(exc))
    if isinstance(exc, InvalidSessionError):
        again = "run again without --resume to start a new session" if resuming else "run again to start a new one"
        return f"the session cannot continue: {_without_api_advice(str(exc))}; {again}."
    if isinstance(exc, ShardError):
        return _without_api_advice(str(exc)) + "; run the command again."
    return f"{type(exc).__name__}: {exc}"


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Ctrl-C and SIGTERM set ``stop`` once; a second one interrupts for real (exit 130).

    Returns the function that removes the handlers.
    """
    loop = asyncio.get_running_loop()
    installed: list[int] = []

    def first_signal(signum: int) -> None:
        stop.set()
        for sig in installed:
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, first_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: fall back to a plain handler
            signal.signal(sig, lambda s, f: loop.call_soon_threadsafe(stop.set))

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return remove


class Listener:
    """One `fastshard listen` run."""

    def __init__(self, args: argparse.Namespace, out: IO[str], err: IO[str]) -> None:
        self.args = args
        self.err = err
        self.display = Display(out, tty=out.isatty(), quiet=args.quiet, only=args.events)
        self.stats = Stats()
        self.writer: JsonlWriter | None = None
        self.sim: Any = None
        self.shard: Any = None
        self.url = ""
        self.shard_ids: tuple[int, int] = args.shard or (0, 1)
        self.stop = asyncio.Event()
        self.failure: BaseException | None = None
        self._dropped = False

    def error(self, text: str) -> int:
        self.display.finish()
        print(f"fastshard: error: {text}", file=self.err, flush=True)
        return EXIT_FAILURE

    # -- where to connect ----------------------------------------------------
    async def _choose_gateway(self) -> int | None:
        args = self.args
        if args.url is not None:
            self.url = args.url
            self.display.info(f"connecting to {self.url} as shard {self.shard_ids[0]}/{self.shard_ids[1]}"
                              + ("" if args.token else " (no token: sending a placeholder)"))
            return None
        if args.token is not None:
            try:
                info = await fetch_gateway_bot(args.token, **({"url": args.api_url} if args.api_url else {}))
            except GatewayLookupError as exc:
                return self.error(str(exc))
            self.url = info.url
            if args.shard is None:
                self.shard_ids = (0, info.shards)
            if info.session_start_remaining == 0 and args.resume is None:
                hours = (info.session_start_reset_after_ms or 0) / 3_600_000
                return self.error(f"this bot has no session starts left today (Discord's identify limit); "
                                  f"it resets in {hours:.1f} h. Resuming with --resume still works.")
            note = ""
            if args.shard is None and info.shards > 1:
                note = f" (Discord recommends {info.shards} shards; pick another with --shard ID/TOTAL)"
            self.display.info(f"connecting to Discord at {self.url} as shard "
                              f"{self.shard_ids[0]}/{self.shard_ids[1]}{note}")
            return None
        from ..testing import GatewaySimulator

        self.sim = GatewaySimulator(seed=args.seed, guilds=args.guilds, event_rate=args.rate)
        try:
            await self.sim.start()
        except OSError as exc:
            return self.error(f"could not start the built-in simulator on loopback: {exc}")
        self.url = self.sim.url
        # The issue asks for this on the very first line: the user must never mistake it for Discord.
        self.display.info(f"no token given: watching the built-in gateway simulator at {self.url} "
                          f"({args.guilds} guilds, {args.rate:g} events/s, seed {args.seed}); "
                          "--token or DISCORD_TOKEN connects to Discord")
        return None

    # -- shard callbacks (inline in the read loop: keep them cheap) ----------
    def _record(self, payload: dict[str, Any], shown: Any = None) -> None:
        t = payload.get("t")
        seq = payload.get("s")
        self.stats.count(t, seq)
        if self.writer is not None:
            self.writer.write(payload)
        if self.display.wants(t):
            self.display.event(seq, t, payload.get("d") if shown is None else shown)

    def on_event(self, payload: dict[str, Any]) -> None:
        self._record(payload)
        drop_after = self.args.simulate_drop_after
        if drop_after is not None and not self._dropped and self.stats.total >= drop_after and self.sim:
            self._dropped = True
            asyncio.ensure_future(self.sim.connections[-1].drop())

    def on_ready(self, d: dict[str, Any]) -> None:
        self._record({"op": 0, "t": "READY", "s": self.shard.sequence, "d": d})

    def on_resumed(self, d: dict[str, Any]) -> None:
        self.stats.resumes += 1
        replayed = d.get("replayed", 0)
        self.stats.replayed += replayed if isinstance(replayed, int) else 0
        seq = self.shard.sequence
        # RESUMED carries its own sequence only if the gateway numbered it; the
        # shard's sequence then moved past the last event.  Never record a number twice.
        if seq is None or (self.stats.last_seq is not None and seq <= self.stats.last_seq):
            seq = None
        data = {k: v for k, v in d.items() if k != "replayed"}
        # The file gets what the gateway sent; the screen also shows the replay count.
        self._record({"op": 0, "t": "RESUMED", "s": seq, "d": data}, shown=d)
        if not self.display.wants("RESUMED"):
            self.display.info(f"session resumed, {replayed} missed events replayed")

    def on_close(self, exc: BaseException) -> None:
        self.failure = exc
        self.stop.set()

    def on_debug(self, message: str) -> None:
        if self.args.debug:
            print(f"debug: {message}", file=self.err, flush=True)
        if message.startswith(("connection lost", "reconnecting to resume")):
            self.display.info(message)

    # -- the run ---------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None]:
        return install_stop_signals(self.stop)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = 0.0
        while True:
            shard = self.shard
            status = shard.status
            # Ping as soon as the session is up, then now and then: the first
            # heartbeat ACK may be 40 s away.
            if status.name == "CONNECTED" and loop.time() >= next_ping:
                next_ping = loop.time() + PING_EVERY
                asyncio.ensure_future(self._ping())
            line = None
            if self.display.tty:
                self.display.width = shutil.get_terminal_size((120, 24)).columns  # follows resizes
                line = status_line(status=status.name, rate=self.stats.recent_rate(), total=self.stats.total,
                                   seq=shard.sequence, ping_ms=shard.last_ping, bytes_in=shard.bytes_received,
                                   bytes_decoded=shard.bytes_decoded, width=self.display.width - 1)
            self.display.flush(line)
            if self.display.broken:
                self.stop.set()
            await asyncio.sleep(TICK)

    async def _ping(self) -> None:
        try:
            await self.shard.ping(timeout=5.0)
        except (ShardError, asyncio.TimeoutError, OSError):
            pass  # the heartbeat and the reconnect logic deal with a dead connection

    async def run(self) -> int:
        from ..shard import ShardStatus, WebsocketShard

        args = self.args
        try:
            self.writer = open_output(args.output)
        except ValueError as exc:
            return self.error(str(exc))
        remove_signals = self._install_signals()
        ticker: asyncio.Task[None] | None = None
        try:
            code = await self._choose_gateway()
            if code is not None:
                return code
            session, sequence = args.resume if args.resume else (None, 0)
            try:
                self.shard = WebsocketShard(
                    token=args.token or "fastshard-cli", intents=args.intents, id=self.shard_ids[0],
                    total=self.shard_ids[1], encoding=args.encoding, compression=args.compression,
                    url=self.url, session=session, sequence=sequence)
            except (TypeError, ValueError) as exc:
                return self.error(str(exc))
            shard = self.shard
            shard.on("event", self.on_event)
            shard.on("ready", self.on_ready)
            shard.on("resumed", self.on_resumed)
            shard.on("close", self.on_close)
            shard.on("debug", self.on_debug)
            self.stats = Stats()
            try:
                await shard.connect()
            except ConnectionFailedError as exc:
                where = "Discord's gateway" if args.token and not args.url else "the gateway"
                return self.error(f"{where} is unreachable: {exc}")
            ticker = asyncio.ensure_future(self._ticker())
            timeout = args.duration
            try:
                await asyncio.wait_for(self.stop.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self.stats.ended = self.stats.clock()
            if self.failure is None and shard.status != ShardStatus.CLOSED:
                try:
                    await asyncio.wait_for(shard.close(), 10.0)
                except asyncio.TimeoutError:
                    self.display.info("the gateway did not answer the close in 10 s")
            ticker.cancel()
            self.display.finish()
            if self.failure is not None:
                code = self.error(explain_failure(self.failure, intents=args.intents,
                                                  resuming=args.resume is not None))
                if self.stats.total:
                    self.display.print(self._summary())
                return code
            self.display.print(self._summary())
            return EXIT_OK
        finally:
            if ticker is not None:
                ticker.cancel()
            remove_signals()
            if self.sim is not None:
                await self.sim.stop()
            if self.writer is not None:
                self.writer.close()

    def _summary(self) -> str:
        shard = self.shard
        session = shard.session_id if shard is not None else None
        sequence = shard.sequence if shard is not None else None
        resume = note = None
        if session:
            url = None if self.sim is not None else (shard.resume_url or self.url)
            resume = resume_command(session, sequence, url=url, shard=self.shard_ids,
                                    encoding=self.args.encoding, compression=self.args.compression)
            if self.sim is not None:
                note = ("(the built-in simulator stopped with this run; to resume sessions, run "
                        "`fastshard simulate` and listen with --url)")
        return summary_text(self.stats, session_id=session, sequence=sequence, resume=resume, note=note)


def run_listen(args: argparse.Namespace) -> int:
    return asyncio.run(Listener(args, sys.stdout, sys.stderr).run())
