"""Fuzz the zstd-stream inflater: hostile frame headers, windows, block sequences.

Input: a flags byte (bits 0-1: the size cap) then websocket messages framed
as in fuzz._common.frames.  Against zstandard's own decompressobj with the
same window bound, message by message: the same bytes, or a DecodeError
where zstandard fails or the output passes the cap.  Never a window past
ZSTD_MAX_WINDOW_SIZE, never output over the cap.
"""
from __future__ import annotations

import atheris

with atheris.instrument_imports():
    import zstandard

    from fastshard._inflate import ZstdStreamInflater
    from fastshard.codec import zstd_stream_decompressobj
    from fastshard.errors import DecodeError

from fuzz._common import CAPS, frames, main


def test_one_input(data: bytes) -> None:
    if not data:
        return
    cap = CAPS[data[0] & 3]
    fast = ZstdStreamInflater(cap)
    reference = zstd_stream_decompressobj()
    for message in frames(data[1:]):
        try:
            expected = reference.decompress(message) if message else b""
        except zstandard.ZstdError:
            expected = None
        try:
            got = fast.feed_bytes(message)
        except DecodeError:
            # zstandard failed too, or the message inflates past the cap
            assert expected is None or len(expected) > cap, (len(message), len(expected), cap)
            return
        assert expected is not None, "zstandard refused what the inflater accepted"
        assert (got or b"") == expected, (len(got or b""), len(expected))
        assert len(expected) <= cap


if __name__ == "__main__":
    main(test_one_input)
