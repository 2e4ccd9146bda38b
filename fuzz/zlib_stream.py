"""Fuzz the zlib-stream inflater with arbitrary chunk sequences, both backends side by side.

Input: a flags byte (bits 0-1: the size cap) then websocket messages framed
as in fuzz._common.frames.  The zlib-ng C API backend and the decompressobj
fallback must agree message by message (same bytes, or both DecodeError);
no output is ever larger than the cap.
"""
from __future__ import annotations

import atheris

with atheris.instrument_imports():
    from fastshard._inflate import ZlibStreamInflater, use_zlib_c_api
    from fastshard.errors import DecodeError

from fuzz._common import CAPS, frames, main

_HAVE_C_API = use_zlib_c_api(True)


def _outcome(feed, message: bytes):
    try:
        return feed(message)
    except DecodeError:
        return DecodeError


def test_one_input(data: bytes) -> None:
    if not data:
        return
    cap = CAPS[data[0] & 3]
    fast = ZlibStreamInflater(cap, use_c_api=True)
    slow = ZlibStreamInflater(cap, use_c_api=False)
    for message in frames(data[1:]):
        a = _outcome(fast.feed_bytes, message)
        b = _outcome(slow.feed_bytes, message) if _HAVE_C_API else a
        assert a == b, (a, b)
        if a is DecodeError:
            return      # a connection is closed after bad data: states need not agree further
        assert a is None or len(a) <= cap


if __name__ == "__main__":
    main(test_one_input)
