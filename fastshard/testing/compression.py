"""Server-side compression contexts and the exact websocket messages they yield.

``MessagePacker`` is the one place that turns an encoded payload into what
goes on the wire for a given encoding + compression, so the simulator's live
connections and the benchmarks' pre-encoded streams produce the same bytes.
"""
from __future__ import annotations

import zlib
from typing import Any, NamedTuple

import zstandard

from . import etf
from .encoding import encode_payload

__all__ = ["WireMessage", "MessagePacker", "ZLIB_SUFFIX", "COMPRESSION_NAMES",
           "zlib_stream_compressor", "zstd_stream_compressor", "split_bytes", "ZSTD_WINDOW_LOG"]

ZLIB_SUFFIX = b"\x00\x00\xff\xff"
# compress= query values and the shard's compression numbers.
COMPRESSION_NAMES = {"zlib-stream": 2, "zstd-stream": 3}


class WireMessage(NamedTuple):
    """One websocket message: its bytes and whether it goes as a text frame."""

    data: bytes
    text: bool


def split_bytes(data: bytes, parts: int) -> list[bytes]:
    """Split ``data`` into ``parts`` non-empty pieces (fewer if it is too short)."""
    parts = max(1, min(parts, len(data)))
    size, extra = divmod(len(data), parts)
    out, pos = [], 0
    for i in range(parts):
        end = pos + size + (1 if i < extra else 0)
        out.append(data[pos:end])
        pos = end
    return out


def zlib_stream_compressor() -> Any:
    return zlib.compressobj()


# Discord's zstd-stream window.  Discord's post on its zstd rollout ("How
# Discord Reduced Websocket Traffic by 40%", 2024) tuned windowlog, chainlog
# and hashlog so every connection's context fits the gateway's memory, and
# gives windowlog 18 (256 KiB); check a live stream with
# zstandard.get_frame_parameters(first_message).window_size.  zstd's level-3
# default would declare 2 MiB, which a client then holds for the whole
# connection.
ZSTD_WINDOW_LOG = 18


def zstd_stream_compressor() -> Any:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=ZSTD_WINDOW_LOG)
    return zstandard.ZstdCompressor(compression_params=params).compressobj()


class MessagePacker:
    """Per-connection packing: encoding, compression context, message splitting.

    ``compression``: 0 none, 1 payload compression (identify ``compress:
    true``), 2 zlib-stream, 3 zstd-stream.  Stateful for 2 and 3 (one context
    per connection, as Discord does), so messages must be sent in the order
    they were packed.
    """

    def __init__(self, encoding: str, compression: int = 0, *,
                 payload_compression_threshold: int = 256) -> None:
        if encoding not in ("json", "etf"):
            raise ValueError(f"encoding must be 'json' or 'etf', not {encoding!r}")
        if compression not in (0, 1, 2, 3):
            raise ValueError(f"compression must be 0, 1, 2 or 3, not {compression!r}")
        self.encoding = encoding
        self.compression = compression
        # Discord compresses only some payloads; small ones stay plain so a
        # client must handle both kinds of frames.
        self.payload_compression_threshold = payload_compression_threshold
        self._ctx: Any = None
        if compression == 2:
            self._ctx = zlib_stream_compressor()
        elif compression == 3:
            self._ctx = zstd_stream_compressor()

    def enable_payload_compression(self) -> None:
        """IDENTIFY asked for ``compress: true``; ignored under transport compression."""
        if self.compression == 0:
            self.compression = 1

    def pack(self, payload: Any, split: int = 1) -> list[WireMessage]:
        return self.pack_encoded(encode_payload(payload, self.encoding), split)

    def pack_encoded(self, raw: bytes, split: int = 1) -> list[WireMessage]:
        """Messages for an already encoded payload (``split`` only applies to zlib-stream)."""
        c = self.compression
        if c == 2:
            data = self._ctx.compress(raw) + self._ctx.flush(zlib.Z_SYNC_FLUSH)
            return [WireMessage(part, False) for part in split_bytes(data, split)]
        if c == 3:
            # Flush a block, never end the frame: the client's decompressor
            # must yield each message as soon as its websocket message arrives.
            data = self._ctx.compress(raw) + self._ctx.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            return [WireMessage(data, False)]
        if c == 1 and len(raw) >= self.payload_compression_threshold:
            if self.encoding == "json":
                return [WireMessage(zlib.compress(raw), False)]
            return [WireMessage(etf.compress_term(raw), False)]
        return [WireMessage(raw, self.encoding == "json")]
