"""The ``fastshard`` command: ``listen``, ``simulate`` and ``bench``.

This module only parses and validates arguments; the work is in
``listen`` (watch a gateway), ``simulate`` (run the simulator) and
``bench`` (run the benchmark suite), imported only when needed so that
``fastshard --help`` stays instant.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from ..intents import DEFAULT_INTENTS, parse_intents

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_FAILURE = 1      # the gateway (or the network, or Discord's HTTP API) failed
EXIT_USAGE = 2        # argparse's code for bad arguments
EXIT_INTERRUPTED = 130  # a second Ctrl-C while closing

_EXIT_CODES = """\
exit status:
  0    success (ended by Ctrl-C, --duration, or the simulator stopped on request)
  1    gateway failure: token rejected, disallowed intents, gateway unreachable, session invalid, ...
  2    usage error: unknown option or invalid value
  130  a second Ctrl-C interrupted the clean shutdown
"""

_LISTEN_EPILOG = """\
examples:
  fastshard listen                          no token: watch the built-in simulator
  DISCORD_TOKEN=... fastshard listen        watch shard 0 of your bot on Discord
  fastshard listen --events MESSAGE_CREATE --output events.jsonl
  fastshard listen --url ws://127.0.0.1:8765     a gateway started with `fastshard simulate`
  fastshard listen --resume SESSION:SEQ --url RESUME_URL   (printed in the summary on Ctrl-C)

intents: a number (513, 0x201) or names separated by commas (guilds,guild_messages),
  case-insensitive; also all, default (every non-privileged intent), privileged, none.
  Privileged intents (guild_members, guild_presences, message_content) must be enabled
  for the app in the developer portal (Bot page: Privileged Gateway Intents).

Prefer DISCORD_TOKEN to --token: command lines are visible to other users of the machine.

""" + _EXIT_CODES


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {text}")
    return value


def _intents(text: str) -> int:
    try:
        return parse_intents(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_shard(text: str) -> tuple[int, int]:
    """``"ID/TOTAL"`` -> ``(id, total)`` with ``0 <= id < total``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected ID/TOTAL such as 0/1 or 3/8, got {text!r}")
    shard_id, total = int(match[1]), int(match[2])
    if total < 1:
        raise argparse.ArgumentTypeError(f"TOTAL must be at least 1, got {text!r}")
    if shard_id >= total:
        raise argparse.ArgumentTypeError(f"shard ID must be below TOTAL (IDs run 0..{total - 1}), got {text!r}")
    return shard_id, total


def parse_resume(text: str) -> tuple[str, int]:
    """``"SESSION:SEQ"`` -> ``(session_id, sequence)``."""
    session, sep, seq = text.rpartition(":")
    if not sep or not session or not seq.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected SESSION:SEQ as printed in the summary (e.g. 9f2c...:1234), got {text!r}")
    return session, int(seq)


def parse_event_names(text: str) -> frozenset[str]:
    """``"message_create,READY"`` -> ``{"MESSAGE_CREATE", "READY"}``."""
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected event names such as MESSAGE_CREATE,GUILD_CREATE")
    for name in names:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a gateway event name (like MESSAGE_CREATE)")
    return frozenset(names)


def _shard_ids(text: str) -> list[int] | str:
    if text.strip().lower() == "auto":
        return "auto"
    from ..sharding import parse_shard_ids

    try:
        return parse_shard_ids(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected auto, or ids such as 0-15 or 0-3,8)") from None


def _gateway_url(text: str) -> str:
    if not re.match(r"^(wss?)://[^/\s]+", text):
        raise argparse.ArgumentTypeError(f"expected a websocket URL such as wss://gateway.discord.gg "
                                         f"or ws://127.0.0.1:8765, got {text!r}")
    return text


def _add_simulator_options(parser: "argparse.ArgumentParser | argparse._ArgumentGroup") -> None:
    parser.add_argument("--guilds", type=_non_negative_int, default=3, metavar="N",
                        help="guilds the simulated bot is in (default: 3)")
    parser.add_argument("--rate", type=_non_negative_float, default=50.0, metavar="EVENTS_PER_S",
                        help="dispatches per second streamed to each connection after READY (default: 50)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the generated traffic; the same seed gives the same events (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastshard",
        description="Watch a Discord gateway shard live: on Discord with a bot token,\n"
                    "or on the built-in gateway simulator without one.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listen = commands.add_parser(
        "listen", help="connect one shard and watch its events",
        description="Connect one shard and watch its events.\n\n"
                    "With --token or DISCORD_TOKEN it connects to Discord; without a token it starts the\n"
                    "gateway simulator on loopback and connects to it. On a terminal a status line shows\n"
                    "events/s, sequence, ping, bytes in and compression ratio; piped, it prints one line\n"
                    "per event (sequence, type, summary). Ctrl-C closes the shard cleanly (the session\n"
                    "stays resumable) and prints a summary with the command that resumes it.",
        epilog=_LISTEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    listen.set_defaults(subparser=listen)  # so cross-option checks report on the right usage line
    conn = listen.add_argument_group("connection")
    conn.add_argument("--token", default=None,
                      help="bot token (default: the DISCORD_TOKEN environment variable)")
    conn.add_argument("--url", type=_gateway_url, default=None,
                      help="connect to this gateway instead of asking Discord for one, e.g. "
                           "ws://127.0.0.1:8765 from `fastshard simulate` (works without a token)")
    # Testing hook: where GET /gateway/bot is asked (a loopback HTTP server in the tests).
    conn.add_argument("--api-url", default=None, help=argparse.SUPPRESS)
    conn.add_argument("--intents", type=_intents, default=DEFAULT_INTENTS,
                      help="a number or names like guilds,guild_messages (default: every non-privileged "
                           f"intent, {DEFAULT_INTENTS})")
    conn.add_argument("--shard", type=parse_shard, default=None, metavar="ID/TOTAL",
                      help="which shard to connect (default: 0 of the count Discord recommends; 0/1 otherwise)")
    conn.add_argument("--encoding", choices=("json", "etf"), default="json", help="gateway encoding (default: json)")
    many = listen.add_argument_group("many shards (a ShardManager)")
    many.add_argument("--shards", type=_shard_ids, default=None, metavar="auto|IDS",
                      help="run a ShardManager: 'auto' for every shard Discord recommends, or ids such as "
                           "0-15 or 0-3,8; shows a live table of shards")
    many.add_argument("--shard-count", type=_positive_int, default=None, metavar="N",
                      help="with --shards: the total shard count (default: what GET /gateway/bot recommends)")
    many.add_argument("--max-concurrency", type=_positive_int, default=None, metavar="M",
                      help="with --shards: IDENTIFYs allowed per 5 s (default: from GET /gateway/bot)")
    many.add_argument("--sessions", default=None, metavar="FILE.json",
                      help="with --shards: resume the sessions stored in this file and save them there on "
                           "Ctrl-C, so the next run resumes instead of identifying")
    conn.add_argument("--compression", type=int, choices=(0, 1, 2, 3), default=0,
                      help="0 none, 1 payload zlib, 2 zlib-stream, 3 zstd-stream (default: 0)")
    conn.add_argument("--resume", type=parse_resume, default=None, metavar="SESSION:SEQ",
                      help="resume this session instead of identifying a new one")
    show = listen.add_argument_group("output")
    show.add_argument("--events", type=parse_event_names, default=None, metavar="NAME,...",
                      help="only show these event types (the --output file still gets every event)")
    show.add_argument("--output", default=None, metavar="FILE.jsonl",
                      help="append every event to this file as one JSON object per line, flushed per line")
    show.add_argument("--duration", type=_positive_float, default=None, metavar="SECONDS",
                      help="stop after this many seconds, like Ctrl-C")
    show.add_argument("-q", "--quiet", action="store_true",
                      help="no line per event; only the status line (on a terminal) and the summary")
    show.add_argument("--debug", action="store_true", help="print the shard's debug messages to stderr")
    sim = listen.add_argument_group("simulator (used when there is no token and no --url)")
    _add_simulator_options(sim)
    # Testing hook: make the in-process simulator drop the TCP connection once,
    # after N events, so the resume path can be exercised end to end.
    sim.add_argument("--simulate-drop-after", type=_positive_int, default=None, help=argparse.SUPPRESS)
    # Testing hook: the simulator's identify interval for --shards (Discord's is 5 s).
    sim.add_argument("--sim-identify-interval", type=_positive_float, default=5.0, help=argparse.SUPPRESS)

    simulate = commands.add_parser(
        "simulate", help="run the gateway simulator alone, for your own bot",
        description="Run the Discord gateway simulator until Ctrl-C, so a bot can connect to it.\n"
                    "The first line printed is its ws:// URL: point the bot's gateway URL there\n"
                    "(with fastshard: WebsocketShard(url=...) or `fastshard listen --url ...`).\n"
                    "The second is its REST base (http://.../api/v10), serving GET /gateway/bot.",
        epilog=_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.set_defaults(subparser=simulate)
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    simulate.add_argument("--port", type=_port, default=0, help="port to listen on (default: 0, any free port)")
    _add_simulator_options(simulate)
    simulate.add_argument("--heartbeat-interval", type=_positive_float, default=41.25, metavar="SECONDS",
                          help="heartbeat interval announced in HELLO (default: 41.25, like Discord)")
    simulate.add_argument("--require-token", default=None, metavar="TOKEN",
                          help="accept only this token; others are closed with 4004 (default: accept any)")
    simulate.add_argument("--allowed-intents", type=_intents, default=None, metavar="INTENTS",
                          help="privileged intents enabled for the simulated app; asking for another "
                               "privileged intent is closed with 4014 (default: all enabled)")
    shard = simulate.add_argument_group(
        "sharding (given --shards or --max-concurrency, Discord's session start rules are enforced)")
    shard.add_argument("--shards", type=_positive_int, default=None, metavar="N",
                       help="the shard count GET /gateway/bot recommends; the bot is then in N x --guilds "
                            "guilds, routed by (guild_id >> 22) %% num_shards (default: unsharded)")
    shard.add_argument("--max-concurrency", type=_positive_int, default=None, metavar="M",
                       help="IDENTIFYs allowed per --identify-interval per rate limit key "
                            "(shard_id %% M); faster ones get op 9 (default: 1)")
    shard.add_argument("--identify-interval", type=_non_negative_float, default=5.0, metavar="SECONDS",
                       help="seconds between two IDENTIFYs of one rate limit key (default: 5, like Discord)")
    shard.add_argument("--session-start-limit", type=_non_negative_int, default=1000, metavar="N",
                       help="IDENTIFYs allowed per 24 hours; one more ends every session and resets the "
                            "token (default: 1000)")
    shard.add_argument("--max-guilds-per-shard", type=_positive_int, default=2500, metavar="N",
                       help="a shard that would hold more guilds is closed 4011 (default: 2500)")

    bench = commands.add_parser(
        "bench", help="run the benchmark suite (python -m bench)",
        description="Run the benchmark suite (`python -m bench`) from a source checkout; "
                    "arguments after `bench` are passed on to it.",
        add_help=False)  # so `fastshard bench --help` shows the suite's own options
    bench.set_defaults(subparser=bench)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark suite")

    # fastshard.redis: `gateway` and `consume` (their modules hold the options and the work).
    from . import consume as consume_cli, gateway as gateway_cli
    common = {"positive_int": _positive_int, "positive_float": _positive_float, "port": _port,
              "intents": _intents, "default_intents": DEFAULT_INTENTS, "event_names": parse_event_names}
    gateway_cli.add_parser(commands, common)
    consume_cli.add_parser(commands, common)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fastshard")
    except Exception:  # running from a checkout that was never installed
        return "(not installed)"


def _check_listen(args: argparse.Namespace) -> None:
    """Cross-option rules argparse cannot express; errors exit with status 2."""
    listen: argparse.ArgumentParser = args.subparser
    args.token = args.token if args.token is not None else os.environ.get("DISCORD_TOKEN") or None
    if args.token is not None:
        args.token = args.token.strip()
        if not args.token:
            listen.error("the token is empty (check --token or DISCORD_TOKEN)")
    simulated = args.token is None and args.url is None
    if args.resume is not None and simulated:
        listen.error("--resume needs a gateway that still holds the session: give --url (the resume URL "
                     "printed in the summary) or a token")
    if args.simulate_drop_after is not None and not simulated:
        listen.error("--simulate-drop-after only works with the built-in simulator (no token, no --url)")
    if args.shards is None:
        for option in ("shard_count", "max_concurrency", "sessions"):
            if getattr(args, option) is not None:
                listen.error(f"--{option.replace('_', '-')} goes with --shards")
    else:
        if args.shard is not None or args.resume is not None:
            listen.error("--shards runs many shards: use --sessions FILE instead of --shard/--resume")
        if args.simulate_drop_after is not None:
            listen.error("--simulate-drop-after works with one shard, not with --shards")
        args.shard_ids = None if args.shards == "auto" else args.shards
        if args.shard_ids is not None and args.shard_count is not None and max(args.shard_ids) >= args.shard_count:
            listen.error(f"--shards holds {max(args.shard_ids)}, but ids must be below --shard-count "
                         f"({args.shard_count})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastshard`` console script; returns the exit status."""
    parser = build_parser()
    # parse_known_args: `bench` passes options it does not know on to the suite
    # (argparse's REMAINDER does not catch a leading "--option").
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = [*extra, *args.args]
    try:
        if getattr(args, "run", None) is not None:  # gateway, consume
            return int(args.run(args))
        if args.command == "listen":
            _check_listen(args)
            if args.shards is not None:
                from .listen_many import run_listen_many

                return run_listen_many(args)
            from .listen import run_listen

            return run_listen(args)
        if args.command == "simulate":
            from .simulate import run_simulate

            return run_simulate(args)
        from .bench import run_bench

        return run_bench(args.args)
    except KeyboardInterrupt:
        # Only reached on a second Ctrl-C: the first one already asked for a clean close.
        print("\nfastshard: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
