"""A throwaway redis-server for tests, benchmarks and examples: a free port, a temp dir, stopped on exit.

Not for production (there, run Redis as your platform does); it is how the
test suite and ``bench/`` get a real server without a fixed port.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on loopback.

    ``persistence=True`` turns the AOF on (fsync always), so a ``stop()`` and
    ``start()`` keep everything Redis acknowledged; ``False`` keeps nothing
    (benchmarks).  ``directory`` defaults to a new temp dir, removed by ``stop()``.
    """

    def __init__(self, directory: str | Path | None = None, *, persistence: bool = True) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="fastshard-redis-") if directory is None else directory)
        self.persistence = persistence
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistence else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", *durability, "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}: {tail}")
            time.sleep(0.02)

    def command(self, *args: str) -> bytes:
        """One command over a plain socket; the raw RESP reply (up to 64 KiB)."""
        packed = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode()) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(packed)
            return s.recv(1 << 16)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis writes its AOF out and exits)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def remove(self) -> None:
        """Stop, and delete the data directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()
