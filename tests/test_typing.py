"""The public API stays fully typed: mypy --strict over the modules users import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ["__init__.py", "shard.py", "errors.py", "gateway.py", "ratelimit.py", "close_codes.py", "codec.py",
          "opcodes.py",
          "intents.py", "identify_queue.py", "session_store.py", "rest.py", "manager.py", "sharding.py", "emitter.py", "cli/__init__.py", "cli/main.py",
          "testing/identify_limits.py", "testing/rest.py", "testing/__init__.py", "testing/world.py",
          "testing/traffic.py", "testing/commands.py", "testing/intents_filter.py",
          # fastshard.redis (the `redis` extra)
          "redis/__init__.py", "redis/keys.py", "redis/identify_queue.py", "redis/session_store.py",
          "redis/resp.py", "redis/publisher.py", "redis/consumer.py", "redis/commands.py", "redis/gateway.py",
          "redis/metrics.py", "redis/server.py", "cli/gateway.py", "cli/consume.py"]


def test_public_modules_pass_mypy_strict():
    pytest.importorskip("mypy")
    assert (ROOT / "fastshard" / "py.typed").exists()
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--ignore-missing-imports",
         "--no-incremental", *[str(ROOT / "fastshard" / name) for name in PUBLIC]],
        capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
