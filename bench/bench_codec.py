"""Codec micro-benchmarks: every stage of receiving a message, fastshard beside the usual baselines.

All on the same packed workloads as the end-to-end run (:mod:`bench.workloads`),
in one process, candidates interleaved round after round (so machine noise hits
them alike), medians of the per-message times.  Sections:

* ``inflate``: zlib-stream, zstd-stream and payload-zlib inflaters: fastshard's
  Cython inflaters against stdlib ``zlib``, ``zlib_ng`` and ``zstandard``;
* ``json``: ``orjson.loads`` (what fastshard uses) against stdlib ``json.loads``;
* ``etf decode``: ``fastshard._etf.decode`` against ``erlpack.unpack`` and
  against ``orjson.loads`` of the JSON form of the same payloads;
* ``etf encode``: gateway commands (from ``bench_etf.gateway_commands``) with
  ``fastshard._etf.encode`` against ``erlpack.pack``;
* ``path``: the whole per-message path (websocket message -> payload dict,
  sequence tracked) for every encoding x compression: fastshard's decoder
  (``make_decoder(...).feed``) against stdlib zlib + json, stdlib zlib + orjson,
  discord.py's own decompression context + its JSON loader (JSON with
  compression 0/2/3, what discord.py can receive) and stdlib zlib + erlpack (ETF).

During the GUILD_CREATE burst every decoded payload is kept until the end of
the pass, as a bot's guild cache does, so the garbage collector sees what it
sees in production.

Also runnable with pytest-benchmark (path, inflate and JSON decode; the ETF
codec's pytest-benchmark cases are in ``bench_etf.py``)::

    python -m pytest bench/bench_codec.py bench/bench_etf.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

import gc
import json
import statistics
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import erlpack
import orjson
import zstandard
from zlib_ng import zlib_ng

from fastshard import _etf
from fastshard.codec import DEFAULT_MAX_MESSAGE_SIZE, make_decoder

from .workloads import COMBINATIONS, COMPRESSION_LABELS, Packed, combo_label, encoded, pack

__all__ = ["Section", "Row", "run_codec", "path_candidates"]

_SUFFIX = b"\x00\x00\xff\xff"


@dataclass
class Row:
    """One candidate's median time per message, or why it could not run."""

    name: str
    fastshard: bool
    us_per_msg: float | None = None
    error: str | None = None
    samples: list[float] = field(default_factory=list)


@dataclass
class Section:
    title: str
    workload: str
    messages: int
    rows: list[Row]

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


# -- candidates: each a factory returning a per-message callable (fresh state per pass) --
Factory = Callable[[], Callable[[Any], Any]]


def _discord_contexts() -> dict[int, Any]:
    """discord.py's decompression context classes: zlib-stream (2) and zstd-stream (3)."""
    from discord import utils as discord_utils

    from .bench_decode import discord_utils_without_zstd

    contexts = {2: discord_utils_without_zstd()._ZlibDecompressionContext}
    if hasattr(discord_utils, "_ZstdDecompressionContext"):
        contexts[3] = discord_utils._ZstdDecompressionContext
    return contexts


def _stdlib_stream(loads: Callable[[Any], Any]) -> Factory:
    def make() -> Callable[[Any], Any]:
        context = zlib.decompressobj()
        buffer = bytearray()

        def decode(m: Any) -> Any:
            data = m.data
            buffer.extend(data)
            if data[-4:] != _SUFFIX:
                return None
            out = context.decompress(buffer)
            buffer.clear()
            return loads(out)
        return decode
    return make


def _baseline(encoding: str, compression: int, loads: Callable[[Any], Any]) -> Factory:
    """stdlib zlib (zstandard for zstd-stream) + ``loads``."""
    if compression == 2:
        return _stdlib_stream(loads)
    if compression == 3:
        def make3() -> Callable[[Any], Any]:
            zdecompress = zstandard.ZstdDecompressor().decompressobj().decompress
            return lambda m: loads(zdecompress(m.data))
        return make3
    if compression == 1 and encoding == "json":
        decompress = zlib.decompress
        return lambda: lambda m: loads(m.data if m.text else decompress(m.data))
    return lambda: lambda m: loads(m.data)


def _discordpy(context_class: Any) -> Factory:
    from discord.utils import _from_json

    def make() -> Callable[[Any], Any]:
        decompress = context_class().decompress if context_class is not None else None

        def decode(m: Any) -> Any:
            data = m.data
            if decompress is not None:
                data = decompress(data)
                if data is None:
                    return None
            return _from_json(data)
        return decode
    return make


def _fastshard(encoding: str, compression: int) -> Factory:
    def make() -> Callable[[Any], Any]:
        feed = make_decoder(encoding, compression).feed
        return lambda m: feed(m.data, not m.text)
    return make


def path_candidates(encoding: str, compression: int,
                    discord_contexts: dict[int, Any] | None = None) -> dict[str, tuple[Factory, bool]]:
    """Whole-path candidates for one combination: name -> (factory, is_fastshard)."""
    out: dict[str, tuple[Factory, bool]] = {"fastshard": (_fastshard(encoding, compression), True)}
    if encoding == "json":
        if compression in (0, 2, 3) and discord_contexts is not None and \
                (compression == 0 or compression in discord_contexts):
            out["discord.py (its context + orjson)"] = (_discordpy(discord_contexts.get(compression)), False)
        out["stdlib zlib + orjson"] = (_baseline(encoding, compression, orjson.loads), False)
        out["stdlib zlib + json"] = (_baseline(encoding, compression, json.loads), False)
    else:
        out["stdlib zlib + erlpack"] = (_baseline(encoding, compression, erlpack.unpack), False)
    return out


def _inflate_candidates(compression: int) -> dict[str, tuple[Factory, bool]]:
    from fastshard import _inflate

    if compression == 2:
        def fast2() -> Callable[[Any], Any]:
            return _inflate.ZlibStreamInflater(DEFAULT_MAX_MESSAGE_SIZE).feed_bytes  # type: ignore[no-any-return]

        def stream(module: Any) -> Factory:
            def make() -> Callable[[Any], Any]:
                context, buffer = module.decompressobj(), bytearray()

                def inflate(data: Any) -> Any:
                    buffer.extend(data)
                    if data[-4:] != _SUFFIX:
                        return None
                    out = context.decompress(buffer)
                    buffer.clear()
                    return out
                return inflate
            return make
        return {"fastshard ZlibStreamInflater": (fast2, True),
                "zlib_ng decompressobj": (stream(zlib_ng), False),
                "stdlib zlib decompressobj": (stream(zlib), False)}
    if compression == 3:
        def fast3() -> Callable[[Any], Any]:
            return _inflate.ZstdStreamInflater(DEFAULT_MAX_MESSAGE_SIZE).feed_bytes  # type: ignore[no-any-return]
        return {"fastshard ZstdStreamInflater": (fast3, True),
                "zstandard decompressobj": (lambda: zstandard.ZstdDecompressor().decompressobj().decompress, False)}

    def fast1() -> Callable[[Any], Any]:
        return _inflate.ZlibPayloadInflater(DEFAULT_MAX_MESSAGE_SIZE).feed_bytes  # type: ignore[no-any-return]
    return {"fastshard ZlibPayloadInflater": (fast1, True),
            "zlib_ng.decompress": (lambda: zlib_ng.decompress, False),
            "stdlib zlib.decompress": (lambda: zlib.decompress, False)}


# -- timing -------------------------------------------------------------------------
def _one_pass(make: Factory, items: list[Any], keep: bool) -> float:
    fn = make()
    kept: list[Any] = []
    append = kept.append
    start = time.perf_counter()
    if keep:
        for item in items:
            append(fn(item))
    else:
        for item in items:
            fn(item)
    return time.perf_counter() - start


def race(title: str, workload: str, candidates: dict[str, tuple[Factory, bool]],
         items: list[Any], rounds: int, keep: bool) -> Section:
    """Interleaved rounds; a candidate that raises is reported with its error, not dropped."""
    rows = [Row(name, is_fast) for name, (_, is_fast) in candidates.items()]
    live = {row.name: (candidates[row.name][0], row) for row in rows}
    for r in range(rounds + 1):  # round 0 warms caches and allocators up
        gc.collect()  # once per round: every candidate starts from a similar heap
        for name, (make, row) in list(live.items()):
            try:
                seconds = _one_pass(make, items, keep)
            except Exception as exc:  # a broken candidate is a finding, reported in the table
                row.error = f"{type(exc).__name__}: {exc}"
                del live[name]
                continue
            if r:
                row.samples.append(seconds / len(items) * 1e6)
    for row in rows:
        if row.samples and row.error is None:
            row.us_per_msg = statistics.median(row.samples)
    return Section(title, workload, len(items), rows)


def run_codec(counts: dict[str, int], rounds: int, progress: Callable[[str], None] = print,
              errors: list[str] | None = None) -> list[Section]:
    """Every section for every workload; ``counts`` maps workload -> events (guilds for burst).

    Problems that remove a whole candidate (discord.py not importable) are appended to ``errors``.
    """
    try:
        discord_contexts: dict[int, Any] | None = _discord_contexts()
    except Exception as exc:  # discord.py missing: its rows are left out, and said so
        message = f"codec: discord.py baseline unavailable: {type(exc).__name__}: {exc}"
        progress("  " + message)
        if errors is not None:
            errors.append(message)
        discord_contexts = None
    from .bench_etf import gateway_commands

    sections: list[Section] = []
    for workload, count in counts.items():
        keep = workload == "burst"
        n_rounds = rounds if workload == "steady" else max(3, (rounds + 1) // 2)
        packs: dict[tuple[str, int], Packed] = {c: pack(workload, count, *c) for c in COMBINATIONS}

        progress(f"  codec {workload}: inflate")
        for c in (2, 3, 1):
            msgs = [m.data for m in packs[("json", c)]]
            if c == 1:
                msgs = [m.data for m in packs[("json", 1)] if not m.text]  # only compressed ones
            if msgs:
                sections.append(race(f"inflate, {('payload zlib', 'zlib-stream', 'zstd-stream')[c - 1]} (JSON)",
                                     workload, _inflate_candidates(c), msgs, n_rounds, keep))

        progress(f"  codec {workload}: JSON and ETF decode, ETF encode")
        js, etf = list(encoded(workload, count, "json")), list(encoded(workload, count, "etf"))
        sections.append(race("JSON decode", workload, {
            "orjson.loads (fastshard's JSON)": (lambda: orjson.loads, True),
            "stdlib json.loads": (lambda: json.loads, False)}, js, n_rounds, keep))
        both = list(zip(etf, js))
        sections.append(race("ETF decode", workload, {
            "fastshard._etf.decode": (lambda: lambda p: _etf.decode(p[0]), True),
            "erlpack.unpack": (lambda: lambda p: erlpack.unpack(p[0]), False),
            "orjson.loads, JSON form (scale)": (lambda: lambda p: orjson.loads(p[1]), False)},
            both, n_rounds, keep))

        progress(f"  codec {workload}: whole per-message path x 8 combinations")
        for encoding, compression in COMBINATIONS:
            sections.append(race(f"path, {combo_label(encoding, compression)}", workload,
                                 path_candidates(encoding, compression, discord_contexts),
                                 list(packs[(encoding, compression)]), n_rounds, keep))

    commands = gateway_commands() * 200
    sections.append(race("ETF encode, gateway commands", "commands", {
        "fastshard._etf.encode": (lambda: _etf.encode, True),
        "erlpack.pack": (lambda: erlpack.pack, False),
        "orjson.dumps, JSON (scale)": (lambda: orjson.dumps, False)}, commands, rounds, False))
    return sections


def speedups(section: Section) -> Iterable[tuple[str, float]]:
    """(baseline name, baseline time / fastshard time) pairs, medians of per-round ratios."""
    fast = next((r for r in section.rows if r.fastshard), None)
    if fast is None or not fast.samples:
        return
    for row in section.rows:
        if row is fast or not row.samples or row.error:
            continue
        ratios = [b / f for b, f in zip(row.samples, fast.samples)]
        yield row.name, statistics.median(ratios)


# -- pytest-benchmark form -------------------------------------------------------------
def _bench_items(encoding: str, compression: int) -> list[Any]:
    return list(pack("steady", 1000, encoding, compression))


def _pass(make: Factory, items: list[Any]) -> None:
    fn = make()
    for item in items:
        fn(item)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for this form
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    try:
        _DISCORD: dict[int, Any] | None = _discord_contexts()
    except Exception:  # discord.py not installed: its cases are simply not collected
        _DISCORD = None
    _SHORT = {"fastshard": "fastshard", "discord.py (its context + orjson)": "discordpy",
              "stdlib zlib + orjson": "zlib+orjson", "stdlib zlib + json": "zlib+json",
              "stdlib zlib + erlpack": "zlib+erlpack"}
    _CASES = [(e, c, name) for e, c in COMBINATIONS for name in path_candidates(e, c, _DISCORD)]

    @pytest.mark.parametrize("encoding,compression,name", _CASES,
                             ids=[f"{e}-{COMPRESSION_LABELS[c]}-{_SHORT.get(n, n)}" for e, c, n in _CASES])
    def test_path(benchmark: Any, encoding: str, compression: int, name: str) -> None:
        """The whole per-message path over 1000 steady-state messages (fresh context per round)."""
        make, _ = path_candidates(encoding, compression, _DISCORD)[name]
        items = _bench_items(encoding, compression)
        benchmark(_pass, make, items)

    _INFLATE_CASES = [(c, name) for c in (1, 2, 3) for name in _inflate_candidates(c)]

    @pytest.mark.parametrize("compression,name", _INFLATE_CASES,
                             ids=[f"{COMPRESSION_LABELS[c]}-{n.replace(' ', '_')}" for c, n in _INFLATE_CASES])
    def test_inflate(benchmark: Any, compression: int, name: str) -> None:
        """Inflate only, 1000 steady-state JSON messages (payload compression: the compressed ones)."""
        make, _ = _inflate_candidates(compression)[name]
        items = [m.data for m in _bench_items("json", compression) if not m.text]
        benchmark(_pass, make, items)

    @pytest.mark.parametrize("name", ["orjson", "json"])
    def test_json_decode(benchmark: Any, name: str) -> None:
        """JSON decode only, 1000 steady-state payloads (ETF decode/encode: bench_etf.py)."""
        loads = orjson.loads if name == "orjson" else json.loads
        benchmark(_pass, lambda: loads, list(encoded("steady", 1000, "json")))
