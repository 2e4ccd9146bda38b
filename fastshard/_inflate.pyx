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

Inflating uses the ``zlib_ng`` package's decompressobj.  Why not zlib-ng's C
API: Debian bookworm has no libz-ng-dev and cibuildwheel would have to vendor
and build zlib-ng's sources for every platform, while the zlib_ng wheel
already carries zlib-ng.

Every inflater caps what it buffers and produces at ``max_size`` and raises
:class:`fastshard.errors.DecodeError` past it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_READ
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

import zstandard
from zlib_ng import zlib_ng

from .errors import DecodeError

__all__ = ["ZlibStreamInflater", "ZstdStreamInflater", "ZlibPayloadInflater"]

cdef object _zlib_error = zlib_ng.error
cdef object _zlib_decompressobj = zlib_ng.decompressobj
cdef object _zstd_error = zstandard.ZstdError

# A buffer that grew past this for one huge message is given back on clear(),
# so one GUILD_CREATE of a giant guild does not pin its size for the session.
cdef Py_ssize_t _KEEP_CAPACITY = 1 << 20

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
    return PyMemoryView_FromMemory(<char*>p, n, PyBUF_READ)


cdef str _too_large(Py_ssize_t max_size):
    return f"inflated message is larger than max_message_size ({max_size} bytes)"


cdef class ZlibStreamInflater:
    """zlib-stream transport compression (one per connection)."""

    def __cinit__(self, Py_ssize_t max_size):
        if max_size <= 0:
            raise ValueError(f"max_message_size must be positive, not {max_size}")
        self.max_size = max_size
        self._obj = _zlib_decompressobj()
        self._decompress = self._obj.decompress
        self._pending = ByteBuffer()

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

    cdef object _inflate(self, const unsigned char* p, Py_ssize_t n):
        cdef object view = _view(p, n)
        cdef object out
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
        self.out_ptr = <const unsigned char*>PyBytes_AS_STRING(out)
        self.out_size = PyBytes_GET_SIZE(out)
        return out

    @property
    def pending_size(self) -> int:
        """Bytes buffered while waiting for the 00 00 ff ff suffix."""
        return self._pending.size

    def feed_bytes(self, data) -> bytes | None:
        """Python-level :meth:`feed` for tests and tools (bytes-like input)."""
        cdef const unsigned char[::1] mv = memoryview(data).cast("B")
        if mv.shape[0] == 0:
            return self.feed(<const unsigned char*>"", 0)
        return self.feed(&mv[0], mv.shape[0])


cdef class ZstdStreamInflater:
    """zstd-stream transport compression (one per connection)."""

    def __cinit__(self, Py_ssize_t max_size):
        if max_size <= 0:
            raise ValueError(f"max_message_size must be positive, not {max_size}")
        self.max_size = max_size
        # read_across_frames: a server that ends a frame and starts another
        # must not make the next message fail.
        self._decompress = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress
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
                raise DecodeError(f"corrupt zstd-stream data: {exc}") from None
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
                raise DecodeError(f"corrupt zstd-stream data: {exc}") from None
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
        self.out_ptr = <const unsigned char*>PyBytes_AS_STRING(out)
        self.out_size = PyBytes_GET_SIZE(out)
        return out

    def feed_bytes(self, data) -> bytes:
        """Python-level :meth:`feed` for tests and tools."""
        cdef const unsigned char[::1] mv = memoryview(data).cast("B")
        if mv.shape[0] == 0:
            return self.feed(<const unsigned char*>"", 0)
        return self.feed(&mv[0], mv.shape[0])
