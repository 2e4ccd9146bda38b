# C-level interface of the inflaters, shared with fastshard/_decoder.pyx.
#
# Every inflater hands back an object orjson / the ETF decoder accept (bytes
# or a memoryview over an internal buffer) and sets out_ptr/out_size to the
# same bytes, so the caller can peek at them without another buffer lookup.
# A returned memoryview is only valid until the next call on the same object.

cdef class ByteBuffer:
    cdef unsigned char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity

    cdef int append(self, const unsigned char* p, Py_ssize_t n) except -1
    cdef void clear(self) noexcept


cdef class ZlibStreamInflater:
    cdef object _obj
    cdef object _decompress
    cdef ByteBuffer _pending
    cdef readonly Py_ssize_t max_size
    cdef const unsigned char* out_ptr
    cdef Py_ssize_t out_size

    cdef object feed(self, const unsigned char* p, Py_ssize_t n)
    cdef object _inflate(self, const unsigned char* p, Py_ssize_t n)


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
