"""Fuzz per-payload zlib (IDENTIFY ``compress: true``) against the reference decoder.

Input: a flags byte (bits 0-1: the size cap) then one binary message.  The
Cython ZlibPayloadInflater and the plain-Python reference must give the same
bytes or both a DecodeError; never output over the cap.
"""
from __future__ import annotations

import atheris

with atheris.instrument_imports():
    from fastshard._inflate import ZlibPayloadInflater
    from fastshard.codec import PyMessageDecoder
    from fastshard.errors import DecodeError

from fuzz._common import CAPS, main


def test_one_input(data: bytes) -> None:
    if not data:
        return
    cap = CAPS[data[0] & 3]
    message = data[1:]
    try:
        got = ZlibPayloadInflater(cap).feed_bytes(message)
    except DecodeError:
        got = None
    try:
        expected = bytes(PyMessageDecoder("json", 1, max_message_size=cap)._inflate(message, True))
    except DecodeError:
        expected = None
    assert got == expected, (None if got is None else len(got), None if expected is None else len(expected))
    assert got is None or len(got) <= cap


if __name__ == "__main__":
    main(test_one_input)
