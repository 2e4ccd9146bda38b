"""The one place where the shard gets its codecs.

The shard only ever calls :func:`make_decoder` and :func:`make_encoder`.  The
Cython hot path (``fastshard._decoder``) fills the same interface as the
plain-Python reference implementation below; the reference stays because the
differential tests compare the two and it documents the rules in readable form.

Decoder interface (both implementations):

``decoder.feed(data, binary) -> dict | tuple | None``
    One complete websocket message (bytes-like).  Returns the gateway payload,
    or ``None`` when nothing is to be delivered yet: a zlib-stream message
    without the ``00 00 ff ff`` suffix, or a dispatch named in
    ``disabled_events`` (whose sequence is still tracked).  Raises
    :class:`fastshard.errors.DecodeError` on anything malformed, a dispatch
    (op 0) whose ``t`` is not a str or whose ``s`` is not an int included.
    With ``raw_dispatches=True``, a dispatch other than READY/RESUMED comes
    back as the tuple ``(t: str, s: int, raw: bytes)``, ``raw`` being the
    whole message after inflation (JSON text or the plain ETF term), its
    ``d`` not decoded.
``max_message_size``
    The most any message may be, on the wire or inflated (zlib, zstd, or an
    ETF compressed term): past it, DecodeError.
``decoder.feed_frame(frame) -> dict | None``
    A picows ``WSFrame`` (TEXT, BINARY or CONTINUATION); fragmented messages
    are reassembled internally.  The frame is not kept after the call.
``decoder.reset()``
    A new connection: a fresh decompression context and empty buffers.  The
    sequence is kept (it belongs to the session, not the connection).
``decoder.watch_read_buffer(transport)``
    Called with the picows transport once a connection is up: the decoder
    then gives picows' read buffer back after large frames (see
    ``fastshard._readbuf``); ``reset()`` forgets the transport.
``decoder.sequence``
    Highest ``s`` seen (``None`` before any); only ever moves up.  Settable,
    so a shard resuming a given session can seed it.
``decoder.wire_bytes`` / ``decoder.raw_bytes``
    Bytes received on the wire and after decompression, for statistics.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import orjson
import zstandard
from zlib_ng import zlib_ng

from .errors import DecodeError

__all__ = ["make_decoder", "make_encoder", "PyMessageDecoder", "JsonEncoder", "EtfEncoder",
           "DEFAULT_MAX_MESSAGE_SIZE", "ZSTD_MAX_WINDOW_SIZE", "ZLIB_SUFFIX", "zstd_stream_decompressobj",
           "zstd_error"]

ZLIB_SUFFIX = b"\x00\x00\xff\xff"
# Large enough for a GUILD_CREATE of a 250k-member guild, small enough that a
# hostile stream cannot eat the machine.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# The largest zstd window a zstd-stream connection may declare.  A decoder
# holds the window the frame header asks for, for the life of the connection,
# whatever max_message_size is: unbounded (zstd's default limit is 128 MiB),
# one hostile frame header pins 128 MiB per shard.  8 MiB is the zstd format's
# interoperability recommendation (RFC 8878 / RFC 9659), 32x the 256 KiB
# (windowLog 18) Discord's blog post on its zstd rollout reports tuning to,
# so Discord's window always fits (its larger "upgraded" contexts included).
ZSTD_MAX_WINDOW_SIZE = 8 * 1024 * 1024

_ZLIB_ERROR: type[Exception] = zlib_ng.error  # type: ignore[assignment]
_PICOWS_CONTINUATION = 0
_PICOWS_TEXT = 1
_PICOWS_BINARY = 2


def zstd_stream_decompressobj() -> Any:
    """A zstd-stream decompression context whose window is bounded by ZSTD_MAX_WINDOW_SIZE."""
    # read_across_frames: a server that ends a frame and starts another
    # must not make the next message fail.
    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW_SIZE).decompressobj(read_across_frames=True)


def zstd_error(exc: Exception, data: bytes | bytearray | memoryview) -> DecodeError:
    """The DecodeError for a zstandard error on ``data`` (names a refused window)."""
    if "too much memory" in str(exc):
        try:
            window = zstandard.get_frame_parameters(bytes(data[:18])).window_size
        except zstandard.ZstdError:
            window = None
        declared = f" ({window} bytes)" if window else ""
        return DecodeError(f"zstd-stream frame declares a window{declared} larger than the "
                           f"{ZSTD_MAX_WINDOW_SIZE}-byte limit")
    return DecodeError(f"corrupt zstd-stream data: {exc}")


def _etf_module() -> Any:
    from . import _etf  # type: ignore[attr-defined]  # Cython; imported lazily so JSON users never need it loaded

    return _etf


class PyMessageDecoder:
    """Plain-Python reference decoder: inflate + decode + sequence tracking."""

    def __init__(self, encoding: str = "json", compression: int = 0, *, big_ints_as_str: bool = True,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 disabled_events: Iterable[str] = (), raw_dispatches: bool = False) -> None:
        if encoding not in ("json", "etf"):
            raise ValueError(f"encoding must be 'json' or 'etf', not {encoding!r}")
        if compression not in (0, 1, 2, 3):
            raise ValueError(f"compression must be 0, 1, 2 or 3, not {compression!r}")
        self.encoding = encoding
        self.compression = compression
        self.big_ints_as_str = big_ints_as_str
        self.max_message_size = max_message_size
        self.disabled_events = frozenset(disabled_events)
        self.raw_dispatches = raw_dispatches
        self.sequence: int | None = None
        self.wire_bytes = 0
        self.raw_bytes = 0
        self._etf = _etf_module() if encoding == "etf" else None
        self.reset()

    def reset(self) -> None:
        self._fragments = bytearray()
        self._fragment_binary = False
        self._zbuf = bytearray()
        self._zlib = zlib_ng.decompressobj() if self.compression == 2 else None
        self._zstd = zstd_stream_decompressobj() if self.compression == 3 else None
        self.read_buffer_trimmer: Any = None

    def watch_read_buffer(self, transport: Any) -> None:
        try:
            from ._readbuf import ReadBufferTrimmer  # Cython; mypy sees it as Any
        except ImportError:
            return      # no compiled modules: picows keeps its buffer
        self.read_buffer_trimmer = ReadBufferTrimmer(transport)

    # -- intake -----------------------------------------------------------
    def feed_frame(self, frame: Any) -> Any:
        msg_type = int(frame.msg_type.value if hasattr(frame.msg_type, "value") else frame.msg_type)
        if msg_type not in (_PICOWS_CONTINUATION, _PICOWS_TEXT, _PICOWS_BINARY):
            return None  # ping/pong/close belong to the shard, not the decoder
        if self.read_buffer_trimmer is not None and frame.last_in_buffer:
            self.read_buffer_trimmer.frame_ended_read()
        data = frame.get_payload_as_bytes()
        if msg_type == _PICOWS_CONTINUATION:
            self._append_fragment(data)
            if not frame.fin:
                return None
            data, binary = bytes(self._fragments), self._fragment_binary
            self._fragments.clear()
            return self.feed(data, binary)
        if not frame.fin:
            self._fragments.clear()
            self._fragment_binary = msg_type == _PICOWS_BINARY
            self._append_fragment(data)
            return None
        return self.feed(data, msg_type == _PICOWS_BINARY)

    def _append_fragment(self, data: bytes) -> None:
        if len(self._fragments) + len(data) > self.max_message_size:
            self._fragments.clear()
            raise DecodeError(f"fragmented message is larger than max_message_size ({self.max_message_size} bytes)")
        self._fragments += data

    def feed(self, data: bytes | bytearray | memoryview, binary: bool) -> Any:
        self.wire_bytes += len(data)
        raw = self._inflate(data, binary)
        if raw is None:
            return None
        if self._etf is not None and len(raw) >= 2 and raw[1] == 80:
            # A compressed ETF term: inflated here, within max_message_size.
            raw = self._etf.inflate_term(raw, self.max_message_size)
        self.raw_bytes += len(raw)
        payload = self._decode(raw)
        if not isinstance(payload, dict):
            raise DecodeError(f"gateway payload is not an object but {type(payload).__name__}")
        s = payload.get("s")
        op = payload.get("op")
        if type(op) is not int or op != 0:
            if type(s) is int:
                self._track(s)
            return payload
        # A dispatch: its name and sequence are what every layer above relies on.
        t = payload.get("t")
        if type(t) is not str:
            raise DecodeError(f"dispatch (op 0) whose t is {type(t).__name__}, not the event name")
        if type(s) is not int:
            raise DecodeError(f"dispatch (op 0) whose s is {type(s).__name__}, not the sequence number")
        self._track(s)
        if t in self.disabled_events:
            return None
        if self.raw_dispatches and t != "READY" and t != "RESUMED":
            return (t, s, bytes(raw))
        return payload

    def _track(self, s: int) -> None:
        if self.sequence is None or s > self.sequence:
            self.sequence = s

    # -- decompression ----------------------------------------------------
    def _inflate(self, data: bytes | bytearray | memoryview, binary: bool) -> bytes | bytearray | memoryview | None:
        c = self.compression
        if c == 2:
            if len(self._zbuf) + len(data) > self.max_message_size:
                self._zbuf.clear()
                raise DecodeError("zlib-stream message passed max_message_size before its 00 00 ff ff suffix")
            self._zbuf += data
            if len(self._zbuf) < 4 or self._zbuf[-4:] != ZLIB_SUFFIX:
                return None
            chunk = bytes(self._zbuf)
            self._zbuf.clear()
            assert self._zlib is not None
            try:
                out = self._zlib.decompress(chunk, self.max_message_size)
            except _ZLIB_ERROR as exc:
                raise DecodeError(f"corrupt zlib-stream data: {exc}") from None
            if self._zlib.unconsumed_tail:
                raise DecodeError(f"inflated message is larger than max_message_size ({self.max_message_size} bytes)")
            return out
        if c == 3:
            assert self._zstd is not None
            try:
                out = bytes(self._zstd.decompress(bytes(data)))
            except zstandard.ZstdError as exc:
                raise zstd_error(exc, data) from None
            if len(out) > self.max_message_size:
                raise DecodeError(f"inflated message is larger than max_message_size ({self.max_message_size} bytes)")
            return out
        if c == 1 and binary and self.encoding == "json":
            try:
                d = zlib_ng.decompressobj()
                out = d.decompress(bytes(data), self.max_message_size)
            except _ZLIB_ERROR as exc:
                raise DecodeError(f"corrupt zlib payload: {exc}") from None
            if d.unconsumed_tail:
                raise DecodeError(f"inflated message is larger than max_message_size ({self.max_message_size} bytes)")
            if not d.eof:
                raise DecodeError("truncated zlib payload: the stream ends before its end marker")
            if d.unused_data:
                raise DecodeError("corrupt zlib payload: bytes after the end of the zlib stream")
            return out
        return data

    def _decode(self, raw: bytes | bytearray | memoryview) -> Any:
        if self._etf is not None:
            return self._etf.decode(raw, big_ints_as_str=self.big_ints_as_str)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON from the gateway: {exc}") from None


class JsonEncoder:
    """Outgoing commands as JSON text frames."""

    binary = False

    def encode(self, payload: Any) -> bytes:
        return orjson.dumps(payload)


class EtfEncoder:
    """Outgoing commands as ETF binary frames (map keys as binaries, never atoms)."""

    binary = True

    def __init__(self) -> None:
        self._encode = _etf_module().encode

    def encode(self, payload: Any) -> bytes:
        data: bytes = self._encode(payload)
        return data


def _use_pure() -> bool:
    return os.environ.get("FASTSHARD_PURE_PYTHON", "") not in ("", "0")


def make_decoder(encoding: str = "json", compression: int = 0, **options: Any) -> Any:
    """Return the fastest available decoder (see the module docstring for its interface)."""
    if not _use_pure():
        try:
            from ._decoder import MessageDecoder
        except ImportError:
            pass
        else:
            return MessageDecoder(encoding, compression, **options)
    return PyMessageDecoder(encoding, compression, **options)


def make_encoder(encoding: str = "json") -> JsonEncoder | EtfEncoder:
    return EtfEncoder() if encoding == "etf" else JsonEncoder()
