"""`fastshard listen --shards`: a ShardManager from the command line, against the simulator."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from fastshard.cli.main import main
from fastshard.testing import GatewaySimulator

ROOT = Path(__file__).resolve().parent.parent
SHARD_LINE = re.compile(r"^\[(\d+)\]\s+(\d+) ([A-Z][A-Z0-9_]*)")


async def _run(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("DISCORD_TOKEN", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastshard", *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_listen_shards_prints_events_per_shard_and_resumes_from_the_sessions_file(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions.json"
    async with GatewaySimulator(guilds=1, heartbeat_interval=1.0) as sim:
        code, out, err = await _run("listen", "--shards", "0-2", "--shard-count", "3", "--max-concurrency", "3",
                                    "--url", sim.url, "--duration", "1.5", "--sessions", str(sessions))
        assert code == 0, err
        lines = [m.groups() for m in map(SHARD_LINE.match, out.splitlines()) if m]
        assert {sid for sid, _, t in lines if t == "GUILD_CREATE"} == {"0", "1", "2"}
        assert "identifies spent 3" in out
        stored = json.loads(sessions.read_text())
        assert sorted(stored) == ["0", "1", "2"]
        identifies = sum(1 for c in sim.connections for p in c.received if p.get("op") == 2)

        code, out, err = await _run("listen", "--shards", "0-2", "--shard-count", "3", "--max-concurrency", "3",
                                    "--url", sim.url, "--duration", "1", "--sessions", str(sessions))
        assert code == 0, err
        assert "identifies spent 0, resumes 3" in out
        assert sum(1 for c in sim.connections for p in c.received if p.get("op") == 2) == identifies
        assert sum(1 for c in sim.connections for p in c.received if p.get("op") == 6) == 3


@pytest.mark.parametrize("argv, message", [
    (["listen", "--shard-count", "4"], "--shard-count goes with --shards"),
    (["listen", "--sessions", "x.json"], "--sessions goes with --shards"),
    (["listen", "--shards", "0-3", "--shard", "0/4"], "--sessions FILE instead of --shard/--resume"),
    (["listen", "--shards", "0-4", "--shard-count", "4"], "ids must be below --shard-count"),
    (["listen", "--shards", "x"], "expected auto, or ids such as 0-15"),
])
def test_listen_shards_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


async def test_listen_shards_auto_without_a_token_runs_a_sharded_simulator() -> None:
    code, out, err = await _run("listen", "--shards", "auto", "--shard-count", "4", "--max-concurrency", "2",
                                "--sim-identify-interval", "0.05", "--duration", "1.5")
    assert code == 0, err
    assert "no token given: watching the built-in gateway simulator" in out.splitlines()[0]
    lines = [m.groups() for m in map(SHARD_LINE.match, out.splitlines()) if m]
    assert {sid for sid, _, t in lines if t == "GUILD_CREATE"} == {"0", "1", "2", "3"}
    assert "4 shards of 4, max_concurrency 2" in out and "identifies spent 4" in out
