"""A small pure-Python Erlang External Term Format codec for the simulator.

It is deliberately independent of the client's Cython codec (``fastshard._etf``)
so the tests are differential: two implementations written apart must agree.
It covers the subset Discord uses, encoding the way Discord's gateway does
(atom map keys, ``nil``/``true``/``false`` atoms, strings as BINARY, big
integers for snowflakes) and decoding anything a client may send.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

__all__ = ["EtfError", "encode", "decode", "decode_payload", "compress_term", "VERSION"]

VERSION = 131
COMPRESSED = 80
NEW_FLOAT = 70
SMALL_INTEGER = 97
INTEGER = 98
FLOAT = 99
ATOM = 100
SMALL_TUPLE = 104
LARGE_TUPLE = 105
NIL = 106
STRING = 107
LIST = 108
BINARY = 109
SMALL_BIG = 110
LARGE_BIG = 111
SMALL_ATOM = 115
MAP = 116
ATOM_UTF8 = 118
SMALL_ATOM_UTF8 = 119

# Untrusted input: cap nesting so a hostile term cannot blow the stack, and
# cap declared sizes so a length prefix cannot make us allocate gigabytes.
MAX_DEPTH = 256
MAX_DECOMPRESSED = 16 * 1024 * 1024


class EtfError(ValueError):
    """The bytes are not a valid (supported) ETF term."""


# -- encoding -------------------------------------------------------------

def _atom(name: str, out: bytearray) -> None:
    raw = name.encode("utf-8")
    if len(raw) < 256:
        out += struct.pack(">BB", SMALL_ATOM_UTF8, len(raw))
    else:
        out += struct.pack(">BH", ATOM_UTF8, len(raw))
    out += raw


def _int(value: int, out: bytearray) -> None:
    if 0 <= value <= 255:
        out += struct.pack(">BB", SMALL_INTEGER, value)
    elif -(1 << 31) <= value < (1 << 31):
        out += struct.pack(">Bi", INTEGER, value)
    else:
        sign = 1 if value < 0 else 0
        magnitude = -value if sign else value
        digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        if len(digits) < 256:
            out += struct.pack(">BBB", SMALL_BIG, len(digits), sign)
        else:
            out += struct.pack(">BIB", LARGE_BIG, len(digits), sign)
        out += digits


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EtfError("term nested too deeply to encode")
    if value is None:
        _atom("nil", out)
    elif value is True:
        _atom("true", out)
    elif value is False:
        _atom("false", out)
    elif isinstance(value, int):
        _int(value, out)
    elif isinstance(value, float):
        out += struct.pack(">Bd", NEW_FLOAT, value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += struct.pack(">BI", BINARY, len(raw))
        out += raw
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out += struct.pack(">BI", BINARY, len(raw))
        out += raw
    elif isinstance(value, dict):
        out += struct.pack(">BI", MAP, len(value))
        for key, item in value.items():
            if isinstance(key, str):
                _atom(key, out)  # Discord's gateway sends map keys as atoms
            else:
                _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append(NIL)
            return
        out += struct.pack(">BI", LIST, len(value))
        for item in value:
            _encode(item, out, depth + 1)
        out.append(NIL)
    else:
        raise EtfError(f"cannot encode {type(value).__name__} as ETF")


def encode(value: Any) -> bytes:
    """Encode ``value`` as a version-131 term, the way Discord's gateway does."""
    out = bytearray([VERSION])
    _encode(value, out, 0)
    return bytes(out)


def compress_term(term: bytes) -> bytes:
    """Turn an encoded term into ETF's compressed form (tag 80 + size + zlib)."""
    if not term or term[0] != VERSION:
        raise EtfError("compress_term expects a term starting with the version byte 131")
    body = term[1:]
    return bytes([VERSION, COMPRESSED]) + struct.pack(">I", len(body)) + zlib.compress(body)


# -- decoding -------------------------------------------------------------

class _Reader:
    __slots__ = ("data", "pos", "atom_keys")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.atom_keys = False

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise EtfError(f"truncated term: needed {n} bytes at offset {self.pos}, "
                           f"only {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def count(self, n: int) -> int:
        # Every element needs at least one byte: a count larger than what is
        # left is a lie and would make us loop (or allocate) for nothing.
        if n > len(self.data) - self.pos:
            raise EtfError(f"declared {n} elements but only {len(self.data) - self.pos} bytes left")
        return n


def _atom_value(name: str) -> Any:
    if name == "nil":
        return None
    if name == "true":
        return True
    if name == "false":
        return False
    return name


def _decode(r: _Reader, depth: int, is_key: bool = False) -> Any:
    if depth > MAX_DEPTH:
        raise EtfError(f"term nested deeper than {MAX_DEPTH} levels")
    tag = r.u8()
    if tag == SMALL_INTEGER:
        return r.u8()
    if tag == INTEGER:
        return int(struct.unpack(">i", r.take(4))[0])
    if tag == NEW_FLOAT:
        return float(struct.unpack(">d", r.take(8))[0])
    if tag == FLOAT:
        text = r.take(31).split(b"\x00", 1)[0]
        try:
            return float(text)
        except ValueError:
            raise EtfError(f"invalid FLOAT_EXT text {text!r}") from None
    if tag in (ATOM, SMALL_ATOM, ATOM_UTF8, SMALL_ATOM_UTF8):
        size = r.u8() if tag in (SMALL_ATOM, SMALL_ATOM_UTF8) else r.u16()
        raw = r.take(size)
        name = raw.decode("latin-1") if tag in (ATOM, SMALL_ATOM) else _utf8(raw)
        if is_key:
            r.atom_keys = True
            return name
        return _atom_value(name)
    if tag == BINARY:
        return _utf8(r.take(r.u32()))
    if tag == STRING:
        return list(r.take(r.u16()))
    if tag == NIL:
        return []
    if tag == LIST:
        n = r.count(r.u32())
        items = [_decode(r, depth + 1) for _ in range(n)]
        tail = _decode(r, depth + 1)
        if tail != []:
            raise EtfError("improper lists are not supported")
        return items
    if tag in (SMALL_TUPLE, LARGE_TUPLE):
        n = r.count(r.u8() if tag == SMALL_TUPLE else r.u32())
        return [_decode(r, depth + 1) for _ in range(n)]
    if tag == MAP:
        n = r.count(r.u32())
        result: dict[Any, Any] = {}
        for _ in range(n):
            key = _decode(r, depth + 1, is_key=True)
            if isinstance(key, list):
                raise EtfError("map keys must be atoms, binaries or numbers")
            result[key] = _decode(r, depth + 1)
        return result
    if tag in (SMALL_BIG, LARGE_BIG):
        n = r.u8() if tag == SMALL_BIG else r.count(r.u32())
        sign = r.u8()
        value = int.from_bytes(r.take(n), "little")
        return -value if sign else value
    raise EtfError(f"unsupported ETF tag {tag} at offset {r.pos - 1}")


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EtfError(f"binary is not valid UTF-8: {exc}") from None


def decode_payload(data: bytes | bytearray | memoryview) -> tuple[Any, bool]:
    """Decode one term; also say whether any map key was an atom.

    Discord closes with 4002 when a client sends atom keys, so the simulator
    needs to know, not just the decoded value.
    """
    raw = bytes(data)
    if not raw or raw[0] != VERSION:
        raise EtfError("term does not start with the version byte 131")
    if len(raw) > 1 and raw[1] == COMPRESSED:
        if len(raw) < 6:
            raise EtfError("truncated compressed term header")
        size = int(struct.unpack(">I", raw[2:6])[0])
        if size > MAX_DECOMPRESSED:
            raise EtfError(f"compressed term declares {size} bytes, more than the {MAX_DECOMPRESSED} allowed")
        try:
            d = zlib.decompressobj()
            body = d.decompress(raw[6:], size + 1)
        except zlib.error as exc:
            raise EtfError(f"corrupt compressed term: {exc}") from None
        if len(body) != size:
            raise EtfError(f"compressed term declares {size} bytes but inflates to {len(body)}")
        raw = bytes([VERSION]) + body
    r = _Reader(raw)
    r.pos = 1
    value = _decode(r, 0)
    if r.pos != len(raw):
        raise EtfError(f"{len(raw) - r.pos} trailing bytes after the term")
    return value, r.atom_keys


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one term (atoms nil/true/false -> None/True/False, binaries -> str)."""
    return decode_payload(data)[0]
