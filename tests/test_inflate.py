"""The inflaters on their own: both zlib-stream backends, zstd-stream, payload zlib.

Hostile streams must fail with DecodeError while memory stays bounded
(tracemalloc sees the bytes objects the inflaters create).
"""
from __future__ import annotations

import os
import random
import tracemalloc
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fastshard.errors import DecodeError

_inflate = pytest.importorskip("fastshard._inflate")
ZlibStreamInflater = _inflate.ZlibStreamInflater
ZstdStreamInflater = _inflate.ZstdStreamInflater
ZlibPayloadInflater = _inflate.ZlibPayloadInflater

MB = 1 << 20
BACKENDS = [pytest.param(True, id="zng-c-api"), pytest.param(False, id="decompressobj")]


def chunks(payloads: list[bytes]) -> list[bytes]:
    c = zlib.compressobj()
    return [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in payloads]


def json_like(rng: random.Random, size: int) -> bytes:
    words = [b'"id":"%d"' % rng.randrange(10**18), b'"name":"caf\xc3\xa9"', b'"roles":[]', b'"x":null']
    out = bytearray(b"{")
    while len(out) < size:
        out += rng.choice(words) + b","
    return bytes(out[:-1]) + b"}"


def test_c_api_is_in_use_here():
    # This machine's zlib_ng wheel exports zlib-ng's symbols; if that ever
    # changes the fallback works, but the speed claim in bench/ needs a look.
    assert _inflate.ZLIB_BACKEND == "zlib-ng C API"
    assert ZlibStreamInflater(MB).backend == "zlib-ng C API"
    assert ZlibStreamInflater(MB, use_c_api=False).backend == "zlib_ng decompressobj"


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_many_messages(c_api):
    rng = random.Random(1)
    payloads = [json_like(rng, rng.randrange(1, 5000)) for _ in range(500)]
    inf = ZlibStreamInflater(MB, use_c_api=c_api)
    assert [inf.feed_bytes(c) for c in chunks(payloads)] == payloads


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_split_at_every_byte(c_api):
    rng = random.Random(2)
    payload = json_like(rng, 3000)
    inf = ZlibStreamInflater(MB, use_c_api=c_api)
    c = zlib.compressobj()
    cut = 1
    while True:
        data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
        if cut >= len(data):
            assert inf.feed_bytes(data) == payload
            break
        if data[:cut].endswith(b"\x00\x00\xff\xff"):
            assert inf.feed_bytes(data) == payload
        else:
            assert inf.feed_bytes(data[:cut]) is None
            assert inf.pending_size == cut
            assert inf.feed_bytes(data[cut:]) == payload
            assert inf.pending_size == 0
        cut += 1
    # one byte per message, empty messages between
    data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    out = []
    for b in data:
        out.append(inf.feed_bytes(b""))
        out.append(inf.feed_bytes(bytes([b])))
    assert out[-1] == payload and not any(out[:-1])


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_one_megabyte_and_more(c_api):
    rng = random.Random(3)
    payloads = [json_like(rng, size) for size in (MB, 3 * MB, 100, 2 * MB)]
    inf = ZlibStreamInflater(8 * MB, use_c_api=c_api)
    assert [inf.feed_bytes(c) for c in chunks(payloads)] == payloads


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_exact_cap_fits(c_api):
    payload = os.urandom(50_000)    # incompressible: exercises output growth
    inf = ZlibStreamInflater(len(payload), use_c_api=c_api)
    assert inf.feed_bytes(chunks([payload])[0]) == payload
    inf = ZlibStreamInflater(len(payload) - 1, use_c_api=c_api)
    with pytest.raises(DecodeError, match="larger than max_message_size"):
        inf.feed_bytes(chunks([payload])[0])


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_bomb_is_bounded(c_api):
    bomb = chunks([b"\0" * (200 * MB)])[0]
    assert len(bomb) < 300_000
    inf = ZlibStreamInflater(4 * MB, use_c_api=c_api)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="larger than max_message_size"):
            inf.feed_bytes(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_without_suffix(c_api):
    inf = ZlibStreamInflater(100_000, use_c_api=c_api)
    with pytest.raises(DecodeError, match="before its 00 00 ff ff suffix"):
        for _ in range(1000):
            assert inf.feed_bytes(b"\x78\x9c" + b"\x01" * 998) is None
            assert inf.pending_size <= 100_000
    assert inf.pending_size == 0
    with pytest.raises(DecodeError, match="before its 00 00 ff ff suffix"):
        ZlibStreamInflater(10, use_c_api=c_api).feed_bytes(b"x" * 11)


@pytest.mark.parametrize("c_api", BACKENDS)
@pytest.mark.parametrize("bad", [b"garbage\x00\x00\xff\xff", b"\x78\x9c\xff\xff\xff\x00\x00\xff\xff",
                                 b"\x00\x00\xff\xff"])
def test_zlib_stream_corrupt(c_api, bad):
    with pytest.raises(DecodeError, match="corrupt zlib-stream"):
        ZlibStreamInflater(MB, use_c_api=c_api).feed_bytes(bad)


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_data_after_stream_end(c_api):
    c = zlib.compressobj()
    ended = c.compress(b'{"op":11}') + c.flush(zlib.Z_FINISH)
    inf = ZlibStreamInflater(MB, use_c_api=c_api)
    with pytest.raises(DecodeError):
        inf.feed_bytes(ended + b"\x02\x00\x00\x00\xff\xff")


@pytest.mark.parametrize("c_api", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_zlib_stream_fuzz(c_api, data):
    rng = random.Random(data.draw(st.integers(0, 1000)))
    stream = b"".join(chunks([json_like(rng, rng.randrange(1, 400)) for _ in range(3)]))
    buf = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    inf = ZlibStreamInflater(64 * 1024, use_c_api=c_api)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(buf)), max_size=5)))
    try:
        for a, b in zip([0] + cuts, cuts + [len(buf)]):
            out = inf.feed_bytes(bytes(buf[a:b]))
            assert out is None or len(out) <= 64 * 1024
    except DecodeError:
        pass


def test_zstd_stream_messages_and_large_ones():
    rng = random.Random(4)
    payloads = [json_like(rng, rng.randrange(1, 3000)) for _ in range(200)]
    payloads[50] = json_like(rng, 3 * MB)       # compressed past one slice: fed in slices
    comp = zstandard.ZstdCompressor().compressobj()
    inf = ZstdStreamInflater(64 * MB)
    for p in payloads:
        data = comp.compress(p) + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        assert inf.feed_bytes(data) == p
    assert inf.feed_bytes(b"") is None


def test_zstd_stream_across_frames():
    # A server that ends its frame and starts another must not break the stream.
    cctx = zstandard.ZstdCompressor()
    inf = ZstdStreamInflater(MB)
    assert inf.feed_bytes(cctx.compress(b'{"op":10}')) == b'{"op":10}'
    assert inf.feed_bytes(cctx.compress(b'{"op":11}')) == b'{"op":11}'


@pytest.mark.parametrize("size", [10 * MB, 200 * MB])
def test_zstd_stream_bomb_is_bounded(size):
    comp = zstandard.ZstdCompressor().compressobj()
    bomb = comp.compress(b"\0" * size) + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    inf = ZstdStreamInflater(2 * MB)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="larger than max_message_size"):
            inf.feed_bytes(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB


def test_zstd_stream_corrupt():
    with pytest.raises(DecodeError, match="corrupt zstd-stream"):
        ZstdStreamInflater(MB).feed_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 40)
    with pytest.raises(DecodeError, match="corrupt zstd-stream"):
        ZstdStreamInflater(MB).feed_bytes(os.urandom(50) + b"x" * 5000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 5000))
def test_zstd_stream_fuzz(junk, cap):
    comp = zstandard.ZstdCompressor().compressobj()
    good = comp.compress(b'{"op":11}' * 10) + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    inf = ZstdStreamInflater(cap)
    try:
        for msg in (good, junk, good + junk):
            out = inf.feed_bytes(msg)
            assert out is None or len(out) <= cap
    except DecodeError:
        pass


def test_payload_zlib():
    inf = ZlibPayloadInflater(MB)
    assert inf.feed_bytes(zlib.compress(b'{"op":11}')) == b'{"op":11}'
    with pytest.raises(DecodeError, match="truncated"):
        inf.feed_bytes(zlib.compress(b'{"op":11}' * 50)[:-5])
    with pytest.raises(DecodeError, match="corrupt zlib payload"):
        inf.feed_bytes(b"not zlib")
    with pytest.raises(DecodeError, match="larger than max_message_size"):
        ZlibPayloadInflater(1000).feed_bytes(zlib.compress(b"a" * 5000))
    assert ZlibPayloadInflater(5000).feed_bytes(zlib.compress(b"a" * 5000)) == b"a" * 5000


@pytest.mark.parametrize("cls", [ZlibStreamInflater, ZstdStreamInflater, ZlibPayloadInflater])
def test_cap_validated(cls):
    with pytest.raises(ValueError, match="max_message_size"):
        cls(0)


def test_escape_hatch_environment_variable():
    import subprocess
    import sys
    from pathlib import Path

    code = "import fastshard._inflate as i; print(i.ZLIB_BACKEND, i.ZlibStreamInflater(10).backend)"
    env = dict(os.environ, FASTSHARD_ZLIB_DECOMPRESSOBJ="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.split() == ["zlib_ng", "decompressobj", "zlib_ng", "decompressobj"]


def test_switching_backends_for_new_inflaters():
    assert _inflate.use_zlib_c_api(False) is False
    try:
        assert ZlibStreamInflater(MB).backend == "zlib_ng decompressobj"
    finally:
        assert _inflate.use_zlib_c_api(True) is True
    assert ZlibStreamInflater(MB).backend == "zlib-ng C API"


@pytest.mark.parametrize("c_api", BACKENDS)
def test_zlib_stream_many_chunks_in_one_message(c_api):
    # Several sync-flushed chunks in one websocket message inflate together
    # (the decoder then sees their concatenation; Discord sends one per message).
    rng = random.Random(5)
    payloads = [json_like(rng, rng.randrange(10, 2000)) for _ in range(50)]
    inf = ZlibStreamInflater(MB, use_c_api=c_api)
    assert inf.feed_bytes(b"".join(chunks(payloads))) == b"".join(payloads)


def _zstd_frame_header(window_log: int, mantissa: int = 0) -> bytes:
    # magic, frame header descriptor (no content size, no checksum, no
    # dictionary, not single-segment), window descriptor
    return b"\x28\xb5\x2f\xfd\x00" + bytes([((window_log - 10) << 3) | mantissa])


def _raw_block(data: bytes, last: bool = False) -> bytes:
    header = (len(data) << 3) | int(last)          # block type 0: raw
    return header.to_bytes(3, "little") + data


@pytest.mark.parametrize("window_log,ok", [(10, True), (18, True), (21, True), (23, True), (24, False),
                                           (27, False), (31, False)])
def test_zstd_stream_window_is_bounded(window_log, ok):
    """A frame may not make the connection hold more than ZSTD_MAX_WINDOW_SIZE (8 MiB)."""
    from fastshard.codec import ZSTD_MAX_WINDOW_SIZE, PyMessageDecoder

    assert ZSTD_MAX_WINDOW_SIZE == 1 << 23
    message = _zstd_frame_header(window_log) + _raw_block(b'{"op":11}')
    for feed in (ZstdStreamInflater(4096).feed_bytes,
                 lambda data: PyMessageDecoder("json", 3, max_message_size=4096).feed(data, True)):
        if ok:
            assert feed(message) in (b'{"op":11}', {"op": 11})
        else:
            with pytest.raises(DecodeError, match=f"declares a window \\({1 << window_log} bytes\\) larger than "
                                                  "the 8388608-byte limit"):
                feed(message)
    # one mantissa step past 8 MiB is already too much
    with pytest.raises(DecodeError, match="larger than the 8388608-byte limit"):
        ZstdStreamInflater(4096).feed_bytes(_zstd_frame_header(23, 1) + _raw_block(b"{}"))


def test_zstd_stream_window_from_a_real_compressor():
    # what zstd itself writes for a 128 MiB window (the old default limit) is refused
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    comp = zstandard.ZstdCompressor(compression_params=params).compressobj()
    data = comp.compress(b'{"op":11}') + comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    with pytest.raises(DecodeError, match="larger than the 8388608-byte limit"):
        ZstdStreamInflater(MB).feed_bytes(data)


def test_simulator_zstd_stream_declares_discords_window():
    from fastshard.testing.compression import ZSTD_WINDOW_LOG, MessagePacker

    message = MessagePacker("json", 3).pack({"op": 10, "d": {"heartbeat_interval": 41250}})[0]
    assert zstandard.get_frame_parameters(message.data).window_size == 1 << ZSTD_WINDOW_LOG == 256 * 1024
