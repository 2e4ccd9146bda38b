# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Inflaters for Discord's transport and payload compression.

* :class:`ZlibStreamInflater`: ``compress=zlib-stream``.  One zlib context per
  connection; a message is complete only when the buffered input ends with
  the Z_SYNC_FLUSH marker ``00 00 ff ff`` (a chunk may span several websocket
  messages).
* :class:`ZstdStreamInflater`: ``compress=zstd-stream``.  Each websocket
  message is one gateway payload inside a frame that never ends.
* :class:`ZlibPayloadInflater`: payload compression (``compress: true`` in
  IDENTIFY): one complete zlib stream per binary message.

zlib-stream inflates with zlib-ng's native C API (``zng_inflate``) into a
reused output buffer.  Debian has no libz-ng-dev and cibuildwheel would have
to vendor and build zlib-ng for every platform, so the functions are taken
from the zlib_ng wheel (a runtime dependency that links zlib-ng statically and
exports its ``zng_*`` symbols), after checking its version is 2.x and
inflating a known chunk.  Where that fails (e.g. a build that hides the
symbols) the same inflater falls back to zlib_ng's ``decompressobj``.
FASTSHARD_ZLIB_DECOMPRESSOBJ=1 forces the fallback.  Measured with
bench/bench_decode.py (2026-11-28, 20,000 realistic steady-state messages,
JSON over zlib-stream, whole decoder path, medians of 9 interleaved rounds):
4.69 vs 4.88 and 6.44 vs 6.70 us/message in two runs, the C API ~4% faster
(no output bytes object to allocate, grow and shrink per message).

Every inflater caps what it buffers and produces at ``max_size`` and raises
:class:`fastshard.errors.DecodeError` past it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_READ
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdint cimport int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset

import zstandard
from zlib_ng import zlib_ng

from .codec import zstd_error, zstd_stream_decompressobj
from .errors import DecodeError

__all__ = ["ZlibStreamInflater", "ZstdStreamInflater", "ZlibPayloadInflater", "ZLIB_BACKEND", "use_zlib_c_api"]

cdef object _zlib_error = zlib_ng.error
cdef object _zlib_decompressobj = zlib_ng.decompressobj
cdef object _zstd_error = zstandard.ZstdError

# -- zlib-ng's C API, taken from the zlib_ng wheel --------------------------------

ctypedef int32_t (*zng_init2_fn)(zng_stream* strm, int32_t window_bits) noexcept nogil
ctypedef int32_t (*zng_inflate_fn)(zng_stream* strm, int32_t flush) noexcept nogil
ctypedef int32_t (*zng_end_fn)(zng_stream* strm) noexcept nogil

cdef zng_init2_fn _zng_inflate_init2 = NULL
cdef zng_inflate_fn _zng_inflate = NULL
cdef zng_end_fn _zng_inflate_end = NULL

cdef enum:
    _Z_OK = 0
    _Z_STREAM_END = 1
    _Z_SYNC_FLUSH = 2
    _Z_BUF_ERROR = -5

# Keeps the library handle alive for as long as the pointers are used.
cdef object _zng_library = None


def _find_zng_api():
    """Addresses of zng_inflateInit2/zng_inflate/zng_inflateEnd, or None."""
    global _zng_library
    try:
        import ctypes

        lib = ctypes.CDLL(zlib_ng.__file__)
        version = lib.zlibng_version
        version.restype = ctypes.c_char_p
        if not version().startswith(b"2."):
            return None     # zng_stream's layout is only known for zlib-ng 2.x
        addresses = tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                          for name in ("zng_inflateInit2", "zng_inflate", "zng_inflateEnd"))
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    if not all(addresses):
        return None
    _zng_library = lib
    return addresses


cdef bint _use_zng_api() except -1:
    global _zng_inflate_init2, _zng_inflate, _zng_inflate_end
    cdef size_t a
    import os

    if os.environ.get("FASTSHARD_ZLIB_DECOMPRESSOBJ", "") not in ("", "0"):
        return False    # the escape hatch, should the symbol lookup ever misbehave
    found = _find_zng_api()
    if found is None:
        return False
    a = found[0]
    _zng_inflate_init2 = <zng_init2_fn>a
    a = found[1]
    _zng_inflate = <zng_inflate_fn>a
    a = found[2]
    _zng_inflate_end = <zng_end_fn>a
    # Prove it on a real chunk before trusting it with the gateway.
    import zlib

    c = zlib.compressobj()
    sample = b'{"op":0,"t":"READY","s":1,"d":{}}' * 3
    chunk = c.compress(sample) + c.flush(zlib.Z_SYNC_FLUSH)
    try:
        inflater = ZlibStreamInflater(1 << 20)
        if not inflater._c_api or inflater.feed_bytes(chunk) != sample:
            raise ValueError("zng_inflate self-test gave the wrong bytes")
    except Exception:
        _zng_inflate_init2 = NULL
        _zng_inflate = NULL
        _zng_inflate_end = NULL
        return False
    return True


#: Which zlib-stream backend this process uses ("zlib-ng C API" or "zlib_ng decompressobj").
ZLIB_BACKEND = "zlib_ng decompressobj"

# New zlib-stream inflaters use the C API when this is set and the API was found.
cdef bint _prefer_c_api = True


def use_zlib_c_api(bint enabled) -> bool:
    """Choose the backend of zlib-stream inflaters created from now on (tests, benchmarks).

    Returns whether the C API will actually be used (False when it was not found).
    """
    global _prefer_c_api
    _prefer_c_api = enabled
    return enabled and _zng_inflate != NULL

# A buffer that grew past this for a large message is given back on clear(),
# so a GUILD_CREATE does not pin its size for the life of an idle shard (a
# process may hold thousands).  Steady-state dispatches stay below it; a large
# message pays one malloc, nothing next to parsing it.  Measured 2026-11-28:
# a zlib-stream decoder after one GUILD_CREATE kept 57 KiB of RSS with a 1 MiB
# limit, 36 KiB with this one.
cdef Py_ssize_t _KEEP_CAPACITY = 16 * 1024
cdef Py_ssize_t _NOGIL_THRESHOLD = 64 * 1024

# The most a zstd block can expand: a 4-byte RLE block (3-byte header + 1 byte)
# yields up to ZSTD_BLOCKSIZE_MAX (128 KiB).  Feeding at most budget/ratio
# input bytes per call keeps the output of a hostile stream within the cap.
cdef Py_ssize_t _ZSTD_MAX_RATIO = (128 * 1024) // 4


cdef class ByteBuffer:
    """A growable byte buffer reused across messages."""

    def __dealloc__(self):
        free(self.data)
        self.data = NULL

    cdef int append(self, const unsigned char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self.size + n
        cdef Py_ssize_t cap
        cdef unsigned char* grown
        if n <= 0:
            return 0
        if need > self.capacity:
            cap = self.capacity * 2 if self.capacity else 4096
            while cap < need:
                cap *= 2
            grown = <unsigned char*>realloc(self.data, <size_t>cap)
            if grown == NULL:
                raise MemoryError()
            self.data = grown
            self.capacity = cap
        memcpy(self.data + self.size, p, <size_t>n)
        self.size = need
        return 0

    cdef int reserve(self, Py_ssize_t capacity) except -1:
        """Make room for at least ``capacity`` bytes in total, keeping the contents."""
        cdef unsigned char* grown
        if capacity <= self.capacity:
            return 0
        grown = <unsigned char*>realloc(self.data, <size_t>capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = capacity
        return 0

    cdef void clear(self) noexcept:
        self.size = 0
        if self.capacity > _KEEP_CAPACITY:
            free(self.data)
            self.data = NULL
            self.capacity = 0


cdef inline bint _ends_with_sync_flush(const unsigned char* p, Py_ssize_t n) noexcept:
    return (n >= 4 and p[n - 4] == 0x00 and p[n - 3] == 0x00
            and p[n - 2] == 0xFF and p[n - 1] == 0xFF)


cdef inline object _view(const unsigned char* p, Py_ssize_t n):
    # A read-only memoryview over memory we own (or the frame's, for the
    # duration of the call): handed to the inflaters without a copy.
    if n == 0:
        p = <const unsigned char*>b""
    return PyMemoryView_FromMemory(<char*>p, n, PyBUF_READ)


cdef str _too_large(Py_ssize_t max_size):
    return f"inflated message is larger than max_message_size ({max_size} bytes)"


cdef class ZlibStreamInflater:
    """zlib-stream transport compression (one per connection)."""

    def __cinit__(self, Py_ssize_t max_size, *, use_c_api=None):
        if max_size <= 0 or max_size >= 0x7FFFFFFF:
            raise ValueError(f"max_message_size must be between 1 and 2**31 - 2, not {max_size}")
        self.max_size = max_size
        self._pending = ByteBuffer()
        self._out = ByteBuffer()
        if use_c_api is None:
            use_c_api = _prefer_c_api
        self._c_api = use_c_api and _zng_inflate != NULL
        if self._c_api:
            memset(&self._stream, 0, sizeof(zng_stream))
            if _zng_inflate_init2(&self._stream, 15) != _Z_OK:
                raise MemoryError("zlib-ng could not allocate an inflate stream")
            self._stream_ready = True
        else:
            self._obj = _zlib_decompressobj()
            self._decompress = self._obj.decompress

    def __dealloc__(self):
        if self._stream_ready:
            _zng_inflate_end(&self._stream)
            self._stream_ready = False

    @property
    def backend(self) -> str:
        """"zlib-ng C API" or "zlib_ng decompressobj"."""
        return "zlib-ng C API" if self._c_api else "zlib_ng decompressobj"

    cdef object feed(self, const unsigned char* p, Py_ssize_t n):
        """Inflate one websocket message; None until a chunk is complete."""
        cdef ByteBuffer pending = self._pending
        cdef object out
        if pending.size == 0:
            # The common case: a whole chunk in one message, inflated
            # straight from the caller's memory.
            if _ends_with_sync_flush(p, n):
                return self._inflate(p, n)
            if n == 0:
                return None
            if n > self.max_size:
                raise DecodeError("zlib-stream message passed max_message_size "
                                  f"({self.max_size} bytes) before its 00 00 ff ff suffix")
            pending.append(p, n)
            return None
        if pending.size + n > self.max_size:
            pending.clear()
            raise DecodeError("zlib-stream message passed max_message_size "
                              f"({self.max_size} bytes) before its 00 00 ff ff suffix")
        pending.append(p, n)
        if not _ends_with_sync_flush(pending.data, pending.size):
            return None
        try:
            out = self._inflate(pending.data, pending.size)
        finally:
            pending.clear()
        return out

    cdef object _inflate_c(self, const unsigned char* p, Py_ssize_t n):
        """Inflate a complete chunk into the reused output buffer (a memoryview over it)."""
        cdef ByteBuffer out = self._out
        cdef zng_stream* strm = &self._stream
        cdef Py_ssize_t limit = self.max_size + 1    # one byte more tells "too large"
        cdef Py_ssize_t want
        cdef int32_t rc
        out.clear()
        # JSON inflates ~5-10x: size the buffer once for most chunks.
        want = n * 8 if n < limit // 8 else limit
        if want < 16384:
            want = 16384
        out.reserve(want if want < limit else limit)
        strm.next_in = <const uint8_t*>p
        strm.avail_in = <uint32_t>n
        while True:
            if out.size == out.capacity:
                if out.capacity >= limit:
                    raise DecodeError(_too_large(self.max_size))
                out.reserve(out.capacity * 2 if out.capacity * 2 < limit else limit)
            strm.next_out = <uint8_t*>(out.data + out.size)
            strm.avail_out = <uint32_t>(out.capacity - out.size)
            if n > _NOGIL_THRESHOLD:
                # Let other threads run while a big chunk inflates; for the
                # usual small message the GIL round trip costs more than it gives.
                with nogil:
                    rc = _zng_inflate(strm, _Z_SYNC_FLUSH)
            else:
                rc = _zng_inflate(strm, _Z_SYNC_FLUSH)
            out.size = out.capacity - strm.avail_out
            if out.size > self.max_size:
                raise DecodeError(_too_large(self.max_size))
            if rc == _Z_OK or rc == _Z_BUF_ERROR:
                # Done once every input byte is in and inflate had room to
                # spare (so nothing is held back); else give it more room.
                if strm.avail_in == 0 and strm.avail_out != 0:
                    break
                if rc == _Z_BUF_ERROR and strm.avail_out != 0:
                    raise DecodeError("corrupt zlib-stream data: inflate made no progress")
            elif rc == _Z_STREAM_END:
                if strm.avail_in != 0:
                    raise DecodeError("corrupt zlib-stream data: bytes after the end of the zlib stream")
                break
            else:
                msg = strm.msg.decode("utf-8", "replace") if strm.msg != NULL else f"error {rc}"
                raise DecodeError(f"corrupt zlib-stream data: {msg}")
        self.out_ptr = out.data
        self.out_size = out.size
        return _view(out.data, out.size)

    cdef object _inflate(self, const unsigned char* p, Py_ssize_t n):
        cdef object view
        cdef object out
        if self._c_api:
            return self._inflate_c(p, n)
        view = _view(p, n)
        try:
            out = self._decompress(view, self.max_size)
        except _zlib_error as exc:
            raise DecodeError(f"corrupt zlib-stream data: {exc}") from None
        finally:
            view.release()
        # Output stopped at exactly max_size: either it fits exactly or the
        # rest waits in unconsumed_tail.
        if PyBytes_GET_SIZE(out) == self.max_size and self._obj.unconsumed_tail:
            raise DecodeError(_too_large(self.max_size))
        if self._obj.eof and self._obj.unused_data:
            raise DecodeError("corrupt zlib-stream data: bytes after the end of the zlib stream")
        self.out_ptr = <const unsigned char*>PyBytes_AS_STRING(out)
        self.out_size = PyBytes_GET_SIZE(out)
        return out

    @property
    def pending_size(self) -> int:
        """Bytes buffered while waiting for the 00 00 ff ff suffix."""
        return self._pending.size

    def feed_bytes(self, data) -> bytes | None:
        """Python-level :meth:`feed` for tests and tools (returns a copy)."""
        cdef const unsigned char[::1] mv = memoryview(data).cast("B")
        if mv.shape[0] == 0:
            out = self.feed(<const unsigned char*>"", 0)
        else:
            out = self.feed(&mv[0], mv.shape[0])
        return None if out is None else bytes(out)


cdef class ZstdStreamInflater:
    """zstd-stream transport compression (one per connection)."""

    def __cinit__(self, Py_ssize_t max_size):
        if max_size <= 0:
            raise ValueError(f"max_message_size must be positive, not {max_size}")
        self.max_size = max_size
        # Its window is bounded (codec.ZSTD_MAX_WINDOW_SIZE): a larger one is a DecodeError.
        self._decompress = zstd_stream_decompressobj().decompress
        self._out = ByteBuffer()

    cdef object feed(self, const unsigned char* p, Py_ssize_t n):
        """Inflate one websocket message (one gateway payload)."""
        cdef Py_ssize_t step, pos, budget, chunk
        cdef ByteBuffer out_buf
        cdef object out, view
        if n == 0:
            return None
        step = self.max_size // _ZSTD_MAX_RATIO
        if n <= step:
            view = _view(p, n)
            try:
                out = self._decompress(view)
            except _zstd_error as exc:
                raise zstd_error(exc, (<const char*>p)[:n if n < 18 else 18]) from None
            finally:
                view.release()
            if PyBytes_GET_SIZE(out) > self.max_size:
                raise DecodeError(_too_large(self.max_size))
            if PyBytes_GET_SIZE(out) == 0:
                return None
            self.out_ptr = <const unsigned char*>PyBytes_AS_STRING(out)
            self.out_size = PyBytes_GET_SIZE(out)
            return out
        # A large message: feed it in slices small enough that even a
        # maximally expanding block cannot take the output past the cap.
        out_buf = self._out
        out_buf.clear()
        pos = 0
        while pos < n:
            budget = self.max_size - out_buf.size
            chunk = budget // _ZSTD_MAX_RATIO
            if chunk < 4:
                chunk = 4
            if chunk > n - pos:
                chunk = n - pos
            view = _view(p + pos, chunk)
            try:
                out = self._decompress(view)
            except _zstd_error as exc:
                out_buf.clear()
                raise zstd_error(exc, (<const char*>p)[:n if n < 18 else 18]) from None
            finally:
                view.release()
            if out_buf.size + PyBytes_GET_SIZE(out) > self.max_size:
                out_buf.clear()
                raise DecodeError(_too_large(self.max_size))
            out_buf.append(<const unsigned char*>PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out))
            pos += chunk
        if out_buf.size == 0:
            return None
        self.out_ptr = out_buf.data
        self.out_size = out_buf.size
        return _view(out_buf.data, out_buf.size)

    def feed_bytes(self, data) -> bytes | None:
        """Python-level :meth:`feed` for tests and tools (returns a copy)."""
        cdef const unsigned char[::1] mv = memoryview(data).cast("B")
        if mv.shape[0] == 0:
            return None
        out = self.feed(&mv[0], mv.shape[0])
        return None if out is None else bytes(out)


cdef class ZlibPayloadInflater:
    """Payload compression: each binary message is one whole zlib stream."""

    def __cinit__(self, Py_ssize_t max_size):
        if max_size <= 0:
            raise ValueError(f"max_message_size must be positive, not {max_size}")
        self.max_size = max_size

    cdef object feed(self, const unsigned char* p, Py_ssize_t n):
        cdef object obj = _zlib_decompressobj()
        cdef object view = _view(p, n)
        cdef object out
        try:
            out = obj.decompress(view, self.max_size)
        except _zlib_error as exc:
            raise DecodeError(f"corrupt zlib payload: {exc}") from None
        finally:
            view.release()
        if PyBytes_GET_SIZE(out) == self.max_size and obj.unconsumed_tail:
            raise DecodeError(_too_large(self.max_size))
        if not obj.eof:
            raise DecodeError("truncated zlib payload: the stream ends before its end marker")
        if obj.unused_data:
            raise DecodeError("corrupt zlib payload: bytes after the end of the zlib stream")
        self.out_ptr = <const unsigned char*>PyBytes_AS_STRING(out)
        self.out_size = PyBytes_GET_SIZE(out)
        return out

    def feed_bytes(self, data) -> bytes:
        """Python-level :meth:`feed` for tests and tools."""
        cdef const unsigned char[::1] mv = memoryview(data).cast("B")
        if mv.shape[0] == 0:
            return self.feed(<const unsigned char*>"", 0)
        return self.feed(&mv[0], mv.shape[0])


if _use_zng_api():
    ZLIB_BACKEND = "zlib-ng C API"
