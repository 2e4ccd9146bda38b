# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Give a picows connection's read buffer back after large frames.

picows (2.3) reads into one buffer per connection that doubles whenever a
read fills it and is never made smaller: after one large GUILD_CREATE or a
burst, an idle shard keeps the largest size it ever needed (1.2 MiB for an
uncompressed shard after a 2.4 MB burst).  With thousands of shards per
process that is most of the memory.  picows has no API for it, so this module
shrinks the buffer itself, between reads, through the C layout of picows'
``WSProtocol`` mirrored below.

The layout is checked before it is trusted: picows must be 2.3.x, the
protocol's C size must equal the mirror's, and the mirrored ``transport``,
``listener`` and ``_read_buffer`` fields must hold the objects picows exposes
(the transport and listener themselves, a ``picows.MemoryBuffer``).  When any
check fails, nothing is touched and the buffer behaves as in plain picows
(``UNSUPPORTED`` says why).

When: the decoder reports every frame that ends a read (``last_in_buffer``).
If the buffer is larger than ``KEEP_CAPACITY`` a trim is scheduled two event
loop iterations later and done only if no frame arrived in between (else it
looks again RECHECK_DELAY later), so a connection in the middle of a burst
(whose next read would grow the buffer again) is left alone until it is quiet,
and a connection that never grows past KEEP_CAPACITY pays one comparison.
"""
from cpython.mem cimport PyMem_Realloc
from cpython.object cimport PyObject, PyTypeObject
from picows.picows cimport MemoryBuffer, WSTransport

from ._readbuf cimport FS_PROTOCOL_SIZE, fs_picows_protocol

import picows

__all__ = ["ReadBufferTrimmer", "read_buffer_capacity", "KEEP_CAPACITY", "RECHECK_DELAY", "RELEASE_INTERVAL",
           "UNSUPPORTED"]

cdef extern from "Python.h":
    PyTypeObject* Py_TYPE(object o)

cdef extern from *:
    """
    /* glibc keeps freed heap memory in its arenas: a buffer shrunk in the
       middle of the heap lowers no RSS until malloc_trim() hands the free
       pages back (madvise).  Elsewhere the allocator does what it does. */
    #if defined(__GLIBC__)
    #include <malloc.h>
    #define fs_malloc_trim(pad) malloc_trim(pad)
    #define FS_HAVE_MALLOC_TRIM 1
    #else
    #define fs_malloc_trim(pad) 0
    #define FS_HAVE_MALLOC_TRIM 0
    #endif
    """
    int fs_malloc_trim(size_t pad) nogil
    bint FS_HAVE_MALLOC_TRIM

#: A buffer larger than this is given back after a large frame or a burst:
#: picows' own starting size, which steady-state reads never outgrow (it
#: doubles only when one read fills 90% of it).
KEEP_CAPACITY = 16 * 1024
cdef Py_ssize_t _KEEP = KEEP_CAPACITY
# picows keeps the last 256 bytes of the buffer out of reads (its SIMD parsers).
cdef Py_ssize_t _TAIL = 256

# Freed read-buffer memory is handed back to the OS (glibc's malloc_trim) at
# most this often, process-wide: one call after a burst that shrank thousands
# of buffers, not one per buffer.
RELEASE_INTERVAL = 1.0
cdef Py_ssize_t _RELEASE_AT = 256 * 1024      # bytes shrunk before a release is worth it
cdef Py_ssize_t _released_pending = 0
cdef bint _release_scheduled = False
cdef double _last_release = -1e9


def _release_memory(loop) -> None:
    global _release_scheduled, _released_pending, _last_release
    cdef double now = loop.time()
    if now - _last_release < RELEASE_INTERVAL:
        loop.call_later(RELEASE_INTERVAL - (now - _last_release), _release_memory, loop)
        return
    _release_scheduled = False
    _released_pending = 0
    _last_release = now
    with nogil:
        fs_malloc_trim(0)


cdef void _note_shrunk(Py_ssize_t nbytes, object call_soon, object loop) noexcept:
    global _released_pending, _release_scheduled
    if not FS_HAVE_MALLOC_TRIM:
        return
    _released_pending += nbytes
    if _release_scheduled or _released_pending < _RELEASE_AT:
        return
    _release_scheduled = True
    try:
        call_soon(_release_memory, loop)
    except BaseException:
        _release_scheduled = False


#: Seconds between looks at a connection that was busy when its trim came due.
RECHECK_DELAY = 0.05

#: None when trimming works with the installed picows, else why it is off.
UNSUPPORTED = None if picows.__version__.startswith("2.3.") else (
    f"picows {picows.__version__}: the read buffer layout is only known for 2.3.x")


cdef fs_picows_protocol* _layout(object protocol, WSTransport transport) except? NULL:
    """The protocol's C view, or NULL (and UNSUPPORTED set) if the layout is not picows 2.3's."""
    global UNSUPPORTED
    cdef fs_picows_protocol* p
    if UNSUPPORTED is not None:
        return NULL
    if type(protocol).__name__ != "WSProtocol" or Py_TYPE(protocol).tp_basicsize != FS_PROTOCOL_SIZE:
        UNSUPPORTED = (f"{type(protocol).__module__}.{type(protocol).__name__} is "
                       f"{Py_TYPE(protocol).tp_basicsize} bytes, the mirrored layout {FS_PROTOCOL_SIZE}")
        return NULL
    p = <fs_picows_protocol*><PyObject*>protocol
    if (p.transport != <PyObject*>transport or p.listener != <PyObject*>protocol.listener
            or p.read_buffer == NULL or type(<object>p.read_buffer) is not MemoryBuffer):
        UNSUPPORTED = "picows' WSProtocol fields are not where the mirrored layout has them"
        return NULL
    return p


def read_buffer_capacity(WSTransport transport):
    """Bytes allocated for a picows connection's read buffer (None if unknown)."""
    cdef fs_picows_protocol* p = _layout(transport.underlying_transport.get_protocol(), transport)
    if p == NULL:
        return None
    return (<MemoryBuffer>p.read_buffer).capacity


cdef class ReadBufferTrimmer:
    """Shrinks one picows connection's read buffer once it is quiet (see the module docstring)."""

    def __cinit__(self, WSTransport transport):
        self._protocol = transport.underlying_transport.get_protocol()
        self._view = _layout(self._protocol, transport)
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._call_soon = self._loop.call_soon
        self._frames = 0
        self._pending = False
        self.trims = 0

    @property
    def supported(self) -> bool:
        return self._view != NULL

    cdef void after_read(self) noexcept:
        # Hot path: a frame that ended a read.  A few loads; nothing else
        # unless the buffer grew past what it keeps.
        self._frames += 1
        if (self._view == NULL or self._pending
                or (<MemoryBuffer>self._view.read_buffer).capacity <= _KEEP):
            return
        self._pending = True
        try:
            self._call_soon(self._settle, self._frames)
        except BaseException:   # a closed loop: nothing to schedule on
            self._pending = False

    def frame_ended_read(self) -> None:
        """Python-level :meth:`after_read` (the reference decoder)."""
        self.after_read()

    def _settle(self, long long frames):
        # One loop iteration later: read events that were ready have run.
        self._call_soon(self._trim_if_quiet, frames)

    def _trim_if_quiet(self, long long frames):
        if frames != self._frames:
            # Busy: frames came in meanwhile.  Look again a little later (a
            # timer, not a callback every iteration for every busy shard).
            self._loop.call_later(RECHECK_DELAY, self._settle, self._frames)
            return
        self._pending = False
        self.trim()

    def trim(self) -> int:
        """Shrink the buffer to what its unread bytes need (at least KEEP_CAPACITY); returns the capacity."""
        cdef fs_picows_protocol* p = self._view
        cdef MemoryBuffer buf
        cdef Py_ssize_t used, target
        cdef char* data
        if p == NULL:
            return -1
        buf = <MemoryBuffer>p.read_buffer
        if p.curr_frame_start_pos != 0:
            return buf.capacity     # picows is between frames only after its own compaction
        used = p.new_data_start_pos  # the start of a frame still arriving, if any
        target = used * 2 + 2 * _TAIL
        if target < _KEEP:
            target = _KEEP
        target = (target + 255) & ~(<Py_ssize_t>255)
        if target >= buf.capacity:
            return buf.capacity
        # picows allocates with PyMem_Malloc: the same allocator family here.
        data = <char*>PyMem_Realloc(buf.data, <size_t>target)
        if data == NULL:
            return buf.capacity     # keep the larger buffer: it is still valid
        _note_shrunk(buf.capacity - target, self._call_soon, self._loop)
        buf.data = data
        buf.capacity = target
        buf.size = target - _TAIL
        self.trims += 1
        return target
