"""Coverage-guided fuzzing of the ETF decoder with atheris (libFuzzer).

Not part of the test suite (pytest does not collect it): the hypothesis fuzz
tests in test_etf.py run every time; this is the long, deep run.  The extension
must be built with libFuzzer's coverage instrumentation (clang), e.g. in a copy
of the repository so the shared tree keeps its normal build:

    CC=clang CFLAGS="-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -g -O1" \\
        LDFLAGS="-fsanitize=address" cythonize -i -3 fastshard/_etf.pyx
    LD_PRELOAD="$(python -c 'import atheris, os; print(os.path.join(os.path.dirname(os.path.dirname(atheris.__file__)), "asan_with_fuzzer.so"))')" \\
        ASAN_OPTIONS=detect_leaks=0 python tests/fuzz_etf.py -max_total_time=600 CORPUS_DIR tests/data/etf

Any exception other than DecodeError, any sanitizer report or any hang is a bug.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fastshard import _etf
    from fastshard.errors import DecodeError


def test_one_input(data: bytes) -> None:
    if not data:
        return
    as_str = bool(data[0] & 1)
    # Most inputs should start with the version byte so the fuzzer gets past it.
    term = b"\x83" + data[1:] if data[0] & 2 else data[1:]
    try:
        value = _etf.decode(term, big_ints_as_str=as_str)
    except DecodeError:
        return
    # Whatever decodes must re-encode or be refused with the documented errors
    # (non-str map keys, NaN/inf floats), never anything else.
    try:
        _etf.encode(value)
    except (TypeError, ValueError):
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
