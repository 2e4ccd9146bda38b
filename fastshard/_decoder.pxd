# C-level view of the message decoder, for a Cython frame listener that wants
# to call feed_frame without a Python method call.
from picows.picows cimport WSFrame

from ._inflate cimport ByteBuffer, ZlibPayloadInflater, ZlibStreamInflater, ZstdStreamInflater
from ._readbuf cimport ReadBufferTrimmer

cdef struct Peek:
    int found           # _HAVE_* bits
    long long op
    bint s_null
    long long s
    bint t_is_str       # False for null / true / false
    const unsigned char* t_ptr
    Py_ssize_t t_len
    Py_ssize_t pos      # 0: not started; else where a peek stopped early resumes
    unsigned long long left     # ETF: map entries still to read from pos
    bint complete       # the whole top-level object was read

ctypedef object (*etf_decode_fn)(const unsigned char* data, Py_ssize_t size, bint big_ints_as_str)


cdef class MessageDecoder:
    cdef readonly str encoding
    cdef readonly int compression
    cdef readonly bint big_ints_as_str
    cdef readonly Py_ssize_t max_message_size
    cdef readonly frozenset disabled_events
    cdef readonly bint raw_dispatches
    cdef bint _peeks
    cdef object _etf_inflate
    cdef public long long wire_bytes
    cdef public long long raw_bytes
    cdef object _sequence
    cdef bint _is_etf
    cdef bint _has_disabled
    cdef object _loads
    cdef etf_decode_fn _etf_decode_c
    cdef object _etf_decode_py
    cdef ByteBuffer _fragments
    cdef bint _in_fragment
    cdef bint _fragment_binary
    cdef ZlibStreamInflater _zlib
    cdef ZstdStreamInflater _zstd
    cdef ZlibPayloadInflater _payload_zlib
    cdef readonly ReadBufferTrimmer read_buffer_trimmer

    cpdef object feed_frame(self, WSFrame frame)
    cdef object _process(self, const unsigned char* p, Py_ssize_t n, bint binary)
    cdef object _finish(self, object raw, const unsigned char* p, Py_ssize_t n)
    cdef object _decode(self, object raw, const unsigned char* p, Py_ssize_t n)
    cdef int _track(self, object s) except -1
    cdef object _peeked_dispatch(self, const unsigned char* p, Py_ssize_t n, Peek* pk, bint whole)
