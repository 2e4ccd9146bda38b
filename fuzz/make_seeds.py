"""Write the committed seed corpora (fuzz/seeds/NAME/) from the simulator's real traffic.

    python -m fuzz.make_seeds

Deterministic (TrafficGenerator with a fixed seed, MessagePacker as the
simulator packs a live connection); kept small, since libFuzzer mutates each
seed and a few hundred KB in total is plenty to start from.
"""
from __future__ import annotations

import hashlib
import shutil
import zlib
from pathlib import Path

from fastshard.testing.compression import MessagePacker
from fastshard.testing.encoding import encode_payload
from fastshard.testing.traffic import TrafficGenerator

from fuzz._common import pack_frames

SEEDS = Path(__file__).resolve().parent / "seeds"
MAX_SEED = 64 * 1024          # per file; larger messages are cut to this


def _payloads() -> list[dict]:
    gen = TrafficGenerator("fuzz-seeds")
    out: list[dict] = [{"op": 10, "d": {"heartbeat_interval": 41250, "_trace": ["gw"]}, "s": None, "t": None},
                       {"op": 11, "d": None, "s": None, "t": None},
                       {"op": 7, "d": None, "s": None, "t": None},
                       {"op": 9, "d": True, "s": None, "t": None}]
    seq = 0
    for t, d in gen.steady_stream(40) + gen.guild_burst(2):
        seq += 1
        out.append({"t": t, "s": seq, "op": 0, "d": d})
    out.append({"t": "RESUMED", "s": seq + 1, "op": 0, "d": {"_trace": ["gw"]}})
    return out


def _write(name: str, blobs: list[bytes]) -> int:
    folder = SEEDS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    total = 0
    for blob in blobs:
        blob = blob[:MAX_SEED]
        (folder / hashlib.sha1(blob).hexdigest()[:16]).write_bytes(blob)
        total += len(blob)
    return total


def _zstd_header(window_log: int) -> bytes:
    return b"\x28\xb5\x2f\xfd\x00" + bytes([(window_log - 10) << 3])


def main() -> None:
    payloads = _payloads()
    small = [p for p in payloads if len(encode_payload(p, "json")) < 4000]
    sizes = {}
    etf = [encode_payload(p, "etf") for p in small]
    etf_compressed = MessagePacker("etf", 1, payload_compression_threshold=0).pack(payloads[-3])[0].data
    # flags byte 2: prepend the version byte, so strip ours; 6: a 64 KiB cap
    sizes["etf"] = _write("etf", [bytes([2]) + e[1:] for e in etf[:30]] + [bytes([6]) + etf_compressed[1:]])

    def stream(compression: int, split: int, source: list[dict] = small[:12]) -> list[bytes]:
        packer = MessagePacker("json", compression)
        out = []
        for p in source:
            for message in packer.pack(p, split=split):
                out.append(message.data)
        return out
    sizes["zlib_stream"] = _write("zlib_stream", [pack_frames(stream(2, 1), 3), pack_frames(stream(2, 3), 3),
                                                  pack_frames(stream(2, 1)[:3], 0),
                                                  pack_frames(stream(2, 2, payloads[-4:]), 3)])
    zstd = stream(3, 1)
    raw_block = (9 << 3).to_bytes(3, "little") + b'{"op":11}'
    sizes["zstd_stream"] = _write("zstd_stream", [pack_frames(zstd, 3), pack_frames(zstd[:2], 1),
                                                  pack_frames(stream(3, 1, payloads[-4:]), 3)]
                                  + [pack_frames([_zstd_header(w) + raw_block], 3) for w in (10, 18, 23, 24, 31)])
    sizes["payload_zlib"] = _write("payload_zlib", [bytes([3]) + zlib.compress(encode_payload(p, "json"))
                                                    for p in small[:15]] + [bytes([0]) + zlib.compress(b"{}" * 100)])
    decoder = []
    for flags in (0, 2, 4, 6):
        decoder += [bytes([flags]) + encode_payload(p, "json") for p in small[:6]]
        decoder += [bytes([flags | 1]) + encode_payload(p, "etf") for p in small[:6]]
    decoder.append(bytes([2]) + b'{"op":0,"t":"TYPING_START","s":5,"t":"MESSAGE_CREATE","d":{}}')
    decoder.append(bytes([10]) + zlib.compress(encode_payload(small[5], "json")))
    sizes["message_decoder"] = _write("message_decoder", decoder)
    for name, size in sizes.items():
        print(f"{name:16s} {size / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
