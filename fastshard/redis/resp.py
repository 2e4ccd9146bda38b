"""The publish batch, packed as RESP by hand: the one hot path that skips redis-py.

redis-py packs each argument through Python-level encoding (about 10 us of
client CPU per XADD with four fields, measured in ``bench/bench_redis.py``);
appending ``$len\\r\\n...\\r\\n`` to one ``bytearray`` costs about a tenth of
that.  A batch is the arguments of one EVALSHA of the publish script (one
command, one reply, however many events): the key list is only known when
the batch is sealed, so events refer to their stream by index.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PublishBatch", "pack_command"]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def pack_command(*args: bytes) -> bytes:
    """A whole RESP command from bytes arguments (for the small, rare parts)."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


class PublishBatch:
    """Events (and session checkpoints) of one EVALSHA, in arrival order."""

    __slots__ = ("buf", "nargs", "count", "shards", "index", "last", "counts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.nargs = 0
        self.count = 0
        self.shards: list[int] = []
        # shard id -> its stream's argument prefix (the 1-based key index as a bulk string)
        self.index: dict[int, bytes] = {}
        # shard id -> highest sequence in this batch
        self.last: dict[int, int] = {}
        # shard id -> events in this batch (for the metrics)
        self.counts: dict[int, int] = {}

    def _key(self, shard_id: int) -> bytes:
        self.shards.append(shard_id)
        key = _bulk(b"%d" % len(self.shards))
        self.index[shard_id] = key
        return key

    def add(self, shard_id: int, name: bytes, sequence: int, raw: Any) -> None:
        """``name`` is the event name already packed as a bulk string."""
        key = self.index.get(shard_id)
        if key is None:
            key = self._key(shard_id)
        seq = b"%d" % sequence
        buf = self.buf
        buf += b"%b$%d\r\n%b\r\n%b$%d\r\n" % (key, len(seq), seq, name, len(raw))
        buf += raw
        buf += b"\r\n"
        self.nargs += 4
        self.count += 1
        self.last[shard_id] = sequence
        self.counts[shard_id] = self.counts.get(shard_id, 0) + 1

    def add_session(self, shard_id: int, session_id: str, resume_url: str | None, shard_count: int,
                    sequence: int) -> None:
        """A new session's checkpoint: goes right before its READY event."""
        if shard_id not in self.index:
            self._key(shard_id)
        self.buf += b"".join(_bulk(a) for a in (
            b"-%d" % (self.shards.index(shard_id) + 1), session_id.encode(), (resume_url or "").encode(),
            b"%d" % shard_count, b"%d" % sequence))
        self.nargs += 5

    def command(self, sha: bytes, keys: list[bytes], shard_ids: list[bytes], maxlen: int) -> list[bytes | bytearray]:
        """The EVALSHA command, as the pieces to write (the event part is not copied)."""
        head = [b"EVALSHA", sha, b"%d" % len(keys), *keys, b"%d" % maxlen, *shard_ids]
        return [b"*%d\r\n" % (len(head) + self.nargs) + b"".join(_bulk(a) for a in head), self.buf]
