"""Where fastshard keeps things in Redis: every key name in one place.

Every key starts with the hash tag ``{prefix}``, so all of one deployment's
keys live in one Redis Cluster slot and the Lua scripts (which touch several
keys at once) work on a cluster as on a single server.
"""
from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """Key names for one ``prefix`` (one bot deployment)."""

    def __init__(self, prefix: str = "fastshard") -> None:
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "{}"):
            raise ValueError(f"prefix must be a non-empty str without braces, not {prefix!r}")
        self.prefix = prefix
        self.tag = "{" + prefix + "}"

    # identify queue
    def bucket_busy(self, bucket: int) -> str:
        return f"{self.tag}:identify:busy:{bucket}"

    def bucket_waiting(self, bucket: int) -> str:
        return f"{self.tag}:identify:waiting:{bucket}"

    def bucket_alive(self, bucket: int) -> str:
        return f"{self.tag}:identify:alive:{bucket}"

    @property
    def budget(self) -> str:
        return f"{self.tag}:identify:budget"

    @property
    def spent(self) -> str:
        return f"{self.tag}:identify:spent"

    # sessions and events
    def session(self, shard_id: int) -> str:
        return f"{self.tag}:session:{shard_id}"

    def stream(self, shard_id: int) -> str:
        return f"{self.tag}:events:{shard_id}"

    @property
    def streams(self) -> str:
        """A set of the shard ids that have a stream (workers discover them here)."""
        return f"{self.tag}:streams"

    @property
    def shard_count(self) -> str:
        return f"{self.tag}:shard_count"

    def dead_letters(self, group: str) -> str:
        return f"{self.tag}:dead:{group}"

    # commands back to the gateway
    def commands(self, shard_id: int) -> str:
        return f"{self.tag}:commands:{shard_id}"

    def reply(self, request_id: str) -> str:
        return f"{self.tag}:reply:{request_id}"
