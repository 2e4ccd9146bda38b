"""Fuzz the message decoder's op/t/s peek (disabled_events, raw_dispatches) against the reference.

Input: a flags byte then one websocket message.  Flags: bit 0 ETF (else
JSON), bit 1 disabled_events, bit 2 raw_dispatches, bit 3 payload
compression, bit 4 a small max_message_size.

Invariants: the Cython decoder raises nothing but DecodeError; whenever the
plain-Python reference (which always decodes in full) accepts a message, the
Cython decoder returns exactly the same thing (dict, raw tuple or None) and
tracks the same sequence; where the reference refuses it, the Cython decoder
may still drop it or pass it raw (a peeked payload is not validated past its
structure), but only with the op/t/s that a decode would read.  peek() is
checked against the decoded document whenever there is one.
"""
from __future__ import annotations

import atheris

with atheris.instrument_imports():
    import orjson

    from fastshard import _etf
    from fastshard._decoder import MessageDecoder, peek
    from fastshard.codec import PyMessageDecoder
    from fastshard.errors import DecodeError

from fuzz._common import main

DISABLED = ("TYPING_START", "PRESENCE_UPDATE", "A")


def _decode(message: bytes, encoding: str):
    try:
        return orjson.loads(message) if encoding == "json" else _etf.decode(message)
    except (orjson.JSONDecodeError, DecodeError):
        return None


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags, message = data[0], data[1:]
    encoding = "etf" if flags & 1 else "json"
    options = {"disabled_events": DISABLED if flags & 2 else (), "raw_dispatches": bool(flags & 4),
               "max_message_size": 4096 if flags & 16 else 1 << 20}
    compression = 1 if flags & 8 else 0
    binary = encoding == "etf" or compression == 1
    ref = PyMessageDecoder(encoding, compression, **options)
    fast = MessageDecoder(encoding, compression, **options)
    try:
        expected = ref.feed(message, binary)
    except DecodeError:
        expected = DecodeError
    try:
        got = fast.feed(message, binary)
    except DecodeError:
        got = DecodeError
    if expected is not DecodeError:
        assert got == expected, (got, expected)
        assert fast.sequence == ref.sequence
    elif got is not DecodeError and got is not None:
        t, s, raw = got                   # a peeked raw dispatch
        assert type(t) is str and type(s) is int and fast.sequence == s
    if compression == 0:
        _check_peek(message, encoding)


def _check_peek(message: bytes, encoding: str) -> None:
    seen = peek(message, encoding)
    document = _decode(message, encoding)
    if seen is None or type(document) is not dict:
        return
    op, t, s = seen
    if type(document.get("op")) is int:
        assert op == document["op"], (op, document.get("op"))
    if type(document.get("t")) is str:
        assert t == document["t"], (t, document.get("t"))
    elif document.get("t") is None or type(document.get("t")) is bool:
        assert t is None, (t, document.get("t"))
    if type(document.get("s")) is int:
        assert s == document["s"], (s, document.get("s"))


if __name__ == "__main__":
    main(test_one_input)
