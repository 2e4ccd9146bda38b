# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython message decoder: frame -> inflate -> decode -> sequence, in one call.

Fills the decoder interface documented in :mod:`fastshard.codec`;
:class:`fastshard.codec.PyMessageDecoder` is its plain-Python reference and
the differential tests hold the two to the same results.

Events named in ``disabled_events`` (and, with ``raw_dispatches=True``, every
dispatch but READY/RESUMED) are recognised from the raw decompressed bytes:
the top-level ``op``, ``t`` and ``s`` are peeked (for any key order, skipping
other values structurally, so a ``"t"`` nested in ``d`` is never mistaken for
the top-level one; a duplicated key counts by its last occurrence, as in
orjson and the ETF map decode) and ``d`` is never built.  Whenever the peek
is unsure (escapes in a key, an unusual value type, trailing bytes) the
payload is decoded in full and handled from the result.  A dropped or raw
payload is not validated past its structure and its ``op``/``t``/``s``.
"""
cimport cython
from cpython.buffer cimport PyBUF_READ, PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetName, PyCapsule_GetPointer
from libc.string cimport memchr, memcmp
from picows.picows cimport WSFrame, WSMsgType

from ._inflate cimport ByteBuffer, ZlibPayloadInflater, ZlibStreamInflater, ZstdStreamInflater
from ._readbuf cimport ReadBufferTrimmer

import orjson

from .codec import DEFAULT_MAX_MESSAGE_SIZE
from .errors import DecodeError

__all__ = ["MessageDecoder", "GC_PAUSE_THRESHOLD"]

cdef extern from "Python.h":
    # Python >= 3.10: return the previous state, so it can be restored.
    int PyGC_Disable()
    int PyGC_Enable()

# Decompressed payloads above this are decoded with the cyclic GC paused.  A
# collection triggered mid-parse frees nothing (every new object is reachable)
# but counts towards the older generations, so a burst of big payloads sets
# off full collections over the whole growing heap; paused, the GC runs once
# after the payload instead.  Measured 2026-11-28 on the simulator's
# GUILD_CREATE burst, guilds kept alive as a bot's cache does, orjson.loads
# with the GC running vs paused, medians of 9 rotated rounds: 300 guilds
# 0.251 vs 0.118 s (the running GC does full collections); 100 guilds 0.046
# vs 0.051 s (no full collection to save, and one large young collection per
# guild costs a little more than many small ones).  4, 16 and 64 KiB
# thresholds measured alike; steady-state dispatches stay below it.
GC_PAUSE_THRESHOLD = 16 * 1024
cdef Py_ssize_t _GC_PAUSE_THRESHOLD = GC_PAUSE_THRESHOLD

cdef object _JSONDecodeError = orjson.JSONDecodeError

# Signature Cython gives `object decode_buffer(const unsigned char*, Py_ssize_t, bint)`
# in fastshard/_etf.pxd's exported C API.
cdef bytes _ETF_DECODE_SIGNATURE = b"PyObject *(unsigned char const *, Py_ssize_t, int)"


# -- peeking at op / t / s --------------------------------------------------

cdef enum:
    _HAVE_T = 1
    _HAVE_S = 2
    _HAVE_OP = 4
    _HAVE_ALL = 7

cdef inline Py_ssize_t _json_ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (p[i] == 0x20 or p[i] == 0x0A or p[i] == 0x0D or p[i] == 0x09):
        i += 1
    return i


cdef inline Py_ssize_t _json_skip_string(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    # p[i] is the opening quote; returns the index after the closing one, -1 if none.
    # memchr (vectorised) to each quote; an odd run of backslashes before it
    # means an escaped quote.  Measured 2026-12-01 against a byte loop and a
    # byte loop for the first 16 bytes: the fastest on simulator traffic.
    cdef const unsigned char* q
    cdef Py_ssize_t j
    i += 1
    while i < n:
        q = <const unsigned char*>memchr(p + i, 0x22, <size_t>(n - i))
        if q == NULL:
            return -1
        j = q - p
        i = j + 1
        while p[j - 1] == 0x5C:     # stops at the opening quote at the latest
            j -= 1
        if ((i - 1 - j) & 1) == 0:
            return i
    return -1


cdef Py_ssize_t _json_skip_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Index after the JSON value at p[i], or -1.  Iterative: no recursion to exhaust."""
    cdef unsigned char c = p[i]
    cdef Py_ssize_t depth = 0
    cdef Py_ssize_t start = i
    if c == 0x22:
        return _json_skip_string(p, i, n)
    if c == 0x7B or c == 0x5B:
        while i < n:
            c = p[i]
            if c == 0x22:
                i = _json_skip_string(p, i, n)
                if i < 0:
                    return -1
                continue
            if c == 0x7B or c == 0x5B:
                depth += 1
            elif c == 0x7D or c == 0x5D:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    while i < n and not (c == 0x2C or c == 0x7D or c == 0x5D or c == 0x20
                         or c == 0x0A or c == 0x0D or c == 0x09):
        i += 1
        if i < n:
            c = p[i]
    return i if i > start else -1


cdef inline Py_ssize_t _json_int(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                 long long* value) noexcept:
    # A JSON integer of at most 18 digits (no fraction/exponent, no leading zero), else -1.
    cdef bint neg = False
    cdef long long v = 0
    cdef int digits = 0
    if i < n and p[i] == 0x2D:
        neg = True
        i += 1
    if i + 1 < n and p[i] == 0x30 and 0x30 <= p[i + 1] <= 0x39:
        return -1                   # 05 is not JSON: orjson would refuse it
    while i < n and 0x30 <= p[i] <= 0x39:
        v = v * 10 + (p[i] - 0x30)
        digits += 1
        if digits > 18:
            return -1
        i += 1
    if digits == 0:
        return -1
    if i < n and (p[i] == 0x2E or p[i] == 0x65 or p[i] == 0x45):
        return -1
    value[0] = -v if neg else v
    return i


cdef inline bint _json_is_literal(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                  const char* lit, Py_ssize_t size) noexcept:
    return n - i >= size and memcmp(p + i, lit, <size_t>size) == 0


cdef bint _json_peek(const unsigned char* p, Py_ssize_t n, Peek* out, bint whole) noexcept:
    """Read the top-level op/t/s of a JSON object; False when unsure.

    Not ``whole``: stops once op, t and s are all seen (``out.complete`` stays
    False, ``out.pos`` says where to go on).  ``whole`` (or called again after
    such a stop): walks the object to its end, so a key given twice reads as
    its last occurrence (what orjson builds) and trailing bytes make it unsure.
    Start with ``out.pos = 0``.
    """
    cdef Py_ssize_t i, key, klen, end
    cdef bint after_value = out.pos != 0
    i = out.pos
    if not after_value:
        out.found = 0
        out.complete = False
        i = _json_ws(p, 0, n)
        if i >= n or p[i] != 0x7B:
            return False
        i = _json_ws(p, i + 1, n)
        if i < n and p[i] == 0x7D:
            out.complete = True
            return _json_ws(p, i + 1, n) == n
    while True:
        if after_value:
            i = _json_ws(p, i, n)
            if i >= n:
                return False
            if p[i] == 0x7D:
                # The whole object was read: missing keys are absent.
                out.complete = True
                return _json_ws(p, i + 1, n) == n
            if p[i] != 0x2C:
                return False
            i = _json_ws(p, i + 1, n)
        after_value = True
        if i >= n or p[i] != 0x22:
            return False
        key = i + 1
        klen = 0
        while key + klen < n and p[key + klen] != 0x22:
            if p[key + klen] == 0x5C:
                return False        # escaped key: let orjson read it
            klen += 1
        i = _json_ws(p, key + klen + 1, n)
        if i >= n or p[i] != 0x3A:
            return False
        i = _json_ws(p, i + 1, n)
        if i >= n:
            return False
        if klen == 1 and p[key] == 0x74:                    # "t"
            if p[i] == 0x22:
                end = i + 1
                while end < n and p[end] != 0x22:
                    if p[end] == 0x5C or p[end] < 0x20:
                        return False    # escapes / control characters: orjson decides
                    end += 1
                if end >= n:
                    return False
                out.t_is_str = True
                out.t_ptr = p + i + 1
                out.t_len = end - i - 1
                i = end + 1
            elif _json_is_literal(p, i, n, b"null", 4):
                out.t_is_str = False
                i += 4
            else:
                return False
            out.found |= _HAVE_T
        elif klen == 1 and p[key] == 0x73:                  # "s"
            if _json_is_literal(p, i, n, b"null", 4):
                out.s_null = True
                i += 4
            else:
                i = _json_int(p, i, n, &out.s)
                if i < 0:
                    return False
                out.s_null = False
            out.found |= _HAVE_S
        elif klen == 2 and p[key] == 0x6F and p[key + 1] == 0x70:   # "op"
            i = _json_int(p, i, n, &out.op)
            if i < 0:
                return False
            out.found |= _HAVE_OP
        else:
            i = _json_skip_value(p, i, n)
            if i < 0:
                return False
        if not whole and out.found == _HAVE_ALL:
            out.pos = i
            return True


cdef inline unsigned long long _be(const unsigned char* p, int size) noexcept:
    cdef unsigned long long v = 0
    cdef int k
    for k in range(size):
        v = (v << 8) | p[k]
    return v


cdef Py_ssize_t _etf_skip_term(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Index after the ETF term at p[i], or -1 (unknown tag, truncated).

    Iterative: containers add their element count to the terms still to
    skip, so deep nesting costs no stack.
    """
    cdef unsigned long long remaining = 1
    cdef unsigned long long count
    cdef unsigned char tag
    while remaining:
        remaining -= 1
        if i >= n:
            return -1
        tag = p[i]
        i += 1
        if tag == 97:                           # SMALL_INTEGER
            i += 1
        elif tag == 98:                         # INTEGER
            i += 4
        elif tag == 70:                         # NEW_FLOAT
            i += 8
        elif tag == 99:                         # FLOAT (old, 31 bytes of text)
            i += 31
        elif tag == 106:                        # NIL
            pass
        elif tag == 115 or tag == 119:          # SMALL_ATOM(_UTF8)
            if i + 1 > n:
                return -1
            i += 1 + p[i]
        elif tag == 100 or tag == 118 or tag == 107:  # ATOM(_UTF8), STRING
            if i + 2 > n:
                return -1
            i += 2 + <Py_ssize_t>_be(p + i, 2)
        elif tag == 109:                        # BINARY
            if i + 4 > n:
                return -1
            i += 4 + <Py_ssize_t>_be(p + i, 4)
        elif tag == 110:                        # SMALL_BIG
            if i + 1 > n:
                return -1
            i += 2 + p[i]
        elif tag == 111:                        # LARGE_BIG
            if i + 4 > n:
                return -1
            i += 5 + <Py_ssize_t>_be(p + i, 4)
        elif tag == 104:                        # SMALL_TUPLE
            if i + 1 > n:
                return -1
            remaining += p[i]
            i += 1
        elif tag == 105 or tag == 108 or tag == 116:  # LARGE_TUPLE, LIST, MAP
            if i + 4 > n:
                return -1
            count = _be(p + i, 4)
            i += 4
            if tag == 108:
                count += 1                      # the list's tail
            elif tag == 116:
                count *= 2
            remaining += count
        else:
            return -1
        if i > n or remaining > <unsigned long long>(n - i):
            return -1                           # every term takes at least one byte
    return i


cdef inline Py_ssize_t _etf_text(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                 const unsigned char** text, Py_ssize_t* size, int* kind) noexcept:
    """An atom or binary at p[i]: its bytes; returns the index after it, or -1.

    ``kind``: 0 binary, 1 UTF-8 atom, 2 Latin-1 atom (ATOM_EXT, SMALL_ATOM_EXT).
    """
    cdef unsigned char tag
    cdef Py_ssize_t length, head
    if i >= n:
        return -1
    tag = p[i]
    if tag == 115 or tag == 119:
        head = 1
    elif tag == 100 or tag == 118:
        head = 2
    elif tag == 109:
        head = 4
    else:
        return -1
    if i + 1 + head > n:
        return -1
    length = <Py_ssize_t>_be(p + i + 1, <int>head)
    if length > n - i - 1 - head:
        return -1
    text[0] = p + i + 1 + head
    size[0] = length
    kind[0] = 0 if tag == 109 else (2 if tag == 115 or tag == 100 else 1)
    return i + 1 + head + length


cdef inline Py_ssize_t _etf_small_int(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                      long long* value) noexcept:
    if i + 2 <= n and p[i] == 97:
        value[0] = p[i + 1]
        return i + 2
    if i + 5 <= n and p[i] == 98:
        value[0] = <int>(<unsigned int>_be(p + i + 1, 4))
        return i + 5
    return -1


cdef inline bint _is_atom(const unsigned char* text, Py_ssize_t size, const char* name, Py_ssize_t name_size) noexcept:
    return size == name_size and memcmp(text, name, <size_t>size) == 0


cdef bint _etf_peek(const unsigned char* p, Py_ssize_t n, Peek* out, bint whole) noexcept:
    """Read the top-level op/t/s of an ETF map; False when unsure.

    ``whole`` and ``out.pos`` as in :func:`_json_peek`: walking every entry,
    a key given twice reads as its last occurrence (what the map decode
    builds) and trailing bytes make it unsure.
    """
    cdef Py_ssize_t i, end, k
    cdef unsigned long long arity
    cdef const unsigned char* key
    cdef Py_ssize_t klen
    cdef const unsigned char* text
    cdef Py_ssize_t tlen
    cdef int kind
    if out.pos == 0:
        out.found = 0
        out.complete = False
        if n < 6 or p[0] != 131 or p[1] != 116:
            return False                # not a plain map
        arity = _be(p + 2, 4)
        if arity > <unsigned long long>(n - 6):
            return False                # every entry takes at least two bytes
        out.left = arity
        i = 6
    else:
        i = out.pos
    while out.left:
        out.left -= 1
        i = _etf_text(p, i, n, &key, &klen, &kind)
        if i < 0:
            return False
        if klen == 1 and key[0] == 0x74:                # t
            i = _etf_text(p, i, n, &text, &tlen, &kind)
            if i < 0:
                return False
            if kind and (_is_atom(text, tlen, b"nil", 3) or _is_atom(text, tlen, b"true", 4)
                         or _is_atom(text, tlen, b"false", 5)):
                out.t_is_str = False
            else:
                if kind == 2:
                    for k in range(tlen):
                        if text[k] >= 0x80:
                            return False    # Latin-1, not UTF-8: the full decode reads it
                out.t_is_str = True
                out.t_ptr = text
                out.t_len = tlen
            out.found |= _HAVE_T
        elif klen == 1 and key[0] == 0x73:              # s
            end = _etf_text(p, i, n, &text, &tlen, &kind)
            if end >= 0 and kind and _is_atom(text, tlen, b"nil", 3):
                out.s_null = True
                i = end
            else:
                i = _etf_small_int(p, i, n, &out.s)
                if i < 0:
                    return False
                out.s_null = False
            out.found |= _HAVE_S
        elif klen == 2 and key[0] == 0x6F and key[1] == 0x70:   # op
            i = _etf_small_int(p, i, n, &out.op)
            if i < 0:
                return False
            out.found |= _HAVE_OP
        else:
            i = _etf_skip_term(p, i, n)
            if i < 0:
                return False
        if not whole and out.found == _HAVE_ALL and out.left:
            out.pos = i
            return True
    out.complete = True
    return i == n


def peek(data, str encoding="json"):
    """(op, t, s) as the decoder's peek reads them, or None when unsure (tests, debugging).

    Absent keys read as None, like ``dict.get``.
    """
    cdef Py_buffer buf
    cdef Peek pk
    cdef bint ok
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        pk.pos = 0
        if encoding == "etf":
            ok = _etf_peek(<const unsigned char*>buf.buf, buf.len, &pk, True)
        else:
            ok = _json_peek(<const unsigned char*>buf.buf, buf.len, &pk, True)
        if not ok:
            return None
        op = pk.op if pk.found & _HAVE_OP else None
        t = ((<const char*>pk.t_ptr)[:pk.t_len].decode("utf-8", "replace") if pk.t_is_str else None) if pk.found & _HAVE_T else None
        s = (None if pk.s_null else pk.s) if pk.found & _HAVE_S else None
        return op, t, s
    finally:
        PyBuffer_Release(&buf)


# -- the decoder --------------------------------------------------------------

cdef str _bad_dispatch(object t, object s):
    if type(t) is not str:
        return f"dispatch (op 0) whose t is {type(t).__name__}, not the event name"
    return f"dispatch (op 0) whose s is {type(s).__name__}, not the sequence number"


cdef object _load_etf_c_api(object module, etf_decode_fn* fn):
    """Fetch _etf.decode_buffer's C pointer, if its signature is the expected one."""
    capi = getattr(module, "__pyx_capi__", None)
    if not capi:
        return False
    capsule = capi.get("decode_buffer")
    if capsule is None or not PyCapsule_CheckExact(capsule):
        return False
    name = PyCapsule_GetName(capsule)
    if name == NULL or <bytes>name != _ETF_DECODE_SIGNATURE:
        return False    # a changed signature: the Python-level decode is still right
    fn[0] = <etf_decode_fn>PyCapsule_GetPointer(capsule, name)
    return fn[0] != NULL


@cython.final
cdef class MessageDecoder:
    """Inflate + decode + sequence tracking for one shard (see :mod:`fastshard.codec`).

    With ``raw_dispatches=True``, an op 0 dispatch other than READY and
    RESUMED is returned as a plain tuple ``(t: str, s: int, raw: bytes)``:
    ``raw`` is the whole gateway message after inflation (JSON text, or the
    ETF term starting with 131; a compressed ETF term is given inflated) and
    ``d`` is never decoded, only the top-level ``op``/``t``/``s`` are read (as
    strictly as a full decode reads them).  The sequence is tracked and
    ``disabled_events`` still drop; every other payload is a ``dict`` as usual.
    """

    def __init__(self, str encoding="json", int compression=0, *, bint big_ints_as_str=True,
                 Py_ssize_t max_message_size=DEFAULT_MAX_MESSAGE_SIZE, disabled_events=(),
                 bint raw_dispatches=False):
        if encoding not in ("json", "etf"):
            raise ValueError(f"encoding must be 'json' or 'etf', not {encoding!r}")
        if compression not in (0, 1, 2, 3):
            raise ValueError(f"compression must be 0, 1, 2 or 3, not {compression!r}")
        if not 0 < max_message_size < 0x7FFFFFFF:
            raise ValueError(f"max_message_size must be between 1 and 2**31 - 2 bytes, not {max_message_size}")
        if isinstance(disabled_events, str):
            raise TypeError("disabled_events must be an iterable of event names, not a single str")
        self.encoding = encoding
        self.compression = compression
        self.big_ints_as_str = big_ints_as_str
        self.max_message_size = max_message_size
        self.disabled_events = frozenset(disabled_events)
        self._has_disabled = len(self.disabled_events) > 0
        self.raw_dispatches = raw_dispatches
        self._peeks = self._has_disabled or raw_dispatches
        self._sequence = None
        self.wire_bytes = 0
        self.raw_bytes = 0
        self._is_etf = encoding == "etf"
        self._loads = orjson.loads
        self._etf_decode_c = NULL
        self._etf_decode_py = None
        if self._is_etf:
            from . import _etf   # lazily: JSON users never load the ETF codec
            if not _load_etf_c_api(_etf, &self._etf_decode_c):
                self._etf_decode_py = _etf.decode
            self._etf_inflate = _etf.inflate_term
        self._fragments = ByteBuffer()
        self.reset()

    def reset(self) -> None:
        """A new connection: fresh decompression context, empty buffers; the sequence stays."""
        self._fragments.clear()
        self._in_fragment = False
        self._fragment_binary = False
        self.read_buffer_trimmer = None
        self._zlib = ZlibStreamInflater(self.max_message_size) if self.compression == 2 else None
        self._zstd = ZstdStreamInflater(self.max_message_size) if self.compression == 3 else None
        self._payload_zlib = ZlibPayloadInflater(self.max_message_size) if self.compression == 1 else None

    def watch_read_buffer(self, transport) -> None:
        """Give this connection's picows read buffer back after large frames (see fastshard._readbuf)."""
        self.read_buffer_trimmer = ReadBufferTrimmer(transport)

    @property
    def sequence(self):
        """Highest ``s`` seen, None before any; only moves up by itself."""
        return self._sequence

    @sequence.setter
    def sequence(self, value):
        if value is not None and type(value) is not int:
            raise TypeError(f"sequence must be an int or None, not {type(value).__name__}")
        self._sequence = value

    # -- intake -----------------------------------------------------------
    cpdef object feed_frame(self, WSFrame frame):
        """One picows frame; returns the payload when a message completes (see codec)."""
        cdef WSMsgType msg_type = frame.msg_type
        cdef const unsigned char* p = <const unsigned char*>frame.payload_ptr
        cdef Py_ssize_t n = frame.payload_size
        cdef ByteBuffer frags = self._fragments
        if frame.last_in_buffer and self.read_buffer_trimmer is not None:
            self.read_buffer_trimmer.after_read()
        if msg_type == WSMsgType.CONTINUATION:
            if not self._in_fragment:
                raise DecodeError("a continuation frame arrived with no fragmented message to continue")
            if frags.size + n > self.max_message_size:
                frags.clear()
                self._in_fragment = False
                raise DecodeError("fragmented message is larger than max_message_size "
                                  f"({self.max_message_size} bytes)")
            frags.append(p, n)
            if not frame.fin:
                return None
            self._in_fragment = False
            try:
                return self._process(frags.data, frags.size, self._fragment_binary)
            finally:
                frags.clear()
        if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY:
            if self._in_fragment:
                frags.clear()
                self._in_fragment = False
                raise DecodeError("a new message started before the fragmented one was finished")
            if frame.fin:
                return self._process(p, n, msg_type == WSMsgType.BINARY)
            if n > self.max_message_size:
                raise DecodeError("fragmented message is larger than max_message_size "
                                  f"({self.max_message_size} bytes)")
            frags.clear()
            frags.append(p, n)
            self._in_fragment = True
            self._fragment_binary = msg_type == WSMsgType.BINARY
            return None
        return None     # ping/pong/close belong to the shard, not the decoder

    def feed(self, data, bint binary):
        """One complete websocket message (bytes-like); see :mod:`fastshard.codec`."""
        cdef Py_buffer buf
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            return self._process(<const unsigned char*>buf.buf, buf.len, binary)
        finally:
            PyBuffer_Release(&buf)

    # -- the pipeline -----------------------------------------------------
    cdef object _process(self, const unsigned char* p, Py_ssize_t n, bint binary):
        cdef object raw
        cdef int c = self.compression
        if n == 0:
            p = <const unsigned char*>b""   # an empty frame or buffer may have no pointer at all
        self.wire_bytes += n
        if c == 2:
            raw = self._zlib.feed(p, n)
            if raw is None:
                return None
            if type(raw) is memoryview:     # over the inflater's reused buffer
                try:
                    return self._finish(raw, self._zlib.out_ptr, self._zlib.out_size)
                finally:
                    raw.release()
                    self._zlib._out.clear()  # gives a large message's buffer back (see ByteBuffer.clear)
            return self._finish(raw, self._zlib.out_ptr, self._zlib.out_size)
        if c == 3:
            raw = self._zstd.feed(p, n)
            if raw is None:
                return None     # an empty message (or an empty block): nothing to deliver
            if type(raw) is memoryview:
                try:
                    return self._finish(raw, self._zstd.out_ptr, self._zstd.out_size)
                finally:
                    raw.release()
                    self._zstd._out.clear()
            return self._finish(raw, self._zstd.out_ptr, self._zstd.out_size)
        if c == 1 and binary and not self._is_etf:
            raw = self._payload_zlib.feed(p, n)
            return self._finish(raw, self._payload_zlib.out_ptr, self._payload_zlib.out_size)
        # Uncompressed (or ETF, whose tag 80 the ETF decoder inflates): decoded
        # straight from the caller's memory, released before returning.
        raw = PyMemoryView_FromMemory(<char*>p, n, PyBUF_READ)
        try:
            return self._finish(raw, p, n)
        finally:
            raw.release()

    cdef object _finish(self, object raw, const unsigned char* p, Py_ssize_t n):
        cdef Peek pk
        cdef bint sure
        cdef object payload, s, t, op, term
        if self._is_etf and n >= 2 and p[1] == 80:
            # A compressed ETF term (payload compression): inflated here, within
            # max_message_size, so the peek, the raw tuple and the decode all
            # see the plain term.
            term = self._etf_inflate(raw, self.max_message_size)
            raw = term
            p = <const unsigned char*>PyBytes_AS_STRING(term)
            n = PyBytes_GET_SIZE(term)
        self.raw_bytes += n
        if self._peeks:
            # First up to op/t/s only: a payload that will be decoded anyway
            # needs no more (the decode reads the last of duplicated keys).
            # Dropped or raw, it is walked to its end first (the peek must
            # read the same t and s as a decode would).
            pk.pos = 0
            t = self._peeked_dispatch(p, n, &pk, False)
            if t is not None and not pk.complete:
                t = self._peeked_dispatch(p, n, &pk, True)
            if t is not None:
                if self._has_disabled and t in self.disabled_events:
                    self._track(pk.s)
                    return None
                if self.raw_dispatches and t != "READY" and t != "RESUMED":
                    self._track(pk.s)
                    return (t, pk.s, PyBytes_FromStringAndSize(<const char*>p, n))
        payload = self._decode(raw, p, n)
        if type(payload) is not dict:
            raise DecodeError(f"gateway payload is not an object but {type(payload).__name__}")
        s = (<dict>payload).get("s")
        op = (<dict>payload).get("op")
        if type(op) is int and op == 0:
            t = (<dict>payload).get("t")
            if type(t) is not str or type(s) is not int:
                raise DecodeError(_bad_dispatch(t, s))
            self._track(s)
            if self._has_disabled and t in self.disabled_events:
                return None
            if self.raw_dispatches and t != "READY" and t != "RESUMED":
                return (t, s, PyBytes_FromStringAndSize(<const char*>p, n))
        elif type(s) is int:
            self._track(s)
        return payload

    cdef object _peeked_dispatch(self, const unsigned char* p, Py_ssize_t n, Peek* pk, bint whole):
        """The event name if the peek is sure this is a dispatch to drop or pass raw, else None."""
        cdef bint sure = _etf_peek(p, n, pk, whole) if self._is_etf else _json_peek(p, n, pk, whole)
        if not (sure and (pk.found & _HAVE_OP) and pk.op == 0 and (pk.found & _HAVE_T)
                and pk.t_is_str and (pk.found & _HAVE_S) and not pk.s_null):
            return None
        try:
            t = (<const char*>pk.t_ptr)[:pk.t_len].decode("utf-8")
        except UnicodeDecodeError:
            return None     # orjson/ETF will report it
        if (self._has_disabled and t in self.disabled_events) or (
                self.raw_dispatches and t != "READY" and t != "RESUMED"):
            return t
        return None

    cdef object _decode(self, object raw, const unsigned char* p, Py_ssize_t n):
        cdef int was_enabled = 0
        cdef bint paused = n > _GC_PAUSE_THRESHOLD
        if paused:
            was_enabled = PyGC_Disable()
        try:
            if self._etf_decode_c != NULL:
                return self._etf_decode_c(p, n, self.big_ints_as_str)
            if self._is_etf:
                return self._etf_decode_py(raw, big_ints_as_str=self.big_ints_as_str)
            try:
                return self._loads(raw)
            except _JSONDecodeError as exc:
                raise DecodeError(f"invalid JSON from the gateway: {exc}") from None
        finally:
            if paused and was_enabled:
                PyGC_Enable()

    cdef int _track(self, object s) except -1:
        if self._sequence is None or s > self._sequence:
            self._sequence = s
        return 0
