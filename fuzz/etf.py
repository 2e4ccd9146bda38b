"""Fuzz the ETF decoder: any term, compressed terms against a size cap, re-encoding.

    python -m fuzz.etf -max_total_time=60 CORPUS fuzz/seeds/etf tests/data/etf

Invariants: only DecodeError; a compressed term never inflates past the cap
it is given; whatever decodes re-encodes (or is refused with the documented
TypeError/ValueError: non-str map keys, NaN/inf floats).
"""
from __future__ import annotations

import atheris

with atheris.instrument_imports():
    from fastshard import _etf
    from fastshard.errors import DecodeError

from fuzz._common import CAPS, main


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    as_str = bool(flags & 1)
    # Most inputs should start with the version byte so the fuzzer gets past it.
    term = b"\x83" + data[1:] if flags & 2 else data[1:]
    cap = CAPS[(flags >> 2) & 3]
    try:
        value = _etf.decode(term, big_ints_as_str=as_str, max_size=cap)
    except DecodeError:
        value = None
    else:
        try:
            _etf.encode(value)
        except (TypeError, ValueError):
            pass
    if len(term) >= 2 and term[0] == 131 and term[1] == 80:
        try:
            plain = _etf.inflate_term(term, cap)
        except DecodeError:
            return
        assert len(plain) <= cap and plain[0] == 131, (len(plain), cap)


if __name__ == "__main__":
    main(test_one_input)
