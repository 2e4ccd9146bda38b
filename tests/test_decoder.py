"""The Cython MessageDecoder against the plain-Python reference, and on hostile input.

Every encoding x compression is fed the same Discord-shaped traffic through
both decoders (differential), whole and split/fragmented every way the
gateway or a websocket can split it.
"""
from __future__ import annotations

import gc
import json
import random
import zlib

import erlpack
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picows.picows import WSMsgType, _make_test_ws_frame

from fastshard.codec import PyMessageDecoder, make_decoder
from fastshard.errors import DecodeError

_decoder = pytest.importorskip("fastshard._decoder")
MessageDecoder = _decoder.MessageDecoder
peek = _decoder.peek

try:
    from fastshard.testing.etf import compress_term as etf_compress_term
    from fastshard.testing.etf import encode as etf_encode
except ImportError:  # the simulator's own encoder not there yet: erlpack, keys as binaries
    def etf_encode(obj):
        return erlpack.pack(obj)

    def etf_compress_term(term):
        import struct

        return bytes([131, 80]) + struct.pack(">I", len(term) - 1) + zlib.compress(term[1:])

ENCODINGS = ("json", "etf")
COMPRESSIONS = (0, 1, 2, 3)


# -- Discord-shaped traffic ---------------------------------------------------

def _snowflake(rng: random.Random) -> str:
    return str(rng.randrange(10**17, 2 * 10**18))


def _user(rng: random.Random) -> dict:
    return {"id": _snowflake(rng), "username": f"user{rng.randrange(10**6)}", "global_name": None,
            "avatar": "a_" + "%032x" % rng.getrandbits(128), "discriminator": "0", "bot": False,
            "public_flags": rng.randrange(1 << 20)}


def _message(rng: random.Random) -> dict:
    return {"id": _snowflake(rng), "channel_id": _snowflake(rng), "guild_id": _snowflake(rng),
            "author": _user(rng), "content": rng.choice(["hi", "a \"quoted\" {brace} [x]", "émoji ✨",
                                                         "\\", "x" * rng.randrange(200)]),
            "timestamp": "2026-11-28T09:00:00.000000+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [_user(rng) for _ in range(rng.randrange(3))],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "type": 0,
            "nonce": _snowflake(rng), "flags": 0,
            "member": {"roles": [_snowflake(rng)], "joined_at": "2025-01-01T00:00:00+00:00", "deaf": False,
                       "mute": False, "flags": 0}}


def guild_create(rng: random.Random, members: int) -> dict:
    gid = _snowflake(rng)
    return {"id": gid, "name": f"guild {gid}", "icon": None, "owner_id": _snowflake(rng),
            "member_count": members, "large": members > 250, "unavailable": False,
            "joined_at": "2024-05-05T05:05:05+00:00",
            "roles": [{"id": _snowflake(rng), "name": f"role{i}", "color": rng.randrange(1 << 24),
                       "permissions": str(rng.getrandbits(40)), "position": i, "hoist": False,
                       "managed": False, "mentionable": True} for i in range(20)],
            "channels": [{"id": _snowflake(rng), "type": rng.choice([0, 2, 4]), "name": f"chan-{i}",
                          "position": i, "permission_overwrites": [], "nsfw": False, "topic": None}
                         for i in range(40)],
            "members": [{"user": _user(rng), "roles": [_snowflake(rng)], "nick": None, "deaf": False,
                         "mute": False, "joined_at": "2025-01-01T00:00:00+00:00", "flags": 0}
                        for _ in range(members)],
            "presences": [{"user": {"id": _snowflake(rng)}, "status": "online", "activities": [],
                           "client_status": {"desktop": "online"}} for _ in range(members // 4)],
            "threads": [], "stickers": [], "emojis": [], "features": ["COMMUNITY", "NEWS"],
            "voice_states": []}


def traffic(seed: int, count: int, *, big_every: int = 0) -> list[dict]:
    """Gateway payloads as Discord sends them (HELLO, READY, dispatches, ACKs)."""
    rng = random.Random(seed)
    out: list[dict] = [{"op": 10, "d": {"heartbeat_interval": 41250, "_trace": ["[\"gw\"]"]}, "s": None, "t": None}]
    seq = 0
    for i in range(count):
        roll = rng.random()
        if big_every and i % big_every == big_every - 1:
            t, d = "GUILD_CREATE", guild_create(rng, rng.choice([5, 100, 1000]))
        elif roll < 0.08:
            out.append({"op": 11, "d": None, "s": None, "t": None})
            continue
        elif roll < 0.5:
            t, d = "MESSAGE_CREATE", _message(rng)
        elif roll < 0.7:
            t, d = "TYPING_START", {"user_id": _snowflake(rng), "channel_id": _snowflake(rng),
                                    "timestamp": 1764320400 + i, "guild_id": _snowflake(rng)}
        elif roll < 0.9:
            t, d = "PRESENCE_UPDATE", {"user": {"id": _snowflake(rng)}, "status": "idle",
                                       "guild_id": _snowflake(rng), "activities": [
                                           {"name": "a game", "type": 0, "created_at": 1764320400123}]}
        else:
            # Tricky: "t"/"s"/"op" nested in d, in every position.
            t, d = "TYPING_START", {"t": "MESSAGE_CREATE", "s": 10**9 + i, "op": 7,
                                    "nested": [{"t": "READY", "s": -1}], "user_id": _snowflake(rng)}
        seq += 1
        payload = {"t": t, "s": seq, "op": 0, "d": d}
        if rng.random() < 0.3:      # Discord's usual order, but not always
            items = list(payload.items())
            rng.shuffle(items)
            payload = dict(items)
        out.append(payload)
    return out


def encode(payload: dict, encoding: str) -> bytes:
    return orjson.dumps(payload) if encoding == "json" else etf_encode(payload)


class Packer:
    """What a gateway puts on the wire for one connection: (message bytes, binary)."""

    def __init__(self, encoding: str, compression: int) -> None:
        self.encoding, self.compression = encoding, compression
        self.zlib = zlib.compressobj()
        self.zstd = zstandard.ZstdCompressor().compressobj()
        self.big = 0

    def pack(self, payload: dict) -> tuple[bytes, bool]:
        raw = encode(payload, self.encoding)
        c = self.compression
        if c == 2:
            return self.zlib.compress(raw) + self.zlib.flush(zlib.Z_SYNC_FLUSH), True
        if c == 3:
            return self.zstd.compress(raw) + self.zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK), True
        if c == 1 and len(raw) >= 256:
            if self.encoding == "json":
                return zlib.compress(raw), True
            return etf_compress_term(raw), True
        return raw, self.encoding == "etf"


def wire(payloads: list[dict], encoding: str, compression: int) -> list[tuple[bytes, bool]]:
    packer = Packer(encoding, compression)
    return [packer.pack(p) for p in payloads]


def pure(encoding: str, compression: int, **options) -> PyMessageDecoder:
    return PyMessageDecoder(encoding, compression, **options)


def run(decoder, messages) -> list:
    return [decoder.feed(data, binary) for data, binary in messages]


# -- differential -------------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("disabled", [(), ("TYPING_START", "PRESENCE_UPDATE")])
def test_same_results_as_reference(encoding, compression, disabled):
    payloads = traffic(1, 300, big_every=60)
    messages = wire(payloads, encoding, compression)
    ref, fast = pure(encoding, compression, disabled_events=disabled), MessageDecoder(
        encoding, compression, disabled_events=disabled)
    got = run(fast, messages)
    assert got == run(ref, messages)
    assert fast.sequence == ref.sequence == max(p["s"] for p in payloads if p.get("s") is not None)
    assert (fast.wire_bytes, fast.raw_bytes) == (ref.wire_bytes, ref.raw_bytes)
    delivered = [p for p in got if p is not None]
    expected = [p for p in payloads if not (p["op"] == 0 and p["t"] in disabled)]
    if encoding == "json":
        assert delivered == expected
    else:
        assert len(delivered) == len(expected)
    if disabled:
        assert len(delivered) < len(payloads)


def _decode_plain(raw: bytes, encoding: str):
    from fastshard import _etf

    return orjson.loads(raw) if encoding == "json" else _etf.decode(raw)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("disabled", [(), ("TYPING_START",)])
def test_raw_dispatches_same_as_reference(encoding, compression, disabled):
    payloads = traffic(7, 300, big_every=60)
    payloads.insert(1, {"t": "READY", "s": 0, "op": 0, "d": {"session_id": "abc", "v": 10}})
    payloads.insert(150, {"op": 0, "s": 148, "t": "RESUMED", "d": {"_trace": ["x"]}})
    messages = wire(payloads, encoding, compression)
    ref = pure(encoding, compression, disabled_events=disabled, raw_dispatches=True)
    fast = MessageDecoder(encoding, compression, disabled_events=disabled, raw_dispatches=True)
    assert fast.raw_dispatches is True and ref.raw_dispatches is True
    got, expected = run(fast, messages), run(ref, messages)
    assert got == expected
    decoded = run(pure(encoding, compression), messages)   # what a full decode gives
    assert fast.sequence == ref.sequence == max(p["s"] for p in payloads if p["s"] is not None)
    raw_seen = 0
    for payload, full, out in zip(payloads, decoded, got):
        if payload["op"] == 0 and payload["t"] in disabled:
            assert out is None
        elif payload["op"] == 0 and payload["t"] not in ("READY", "RESUMED"):
            t, s, raw = out
            assert type(raw) is bytes and (t, s) == (payload["t"], payload["s"])
            assert _decode_plain(raw, encoding) == full        # the whole message, d untouched
            if encoding == "etf":
                assert raw[0] == 131 and raw[1] != 80           # a compressed term comes inflated
            raw_seen += 1
        else:
            assert out == full                                  # READY/RESUMED/other ops: dicts
    assert raw_seen > 100
    # through picows frames too, fragmented
    fast = MessageDecoder(encoding, compression, disabled_events=disabled, raw_dispatches=True)
    for (data, binary), want in zip(messages, expected):
        first = WSMsgType.BINARY if binary else WSMsgType.TEXT
        half = len(data) // 2
        assert fast.feed_frame(_make_test_ws_frame(first, data[:half], False, False)) is None
        assert fast.feed_frame(_make_test_ws_frame(WSMsgType.CONTINUATION, data[half:], True, False)) == want


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_raw_dispatches_when_the_peek_is_unsure(encoding):
    # The peek gives up (escaped key / Latin-1 atom): the full decode gives the same tuple.
    if encoding == "json":
        raw = b'{"\\u0074":"MESSAGE_CREATE","s":9,"op":0,"d":{"a":1}}'
        assert peek(raw, "json") is None
    else:
        raw = (b"\x83t\x00\x00\x00\x04" + b"m\x00\x00\x00\x01t" + b"s\x02\xe9a"
               + b"m\x00\x00\x00\x01sa\x09" + b"m\x00\x00\x00\x02opa\x00" + b"m\x00\x00\x00\x01dj")
        assert peek(raw, "etf") is None
    t = "MESSAGE_CREATE" if encoding == "json" else "\u00e9a"
    for decoder in (MessageDecoder(encoding, 0, raw_dispatches=True), pure(encoding, 0, raw_dispatches=True)):
        assert decoder.feed(raw, encoding == "etf") == (t, 9, raw)
        assert decoder.sequence == 9


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bad_dispatches_are_decode_errors_in_every_mode(encoding, compression):
    bad = [{"op": 0, "t": {}, "d": {}}, {"op": 0, "t": {}, "s": 1, "d": {}}, {"op": 0, "t": None, "s": 2, "d": {}},
           {"op": 0, "t": "MESSAGE_CREATE", "s": None, "d": {}}, {"op": 0, "t": "MESSAGE_CREATE", "d": {}},
           {"op": 0, "t": True, "s": 3, "d": {}}, {"op": 0, "t": "MESSAGE_CREATE", "s": 1.5, "d": {}},
           {"op": 0, "t": 5, "s": 3, "d": {}}]
    for options in ({}, {"disabled_events": ["TYPING_START"]}, {"raw_dispatches": True},
                    {"disabled_events": ["MESSAGE_CREATE"], "raw_dispatches": True}):
        for payload in bad:
            for decoder in (MessageDecoder(encoding, compression, **options), pure(encoding, compression, **options)):
                data, binary = Packer(encoding, compression).pack(payload)
                with pytest.raises(DecodeError, match=r"dispatch \(op 0\) whose [ts] is"):
                    decoder.feed(data, binary)
                assert decoder.sequence is None


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fragmented_frames_reassembled(encoding, compression):
    payloads = traffic(2, 40)
    messages = wire(payloads, encoding, compression)
    ref = run(pure(encoding, compression), messages)
    fast = MessageDecoder(encoding, compression)
    rng = random.Random(5)
    got = []
    for data, binary in messages:
        first = WSMsgType.BINARY if binary else WSMsgType.TEXT
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(3, len(data) + 1)))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        result = None
        for i, part in enumerate(parts):
            frame = _make_test_ws_frame(first if i == 0 else WSMsgType.CONTINUATION, part,
                                        i == len(parts) - 1, False)
            result = fast.feed_frame(frame)
            if i < len(parts) - 1:
                assert result is None
        got.append(result)
    assert got == ref


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fragmented_at_every_byte_boundary(encoding):
    compression = 2
    packer = Packer(encoding, compression)
    payload = traffic(3, 3)[2]
    fast = MessageDecoder(encoding, compression)
    size = len(Packer(encoding, compression).pack(payload)[0])
    for cut in range(size + 1):
        data, _ = packer.pack(payload)
        assert fast.feed_frame(_make_test_ws_frame(WSMsgType.BINARY, data[:cut], False, False)) is None
        got = fast.feed_frame(_make_test_ws_frame(WSMsgType.CONTINUATION, data[cut:], True, False))
        assert got["s"] == payload["s"]
    # and one byte per frame, with empty frames between
    data, _ = packer.pack(payload)
    frames = [_make_test_ws_frame(WSMsgType.BINARY, b"", False, False)]
    for b in data:
        frames.append(_make_test_ws_frame(WSMsgType.CONTINUATION, bytes([b]), False, False))
        frames.append(_make_test_ws_frame(WSMsgType.CONTINUATION, b"", False, False))
    frames.append(_make_test_ws_frame(WSMsgType.CONTINUATION, b"", True, False))
    results = [fast.feed_frame(f) for f in frames]
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1]["t"] == payload["t"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_zlib_chunk_split_across_messages_at_every_byte(encoding):
    packer = Packer(encoding, 2)
    payloads = traffic(4, 4)
    ref, fast = pure(encoding, 2), MessageDecoder(encoding, 2)
    for payload in payloads:
        cut = 1
        while True:
            # the same payload again so every cut sees a fresh chunk of the stream
            data, _ = packer.pack(payload)
            if cut >= len(data):
                ref.feed(data, True), fast.feed(data, True)
                break
            if data[:cut].endswith(b"\x00\x00\xff\xff"):
                # deflate bits that happen to look like the marker: the
                # protocol itself cannot tell, so no split is made there
                ref.feed(data, True), fast.feed(data, True)
                cut += 1
                continue
            for part in (data[:cut], data[cut:]):
                expect = ref.feed(part, True)
                assert fast.feed(part, True) == expect
            assert expect is not None and expect["op"] == payload["op"]
            cut += 1
        # three messages, the suffix itself split (00 00 | ff | ff)
        data, _ = packer.pack(payload)
        parts = [data[:-3], data[-3:-1], data[-1:]]
        results = [fast.feed(p, True) for p in parts]
        assert results == [ref.feed(p, True) for p in parts]
        assert results[:2] == [None, None] and results[2]["op"] == payload["op"]
    assert fast.sequence == ref.sequence


def test_many_messages_and_bytes_like_inputs():
    payloads = traffic(6, 2000)
    messages = wire(payloads, "json", 2)
    fast = MessageDecoder("json", 2)
    kinds = (bytes, bytearray, memoryview)
    got = [fast.feed(kinds[i % 3](data), binary) for i, (data, binary) in enumerate(messages)]
    assert got == payloads


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_one_megabyte_messages(encoding, compression):
    rng = random.Random(7)
    payloads = [{"t": "GUILD_CREATE", "s": i + 1, "op": 0, "d": guild_create(rng, 3500)} for i in range(2)]
    assert all(len(orjson.dumps(p)) > 1_000_000 for p in payloads)
    messages = wire(payloads, encoding, compression)
    fast = MessageDecoder(encoding, compression)
    got = run(fast, messages)
    assert got == run(pure(encoding, compression), messages)
    if encoding == "json":
        assert got == payloads
    # and fragmented into 64 KiB frames, as a websocket server might send it
    fast.reset()
    messages = wire(payloads, encoding, compression)
    for (data, binary), payload in zip(messages, payloads):
        chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
        first = WSMsgType.BINARY if binary else WSMsgType.TEXT
        out = None
        for i, chunk in enumerate(chunks):
            out = fast.feed_frame(_make_test_ws_frame(first if i == 0 else WSMsgType.CONTINUATION,
                                                      chunk, i == len(chunks) - 1, False))
        assert out["s"] == payload["s"] and len(out["d"]["members"]) == 3500


# -- empty and control frames ---------------------------------------------------

def test_empty_messages():
    z = MessageDecoder("json", 2)
    assert z.feed(b"", True) is None
    assert z.feed_frame(_make_test_ws_frame(WSMsgType.BINARY, b"", True, False)) is None
    zs = MessageDecoder("json", 3)
    assert zs.feed(b"", True) is None
    for compression in (0, 1):
        with pytest.raises(DecodeError):
            MessageDecoder("json", compression).feed(b"", False)
    with pytest.raises(DecodeError):
        MessageDecoder("etf", 0).feed(b"", True)
    # a fragmented message made only of empty frames: no buffer was ever allocated
    for compression, expect_error in ((0, True), (1, True), (2, False), (3, False)):
        fast = MessageDecoder("json", compression)
        assert fast.feed_frame(_make_test_ws_frame(WSMsgType.BINARY, b"", False, False)) is None
        last = _make_test_ws_frame(WSMsgType.CONTINUATION, b"", True, False)
        if expect_error:
            with pytest.raises(DecodeError):
                fast.feed_frame(last)
        else:
            assert fast.feed_frame(last) is None
    with pytest.raises(DecodeError):
        MessageDecoder("json", 0).feed(bytearray(), False)
    assert MessageDecoder("json", 2).feed(memoryview(b""), True) is None


def test_control_frames_are_ignored():
    fast = MessageDecoder("json", 0)
    for kind in (WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE):
        assert fast.feed_frame(_make_test_ws_frame(kind, b"\x03\xe8bye", True, False)) is None
    assert fast.wire_bytes == 0


def test_fragment_protocol_errors():
    fast = MessageDecoder("json", 0)
    with pytest.raises(DecodeError, match="continuation frame"):
        fast.feed_frame(_make_test_ws_frame(WSMsgType.CONTINUATION, b"{}", True, False))
    fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b'{"op":', False, False))
    with pytest.raises(DecodeError, match="new message started"):
        fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b'{"op":1}', True, False))
    # the decoder recovers: the next whole message decodes
    assert fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b'{"op":11}', True, False)) == {"op": 11}
    with pytest.raises(TypeError):
        fast.feed_frame(b'{"op":11}')


def test_fragments_capped():
    fast = MessageDecoder("json", 0, max_message_size=1000)
    fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b"[" * 600, False, False))
    with pytest.raises(DecodeError, match="max_message_size"):
        fast.feed_frame(_make_test_ws_frame(WSMsgType.CONTINUATION, b"[" * 600, False, False))
    with pytest.raises(DecodeError, match="max_message_size"):
        fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b"[" * 1001, False, False))
    assert fast.feed_frame(_make_test_ws_frame(WSMsgType.TEXT, b'{"op":11}', True, False)) == {"op": 11}


# -- hostile or broken streams ----------------------------------------------------

def test_zlib_stream_without_suffix_is_bounded():
    fast = MessageDecoder("json", 2, max_message_size=256 * 1024)
    chunk = bytes(range(256)) * 16      # never ends with 00 00 ff ff
    fed = 0
    with pytest.raises(DecodeError, match="before its 00 00 ff ff suffix"):
        while True:
            assert fast.feed(chunk, True) is None
            fed += len(chunk)
            assert fed <= 256 * 1024
    assert fed > 200 * 1024
    # the stream is broken for good; a new connection starts clean
    fast.reset()
    c = zlib.compressobj()
    assert fast.feed(c.compress(b'{"op":11}') + c.flush(zlib.Z_SYNC_FLUSH), True) == {"op": 11}


@pytest.mark.parametrize("compression,match", [(2, "corrupt zlib-stream"), (3, "corrupt zstd-stream"),
                                               (1, "corrupt zlib payload")])
def test_corrupt_compressed_data(compression, match):
    fast = MessageDecoder("json", compression)
    with pytest.raises(DecodeError, match=match):
        fast.feed(b"this is not compressed at all\x00\x00\xff\xff", True)


def test_truncated_payload_zlib():
    with pytest.raises(DecodeError, match="truncated zlib payload"):
        MessageDecoder("json", 1).feed(zlib.compress(b'{"op":11}')[:-3], True)


@pytest.mark.parametrize("compression", (1, 2, 3))   # uncompressed: capped by the websocket layer
def test_inflated_size_capped(compression):
    big = orjson.dumps({"op": 0, "t": "X", "s": 1, "d": "a" * 500_000})
    fast = MessageDecoder("json", compression, max_message_size=100_000)
    data, binary = Packer("json", compression).pack(orjson.loads(big))
    with pytest.raises(DecodeError, match="max_message_size"):
        fast.feed(data, binary)


@pytest.mark.parametrize("bad,match", [(b'{"op":0,"t":"X"', "invalid JSON"), (b"[1,2]", "not an object"),
                                       (b'"str"', "not an object"), (b"\xff\xfe", "invalid JSON")])
@pytest.mark.parametrize("compression", (0, 2))
def test_invalid_json(bad, match, compression):
    fast = MessageDecoder("json", compression)
    data = bad
    if compression == 2:
        c = zlib.compressobj()
        data = c.compress(bad) + c.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(DecodeError, match=match):
        fast.feed(data, False)


# -- disabled events --------------------------------------------------------------

TRICKY_JSON = [
    # nested "t"/"s"/"op" before the top-level ones
    (b'{"d":{"t":"MESSAGE_CREATE","s":999,"op":0},"op":0,"t":"TYPING_START","s":5}', None, 5),
    (b'{"d":{"x":"\\"}{[","t":"MESSAGE_CREATE"},"t":"TYPING_START","s":6,"op":0}', None, 6),
    (b'{"t":"MESSAGE_CREATE","d":{"t":"TYPING_START","s":100},"op":0,"s":7}', "MESSAGE_CREATE", 7),
    (b' { "t" : "TYPING_START" , "s" : 8 , "op" : 0 , "d" : { } } ', None, 8),
    # escapes: the peek is unsure, the full decode still drops it
    (b'{"\\u0074":"TYPING_START","s":9,"op":0,"d":{}}', None, 9),
    (b'{"t":"TYPING\\u005fSTART","s":10,"op":0,"d":{}}', None, 10),
    # op is not 0: never dropped
    (b'{"t":"TYPING_START","s":11,"op":1,"d":{}}', "TYPING_START", 11),
    (b'{"t":null,"s":null,"op":11,"d":null}', None, None),
    # duplicate keys: the last one counts, in the peek as in orjson
    (b'{"op":0,"t":"TYPING_START","s":5,"t":"MESSAGE_CREATE","d":{}}', "MESSAGE_CREATE", 5),
    (b'{"op":0,"t":"MESSAGE_CREATE","s":5,"t":"TYPING_START","s":6,"d":{}}', None, 6),
    (b'{"t":"TYPING_START","s":50,"op":0,"d":{},"s":13}', None, 13),
    (b'{"t":"TYPING_START","s":14,"op":1,"d":{},"op":0}', None, 14),
    # a dispatch without a str t or an int s is bad data (DecodeError), peeked or not
    (b'{"t":"TYPING_START","op":0,"d":{}}', DecodeError, None),
    (b'{"op":0,"d":[1,{"t":"x"}],"s":12.0,"t":"TYPING_START"}', DecodeError, None),
    (b'{"op":0,"t":{},"d":{}}', DecodeError, None),
    (b'{"op":0,"t":{},"s":3,"d":{}}', DecodeError, None),
    (b'{"op":0,"t":null,"s":3,"d":{}}', DecodeError, None),
    (b'{"op":0,"t":["TYPING_START"],"s":3,"d":{}}', DecodeError, None),
    (b'{"op":0,"t":"TYPING_START","s":"3","d":{}}', DecodeError, None),
    (b'{"op":0,"t":"TYPING_START","s":true,"d":{}}', DecodeError, None),
    (b'{"op":0,"t":"TYPING_START","s":null,"d":{}}', DecodeError, None),
    (b'{"op":0,"t":"TYPING_START","s":3,"t":7,"d":{}}', DecodeError, None),
]


@pytest.mark.parametrize("raw,expect_t,expect_s", TRICKY_JSON)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_disabled_events_tricky_json(raw, expect_t, expect_s, compression):
    disabled = ["TYPING_START"]
    data, binary = raw, False
    if compression:
        data, binary = Packer("json", compression).pack(orjson.loads(raw))
        if compression in (2, 3):   # keep the exact bytes (key order, spacing)
            packer = Packer("json", compression)
            ctx = packer.zlib if compression == 2 else packer.zstd
            flush = zlib.Z_SYNC_FLUSH if compression == 2 else zstandard.COMPRESSOBJ_FLUSH_BLOCK
            data = ctx.compress(raw) + ctx.flush(flush)
    ref = pure("json", compression, disabled_events=disabled)
    fast = MessageDecoder("json", compression, disabled_events=disabled)
    fast.sequence = 1
    ref.sequence = 1
    if expect_t is DecodeError:
        with pytest.raises(DecodeError, match="dispatch"):
            fast.feed(data, binary)
        with pytest.raises(DecodeError, match="dispatch"):
            ref.feed(data, binary)
        return
    got = fast.feed(data, binary)
    assert got == ref.feed(data, binary)
    assert (got or {}).get("t") == expect_t
    assert fast.sequence == ref.sequence == (expect_s if expect_s is not None else 1)


def test_disabled_events_do_not_decode_d():
    # d is not valid JSON inside (only its brackets balance): only a peek that
    # skips d structurally can drop it
    fast = MessageDecoder("json", 0, disabled_events=["PRESENCE_UPDATE"])
    assert fast.feed(b'{"t":"PRESENCE_UPDATE","s":41,"op":0,"d":{not json}}', False) is None
    assert fast.sequence == 41
    with pytest.raises(DecodeError):
        fast.feed(b'{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{not json}}', False)
    # a truncated message is never dropped unread: the peek is unsure
    with pytest.raises(DecodeError):
        fast.feed(b'{"t":"PRESENCE_UPDATE","s":43,"op":0,"d":{"a":1', False)
    with pytest.raises(DecodeError):
        fast.feed(b'{"t":"PRESENCE_UPDATE","s":44,"op":0,"d":{}} trailing', False)
    assert fast.sequence == 41


def test_disabled_events_etf_tricky():
    disabled = ["TYPING_START"]
    fast = MessageDecoder("etf", 0, disabled_events=disabled)
    ref = pure("etf", 0, disabled_events=disabled)
    cases = [
        {"d": {"t": "MESSAGE_CREATE", "s": 999, "op": 0, "big": 2**70, "f": 1.5, "l": [1, [2, None]]},
         "op": 0, "t": "TYPING_START", "s": 5},
        {"t": "MESSAGE_CREATE", "d": {"t": "TYPING_START"}, "op": 0, "s": 6},
        {"op": 0, "s": 300, "t": "TYPING_START", "d": {"x": "y" * 300}},
        {"op": 0, "s": 2**31 - 1, "t": "TYPING_START", "d": None},
    ]
    for payload in cases:
        data = etf_encode(payload)
        assert fast.feed(data, True) == ref.feed(data, True)
        assert fast.sequence == ref.sequence
    assert fast.sequence == 2**31 - 1
    # compressed term (tag 80): inflated first, then peeked and dropped
    data = etf_compress_term(etf_encode({"op": 0, "t": "TYPING_START", "s": 2**31 - 1, "d": {"a": "b" * 400}}))
    assert MessageDecoder("etf", 1, disabled_events=disabled).feed(data, True) is None


def test_sequence_only_moves_up_and_is_settable():
    fast = MessageDecoder("json", 0)
    assert fast.sequence is None
    fast.feed(b'{"op":0,"t":"A","s":5,"d":{}}', False)
    fast.feed(b'{"op":0,"t":"A","s":3,"d":{}}', False)
    assert fast.sequence == 5
    fast.sequence = 100
    fast.feed(b'{"op":0,"t":"A","s":50,"d":{}}', False)
    assert fast.sequence == 100
    fast.reset()
    assert fast.sequence == 100
    with pytest.raises(TypeError):
        fast.sequence = "7"
    fast.sequence = None
    assert fast.sequence is None


def test_constructor_validation_and_make_decoder(monkeypatch):
    with pytest.raises(ValueError, match="encoding"):
        MessageDecoder("xml", 0)
    with pytest.raises(ValueError, match="compression"):
        MessageDecoder("json", 4)
    with pytest.raises(ValueError, match="max_message_size"):
        MessageDecoder("json", 2, max_message_size=0)
    with pytest.raises(TypeError, match="disabled_events"):
        MessageDecoder("json", 0, disabled_events="TYPING_START")
    monkeypatch.delenv("FASTSHARD_PURE_PYTHON", raising=False)
    assert type(make_decoder("json", 2)) is MessageDecoder
    monkeypatch.setenv("FASTSHARD_PURE_PYTHON", "1")
    assert type(make_decoder("json", 2)) is PyMessageDecoder


# -- the peek itself ----------------------------------------------------------

_names = st.sampled_from(["t", "s", "op", "d", "x", "T", "ss", "tt", "\u00e9"])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_names, _json_values, max_size=6), st.booleans(), st.booleans())
def test_json_peek_agrees_with_the_document(obj, indent, ascii_only):
    raw = json.dumps(obj, indent=2 if indent else None, ensure_ascii=ascii_only).encode()
    got = peek(raw, "json")
    if got is None:
        return  # unsure: the decoder decodes in full, always correct
    op, t, s = got
    if type(obj.get("op")) is int:
        assert op == obj["op"]
    elif "op" in obj:
        pytest.fail("peek must be unsure about a non-int op")
    if type(obj.get("t")) is str:
        assert t == obj["t"]
    else:
        assert t is None
    if type(obj.get("s")) is int or obj.get("s") is None:
        assert s == obj.get("s")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["t", "s", "op", "d", "x"]),
                       st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=6)
                                    | st.floats(allow_nan=False, allow_infinity=False),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.sampled_from(["t", "s", "a"]), inner, max_size=3),
                                    max_leaves=10), max_size=5))
def test_etf_peek_agrees_with_the_encoded_map(obj):
    got = peek(etf_encode(obj), "etf")
    if got is None:
        return
    op, t, s = got
    if "op" in obj:
        assert op == obj["op"]
    assert t == (obj["t"] if type(obj.get("t")) is str else None)
    if "s" in obj:
        assert s == obj["s"]


# -- garbage collector ------------------------------------------------------------

def test_gc_paused_for_large_payloads_and_restored_on_error():
    assert gc.isenabled()
    big_bad = b'{"op":0,"t":"GUILD_CREATE","s":1,"d":[' + b'{"a":[1,2,3]},' * 20000 + b'oops]}'
    fast = MessageDecoder("json", 0)
    with pytest.raises(DecodeError):
        fast.feed(big_bad, False)
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(DecodeError):
            fast.feed(big_bad, False)
        assert not gc.isenabled()
        fast.feed(b'{"op":0,"t":"GUILD_CREATE","s":1,"d":[' + b'{"a":[1,2,3]},' * 20000 + b'1]}', False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_does_not_run_while_a_large_payload_is_decoded():
    big = orjson.dumps({"op": 0, "t": "GUILD_CREATE", "s": 1, "d": guild_create(random.Random(8), 1500)})
    collections = []

    def on_gc(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    old = gc.get_threshold()
    gc.set_threshold(50, 5, 5)
    gc.callbacks.append(on_gc)
    try:
        orjson.loads(big)
        assert collections, "the check is meaningless if plain loads does not trigger the GC"
        collections.clear()
        MessageDecoder("json", 0).feed(big, False)
        assert collections == []
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*old)


# -- fuzz ---------------------------------------------------------------------------

_SEED_MESSAGES = {(e, c): wire(traffic(9, 6), e, c) for e in ENCODINGS for c in COMPRESSIONS}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ENCODINGS), st.sampled_from(COMPRESSIONS), st.data())
def test_fuzz_only_decode_errors(encoding, compression, data):
    messages = _SEED_MESSAGES[(encoding, compression)]
    fast = MessageDecoder(encoding, compression, max_message_size=1 << 20,
                          disabled_events=data.draw(st.sampled_from([(), ("TYPING_START",)])))
    for raw, binary in messages:
        mode = data.draw(st.sampled_from(["keep", "flip", "truncate", "random", "insert"]))
        buf = bytearray(raw)
        if mode == "flip" and buf:
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
        elif mode == "truncate":
            del buf[data.draw(st.integers(0, len(buf))):]
        elif mode == "random":
            buf = bytearray(data.draw(st.binary(max_size=300)))
        elif mode == "insert":
            i = data.draw(st.integers(0, len(buf)))
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        try:
            result = fast.feed(bytes(buf), binary)
        except DecodeError:
            fast.reset()
            continue
        assert result is None or type(result) is dict


# -- the simulator's own traffic and wire format --------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_simulator_traffic_same_as_reference(encoding, compression):
    traffic_mod = pytest.importorskip("fastshard.testing.traffic")
    compression_mod = pytest.importorskip("fastshard.testing.compression")
    gen = traffic_mod.TrafficGenerator(11)
    events = gen.guild_burst(8) + gen.steady_stream(400)
    packer = compression_mod.MessagePacker(encoding, compression)
    disabled = ("TYPING_START", "PRESENCE_UPDATE")
    ref = pure(encoding, compression, disabled_events=disabled)
    fast = MessageDecoder(encoding, compression, disabled_events=disabled)
    delivered = 0
    for seq, (t, d) in enumerate(events, 1):
        # zlib-stream chunks split across up to 3 websocket messages, as the simulator can
        for msg in packer.pack({"op": 0, "t": t, "s": seq, "d": d}, split=1 + seq % 3):
            got = fast.feed(msg.data, not msg.text)
            assert got == ref.feed(msg.data, not msg.text)
            delivered += got is not None
    assert fast.sequence == ref.sequence == len(events)
    assert 0 < delivered < len(events)
    assert (fast.wire_bytes, fast.raw_bytes) == (ref.wire_bytes, ref.raw_bytes)


# -- no read past the end, checked with a guard page -------------------------------------

class GuardedBuffer:
    """Bytes placed right before a PROT_NONE page: reading one byte too far segfaults."""

    PAGE = 4096

    def __init__(self) -> None:
        import ctypes
        import mmap

        self.map = mmap.mmap(-1, 2 * self.PAGE)
        anchor = ctypes.c_char.from_buffer(self.map)
        address = ctypes.addressof(anchor)
        del anchor
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if libc.mprotect(address + self.PAGE, self.PAGE, 0) != 0:
            pytest.skip("mprotect unavailable")

    def view(self, data: bytes) -> memoryview:
        assert len(data) <= self.PAGE
        start = self.PAGE - len(data)
        self.map[start:self.PAGE] = data
        return memoryview(self.map)[start:self.PAGE]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork") or __import__("sys").platform != "linux",
                    reason="guard pages via mprotect on Linux")
def test_peek_and_decode_never_read_past_the_end():
    guard = GuardedBuffer()
    samples = {
        "json": [raw for raw, _, _ in TRICKY_JSON] + [orjson.dumps(p) for p in traffic(12, 5)],
        "etf": [etf_encode(p) for p in traffic(12, 5)] + [
            etf_encode({"op": 0, "t": "TYPING_START", "d": {"a": [1, 2**40, None]}, "s": None}),
            etf_encode({"d": {"t": "x"}, "s": 5, "op": 0, "t": "TYPING_START"}),
            # erlpack's encoding: binary keys, SMALL_ATOM (115) nil
            erlpack.pack({"op": 0, "t": "TYPING_START", "d": {"t": "x", "s": [1.5, -3]}, "s": None}),
            erlpack.pack({"d": {"t": "x"}, "s": 2**40, "op": 0, "t": "MESSAGE_CREATE"})],
    }
    for encoding, payloads in samples.items():
        fast = MessageDecoder(encoding, 0, disabled_events=["TYPING_START"])
        for raw in payloads:
            raw = raw[:guard.PAGE]
            for end in range(len(raw) + 1):
                view = guard.view(raw[:end])
                peek(view, encoding)
                try:
                    fast.feed(view, encoding == "etf")
                except DecodeError:
                    pass
                view.release()


def test_etf_decoded_through_the_c_entry_point(monkeypatch):
    # decode_buffer from _etf.pxd is fetched by pointer; the Python-level
    # _etf.decode must not be on the per-message path.
    from fastshard import _etf

    def not_this(*args, **kwargs):
        raise AssertionError("the Python-level ETF decode was called")

    monkeypatch.setattr(_etf, "decode", not_this)
    fast = MessageDecoder("etf", 0)
    assert fast.feed(etf_encode({"op": 11, "d": None}), True) == {"op": 11, "d": None}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompressobj_backend_same_results(encoding):
    # The fallback used where zlib-ng's C API is not reachable.
    from fastshard._inflate import use_zlib_c_api

    use_zlib_c_api(False)
    try:
        fast = MessageDecoder(encoding, 2)
    finally:
        use_zlib_c_api(True)
    payloads = traffic(13, 200, big_every=50)
    packer = Packer(encoding, 2)
    ref = pure(encoding, 2)
    for payload in payloads:
        data, _ = packer.pack(payload)
        for part in (data[:len(data) // 2], data[len(data) // 2:]):
            assert fast.feed(part, True) == ref.feed(part, True)
    assert fast.sequence == ref.sequence
    use_zlib_c_api(False)
    try:
        fresh = MessageDecoder(encoding, 2)
    finally:
        use_zlib_c_api(True)
    with pytest.raises(DecodeError, match="corrupt zlib-stream"):
        fresh.feed(b"junk\x00\x00\xff\xff", True)


# -- hostile ETF: compressed-term bombs and object amplification (issue 8, section 3) --

def _compressed_term(inner: bytes) -> bytes:
    """131, 80, declared size, zlib: what Discord sends for a compressed ETF term."""
    return b"\x83P" + len(inner).to_bytes(4, "big") + zlib.compress(inner, 9)


def _wrap(message: bytes, compression: int) -> bytes:
    # the same bytes as one websocket message under transport compression
    if compression == 2:
        c = zlib.compressobj()
        return c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    if compression == 3:
        c = zstandard.ZstdCompressor().compressobj()
        return c.compress(message) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return message


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("options", [{}, {"disabled_events": ["TYPING_START"]}, {"raw_dispatches": True}])
def test_etf_compressed_term_honours_max_message_size(compression, options):
    # 56 bytes on the wire, declaring a 1 MiB term: refused before inflating
    d = b"m" + (1 << 20).to_bytes(4, "big") + b"\0" * (1 << 20)
    inner = (b"t\x00\x00\x00\x04" + b"m\x00\x00\x00\x02op" + b"a\x00" + b"m\x00\x00\x00\x01tw\x0eMESSAGE_CREATE"
             + b"m\x00\x00\x00\x01sa\x05" + b"m\x00\x00\x00\x01d" + d)
    bomb = _compressed_term(inner)
    assert len(bomb) < 1200
    for decoder in (MessageDecoder("etf", compression, max_message_size=4096, **options),
                    pure("etf", compression, max_message_size=4096, **options)):
        with pytest.raises(DecodeError, match=f"declares {len(inner)} bytes, more than the limit of 4096 bytes"):
            decoder.feed(_wrap(bomb, compression), True)
        assert decoder.sequence is None
    # a term that fits is still fine, and the limit counts the version byte too
    small = _compressed_term(inner[:-len(d)] + b"j")
    exact = len(inner[:-len(d)] + b"j") + 1     # the plain term, version byte included
    for size in ((exact, 4096) if compression < 2 else (4096,)):   # (2, 3: the wrapped term is larger)
        for decoder in (MessageDecoder("etf", compression, max_message_size=size, **options),
                        pure("etf", compression, max_message_size=size, **options)):
            out = decoder.feed(_wrap(small, compression), True)
            assert out == ({"op": 0, "t": "MESSAGE_CREATE", "s": 5, "d": []} if not options.get("raw_dispatches")
                           else ("MESSAGE_CREATE", 5, b"\x83" + inner[:-len(d)] + b"j"))
    decoder = MessageDecoder("etf", 0, max_message_size=len(inner[:-len(d)] + b"j"))
    with pytest.raises(DecodeError, match="more than the limit"):
        decoder.feed(small, True)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_etf_object_amplification_is_bounded(compression):
    # A list of a million NILs: 1 MB inflated, ~1 KB compressed, and each NIL
    # would be a new 72-byte list (+8 for its slot): ~80 MB of objects.
    n = 1_000_000
    term = b"l" + n.to_bytes(4, "big") + b"j" * n + b"j"
    message = _compressed_term(term)
    assert len(message) < 2000
    payload = b"\x83t\x00\x00\x00\x01m\x00\x00\x00\x01d" + term   # the same, uncompressed, inside a map
    for make in (MessageDecoder, pure):
        for data in (message, payload):
            with pytest.raises(DecodeError, match="more than one list/tuple/map per 8 bytes"):
                make("etf", compression).feed(_wrap(data, compression), True)
    # the bound is relative to the term: a container per 13 bytes is fine
    ok = b"\x83l" + (1000).to_bytes(4, "big") + (b"l\x00\x00\x00\x01m\x00\x00\x00\x02abj") * 1000 + b"j"
    assert _decode_plain(ok, "etf") == [["ab"]] * 1000


def test_etf_duplicate_keys_peek_and_decode_agree():
    """The last of a duplicated t/s counts, in the peek as in the map decode."""
    def etf_map(*pairs: tuple[bytes, bytes]) -> bytes:
        return b"\x83t" + len(pairs).to_bytes(4, "big") + b"".join(k + v for k, v in pairs)

    def key(name: bytes) -> bytes:
        return b"m" + len(name).to_bytes(4, "big") + name

    def atom(name: bytes) -> bytes:
        return b"w" + bytes([len(name)]) + name

    raw = etf_map((key(b"op"), b"a\x00"), (key(b"t"), atom(b"TYPING_START")), (key(b"s"), b"a\x05"),
                  (key(b"t"), atom(b"MESSAGE_CREATE")), (key(b"d"), b"j"))
    assert peek(raw, "etf") == (0, "MESSAGE_CREATE", 5)
    for decoder in (MessageDecoder("etf", 0, disabled_events=["TYPING_START"]),
                    pure("etf", 0, disabled_events=["TYPING_START"])):
        assert decoder.feed(raw, True) == {"op": 0, "t": "MESSAGE_CREATE", "s": 5, "d": []}
    raw = etf_map((key(b"op"), b"a\x00"), (key(b"t"), atom(b"MESSAGE_CREATE")), (key(b"s"), b"a\x05"),
                  (atom(b"t"), atom(b"TYPING_START")), (atom(b"s"), b"a\x09"), (key(b"d"), b"j"))
    assert peek(raw, "etf") == (0, "TYPING_START", 9)
    for decoder in (MessageDecoder("etf", 0, disabled_events=["TYPING_START"]),
                    pure("etf", 0, disabled_events=["TYPING_START"])):
        assert decoder.feed(raw, True) is None
        assert decoder.sequence == 9
    # trailing bytes after the map: the peek is unsure, the decode refuses
    assert peek(raw + b"j", "etf") is None
    with pytest.raises(DecodeError, match="trailing"):
        MessageDecoder("etf", 0, disabled_events=["TYPING_START"]).feed(raw + b"j", True)


def test_json_duplicate_keys_peek_and_orjson_agree():
    raw = b'{"op":0,"t":"TYPING_START","s":5,"t":"MESSAGE_CREATE","d":{}}'
    assert peek(raw, "json") == (0, "MESSAGE_CREATE", 5) and orjson.loads(raw)["t"] == "MESSAGE_CREATE"
    raw = b'{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{"s":1,"t":"X"},"s":7,"t":"TYPING_START"}'
    assert peek(raw, "json") == (0, "TYPING_START", 7)
    raw = b'{"op":0,"t":"A","s":05,"d":{}}'                 # not JSON: never peeked as 5
    assert peek(raw, "json") is None
    assert peek(b'{"op":0,"t":"A\\u0042","s":1}', "json") is None
    assert peek(b'{"op":0,"t":"A\x01B","s":1}', "json") is None   # a raw control character: orjson refuses it


@pytest.mark.parametrize("make", [MessageDecoder, pure], ids=["cython", "reference"])
def test_payload_zlib_truncated_or_with_trailing_bytes(make):
    """Found by fuzz/payload_zlib.py: the reference decoder accepted a truncated stream."""
    whole = zlib.compress(b'{"op":11,"d":null,"s":null,"t":null}')
    assert make("json", 1).feed(whole, True) == {"op": 11, "d": None, "s": None, "t": None}
    for cut in (2, 5, len(whole) - 4, len(whole) - 1):
        with pytest.raises(DecodeError, match="truncated zlib payload"):
            make("json", 1).feed(whole[:cut], True)
    with pytest.raises(DecodeError, match="bytes after the end of the zlib stream"):
        make("json", 1).feed(whole + b"{}", True)
