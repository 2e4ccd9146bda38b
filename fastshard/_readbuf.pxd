# C-level interface of the read-buffer trimmer, for fastshard/_decoder.pyx.
from cpython.object cimport PyObject
from picows.picows cimport WSTransport

cdef extern from *:
    """
    /* picows 2.3's WSProtocol instance, field for field (picows/picows.pyx,
       `cdef class WSProtocol`); checked at run time, see _layout() in _readbuf.pyx. */
    typedef struct {
        PyObject_HEAD
        void *vtab;
        PyObject *transport;
        PyObject *listener;
        PyObject *objects_a[4];     /* _listener_factory, _host_port, _ws_path, _logger */
        int flags_a[3];             /* _log_debug_enabled, is_client_side, _disconnect_on_exception */
        PyObject *objects_b[5];     /* _disconnect_exception, _loop, _handshake_timeout(_handle), _handshake_complete_future */
        Py_ssize_t http_max_size;
        PyObject *websocket_key_b64;
        Py_ssize_t max_frame_size;
        int flags_b[2];             /* _enable_auto_pong, _enable_auto_ping */
        PyObject *objects_c[2];     /* _auto_ping_idle_timeout, _auto_ping_reply_timeout */
        int auto_ping_strategy;     /* enum */
        PyObject *auto_ping_loop_task;
        double last_data_time;
        PyObject *extra_headers;
        int state;                  /* enum WSParserState */
        PyObject *read_buffer;      /* MemoryBuffer */
        Py_ssize_t new_data_start_pos;
        Py_ssize_t curr_state_start_pos;
        Py_ssize_t curr_frame_start_pos;
        Py_ssize_t payload_length;
        Py_ssize_t payload_start_pos;
        int msg_type;
        uint32_t mask;
        uint8_t frame_flags[6];
    } fs_picows_protocol;
    """
    ctypedef struct fs_picows_protocol:
        PyObject* transport
        PyObject* listener
        PyObject* read_buffer
        Py_ssize_t new_data_start_pos
        Py_ssize_t curr_frame_start_pos
    Py_ssize_t FS_PROTOCOL_SIZE "sizeof(fs_picows_protocol)"


cdef class ReadBufferTrimmer:
    cdef object _protocol           # keeps the protocol (and _view) alive
    cdef fs_picows_protocol* _view  # NULL when the layout is not picows 2.3's
    cdef object _loop
    cdef object _call_soon
    cdef long long _frames
    cdef bint _pending
    cdef readonly int trims

    cdef void after_read(self) noexcept
