"""Sharding arithmetic from Discord's docs, as plain functions.

``shard_id = (guild_id >> 22) % num_shards``; guild-less events (DMs) go to
shard 0.  IDENTIFY buckets are ``shard_id % max_concurrency``.
"""
from __future__ import annotations

from typing import Iterable, SupportsInt

__all__ = ["shard_for", "rate_limit_key", "parse_shard_ids", "split_ranges"]


def shard_for(guild_id: SupportsInt | str | None, shard_count: int) -> int:
    """The shard that receives ``guild_id``'s events (0 for None: DMs and other guild-less events)."""
    if guild_id is None:
        return 0
    if shard_count < 1:
        raise ValueError(f"shard_count must be >= 1, not {shard_count}")
    return (int(guild_id) >> 22) % shard_count


def rate_limit_key(shard_id: int, max_concurrency: int) -> int:
    """The IDENTIFY bucket of a shard: one IDENTIFY per key per 5 seconds."""
    return shard_id % max_concurrency


def parse_shard_ids(text: str) -> list[int]:
    """``"0-15"``, ``"3"``, ``"0-3,8,10-11"`` -> sorted ids (ValueError names what is wrong)."""
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in shard list {text!r}")
        lo, sep, hi = part.partition("-")
        try:
            start = int(lo)
            end = int(hi) if sep else start
        except ValueError:
            raise ValueError(f"{part!r} is not a shard id or a range like 0-15") from None
        if start < 0 or end < start:
            raise ValueError(f"{part!r} is not a valid range (ids are >= 0, low-high)")
        ids.update(range(start, end + 1))
    return sorted(ids)


def split_ranges(shard_ids: Iterable[int], parts: int, max_concurrency: int = 1) -> list[list[int]]:
    """Split shard ids into ``parts`` consecutive groups whose boundaries fall on bucket rounds.

    A boundary at a multiple of ``max_concurrency`` keeps every IDENTIFY round
    (ids ``k*M .. k*M+M-1``, which identify together) inside one group, so
    each process starts whole rounds.  Groups may be empty when there are
    fewer rounds than parts.
    """
    ids = sorted(set(shard_ids))
    if parts < 1:
        raise ValueError(f"parts must be >= 1, not {parts}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
    rounds: list[list[int]] = []
    for shard_id in ids:
        if rounds and rounds[-1][0] // max_concurrency == shard_id // max_concurrency:
            rounds[-1].append(shard_id)
        else:
            rounds.append([shard_id])
    groups: list[list[int]] = [[] for _ in range(parts)]
    for index, round_ in enumerate(rounds):
        groups[index * parts // len(rounds)].extend(round_)
    return groups
