"""Session stores: what a restart needs to RESUME instead of identifying."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fastshard import FileSessionStore, MemorySessionStore, SessionInfo

INFO = SessionInfo("abc", 42, "wss://resume.example/", 4)


async def test_memory_store_round_trip() -> None:
    store = MemorySessionStore()
    assert await store.load(0) is None
    await store.save(0, INFO)
    assert await store.load(0) == INFO
    await store.delete(0)
    assert await store.load(0) is None


async def test_file_store_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    store = FileSessionStore(path)
    await store.save(3, INFO)
    await store.save(4, SessionInfo("def", None, None, 4))
    again = FileSessionStore(path)
    assert await again.load(3) == INFO
    assert await again.load(4) == SessionInfo("def", None, None, 4)
    await again.delete(3)
    assert await FileSessionStore(path).load(3) is None
    assert [p.name for p in tmp_path.iterdir()] == ["sessions.json"]  # no temporary file left behind


async def test_file_store_crash_mid_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sessions.json"
    await FileSessionStore(path).save(0, INFO)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    store = FileSessionStore(path)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        await store.save(1, SessionInfo("new", 1, None, 4))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sessions.json"]


async def test_file_store_coalesces_a_storm_of_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSessionStore(tmp_path / "s.json")
    writes = 0
    real = store._write

    def counting(sessions: dict[int, SessionInfo]) -> None:
        nonlocal writes
        writes += 1
        real(sessions)

    monkeypatch.setattr(store, "_write", counting)
    await asyncio.gather(*(store.save(i, SessionInfo(f"s{i}", i, None, 500)) for i in range(500)))
    assert writes < 20, writes
    assert await FileSessionStore(tmp_path / "s.json").load_all() == {i: SessionInfo(f"s{i}", i, None, 500)
                                                                    for i in range(500)}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"0": {"session_id": 5}}',
                                     b'{"0": {"session_id": "a", "sequence": -1, "shard_count": 1}}'])
async def test_file_store_refuses_a_broken_file_by_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.json"):
        await FileSessionStore(path).load(0)
