"""Child processes of the suite: servers that print ``PORT n`` and line-protocol workers.

Every child runs ``python -m bench.<module>`` from the repository root with
the root on ``PYTHONPATH``, so the suite works from a checkout without
installing ``bench``.  Children end when their stdin closes; ``stop()`` closes
it, waits, and kills only a child that does not exit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Child", "Server", "Worker", "run_json"]

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Child:
    """A ``python -m bench.<module>`` child with piped stdin/stdout; stderr kept in a file."""

    def __init__(self, module: str, *args: str) -> None:
        self.name = f"bench.{module} {' '.join(args)}".strip()
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, env=_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, bufsize=1)

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.seek(0)
        return "".join(self._stderr.readlines()[-lines:]).strip()

    def died(self, what: str) -> RuntimeError:
        code = self.proc.poll()
        return RuntimeError(f"{self.name} {what} (exit code {code}); its stderr ends with:\n{self.stderr_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


class Server(Child):
    """A server child: waits for its ``PORT n`` line, then collects its other lines."""

    def __init__(self, module: str, *args: str) -> None:
        super().__init__(module, *args)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise self.died(f"did not start (printed {line!r})")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


class Worker(Child):
    """A worker child answering one JSON line per JSON command line."""

    def request(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self.died("is gone") from None
        line = self.proc.stdout.readline()
        if not line:
            raise self.died("exited instead of answering")
        return json.loads(line)  # type: ignore[no-any-return]


def run_json(module: str, *args: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run a one-shot child that prints one JSON line; its result or an ``error`` entry."""
    try:
        done = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"bench.{module} timed out after {timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        return {"error": f"bench.{module} failed (exit code {done.returncode}): {tail}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]
