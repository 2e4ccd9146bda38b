"""Gateway payloads to bytes and back, for both of Discord's encodings.

Compression is not done here (see :mod:`.compression`), so a benchmark can
encode a whole event stream once and reuse the bytes.
"""
from __future__ import annotations

from typing import Any, Iterable

import orjson

from . import etf

__all__ = ["ENCODINGS", "ClientDecodeError", "encode_payload", "encode_stream",
           "decode_client_payload", "snowflakes_to_int"]

ENCODINGS = ("json", "etf")


class ClientDecodeError(ValueError):
    """What a client sent cannot be decoded; the gateway answers with close 4002."""


# "*_id" keys whose values are not snowflakes (hex ids, developer strings).
_NOT_SNOWFLAKE_KEYS = frozenset({"session_id", "custom_id", "nonce"})


def _is_snowflake_key(key: Any) -> bool:
    return isinstance(key, str) and (key == "id" or key.endswith("_id")) and key not in _NOT_SNOWFLAKE_KEYS


def _snowflake(value: Any) -> Any:
    # Leading zeros would not survive the trip through an integer.
    if isinstance(value, str) and value.isascii() and value.isdigit() and (value[0] != "0" or value == "0"):
        return int(value)
    return value


def snowflakes_to_int(value: Any) -> Any:
    """Copy of ``value`` with snowflake strings turned into ints.

    JSON carries snowflakes as strings; Discord's ETF carries them as integers
    (SMALL_BIG once past 2**31).  Keys named ``id``/``*_id`` and lists under
    ``*_ids`` are snowflakes when they are all digits.
    """
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if _is_snowflake_key(key):
                out[key] = _snowflake(item)
            elif isinstance(key, str) and key.endswith("_ids") and isinstance(item, list):
                out[key] = [_snowflake(x) for x in item]
            else:
                out[key] = snowflakes_to_int(item)
        return out
    if isinstance(value, list):
        return [snowflakes_to_int(item) for item in value]
    return value


def encode_payload(payload: Any, encoding: str) -> bytes:
    """One gateway payload as the bytes Discord would put on the wire (uncompressed)."""
    if encoding == "json":
        return orjson.dumps(payload)
    if encoding == "etf":
        return etf.encode(snowflakes_to_int(payload))
    raise ValueError(f"encoding must be 'json' or 'etf', not {encoding!r}")


def encode_stream(events: Iterable[tuple[str, Any]], encoding: str, start_seq: int = 1) -> list[bytes]:
    """Dispatch payloads for ``(t, d)`` pairs, numbered from ``start_seq``, encoded once.

    For benchmarks: encode a stream up front, then push it with
    :meth:`SimConnection.send_stream` so the simulator's own encoding cost
    stays out of the measurement.
    """
    return [encode_payload({"op": 0, "t": t, "s": seq, "d": d}, encoding)
            for seq, (t, d) in enumerate(events, start_seq)]


def decode_client_payload(data: bytes | str, encoding: str) -> tuple[Any, bool]:
    """Decode what a client sent; returns ``(payload, used_atom_keys)``."""
    if encoding == "json":
        try:
            return orjson.loads(data), False
        except orjson.JSONDecodeError as exc:
            raise ClientDecodeError(f"invalid JSON: {exc}") from None
    if isinstance(data, str):
        # ETF is binary; a text frame in ETF mode is a client bug.
        raise ClientDecodeError("text frame received in ETF mode")
    try:
        return etf.decode_payload(data)
    except etf.EtfError as exc:
        raise ClientDecodeError(f"invalid ETF: {exc}") from None
