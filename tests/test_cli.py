"""The `fastshard` command line.

The pure parts (intents, argument parsing, formatting, the JSONL writer, the
/gateway/bot lookup against a loopback HTTP server) are tested in-process; the
commands themselves run as subprocesses (``python -m fastshard``) against the
gateway simulator, which mostly lives in this test process so the tests can
see what the gateway received and make it misbehave.
"""
from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from fastshard import intents
from fastshard.cli import bench as _cli_bench
from fastshard.rest import GatewayLookupError, fetch_gateway_bot
from fastshard.cli.listen import explain_failure
from fastshard.cli.output import (JsonlWriter, Stats, clean, event_line, resume_command, status_line,
                                   summarize, summary_text)
from fastshard.cli.main import build_parser, main, parse_event_names, parse_resume, parse_shard
from fastshard.errors import GatewayCloseError, InvalidSessionError
from fastshard.testing import GatewaySimulator

ROOT = Path(__file__).resolve().parent.parent


# -- intents ---------------------------------------------------------------------

def test_intents_follow_discords_bit_values():
    assert intents.INTENTS["GUILDS"] == 1
    assert intents.INTENTS["GUILD_MESSAGES"] == 1 << 9
    assert intents.INTENTS["MESSAGE_CONTENT"] == 1 << 15
    assert intents.INTENTS["AUTO_MODERATION_EXECUTION"] == 1 << 21
    assert intents.INTENTS["DIRECT_MESSAGE_POLLS"] == 1 << 25
    assert intents.PRIVILEGED == (1 << 1) | (1 << 8) | (1 << 15)
    assert intents.DEFAULT_INTENTS & intents.PRIVILEGED == 0
    assert intents.DEFAULT_INTENTS | intents.PRIVILEGED == intents.ALL_INTENTS


@pytest.mark.parametrize("text, value", [
    ("513", 513),
    ("0x201", 513),
    ("guilds,guild_messages", 513),
    ("GUILDS | Guild_Messages", 513),
    ("guilds+512", 513),
    ("guild_bans", 1 << 2),                 # former name of GUILD_MODERATION
    ("intent_guilds", 1),
    ("none", 0),
    ("privileged", (1 << 1) | (1 << 8) | (1 << 15)),
    ("default,message_content", intents.DEFAULT_INTENTS | 1 << 15),
])
def test_parse_intents_accepts_numbers_names_and_groups(text, value):
    assert intents.parse_intents(text) == value


def test_parse_intents_rejects_unknown_names_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown intent 'guild_mesages' \(did you mean guild_messages"):
        intents.parse_intents("guilds,guild_mesages")
    with pytest.raises(ValueError, match="negative"):
        intents.parse_intents("-1")
    with pytest.raises(ValueError, match="no intents"):
        intents.parse_intents(" , ")
    with pytest.raises(TypeError):
        intents.parse_intents(True)  # type: ignore[arg-type]


def test_intent_names_and_privileged_names():
    assert intents.intent_names(513) == ["GUILDS", "GUILD_MESSAGES"]
    assert intents.intent_names(1 | 1 << 30) == ["GUILDS", "1 << 30"]
    assert intents.privileged_names(intents.ALL_INTENTS) == ["GUILD_MEMBERS", "GUILD_PRESENCES", "MESSAGE_CONTENT"]
    assert intents.privileged_names(513) == []
    assert intents.portal_labels(["GUILD_MEMBERS"]) == ["Server Members Intent"]


# -- argument parsing ----------------------------------------------------------------

def test_parse_shard_resume_and_event_names():
    assert parse_shard("3/8") == (3, 8)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("8/8", "1", "a/b", "0/0", "-1/2"):
        with pytest.raises(Exception, match="ID/TOTAL|TOTAL|below"):
            parse_shard(bad)
    # session ids are opaque: only the last colon separates the sequence
    assert parse_resume("abc:def:42") == ("abc:def", 42)
    for bad in ("abc", "abc:", ":12", "abc:x"):
        with pytest.raises(Exception, match="SESSION:SEQ"):
            parse_resume(bad)
    assert parse_event_names("message_create, READY") == frozenset({"MESSAGE_CREATE", "READY"})
    with pytest.raises(Exception, match="not a gateway event name"):
        parse_event_names("MESSAGE CREATE!")


@pytest.mark.parametrize("argv, message", [
    ([], "required: COMMAND"),
    (["listen", "--shard", "2/2"], "shard ID must be below TOTAL"),
    (["listen", "--intents", "guilds,bogus"], "unknown intent 'bogus'"),
    (["listen", "--compression", "7"], "invalid choice"),
    (["listen", "--encoding", "xml"], "invalid choice"),
    (["listen", "--duration", "0"], "positive"),
    (["listen", "--url", "http://x"], "websocket URL"),
    (["listen", "--resume", "abc:1"], "--resume needs a gateway"),
    (["listen", "--url", "ws://127.0.0.1:1", "--simulate-drop-after", "3"], "only works with the built-in"),
    (["listen", "--token", "  "], "token is empty"),
    (["simulate", "--port", "70000"], "0-65535"),
    (["listen", "--nope"], "unrecognized arguments: --nope"),
])
def test_usage_errors_exit_2_with_a_message(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "usage: fastshard" in err


def test_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "from-env")
    args = build_parser().parse_args(["listen"])
    from fastshard.cli.main import _check_listen

    _check_listen(args)
    assert args.token == "from-env"
    assert args.intents == intents.DEFAULT_INTENTS


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["listen", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out and "1    gateway failure" in out and "2    usage error" in out


# -- formatting ----------------------------------------------------------------------

def test_summaries_are_short_and_terminal_safe():
    d = {"content": "hi\x1b[2J\x1b]0;pwned\x07 there\nnext", "channel_id": "42",
         "author": {"id": "7", "username": "ann\x1b[31m"}}
    line = event_line(12, "MESSAGE_CREATE", d)
    assert "\x1b" not in line and "\n" not in line and "\x07" not in line
    assert line.split()[:2] == ["12", "MESSAGE_CREATE"]
    assert "ann" in line and "in 42" in line and "hi" in line
    assert len(event_line(1, "MESSAGE_CREATE", {"content": "x" * 500}, width=80)) == 80
    # whatever shape the wire sends, a summary comes out
    for t, d in [("MESSAGE_CREATE", None), ("GUILD_CREATE", [1, 2]), ("READY", {"guilds": 5}),
                 (None, "text"), ("X", {"a": {"b": 1}}), ("PRESENCE_UPDATE", {"activities": [None]})]:
        assert isinstance(summarize(t, d), str)
    assert summarize("GUILD_CREATE", {"id": "1", "name": "Club", "member_count": 12, "channels": [{}, {}]}) \
        == "Club (1), 12 members, 2 channels"
    assert summarize("READY", {"session_id": "abc", "guilds": [{}, {}], "user": {"username": "bot"}}) \
        == "session abc, 2 guilds, as bot"
    assert summarize("SOMETHING_NEW", {"id": "5", "guild_id": "6", "big": [1]}) == "id=5 guild_id=6"
    assert clean("a\tb") == "a b"
    assert summarize("MESSAGE_REACTION_ADD", {"emoji": {"id": "9", "name": "party"}, "user_id": "3",
                                              "message_id": "4"}) == ":party: by user 3 on 4"
    assert summarize("VOICE_STATE_UPDATE", {"user_id": "3", "channel_id": None}) == "user 3 left voice"


def test_stats_status_line_and_summary():
    now = [100.0]
    stats = Stats(clock=lambda: now[0])
    for seq, t in enumerate(["READY", "GUILD_CREATE", "MESSAGE_CREATE", "MESSAGE_CREATE"], 1):
        stats.count(t, seq)
    assert stats.recent_rate() == 0.0
    now[0] = 102.0
    for _ in range(10):
        stats.count("TYPING_START", None)
    assert stats.recent_rate() == pytest.approx(5.0)
    assert stats.average_rate() == pytest.approx(7.0)
    assert stats.last_seq == 4
    line = status_line(status="CONNECTED", rate=5.0, total=14, seq=4, ping_ms=1.25, bytes_in=2000,
                       bytes_decoded=9000)
    assert "CONNECTED" in line and "14 events" in line and "seq 4" in line
    assert "ping 1.2 ms" in line and "in 2.0 kB" in line and "ratio 4.5x" in line
    assert "ping -" in status_line(status="CONNECTING", rate=0, total=0, seq=None, ping_ms=None, bytes_in=0,
                                   bytes_decoded=0)
    cmd = resume_command("sess", 77, url="wss://resume.example", shard=(1, 4), encoding="etf", compression=2)
    assert cmd == ("fastshard listen --resume sess:77 --url wss://resume.example --shard 1/4 "
                   "--encoding etf --compression 2")
    text = summary_text(stats, session_id="sess", sequence=77, resume=cmd)
    assert "14 events in 2.0 s (7.0 events/s on average)" in text
    assert "TYPING_START" in text and "MESSAGE_CREATE" in text
    assert "session sess, sequence 77" in text and cmd in text
    assert "no session was established" in summary_text(Stats(), session_id=None, sequence=None, resume=None)
    assert "cannot be resumed" in summary_text(stats, session_id=None, sequence=None, resume=None)


def test_failure_messages_say_what_to_do():
    bad_token = explain_failure(GatewayCloseError(4004, "Authentication failed."), intents=513, resuming=False)
    assert "rejected the token" in bad_token and "Reset Token" in bad_token
    asked = intents.parse_intents("guilds,guild_members,message_content")
    disallowed = explain_failure(GatewayCloseError(4014, "Disallowed intent(s)."), intents=asked, resuming=False)
    assert "GUILD_MEMBERS, MESSAGE_CONTENT" in disallowed and "GUILD_PRESENCES" not in disallowed
    assert "Server Members Intent, Message Content Intent" in disallowed
    assert "Privileged Gateway Intents" in disallowed
    invalid = explain_failure(InvalidSessionError("the resume attempt was refused (op 9 INVALID_SESSION, d=false)"
                                                  ": the session data was cleared; call connect() again"),
                              intents=1, resuming=True)
    assert "connect()" not in invalid and "without --resume" in invalid


def test_jsonl_writer_flushes_every_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier":true}\n')
    writer = JsonlWriter(str(path))
    writer.write({"op": 0, "t": "A", "s": 1, "d": {"id": "1"}})
    # visible to another reader before close: nothing waits in a buffer
    assert path.read_text().splitlines()[1] == '{"op":0,"t":"A","s":1,"d":{"id":"1"}}'
    writer.write({"op": 0, "t": "B", "s": 2, "d": {"big": 1 << 70, "raw": b"\xffx"}})
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"earlier": True}  # appended, not truncated
    assert lines[2]["d"] == {"big": 1 << 70, "raw": "\ufffdx"}


# -- GET /gateway/bot over a loopback HTTP server ------------------------------------

def _gateway_bot_answer(url: str = "wss://gateway.example", shards: int = 4, remaining: int = 999) -> dict:
    return {"url": url, "shards": shards,
            "session_start_limit": {"total": 1000, "remaining": remaining, "reset_after": 7_200_000,
                                    "max_concurrency": 1}}


class _GatewayBotHandler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    answer: dict = _gateway_bot_answer()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append(dict(self.headers))
        if self.headers.get("Authorization") != "Bot good-token":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"message": "401: Unauthorized", "code": 0}')
            return
        body = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway_bot_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatewayBotHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v10/gateway/bot"
    _GatewayBotHandler.answer = _gateway_bot_answer()
    server.shutdown()
    server.server_close()


async def test_gateway_bot_lookup(gateway_bot_api):
    info = await fetch_gateway_bot("Bot good-token", url=gateway_bot_api)
    assert (info.url, info.shards, info.session_start_remaining) == ("wss://gateway.example", 4, 999)
    assert _GatewayBotHandler.seen[-1]["Authorization"] == "Bot good-token"
    assert _GatewayBotHandler.seen[-1]["User-Agent"].startswith("DiscordBot (")
    with pytest.raises(GatewayLookupError, match=r"rejected the token \(HTTP 401"):
        await fetch_gateway_bot("bad-token", url=gateway_bot_api)


async def test_gateway_bot_lookup_unreachable():
    url = f"http://127.0.0.1:{_free_port()}/api/v10/gateway/bot"
    with pytest.raises(GatewayLookupError, match=f"could not reach {url}"):
        await fetch_gateway_bot("t", url=url, timeout=5)


# -- bench ---------------------------------------------------------------------------

def test_bench_without_the_suite_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(_cli_bench, "find_bench_root", lambda: None)
    assert main(["bench"]) == 1
    assert "benchmark suite was not found" in capsys.readouterr().err


def test_bench_runs_python_m_bench_with_the_arguments(monkeypatch, tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "__main__.py").write_text(
        "import sys, pathlib\npathlib.Path('ran.txt').write_text(' '.join(sys.argv[1:]))\nsys.exit(3)\n")
    monkeypatch.setattr(_cli_bench, "find_bench_root", lambda: tmp_path)
    assert main(["bench", "--quick", "x"]) == 3
    assert (tmp_path / "ran.txt").read_text() == "--quick x"


# -- helpers for the subprocess tests ----------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DISCORD_TOKEN", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- the commands, as subprocesses against the simulator ---------------------------------

EVENT_LINE = re.compile(r"^\s*(\d+|-) ([A-Z][A-Z0-9_]*)\s+(.*)$")


async def _start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastshard", *args, cwd=ROOT, env={**_env(), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _run(*args: str, timeout: float = 20.0, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await _start(*args, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        raise
    return proc.returncode, out.decode(), err.decode()


async def _wait_records(path: Path, n: int, timeout: float = 10.0) -> list[dict]:
    """The JSONL records once at least ``n`` are in the file (it is flushed per line)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return [json.loads(line) for line in lines]
        assert loop.time() < deadline, f"only {len(lines)} of {n} records after {timeout} s"
        await asyncio.sleep(0.02)


def _assert_every_sequence_once(records: list[dict]) -> list[int]:
    seqs = [r["s"] for r in records if r["s"] is not None]
    assert seqs == list(range(1, len(seqs) + 1)), "a sequence number is missing, repeated or out of order"
    assert all(r["op"] == 0 and isinstance(r["t"], str) for r in records)
    return seqs


def _event_lines(out: str) -> list[tuple[str, str, str]]:
    return [m.groups() for m in map(EVENT_LINE.match, out.splitlines()) if m]


async def test_listen_resumes_after_a_drop_and_sigint_prints_a_working_resume_command(tmp_path):
    path = tmp_path / "events.jsonl"
    async with GatewaySimulator(event_rate=300, heartbeat_interval=5, seed=7) as sim:
        proc = await _start("listen", "--url", sim.url, "--output", str(path))
        first = await sim.wait_connection(0, timeout=15)
        identify = await first.wait_for_op(2, timeout=15)
        assert identify["d"]["intents"] == intents.DEFAULT_INTENTS
        await _wait_records(path, 40)
        await first.drop()  # network loss: no close frame
        second = await sim.wait_connection(1)
        resume = await second.wait_for_op(6)
        records = await _wait_records(path, len(path.read_text().splitlines()) + 40)
        proc.send_signal(signal.SIGINT)
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 15)
        out, err = out_b.decode(), err_b.decode()
        print(out, "\n", err)  # shown by pytest if an assertion below fails
        assert proc.returncode == 0, err
        # The CLI closed the shard without a code that ends the session (None: the
        # close frame was lost in the TCP teardown, which also keeps it resumable).
        code, _ = await second.wait_closed()
        assert code not in (1000, 1001)

        records = [json.loads(line) for line in path.read_text().splitlines()]
        seqs = _assert_every_sequence_once(records)
        types = [r["t"] for r in records]
        assert types[0] == "READY" and types.count("READY") == 1 and types.count("RESUMED") == 1
        (session_id,) = sim.sessions
        assert not sim.sessions[session_id].invalidated
        assert records[0]["d"]["session_id"] == session_id
        # The RESUME carried the last sequence received before the drop, and the
        # events replayed after it are exactly the ones up to RESUMED.
        before = [r["s"] for r in records[: types.index("RESUMED")] if r["s"] is not None]
        assert resume["d"]["session_id"] == session_id and resume["d"]["token"] == "fastshard-cli"
        (replayed,) = re.findall(r" RESUMED +replayed (\d+) events", out)
        assert resume["d"]["seq"] + int(replayed) == max(before)

        lines = out.splitlines()
        assert lines[0].startswith(f"-- connecting to {sim.url}")
        shown = _event_lines(out)
        assert [int(s) for s, _, _ in shown if s != "-"] == seqs  # every event on its own line, in order
        assert "-- connection lost" in out
        assert f"-- summary: {len(records)} events" in out
        hint = f"fastshard listen --resume {session_id}:{seqs[-1]} --url {sim.resume_url}"
        assert hint in out
        assert "Traceback" not in err

        # The printed command resumes the session for real.
        code, out2, err2 = await _run(*hint.split()[1:], "--duration", "2")
        print(out2, "\n", err2)
        assert code == 0, err2
        third = sim.connections[2]
        assert third.path == "/resume"
        assert [p["op"] for p in third.received][:1] == [6]
        assert third.received[0]["d"]["seq"] == seqs[-1]
        assert "RESUMED" in out2 and f"-- summary:" in out2


async def test_listen_without_a_token_runs_the_simulator_and_survives_a_forced_resume(tmp_path):
    path = tmp_path / "events.jsonl"
    code, out, err = await _run("listen", "--rate", "400", "--duration", "1.5", "--simulate-drop-after", "80",
                                "--encoding", "etf", "--compression", "2", "--output", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("-- no token given: watching the built-in gateway simulator at ws://127.0.0.1:")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    seqs = _assert_every_sequence_once(records)
    assert len(seqs) > 200
    types = [r["t"] for r in records]
    assert "RESUMED" in types and types.index("RESUMED") >= 80  # dropped after the 80th event
    assert {"MESSAGE_CREATE", "GUILD_CREATE"} <= set(types)
    shown = _event_lines(out)
    assert len(shown) == len(records) and shown[0][1] == "READY"
    assert "-- connection lost" in out and "resumed 1 time(s)" in out
    assert "Traceback" not in err


async def test_bad_token_is_reported_with_exit_1():
    async with GatewaySimulator(token="the-right-token") as sim:
        code, out, err = await _run("listen", "--url", sim.url, "--token", "a-wrong-token")
        assert sim.connections[0].received[0]["d"]["token"] == "a-wrong-token"
        assert sim.connections[0].server_close_code == 4004
    assert code == 1
    assert "rejected the token (close 4004" in err
    assert "Traceback" not in err and "Traceback" not in out


async def test_disallowed_intents_name_the_privileged_intents_to_enable():
    async with GatewaySimulator(allowed_intents=intents.INTENTS["GUILD_PRESENCES"]) as sim:
        code, out, err = await _run("listen", "--url", sim.url, "--intents",
                                    "guilds,guild_members,guild_presences,message_content")
    assert code == 1
    assert "close 4014" in err
    assert "GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT" in err
    assert "Privileged Gateway Intents" in err and "Server Members Intent" in err
    assert "Traceback" not in err


async def test_unreachable_gateway_says_so_with_the_url():
    url = f"ws://127.0.0.1:{_free_port()}"
    code, out, err = await _run("listen", "--url", url)
    assert code == 1
    assert "unreachable" in err and url in err
    assert "Traceback" not in err


async def test_simulate_serves_other_processes_until_sigint():
    sim = await _start("simulate", "--rate", "100", "--guilds", "2")
    try:
        url = (await asyncio.wait_for(sim.stdout.readline(), 15)).decode().strip()
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", url)
        code, out, err = await _run("listen", "--url", url, "--duration", "1", "--events", "ready,guild_create")
        assert code == 0, err
        assert [t for _, t, _ in _event_lines(out)] == ["READY", "GUILD_CREATE", "GUILD_CREATE"]
        assert "MESSAGE_CREATE" in out.split("-- summary")[1]  # counted although not shown
        sim.send_signal(signal.SIGINT)
        rest, sim_err = await asyncio.wait_for(sim.communicate(), 10)
    finally:
        if sim.returncode is None:
            sim.kill()
    assert sim.returncode == 0, sim_err.decode()
    assert "stopped after 1 connection(s), 1 session(s)" in rest.decode()


async def test_bad_flags_exit_2_from_the_real_entry_point():
    code, out, err = await _run("listen", "--compression", "9")
    assert code == 2
    assert "invalid choice: 9" in err and "usage: fastshard listen" in err


async def test_listen_with_a_token_asks_discord_for_the_gateway_and_shard_count(gateway_bot_api):
    async with GatewaySimulator(token="good-token", event_rate=100) as sim:
        _GatewayBotHandler.answer = _gateway_bot_answer(url=sim.url, shards=3)
        code, out, err = await _run("listen", "--api-url", gateway_bot_api, "--duration", "0.8",
                                    env={"DISCORD_TOKEN": "good-token"})
        assert code == 0, err
        assert _GatewayBotHandler.seen[-1]["Authorization"] == "Bot good-token"
        identify = sim.connections[0].received[0]
        assert identify["op"] == 2 and identify["d"]["shard"] == [0, 3] and identify["d"]["token"] == "good-token"
    first = out.splitlines()[0]
    assert first.startswith(f"-- connecting to Discord at {sim.url} as shard 0/3 (Discord recommends 3 shards")
    assert "--shard 0/3" in out  # the resume command keeps the shard

    code, out, err = await _run("listen", "--api-url", gateway_bot_api, "--token", "bad-token")
    assert code == 1
    assert "Discord rejected the token (HTTP 401" in err and "Traceback" not in err

    _GatewayBotHandler.answer = _gateway_bot_answer(url=sim.url, remaining=0)
    code, out, err = await _run("listen", "--api-url", gateway_bot_api, "--token", "good-token")
    assert code == 1
    assert "no session starts left today" in err and "resets in 2.0 h" in err


async def test_unknown_session_and_invalid_intents_are_explained():
    async with GatewaySimulator() as sim:
        code, out, err = await _run("listen", "--url", sim.url, "--resume", "no-such-session:5")
        assert sim.connections[0].received[0]["op"] == 6
        assert code == 1
        assert "the session cannot continue" in err and "run again without --resume" in err
        assert "connect()" not in err and "Traceback" not in err

        code, out, err = await _run("listen", "--url", sim.url, "--intents", "guilds,0x40000000")
        assert code == 1
        assert "close 4013" in err and "GUILDS, 1 << 30" in err and "Traceback" not in err
