"""Where a shard's session lives between processes: so a restart RESUMEs instead of identifying.

A session Discord closed with anything but 1000/1001 stays resumable for a
while (about 90 s was observed); a process that saved ``SessionInfo`` before
it stopped can pick the session back up within that window and spend no
session start.  The manager saves at READY, at RESUMED and at close (with
the sequence at close), never per dispatch: that would be a write per event.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

__all__ = ["SessionInfo", "SessionStore", "MemorySessionStore", "FileSessionStore"]


@dataclass(frozen=True)
class SessionInfo:
    """What RESUME needs: the session, the last sequence, where to resume, and the shard count it was made with."""

    session_id: str
    sequence: int | None
    resume_url: str | None
    shard_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SessionInfo:
        """Raises ValueError for anything that is not a stored session."""
        if not isinstance(data, dict):
            raise ValueError(f"a stored session must be an object, not {type(data).__name__}")
        session_id, sequence = data.get("session_id"), data.get("sequence")
        resume_url, shard_count = data.get("resume_url"), data.get("shard_count")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"stored session_id must be a non-empty string, not {session_id!r}")
        if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0):
            raise ValueError(f"stored sequence must be an int >= 0 or null, not {sequence!r}")
        if resume_url is not None and not isinstance(resume_url, str):
            raise ValueError(f"stored resume_url must be a string or null, not {resume_url!r}")
        if isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1:
            raise ValueError(f"stored shard_count must be an int >= 1, not {shard_count!r}")
        return cls(session_id, sequence, resume_url, shard_count)


@runtime_checkable
class SessionStore(Protocol):
    """Async storage of one ``SessionInfo`` per shard id."""

    async def load(self, shard_id: int) -> SessionInfo | None: ...

    async def save(self, shard_id: int, info: SessionInfo) -> None: ...

    async def delete(self, shard_id: int) -> None: ...


class MemorySessionStore:
    """Sessions in a dict: they survive a shard's reconnects, not the process."""

    def __init__(self) -> None:
        self.sessions: dict[int, SessionInfo] = {}

    async def load(self, shard_id: int) -> SessionInfo | None:
        return self.sessions.get(shard_id)

    async def save(self, shard_id: int, info: SessionInfo) -> None:
        self.sessions[shard_id] = info

    async def delete(self, shard_id: int) -> None:
        self.sessions.pop(shard_id, None)


class FileSessionStore:
    """Sessions in one JSON file, ``{"<shard_id>": {session_id, sequence, resume_url, shard_count}}``.

    Every write goes to a temporary file in the same folder, is fsynced and
    then atomically replaces the old one (and the folder is fsynced), so a
    crash mid-write leaves either the old file or the new one, never half of
    either.  An unreadable file is an error that names it, not an empty store.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._sessions: dict[int, SessionInfo] | None = None
        self._lock = asyncio.Lock()
        # Saves coalesce: a write takes every change made before it started, so a
        # READY storm of N shards costs a few writes, not N (each of the whole file).
        self._changes = 0
        self._written = 0

    def _read(self) -> dict[int, SessionInfo]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("the file must hold a JSON object keyed by shard id")
            return {int(key): SessionInfo.from_dict(value) for key, value in data.items()}
        except ValueError as exc:
            raise ValueError(f"session file {str(self.path)!r} is not a fastshard session store: {exc}") from exc

    def _write(self, sessions: dict[int, SessionInfo]) -> None:
        data = orjson.dumps({str(k): v.to_dict() for k, v in sorted(sessions.items())}, option=orjson.OPT_INDENT_2)
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    async def _sessions_now(self) -> dict[int, SessionInfo]:
        if self._sessions is None:
            self._sessions = await asyncio.to_thread(self._read)
        return self._sessions

    async def _flush(self, change: int) -> None:
        """Return once change number ``change`` is on disk (written by this call or a later one)."""
        async with self._lock:
            if self._written >= change:
                return
            assert self._sessions is not None
            latest, snapshot = self._changes, dict(self._sessions)
            await asyncio.to_thread(self._write, snapshot)
            self._written = latest

    async def _change(self, update: dict[int, SessionInfo | None]) -> None:
        async with self._lock:
            sessions = await self._sessions_now()
        for shard_id, info in update.items():
            if info is None:
                sessions.pop(shard_id, None)
            else:
                sessions[shard_id] = info
        self._changes += 1
        await self._flush(self._changes)

    async def load(self, shard_id: int) -> SessionInfo | None:
        async with self._lock:
            return (await self._sessions_now()).get(shard_id)

    async def load_all(self) -> dict[int, SessionInfo]:
        """Every stored session (one read of the file)."""
        async with self._lock:
            return dict(await self._sessions_now())

    async def save(self, shard_id: int, info: SessionInfo) -> None:
        await self._change({shard_id: info})

    async def save_many(self, infos: dict[int, SessionInfo]) -> None:
        """Save several sessions in one write (the manager's close saves every shard at once)."""
        await self._change(dict(infos))

    async def delete(self, shard_id: int) -> None:
        await self._change({shard_id: None})
