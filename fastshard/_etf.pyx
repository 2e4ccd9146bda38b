# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Erlang External Term Format (version 131) codec for the Discord gateway.

Decoding rules (the input is untrusted network data):

* atoms ``nil``/``true``/``false`` -> ``None``/``True``/``False``; every other
  atom and every BINARY -> ``str`` (UTF-8; Latin-1 for ATOM_EXT/SMALL_ATOM_EXT,
  which is what those tags hold).  Invalid UTF-8 is a DecodeError.
* SMALL_INTEGER/INTEGER -> ``int``.  SMALL_BIG/LARGE_BIG -> decimal ``str`` by
  default (that is how ETF carries snowflakes, which JSON sends as strings),
  ``int`` with ``big_ints_as_str=False``.
* NEW_FLOAT and the old string FLOAT -> ``float``.
* STRING_EXT -> ``list`` of ints: Erlang writes any list of small integers
  (0..255) as STRING_EXT, so this is what JSON gives for the same list (and
  what erlpack returns).
* LIST -> ``list``; the proper tail NIL is dropped, an improper tail is a
  DecodeError (JSON has no equivalent and Discord never sends one).
* NIL -> ``[]``, MAP -> ``dict`` (an unhashable key is a DecodeError),
  SMALL_TUPLE/LARGE_TUPLE -> ``tuple`` (hashable, as erlpack does).
* COMPRESSED (tag 80) only as the whole term: the declared size is checked
  against ``max_size`` (default MAX_DECOMPRESSED_SIZE; the message decoder
  passes max_message_size) before inflating and against the real size after.
* A term builds at most one list/tuple/map per MIN_BYTES_PER_CONTAINER bytes
  of itself, so no small input decodes into a huge number of objects.

Every length is checked against the bytes left before anything is read or
allocated, nesting is capped at MAX_DEPTH, trailing bytes are an error.

Encoding writes what Discord accepts for gateway commands: ``dict`` keys (must
be ``str``, else TypeError) and ``str`` as BINARY, never atoms (Discord closes
with 4002 on atom keys); ``int`` of any size (SMALL_INTEGER, INTEGER, SMALL_BIG,
LARGE_BIG); ``float`` as NEW_FLOAT (NaN/infinity: ValueError, Erlang has
neither); ``True``/``False``/``None`` as the atoms true/false/nil (SMALL_ATOM_EXT,
as erlpack writes them); ``list``/``tuple`` as LIST (NIL when empty); ``dict``
as MAP.  Subclasses of these types are encoded as their base type; anything
else is a TypeError naming the type.  Nesting deeper than MAX_DEPTH (e.g. a
reference cycle) is a ValueError.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.dict cimport PyDict_New, PyDict_Next
from cpython.float cimport PyFloat_FromDouble, PyFloat_AS_DOUBLE
from cpython.list cimport PyList_New, PyList_SET_ITEM, PyList_GET_SIZE, PyList_GET_ITEM
from cpython.long cimport PyLong_FromLong, PyLong_FromUnsignedLongLong, PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeLatin1
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp
from libc.math cimport isfinite

from zlib_ng import zlib_ng

from fastshard.errors import DecodeError

__all__ = ["decode", "encode", "inflate_term", "MAX_DEPTH", "MAX_DECOMPRESSED_SIZE", "MIN_BYTES_PER_CONTAINER"]

cdef extern from "Python.h":
    # Declared here without Cython's `except -1` so a failed insert (an
    # unhashable key) can be turned into a DecodeError.
    int PyDict_SetItem_raw "PyDict_SetItem"(object d, object k, object v)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object u)
    bint PyUnicode_Check(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyLong_Check(object o)
    bint PyLong_CheckExact(object o)
    bint PyFloat_Check(object o)
    bint PyFloat_CheckExact(object o)
    bint PyDict_Check(object o)
    bint PyDict_CheckExact(object o)
    bint PyList_Check(object o)
    bint PyList_CheckExact(object o)
    bint PyTuple_Check(object o)
    bint PyTuple_CheckExact(object o)
    const char* PyUnicode_AsUTF8AndSize(object u, Py_ssize_t* size) except NULL
    object PyErr_Occurred()
    void PyErr_Clear()
    int Py_EnterRecursiveCall(const char* where) except -1
    void Py_LeaveRecursiveCall()

cdef extern from *:
    """
    /* A dict sized for its entries up front skips the resizes a GUILD_CREATE's
       60-key objects would cost.  The private API exists up to 3.12; later
       versions fall back to the public one. */
    #if PY_VERSION_HEX < 0x030D0000 && !defined(PYPY_VERSION)
    #define FS_NEW_DICT(n) ((n) > 5 ? _PyDict_NewPresized((n) < 256 ? (n) : 256) : PyDict_New())
    #else
    #define FS_NEW_DICT(n) PyDict_New()
    #endif
    """
    object FS_NEW_DICT(Py_ssize_t n)


# Deep enough for any gateway payload (they nest < 10 levels), shallow enough
# that the C stack is never at risk.
DEF _MAX_DEPTH = 256
MAX_DEPTH = _MAX_DEPTH
# The largest term a COMPRESSED tag may inflate to by default (the message
# decoder passes its max_message_size instead).
DEF _MAX_DECOMPRESSED = 64 * 1024 * 1024
MAX_DECOMPRESSED_SIZE = _MAX_DECOMPRESSED

# Decoded-object amplification: NIL is one byte and builds a new 72-byte
# list, so a term of 10**8 NILs would cost ~8 GB of objects.  Every list,
# tuple, map and STRING_EXT built is counted; a term may build one per
# MIN_BYTES_PER_CONTAINER bytes of itself (plus MAX_DEPTH, so tiny terms
# may still nest): at most ~10x its size in containers (plus 8 bytes per list
# slot), about what orjson's worst case (`[[],[],...]`) costs for JSON.
# Discord-shaped traffic measured 2026-12-01 (the simulator's TrafficGenerator,
# 5,000 dispatches and 60 GUILD_CREATEs in ETF): 100 bytes per container on
# average, 34.6 in the densest message (a PRESENCE_UPDATE), 4x over the bound.
DEF _MIN_BYTES_PER_CONTAINER = 8
MIN_BYTES_PER_CONTAINER = _MIN_BYTES_PER_CONTAINER

DEF VERSION = 131
DEF NEW_FLOAT_EXT = 70
DEF BIT_BINARY_EXT = 77
DEF COMPRESSED = 80
DEF SMALL_INTEGER_EXT = 97
DEF INTEGER_EXT = 98
DEF FLOAT_EXT = 99
DEF ATOM_EXT = 100
DEF SMALL_TUPLE_EXT = 104
DEF LARGE_TUPLE_EXT = 105
DEF NIL_EXT = 106
DEF STRING_EXT = 107
DEF LIST_EXT = 108
DEF BINARY_EXT = 109
DEF SMALL_BIG_EXT = 110
DEF LARGE_BIG_EXT = 111
DEF SMALL_ATOM_EXT = 115
DEF MAP_EXT = 116
DEF ATOM_UTF8_EXT = 118
DEF SMALL_ATOM_UTF8_EXT = 119

# Tags that are valid ETF but have no meaning on the Discord gateway; named in
# the error so a person reading it knows the data was not simply garbage.
_UNSUPPORTED_TAGS = {
    68: "DIST_HEADER", 77: "BIT_BINARY_EXT", 82: "ATOM_CACHE_REF", 88: "NEW_PID_EXT",
    89: "NEW_PORT_EXT", 90: "NEWER_REFERENCE_EXT", 101: "REFERENCE_EXT", 102: "PORT_EXT",
    103: "PID_EXT", 112: "NEW_FUN_EXT", 113: "EXPORT_EXT", 114: "NEW_REFERENCE_EXT",
    117: "FUN_EXT", 120: "V4_PORT_EXT", 121: "LOCAL_EXT",
}


ctypedef union union_double:
    uint64_t u
    double d


ctypedef struct Reader:
    const unsigned char* data
    Py_ssize_t size
    Py_ssize_t pos
    int depth
    bint big_str
    Py_ssize_t budget       # containers this term may still build (see _container_budget)


# --------------------------------------------------------------------------
# Key cache: map keys (atoms in Discord's payloads: "id", "guild_id", ...)
# repeat thousands of times in a GUILD_CREATE.  A direct-mapped table keyed by
# the raw bytes returns the same str object instead of building a new one.
# It holds at most _CACHE_SLOTS short strs, so hostile input cannot grow it.
DEF _CACHE_SLOTS = 2048          # power of two
DEF _CACHE_MAX_LEN = 48          # longest cached key in bytes

ctypedef struct CacheSlot:
    PyObject* value              # owned reference, NULL when empty
    Py_ssize_t length
    unsigned char kind           # 0 utf-8, 1 latin-1 (same bytes, different str)
    unsigned char key[_CACHE_MAX_LEN]

cdef CacheSlot _cache[_CACHE_SLOTS]


cdef inline uint64_t _load64(const unsigned char* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint32_t _load32(const unsigned char* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint32_t _hash_bytes(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    # Only picks the slot (a hit is confirmed by a full compare), so a few
    # word loads beat a byte loop: length, both ends, and the middle of long keys.
    cdef uint64_t a, b
    if n >= 8:
        a = _load64(p)
        b = _load64(p + n - 8)
        if n > 16:
            b ^= _load64(p + (n >> 1) - 4) * 0x9E3779B97F4A7C15ULL
    elif n >= 4:
        a = _load32(p)
        b = _load32(p + n - 4)
    elif n > 0:
        a = (<uint64_t>p[0] << 16) | (<uint64_t>p[n >> 1] << 8) | p[n - 1]
        b = 0
    else:
        a = b = 0
    a = (a ^ (<uint64_t>n << 56)) * 0x9E3779B97F4A7C15ULL
    a ^= (b + (a >> 29)) * 0xBF58476D1CE4E5B9ULL
    return <uint32_t>(a >> 32)


cdef inline object _cached_str(const unsigned char* p, Py_ssize_t n, unsigned char kind, Py_ssize_t offset):
    cdef CacheSlot* s = &_cache[(_hash_bytes(p, n) ^ kind) & (_CACHE_SLOTS - 1)]
    if s.value != NULL and s.length == n and s.kind == kind and memcmp(s.key, p, n) == 0:
        return <object>s.value
    return _cache_miss(s, p, n, kind, offset)


cdef object _cache_miss(CacheSlot* s, const unsigned char* p, Py_ssize_t n, unsigned char kind, Py_ssize_t offset):
    cdef object value = _make_str(p, n, kind, offset)
    Py_INCREF(value)
    _xdecref(s.value)
    s.value = <PyObject*>value
    s.length = n
    s.kind = kind
    memcpy(s.key, p, n)
    return value


cdef extern from "Python.h":
    void _xdecref "Py_XDECREF"(PyObject* o)
    # Raw forms (NULL on error, no Cython exception bookkeeping) for the hot path.
    PyObject* _decode_utf8_raw "PyUnicode_DecodeUTF8"(const char* s, Py_ssize_t size, const char* errors)


cdef inline object _make_str(const unsigned char* p, Py_ssize_t n, unsigned char kind, Py_ssize_t offset):
    cdef PyObject* u
    if kind == 1:
        return PyUnicode_DecodeLatin1(<const char*>p, n, NULL)
    u = _decode_utf8_raw(<const char*>p, n, NULL)
    if u == NULL:
        _utf8_error(p, n, offset)
    value = <object>u      # takes a second reference ...
    Py_DECREF(value)       # ... so drop the one PyUnicode_DecodeUTF8 gave us
    return value


cdef int _utf8_error(const unsigned char* p, Py_ssize_t n, Py_ssize_t offset) except -1:
    PyErr_Clear()
    try:
        PyBytes_FromStringAndSize(<const char*>p, n).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"ETF: invalid UTF-8 in the string at offset {offset}: {exc.reason} "
                          f"at byte {exc.start}") from None
    raise DecodeError(f"ETF: the string at offset {offset} could not be decoded")


# --------------------------------------------------------------------------
# Decoder

cdef inline Py_ssize_t _container_budget(Py_ssize_t size) noexcept:
    # The slack lets a tiny term still nest to MAX_DEPTH.
    return size // _MIN_BYTES_PER_CONTAINER + _MAX_DEPTH


cdef int _over_budget(Reader* r) except -1:
    _error(r, f"the term builds more than one list/tuple/map per {_MIN_BYTES_PER_CONTAINER} bytes "
              "(a decompression bomb?)")
    return -1


cdef object _error(Reader* r, str what):
    raise DecodeError(f"ETF: {what} (offset {r.pos} of {r.size})")


cdef inline int _need(Reader* r, uint64_t n) except -1:
    # Unsigned 64-bit: a declared 32-bit length (times two for maps) can never
    # wrap, even where Py_ssize_t is 32 bits.
    if n > <uint64_t>(r.size - r.pos):
        _error(r, f"truncated term: {n} more bytes needed, {r.size - r.pos} left")
        return -1
    return 0


cdef inline uint32_t _u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t _u16(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef object _decode_atom(Reader* r, int64_t n, unsigned char kind):
    cdef const unsigned char* p
    _need(r, n)
    p = r.data + r.pos
    r.pos += n
    if n == 3 and memcmp(p, b"nil", 3) == 0:
        return None
    if n == 4 and memcmp(p, b"true", 4) == 0:
        return True
    if n == 5 and memcmp(p, b"false", 5) == 0:
        return False
    if n <= _CACHE_MAX_LEN:
        return _cached_str(p, n, kind, r.pos - n)
    return _make_str(p, n, kind, r.pos - n)


cdef const char* _DIGIT_PAIRS = (b"00010203040506070809101112131415161718192021222324"
                                 b"25262728293031323334353637383940414243444546474849"
                                 b"50515253545556575859606162636465666768697071727374"
                                 b"75767778798081828384858687888990919293949596979899")


cdef object _decode_big(Reader* r, int64_t n):
    """n magnitude bytes (little-endian) after one sign byte."""
    cdef const unsigned char* p
    cdef unsigned char sign
    cdef uint64_t mag = 0
    cdef Py_ssize_t i, k
    cdef char digits[24]
    cdef Py_ssize_t pair
    cdef object text
    _need(r, n + 1)
    p = r.data + r.pos
    sign = p[0]
    r.pos += n + 1
    if sign > 1:
        r.pos -= n + 1
        _error(r, f"invalid big integer sign byte {sign}")
    p += 1
    if n <= 8:
        for i in range(n - 1, -1, -1):
            mag = (mag << 8) | p[i]
        if not r.big_str:
            value = PyLong_FromUnsignedLongLong(mag)
            return -value if sign else value
        # Decimal text straight into a compact ASCII str, two digits a step.
        k = 24
        while mag >= 100:
            pair = <Py_ssize_t>(mag % 100) * 2
            mag //= 100
            k -= 2
            digits[k] = _DIGIT_PAIRS[pair]
            digits[k + 1] = _DIGIT_PAIRS[pair + 1]
        if mag >= 10:
            k -= 2
            digits[k] = _DIGIT_PAIRS[mag * 2]
            digits[k + 1] = _DIGIT_PAIRS[mag * 2 + 1]
        else:
            k -= 1
            digits[k] = <char>(48 + mag)
        if sign and not (k == 23 and digits[23] == 48):
            k -= 1
            digits[k] = 45  # '-'
        text = PyUnicode_New(24 - k, 127)
        memcpy(PyUnicode_DATA(text), &digits[k], 24 - k)
        return text
    # Larger than 64 bits: never seen on the gateway, so the simple way.
    value = int.from_bytes(PyBytes_FromStringAndSize(<const char*>p, n), "little")
    if sign:
        value = -value
    if not r.big_str:
        return value
    try:
        return str(value)
    except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
        raise DecodeError(f"ETF: big integer at offset {r.pos - n - 1} is too long to turn into text: {exc}") from None


cdef object _decode_old_float(Reader* r):
    cdef Py_ssize_t start = r.pos
    _need(r, 31)
    raw = PyBytes_FromStringAndSize(<const char*>(r.data + r.pos), 31)
    r.pos += 31
    text = raw.split(b"\0", 1)[0]
    try:
        if not text or not text.isascii():
            raise ValueError
        return float(text)
    except ValueError:
        r.pos = start
        _error(r, f"invalid FLOAT_EXT text {text!r}")


cdef bytes _inflate_compressed(const unsigned char* data, Py_ssize_t size, Py_ssize_t max_size):
    """data[0:2] is 131, 80: the plain term it holds (131 + the inflated term).

    The declared size is compared with ``max_size`` (the whole plain term must
    fit) before anything is inflated, and with the real size after.
    """
    cdef uint32_t declared
    cdef Reader r
    r.data = data
    r.size = size
    r.pos = 2
    _need(&r, 4)
    declared = _u32(data + 2)
    r.pos = 6
    if <uint64_t>declared + 1 > <uint64_t>max_size:
        r.pos = 2
        _error(&r, f"compressed term declares {declared} bytes, more than the limit of "
                   f"{max_size} bytes (max_message_size)")
    packed = PyBytes_FromStringAndSize(<const char*>(data + 6), size - 6)
    d = zlib_ng.decompressobj()
    try:
        # One byte more than declared: a longer stream shows up as too long.
        raw = d.decompress(packed, declared + 1)
    except zlib_ng.error as exc:
        _error(&r, f"corrupt zlib data in compressed term: {exc}")
    if len(raw) != declared:
        _error(&r, f"compressed term inflates to {'more than' if len(raw) > declared else 'only'} "
                   f"{len(raw) if len(raw) <= declared else declared} bytes, {declared} declared")
    if not d.eof:
        _error(&r, "compressed term's zlib stream is truncated")
    if d.unused_data:
        r.pos = r.size - len(d.unused_data)
        _error(&r, f"{len(d.unused_data)} trailing bytes after the compressed term")
    return b"\x83" + raw


def inflate_term(data, Py_ssize_t max_size=_MAX_DECOMPRESSED + 1):
    """A compressed term (``131, 80, size, zlib data``) as the plain term it holds.

    The result starts with the version byte 131 and is at most ``max_size``
    bytes; a larger declared size is refused before inflating.  Raises
    :class:`fastshard.errors.DecodeError` on anything malformed.
    """
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len < 2 or (<const unsigned char*>view.buf)[0] != VERSION \
                or (<const unsigned char*>view.buf)[1] != COMPRESSED:
            raise DecodeError("ETF: not a compressed term (expected the bytes 131, 80)")
        return _inflate_compressed(<const unsigned char*>view.buf, view.len, max_size)
    finally:
        PyBuffer_Release(&view)


cdef object _decode_term(Reader* r):
    cdef unsigned char tag
    cdef const unsigned char* p
    cdef int64_t n          # holds any 32-bit length without wrapping; <= bytes left once checked
    cdef Py_ssize_t i
    cdef uint64_t wide
    cdef object value, key, container
    cdef union_double ud

    if r.pos >= r.size:
        _error(r, "truncated term: a tag was expected")
    tag = r.data[r.pos]
    r.pos += 1

    if tag == SMALL_INTEGER_EXT:
        _need(r, 1)
        r.pos += 1
        return PyLong_FromLong(r.data[r.pos - 1])
    elif tag == BINARY_EXT:
        _need(r, 4)
        n = _u32(r.data + r.pos)
        r.pos += 4
        _need(r, n)
        r.pos += n
        return _make_str(r.data + r.pos - n, n, 0, r.pos - n)
    elif tag == SMALL_ATOM_UTF8_EXT:
        _need(r, 1)
        n = r.data[r.pos]
        r.pos += 1
        return _decode_atom(r, n, 0)
    elif tag == MAP_EXT:
        _need(r, 4)
        n = _u32(r.data + r.pos)
        r.pos += 4
        # Every key and value takes at least one byte: a huge arity in a small
        # buffer fails here, before any work.
        _need(r, 2 * n)
        if r.depth >= _MAX_DEPTH:
            _error(r, f"terms nested deeper than {_MAX_DEPTH} levels")
        r.budget -= 1
        if r.budget < 0:
            _over_budget(r)
        r.depth += 1
        container = FS_NEW_DICT(n)   # presized to at most 256 entries, whatever n claims
        for i in range(n):
            key = _decode_key(r)
            value = _decode_term(r)
            if PyDict_SetItem_raw(container, key, value) < 0:
                PyErr_Clear()
                _error(r, f"map key of type {type(key).__name__} cannot be a dict key")
        r.depth -= 1
        return container
    elif tag == SMALL_BIG_EXT:
        _need(r, 1)
        n = r.data[r.pos]
        r.pos += 1
        return _decode_big(r, n)
    elif tag == INTEGER_EXT:
        _need(r, 4)
        r.pos += 4
        return PyLong_FromLong(<int32_t>_u32(r.data + r.pos - 4))
    elif tag == LIST_EXT:
        _need(r, 4)
        n = _u32(r.data + r.pos)
        r.pos += 4
        _need(r, n + 1)   # n elements and the tail, one byte each at least
        if r.depth >= _MAX_DEPTH:
            _error(r, f"terms nested deeper than {_MAX_DEPTH} levels")
        r.budget -= 1
        if r.budget < 0:
            _over_budget(r)
        r.depth += 1
        container = PyList_New(n)
        for i in range(n):
            value = _decode_term(r)
            Py_INCREF(value)
            PyList_SET_ITEM(container, i, value)
        r.depth -= 1
        if r.pos >= r.size:
            _error(r, "truncated term: the list's tail was expected")
        if r.data[r.pos] != NIL_EXT:
            _error(r, "improper list: the tail is not NIL (not representable in Python)")
        r.pos += 1
        return container
    elif tag == NIL_EXT:
        r.budget -= 1
        if r.budget < 0:
            _over_budget(r)
        return []
    elif tag == NEW_FLOAT_EXT:
        _need(r, 8)
        p = r.data + r.pos
        r.pos += 8
        wide = (<uint64_t>_u32(p) << 32) | _u32(p + 4)
        ud.u = wide
        return PyFloat_FromDouble(ud.d)
    elif tag == SMALL_ATOM_EXT:
        _need(r, 1)
        n = r.data[r.pos]
        r.pos += 1
        return _decode_atom(r, n, 1)
    elif tag == ATOM_UTF8_EXT:
        _need(r, 2)
        n = _u16(r.data + r.pos)
        r.pos += 2
        return _decode_atom(r, n, 0)
    elif tag == ATOM_EXT:
        _need(r, 2)
        n = _u16(r.data + r.pos)
        r.pos += 2
        return _decode_atom(r, n, 1)
    elif tag == STRING_EXT:
        _need(r, 2)
        n = _u16(r.data + r.pos)
        r.pos += 2
        _need(r, n)
        r.budget -= 1
        if r.budget < 0:
            _over_budget(r)
        container = PyList_New(n)
        for i in range(n):
            value = PyLong_FromLong(r.data[r.pos + i])
            Py_INCREF(value)
            PyList_SET_ITEM(container, i, value)
        r.pos += n
        return container
    elif tag == SMALL_TUPLE_EXT or tag == LARGE_TUPLE_EXT:
        if tag == SMALL_TUPLE_EXT:
            _need(r, 1)
            n = r.data[r.pos]
            r.pos += 1
        else:
            _need(r, 4)
            n = _u32(r.data + r.pos)
            r.pos += 4
        _need(r, n)
        if r.depth >= _MAX_DEPTH:
            _error(r, f"terms nested deeper than {_MAX_DEPTH} levels")
        if n:       # the empty tuple is a singleton: free
            r.budget -= 1
            if r.budget < 0:
                _over_budget(r)
        r.depth += 1
        container = PyTuple_New(n)
        for i in range(n):
            value = _decode_term(r)
            Py_INCREF(value)
            PyTuple_SET_ITEM(container, i, value)
        r.depth -= 1
        return container
    elif tag == LARGE_BIG_EXT:
        _need(r, 4)
        n = _u32(r.data + r.pos)
        r.pos += 4
        return _decode_big(r, n)
    elif tag == FLOAT_EXT:
        return _decode_old_float(r)
    r.pos -= 1   # report the tag's own offset
    if tag == COMPRESSED:
        _error(r, "a compressed term (tag 80) is only allowed as the whole term")
    name = _UNSUPPORTED_TAGS.get(tag)
    if name is not None:
        _error(r, f"tag {tag} ({name}) has no Python equivalent on the Discord gateway")
    _error(r, f"unknown tag {tag}")


cdef inline object _decode_key(Reader* r):
    # Map keys: atoms and short binaries go through the cache; anything else
    # is an ordinary term.
    cdef unsigned char tag
    cdef int64_t n
    if r.pos < r.size:
        tag = r.data[r.pos]
        if tag == SMALL_ATOM_UTF8_EXT:
            _need(r, 2)
            n = r.data[r.pos + 1]
            r.pos += 2
            return _decode_atom(r, n, 0)
        if tag == BINARY_EXT:
            _need(r, 5)
            n = _u32(r.data + r.pos + 1)
            if n <= _CACHE_MAX_LEN:
                r.pos += 5
                _need(r, n)
                r.pos += n
                return _cached_str(r.data + r.pos - n, n, 0, r.pos - n)
    return _decode_term(r)


cdef object decode_buffer(const unsigned char* data, Py_ssize_t size, bint big_ints_as_str):
    # The exported C entry point keeps its signature (fastshard/_decoder.pyx
    # checks it); the message decoder inflates a compressed term itself.
    return _decode_buffer(data, size, big_ints_as_str, _MAX_DECOMPRESSED + 1)


cdef object _decode_buffer(const unsigned char* data, Py_ssize_t size, bint big_ints_as_str,
                           Py_ssize_t max_size):
    cdef Reader r
    cdef object value
    r.data = data
    r.size = size
    r.pos = 0
    r.depth = 0
    r.big_str = big_ints_as_str
    if size < 1:
        raise DecodeError("ETF: empty data (expected a term starting with version byte 131)")
    if data[0] != VERSION:
        raise DecodeError(f"ETF: first byte is {data[0]}, not the version byte 131")
    r.pos = 1
    if size > 1 and data[1] == COMPRESSED:
        term = _inflate_compressed(data, size, max_size)
        try:
            return _decode_buffer(<const unsigned char*><const char*>term, PyBytes_GET_SIZE(term),
                                  big_ints_as_str, max_size)
        except DecodeError as exc:
            raise DecodeError(f"{exc} (inside the compressed term)") from None
    r.budget = _container_budget(size)
    value = _decode_term(&r)
    if r.pos != r.size:
        _error(&r, f"{r.size - r.pos} trailing bytes after the term")
    return value


def decode(data, *, bint big_ints_as_str=True, Py_ssize_t max_size=_MAX_DECOMPRESSED + 1):
    """Decode one ETF term (``bytes``, ``bytearray``, ``memoryview`` or any
    C-contiguous buffer starting with the version byte 131).

    A compressed term (tag 80) may inflate to at most ``max_size`` bytes
    (counting the version byte, as the message decoder's max_message_size does).

    Raises :class:`fastshard.errors.DecodeError` on malformed input.
    """
    cdef Py_buffer view
    if isinstance(data, str):
        raise TypeError("ETF data must be bytes-like, not str")
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except BufferError:
        raise TypeError(f"ETF data must be a C-contiguous buffer, not {type(data).__name__}") from None
    try:
        return _decode_buffer(<const unsigned char*>view.buf, view.len, big_ints_as_str, max_size)
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------
# Encoder

ctypedef struct Writer:
    unsigned char* buf
    Py_ssize_t len
    Py_ssize_t cap


cdef int _grow(Writer* w, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = w.cap
    cdef unsigned char* nb
    while cap - w.len < extra:
        cap *= 2
    nb = <unsigned char*>realloc(w.buf, cap)
    if nb == NULL:
        raise MemoryError()
    w.buf = nb
    w.cap = cap
    return 0


cdef inline int _reserve(Writer* w, Py_ssize_t extra) except -1:
    if w.cap - w.len < extra:
        return _grow(w, extra)
    return 0


cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v


cdef int _write_binary(Writer* w, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* utf8 = PyUnicode_AsUTF8AndSize(s, &n)
    if n > 0xFFFFFFFF:
        raise ValueError("str too long for ETF (more than 4 GiB of UTF-8)")
    _reserve(w, 5 + n)
    w.buf[w.len] = BINARY_EXT
    _put_u32(w.buf + w.len + 1, <uint32_t>n)
    memcpy(w.buf + w.len + 5, utf8, n)
    w.len += 5 + n
    return 0


cdef int _write_atom(Writer* w, const char* name, Py_ssize_t n) except -1:
    # SMALL_ATOM_EXT, as Discord's own erlpack writes nil/true/false: the form
    # the gateway has accepted from clients for years (every OTP decodes it).
    _reserve(w, 2 + n)
    w.buf[w.len] = SMALL_ATOM_EXT
    w.buf[w.len + 1] = <unsigned char>n
    memcpy(w.buf + w.len + 2, name, n)
    w.len += 2 + n
    return 0


cdef int _write_int(Writer* w, object obj) except -1:
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(obj, &overflow)
    cdef uint64_t mag
    cdef unsigned char n
    cdef Py_ssize_t size
    if overflow == 0:
        if 0 <= v <= 255:
            _reserve(w, 2)
            w.buf[w.len] = SMALL_INTEGER_EXT
            w.buf[w.len + 1] = <unsigned char>v
            w.len += 2
            return 0
        if -2147483648 <= v <= 2147483647:
            _reserve(w, 5)
            w.buf[w.len] = INTEGER_EXT
            _put_u32(w.buf + w.len + 1, <uint32_t><int32_t>v)
            w.len += 5
            return 0
        mag = <uint64_t>(-(v + 1)) + 1 if v < 0 else <uint64_t>v
        _reserve(w, 11)
        w.buf[w.len] = SMALL_BIG_EXT
        w.buf[w.len + 2] = 1 if v < 0 else 0
        n = 0
        while mag:
            w.buf[w.len + 3 + n] = <unsigned char>(mag & 0xFF)
            mag >>= 8
            n += 1
        w.buf[w.len + 1] = n
        w.len += 3 + n
        return 0
    # Beyond 64 bits: rare, so Python-level int.to_bytes.  int.__index__
    # gives an exact int, so no user-defined method of an int subclass runs.
    obj = int.__index__(obj)
    negative = obj < 0
    magnitude = -obj if negative else obj
    nbytes = (magnitude.bit_length() + 7) // 8
    if nbytes > 0xFFFFFFFF:
        raise ValueError("int too large for ETF")
    raw = (<object>magnitude).to_bytes(nbytes, "little")
    size = nbytes
    if size <= 255:
        _reserve(w, 3 + size)
        w.buf[w.len] = SMALL_BIG_EXT
        w.buf[w.len + 1] = <unsigned char>size
        w.buf[w.len + 2] = 1 if negative else 0
        w.len += 3
    else:
        _reserve(w, 6 + size)
        w.buf[w.len] = LARGE_BIG_EXT
        _put_u32(w.buf + w.len + 1, <uint32_t>size)
        w.buf[w.len + 5] = 1 if negative else 0
        w.len += 6
    memcpy(w.buf + w.len, <const char*>raw, size)
    w.len += size
    return 0


cdef int _write_float(Writer* w, double d) except -1:
    cdef union_double ud
    if not isfinite(d):
        raise ValueError(f"ETF cannot carry the float {d!r} (Erlang has no NaN or infinity)")
    ud.d = d
    _reserve(w, 9)
    w.buf[w.len] = NEW_FLOAT_EXT
    _put_u32(w.buf + w.len + 1, <uint32_t>(ud.u >> 32))
    _put_u32(w.buf + w.len + 5, <uint32_t>ud.u)
    w.len += 9
    return 0


cdef int _write_list_header(Writer* w, Py_ssize_t n) except -1:
    if n > 0xFFFFFFFF:
        raise ValueError("list too long for ETF")
    _reserve(w, 5)
    w.buf[w.len] = LIST_EXT
    _put_u32(w.buf + w.len + 1, <uint32_t>n)
    w.len += 5
    return 0


cdef int _write_nil(Writer* w) except -1:
    _reserve(w, 1)
    w.buf[w.len] = NIL_EXT
    w.len += 1
    return 0


cdef int _write_term(Writer* w, object obj, int depth) except -1:
    cdef Py_ssize_t i, n, pos
    cdef PyObject* k
    cdef PyObject* v
    if obj is None:
        return _write_atom(w, b"nil", 3)
    if obj is True:
        return _write_atom(w, b"true", 4)
    if obj is False:
        return _write_atom(w, b"false", 5)
    if PyUnicode_Check(obj):
        return _write_binary(w, obj)
    if PyLong_Check(obj):
        return _write_int(w, obj)
    if depth >= _MAX_DEPTH:
        raise ValueError(f"cannot encode: nested deeper than {_MAX_DEPTH} levels (a reference cycle?)")
    if PyDict_Check(obj):
        n = len(<dict>obj)
        if n > 0xFFFFFFFF:
            raise ValueError("dict too large for ETF")
        _reserve(w, 5)
        w.buf[w.len] = MAP_EXT
        _put_u32(w.buf + w.len + 1, <uint32_t>n)
        w.len += 5
        pos = 0
        i = 0
        while PyDict_Next(obj, &pos, &k, &v):
            if not PyUnicode_Check(<object>k):
                raise TypeError(f"cannot encode a dict key of type {type(<object>k).__name__}: "
                                "keys must be str (Discord rejects atom keys)")
            i += 1
            if i > n:
                raise RuntimeError("dict changed size during encoding")
            key = <object>k   # owned references from here on

            value = <object>v
            _write_binary(w, key)
            _write_term(w, value, depth + 1)
        if i != n:
            raise RuntimeError("dict changed size during encoding")
        return 0
    if PyList_Check(obj) or PyTuple_Check(obj):
        seq = obj if PyList_CheckExact(obj) or PyTuple_CheckExact(obj) else tuple(obj)
        n = len(seq)
        if n == 0:
            return _write_nil(w)
        _write_list_header(w, n)
        if PyList_Check(seq):
            # Encoding a nested list/tuple subclass runs its __iter__, which
            # could mutate this list: re-check the size and own each item.
            i = 0
            while i < PyList_GET_SIZE(seq):
                item = <object>PyList_GET_ITEM(seq, i)
                _write_term(w, item, depth + 1)
                i += 1
            if i != n:
                raise RuntimeError("list changed size during encoding")
        else:
            for i in range(n):
                _write_term(w, <object>PyTuple_GET_ITEM(seq, i), depth + 1)
        return _write_nil(w)
    if PyFloat_Check(obj):
        return _write_float(w, PyFloat_AS_DOUBLE(obj))
    raise TypeError(f"cannot encode an object of type {type(obj).__name__} as ETF "
                    "(supported: dict, list, tuple, str, int, float, bool, None)")


def encode(obj) -> bytes:
    """Encode ``obj`` as a 131-prefixed ETF term (see the module docstring)."""
    cdef Writer w
    w.cap = 256
    w.buf = <unsigned char*>malloc(w.cap)
    if w.buf == NULL:
        raise MemoryError()
    w.buf[0] = VERSION
    w.len = 1
    try:
        _write_term(&w, obj, 0)
        return PyBytes_FromStringAndSize(<const char*>w.buf, w.len)
    finally:
        free(w.buf)
