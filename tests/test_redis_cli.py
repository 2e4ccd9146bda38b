"""`fastshard gateway` and `fastshard consume` against `fastshard simulate` and a real redis-server."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastshard.cli.gateway import parse_shard_ids, split_shards
from fastshard.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, DISCORD_TOKEN="test-token", PYTHONPATH=str(ROOT))


def fastshard(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "fastshard", *args], env=ENV, **kw)


def test_gateway_and_consume_against_fastshard_simulate(redis_server: Any) -> None:
    sim = fastshard("simulate", "--guilds", "2", "--rate", "50", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs = [sim]
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().decode().split()[0]
        assert url.startswith("ws://"), url
        procs.append(fastshard("gateway", "--redis", redis_server.url, "--url", url, "--shard-count", "2",
                               "--max-concurrency", "1", "--identify-interval", "0.1", "--compression", "2",
                               stderr=subprocess.DEVNULL))
        consume = fastshard("consume", "--redis", redis_server.url, "--group", "debug", stdout=subprocess.PIPE)
        procs.append(consume)
        assert consume.stdout is not None
        lines = [orjson.loads(consume.stdout.readline()) for _ in range(60)]
    finally:
        for proc in reversed(procs):
            if proc.stdout is not None:
                proc.stdout.close()  # a writer blocked on a full pipe gets EPIPE instead
            proc.terminate()
        for proc in procs:
            proc.wait(15)
    assert {line["shard"] for line in lines} == {0, 1}
    for shard_id in (0, 1):
        seqs = [line["seq"] for line in lines if line["shard"] == shard_id]
        assert seqs == sorted(seqs) and seqs[0] == 1  # from the start of the stream, in order
        names = [line["t"] for line in lines if line["shard"] == shard_id]
        assert names[0] == "READY"
    assert all("d" in line for line in lines)


def test_gateway_asks_gateway_bot_and_seeds_the_shared_budget(redis_server: Any) -> None:
    """No --url/--shard-count: GET /gateway/bot of `fastshard simulate --shards 2` says how many."""
    import redis

    sim = fastshard("simulate", "--shards", "2", "--max-concurrency", "2", "--guilds", "2", "--rate", "0",
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        api_url = sim.stdout.readline().decode().split()[0]
        assert api_url.startswith("http://"), api_url
        gateway = fastshard("gateway", "--redis", redis_server.url, "--api-url", api_url,
                            "--identify-interval", "0.1", stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 20
        while client.hlen("{fastshard}:session:0") == 0 or client.hlen("{fastshard}:session:1") == 0:
            assert time.monotonic() < deadline, "the shards did not become READY"
            time.sleep(0.05)
        budget = {k.decode(): int(v) for k, v in client.hgetall("{fastshard}:identify:budget").items()}
        assert client.get("{fastshard}:shard_count") == b"2"
        assert budget["total"] == 1000 and budget["remaining"] == 1000 - 2  # the two IDENTIFYs were counted
        client.close()
    finally:
        for proc in (gateway, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(15)


def test_shard_ranges_and_the_split_over_processes() -> None:
    assert parse_shard_ids("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    # Cut only at multiples of max_concurrency, so one process's shards fill whole buckets rounds.
    assert split_shards(list(range(16)), 3, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15]]
    assert split_shards(list(range(4)), 3, 4) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("argv, message", [
    (["gateway", "--redis", "redis://x", "--shards", "3-1"], "expected shard ids"),
    (["gateway", "--redis", "redis://x", "--shards", "0-9", "--shard-count", "4", "--url", "ws://x",
      "--max-concurrency", "1", "--token", "t"], "--shard-count is 4"),
    (["consume", "--group", "g"], "--redis"),
])
def test_usage_errors_name_the_option(argv: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
