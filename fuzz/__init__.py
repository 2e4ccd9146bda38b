"""Coverage-guided fuzzing of every parser of network input (atheris / libFuzzer).

One harness per parser, each a module runnable on its own
(``python -m fuzz.etf [libFuzzer flags] CORPUS...``); ``python -m fuzz
--seconds 60`` runs them all (see fuzz/README.md).  A harness fails on any
exception other than :class:`fastshard.errors.DecodeError`, on a broken
invariant (output over the size cap, two implementations disagreeing), and,
in a sanitizer build, on any memory error or undefined behaviour.
"""
from __future__ import annotations

#: module name -> what it fuzzes
HARNESSES = {
    "etf": "the ETF decoder (_etf.decode, compressed terms, the container budget)",
    "zlib_stream": "the zlib-stream inflater fed arbitrary chunk sequences (both backends, differential)",
    "zstd_stream": "the zstd-stream inflater, hostile frame headers and windows (against zstandard itself)",
    "payload_zlib": "per-payload zlib (payload compression) against the reference decoder",
    "message_decoder": "the message decoder's peek with disabled_events and raw_dispatches, against the reference",
}
