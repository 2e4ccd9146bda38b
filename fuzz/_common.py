"""What the harnesses share: the input framing and atheris start-up."""
from __future__ import annotations

import sys
from typing import Callable, Iterator

#: max_size choices picked by an input's flag bits: tiny caps reach every "too large" path
CAPS = (64, 4096, 1 << 16, 1 << 20)


def frames(data: bytes) -> Iterator[bytes]:
    """Split an input into websocket messages: [u16 big-endian length][bytes], repeated.

    The last message takes whatever is left, so any byte string is valid and a
    mutated length is a different split of the same stream.
    """
    i = 0
    while i + 2 <= len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        yield data[i + 2:i + 2 + n]
        i += 2 + n
    if i < len(data):
        yield data[i:]


def pack_frames(messages: list[bytes], flags: int = 0) -> bytes:
    """The inverse of :func:`frames` after a flags byte (writes seeds)."""
    out = bytearray([flags])
    for m in messages:
        if len(m) > 0xFFFF:
            raise ValueError("a seed message larger than 64 KiB: split it")
        out += len(m).to_bytes(2, "big") + m
    return bytes(out)


def main(test_one_input: Callable[[bytes], None]) -> None:
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
