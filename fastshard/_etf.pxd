# C-level entry point of the ETF codec, for fastshard/_decoder.pyx.
#
# decode_buffer decodes one 131-prefixed term from `size` bytes at `data`
# (the caller keeps the buffer alive and unchanged for the call) and raises
# fastshard.errors.DecodeError on anything malformed.  Big integers become
# str when big_ints_as_str is true, int otherwise.
cdef object decode_buffer(const unsigned char* data, Py_ssize_t size, bint big_ints_as_str)
