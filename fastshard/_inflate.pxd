# C-level interface of the inflaters, shared with fastshard/_decoder.pyx.
#
# Every inflater hands back an object orjson / the ETF decoder accept (bytes
# or a memoryview over an internal buffer) and sets out_ptr/out_size to the
# same bytes, so the caller can peek at them without another buffer lookup.
# A returned memoryview is only valid until the next call on the same object.

from libc.stdint cimport int32_t, uint8_t, uint32_t


# zlib-ng 2.x native stream (zlib-ng.h); only used when the zlib_ng wheel
# exports the zng_* symbols (checked at import, see _inflate.pyx).
cdef struct zng_stream:
    const uint8_t* next_in
    uint32_t avail_in
    size_t total_in
    uint8_t* next_out
    uint32_t avail_out
    size_t total_out
    const char* msg
    void* state
    void* zalloc
    void* zfree
    void* opaque
    int data_type
    uint32_t adler
    unsigned long reserved


cdef class ByteBuffer:
    cdef unsigned char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity

    cdef int append(self, const unsigned char* p, Py_ssize_t n) except -1
    cdef int reserve(self, Py_ssize_t capacity) except -1
    cdef void clear(self) noexcept


cdef class ZlibStreamInflater:
    cdef object _obj
    cdef object _decompress
    cdef ByteBuffer _pending
    cdef bint _c_api
    cdef bint _stream_ready
    cdef zng_stream _stream
    cdef ByteBuffer _out
    cdef readonly Py_ssize_t max_size
    cdef const unsigned char* out_ptr
    cdef Py_ssize_t out_size

    cdef object feed(self, const unsigned char* p, Py_ssize_t n)
    cdef object _inflate(self, const unsigned char* p, Py_ssize_t n)
    cdef object _inflate_c(self, const unsigned char* p, Py_ssize_t n)


cdef class ZstdStreamInflater:
    cdef object _decompress
    cdef ByteBuffer _out
    cdef readonly Py_ssize_t max_size
    cdef const unsigned char* out_ptr
    cdef Py_ssize_t out_size

    cdef object feed(self, const unsigned char* p, Py_ssize_t n)


cdef class ZlibPayloadInflater:
    cdef readonly Py_ssize_t max_size
    cdef const unsigned char* out_ptr
    cdef Py_ssize_t out_size

    cdef object feed(self, const unsigned char* p, Py_ssize_t n)
