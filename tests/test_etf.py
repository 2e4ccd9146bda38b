"""fastshard._etf: the Cython ETF codec.

Differential against Erlang's own term_to_binary (committed vectors, made by
tests/data/etf/make_vectors.escript) and binary_to_term (when `escript` is on
PATH), against erlpack, round-trip properties, and untrusted-input tests that
must only ever raise DecodeError.
"""
from __future__ import annotations

import ast
import enum
import math
import pathlib
import shutil
import struct
import subprocess
import time
import zlib

import erlpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastshard import _etf
from fastshard.errors import DecodeError

decode = _etf.decode
encode = _etf.encode

DATA = pathlib.Path(__file__).parent / "data" / "etf"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def load_vectors() -> list[tuple[str, object, object]]:
    rows = []
    for line in (DATA / "expected.txt").read_text(encoding="ascii").splitlines():
        if line.startswith("#") or not line:
            continue
        name, as_str, as_int = line.split("\t")
        rows.append((name, ast.literal_eval(as_str), ast.literal_eval(as_int)))
    return rows


VECTORS = load_vectors()
VARIANTS = ("v0", "v1", "v2", "z")


def expected_from_python(value, big_ints_as_str=True):
    """What decode(encode(value)) must give: the documented rules, in Python."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if big_ints_as_str and not INT32_MIN <= value <= INT32_MAX:
            return str(value)
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [expected_from_python(v, big_ints_as_str) for v in value]
    if isinstance(value, dict):
        return {str(k): expected_from_python(v, big_ints_as_str) for k, v in value.items()}
    raise AssertionError(type(value))


def normalize_erlpack(value, big_ints_as_str=True):
    """erlpack.unpack's output in fastshard's conventions (bytes -> str, Atom -> str/None/bool)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, erlpack.Atom):
        return {"nil": None, "true": True, "false": False}.get(str(value), str(value))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if big_ints_as_str and not INT32_MIN <= value <= INT32_MAX:
            return str(value)
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [normalize_erlpack(v, big_ints_as_str) for v in value]
    if isinstance(value, tuple):
        return tuple(normalize_erlpack(v, big_ints_as_str) for v in value)
    if isinstance(value, dict):
        return {normalize_erlpack(k, big_ints_as_str): normalize_erlpack(v, big_ints_as_str)
                for k, v in value.items()}
    raise AssertionError(type(value))


# Values of every supported type, as hypothesis draws them.
json_ints = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(
    [0, 255, 256, -1, INT32_MAX, INT32_MAX + 1, INT32_MIN, INT32_MIN - 1, 2**63 - 1, 2**63, 2**64 - 1,
     2**64, -(2**63), -(2**64), 175928847299117063, 2**2040, -(2**2048)])
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | json_ints | finite_floats | st.text()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)


# ---------------------------------------------------------------------------
# Vectors made by Erlang's term_to_binary (OTP 25; minor_version 0, 1 and the
# OTP 26+ default 2, and compressed)


def test_vectors_cover_every_tag():
    tags = set()
    for name, _, _ in VECTORS:
        for variant in VARIANTS:
            tags.update(_walk_tags((DATA / f"{name}.{variant}.etf").read_bytes()))
    # NEW_FLOAT, COMPRESSED, SMALL_INTEGER, INTEGER, FLOAT, ATOM, SMALL_TUPLE,
    # LARGE_TUPLE, NIL, STRING, LIST, BINARY, SMALL_BIG, LARGE_BIG,
    # SMALL_ATOM (never written by OTP 25, covered by the erlpack tests), MAP,
    # ATOM_UTF8, SMALL_ATOM_UTF8
    assert {70, 80, 97, 98, 99, 100, 104, 105, 106, 107, 108, 109, 110, 111, 116, 118, 119} <= tags


def _walk_tags(data: bytes) -> set[int]:
    """The tags in a term, by a tiny independent walker (to prove coverage)."""
    tags: set[int] = set()

    def walk(pos: int) -> int:
        tag = data[pos]
        tags.add(tag)
        pos += 1
        if tag == 80:
            inner = zlib.decompress(data[pos + 4:])
            tags.update(_walk_tags(b"\x83" + inner))
            return len(data)
        fixed = {97: 1, 98: 4, 70: 8, 99: 31}
        if tag in fixed:
            return pos + fixed[tag]
        if tag in (100, 118):
            return pos + 2 + struct.unpack(">H", data[pos:pos + 2])[0]
        if tag in (115, 119):
            return pos + 1 + data[pos]
        if tag == 109:
            return pos + 4 + struct.unpack(">I", data[pos:pos + 4])[0]
        if tag == 107:
            return pos + 2 + struct.unpack(">H", data[pos:pos + 2])[0]
        if tag == 110:
            return pos + 2 + data[pos]
        if tag == 111:
            return pos + 5 + struct.unpack(">I", data[pos:pos + 4])[0]
        if tag == 106:
            return pos
        if tag in (104, 105, 108, 116):
            if tag == 104:
                n, pos = data[pos], pos + 1
            else:
                n, pos = struct.unpack(">I", data[pos:pos + 4])[0], pos + 4
            for _ in range(n * 2 if tag == 116 else n):
                pos = walk(pos)
            return walk(pos) if tag == 108 else pos
        raise AssertionError(tag)

    walk(1)
    return tags


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name, as_str, as_int", VECTORS, ids=[v[0] for v in VECTORS])
def test_erlang_vectors(name, as_str, as_int, variant):
    data = (DATA / f"{name}.{variant}.etf").read_bytes()
    assert decode(data) == as_str
    assert decode(data, big_ints_as_str=False) == as_int
    # bytearray and memoryview inputs take the same path
    assert decode(bytearray(data)) == as_str
    assert decode(memoryview(data)) == as_str


def test_vector_types_follow_the_rules():
    by_name = {name: as_str for name, as_str, _ in VECTORS}
    data = (DATA / "discord_message_create.v2.etf").read_bytes()
    msg = decode(data)
    assert msg["t"] == "MESSAGE_CREATE" and type(msg["t"]) is str
    assert msg["d"]["id"] == str(175928847299117063 + 1)
    assert msg["d"]["edited_timestamp"] is None and msg["d"]["tts"] is False
    assert decode(data, big_ints_as_str=False)["d"]["id"] == 175928847299117063 + 1
    assert by_name["string_ext"] == [97, 98, 99]
    assert isinstance(decode((DATA / "tuple_pair.v2.etf").read_bytes()), tuple)
    # Erlang really compressed the big one (else the z variant would not test tag 80)
    assert (DATA / "discord_guild_create_compressible.z.etf").read_bytes()[1] == 80


def test_atom_encodings_of_otp25_and_otp26_differ_but_decode_alike():
    v1 = (DATA / "atom_latin1.v1.etf").read_bytes()
    v2 = (DATA / "atom_latin1.v2.etf").read_bytes()
    assert v1[1] == 100 and v2[1] == 119  # ATOM_EXT (Latin-1) vs SMALL_ATOM_UTF8
    assert decode(v1) == decode(v2) == "caf\u00e9"


# ---------------------------------------------------------------------------
# Encoder output checked by Erlang's binary_to_term

GATEWAY_COMMANDS = {
    "identify": {"op": 2, "d": {"token": "Bot abc.def.ghi", "intents": 513,
                                "properties": {"os": "linux", "browser": "fastshard", "device": "fastshard"},
                                "shard": [0, 1], "compress": False, "large_threshold": 250,
                                "presence": {"since": None, "activities": [{"name": "x", "type": 0}],
                                             "status": "online", "afk": False}}},
    "resume": {"op": 6, "d": {"token": "Bot abc", "session_id": "0123456789abcdef", "seq": 1337}},
    "heartbeat": {"op": 1, "d": 251},
    "heartbeat_null": {"op": 1, "d": None},
    "request_guild_members": {"op": 8, "d": {"guild_id": 175928847299117063, "query": "", "limit": 0,
                                             "presences": True, "user_ids": [175928847299117064, 2**63 + 5],
                                             "nonce": "n\u00f6nce"}},
    "voice_state": {"op": 4, "d": {"guild_id": "41771983423143937", "channel_id": None,
                                   "self_mute": False, "self_deaf": True}},
    "presence": {"op": 3, "d": {"since": 91879201, "activities": [], "status": "dnd", "afk": False}},
    "scalars": [0, 255, 256, -1, INT32_MIN, INT32_MAX, INT32_MIN - 1, INT32_MAX + 1, 2**64, -(2**64),
                2**2048, -(2**2040), 1.5, -0.25, 1e300, 5e-324, "", "\U0001f600", True, False, None, [], {}],
    "nested": [[[[{"a": [(1, 2), ()]}]]]],
}


@pytest.mark.skipif(shutil.which("escript") is None, reason="Erlang (escript) is not installed")
def test_erlang_binary_to_term_accepts_encoder_output(tmp_path):
    for name, value in GATEWAY_COMMANDS.items():
        (tmp_path / f"{name}.etf").write_bytes(encode(value))
    proc = subprocess.run(["escript", str(DATA / "roundtrip.escript"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.stdout.split("\n")[:-1]) == sorted(f"ok {name}" for name in GATEWAY_COMMANDS)
    for name, value in GATEWAY_COMMANDS.items():
        back = (tmp_path / f"{name}.back").read_bytes()
        assert decode(back, big_ints_as_str=False) == expected_from_python(value, False)
        assert decode(back) == expected_from_python(value)


@pytest.mark.skipif(shutil.which("escript") is None, reason="Erlang (escript) is not installed")
def test_roundtrip_escript_rejects_atom_keys(tmp_path):
    # The Erlang-side check must be able to fail: an atom key (as Discord sends, never as we send).
    (tmp_path / "atom_key.etf").write_bytes(b"\x83t\x00\x00\x00\x01s\x02opa\x01")
    proc = subprocess.run(["escript", str(DATA / "roundtrip.escript"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "error atom_key non-binary map keys [op]" in proc.stdout


# ---------------------------------------------------------------------------
# Encoder bytes


def test_encoder_exact_bytes():
    assert encode(None) == b"\x83s\x03nil"
    assert encode(True) == b"\x83s\x04true"
    assert encode(False) == b"\x83s\x05false"
    assert encode(7) == b"\x83a\x07"
    assert encode(-1) == b"\x83b\xff\xff\xff\xff"
    assert encode(2**31) == b"\x83n\x04\x00\x00\x00\x00\x80"
    assert encode(-(2**63)) == b"\x83n\x08\x01" + (2**63).to_bytes(8, "little")
    assert encode(2**64) == b"\x83n\x09\x00" + (2**64).to_bytes(9, "little")
    assert encode(2**2040) == b"\x83o\x00\x00\x01\x00\x00" + (2**2040).to_bytes(256, "little")
    assert encode(1.5) == b"\x83F" + struct.pack(">d", 1.5)
    assert encode("h\u00e9") == b"\x83m\x00\x00\x00\x03h\xc3\xa9"
    assert encode([]) == encode(()) == b"\x83j"
    assert encode([1, "a"]) == b"\x83l\x00\x00\x00\x02a\x01m\x00\x00\x00\x01aj"
    # map keys are BINARY (tag 109), never atoms: Discord closes with 4002 on atom keys
    assert encode({"op": 1}) == b"\x83t\x00\x00\x00\x01m\x00\x00\x00\x02opa\x01"


def test_encoder_matches_erlpack_for_what_both_support():
    for value in ({"op": 2, "d": {"token": "t", "intents": 513, "shard": [0, 1]}}, 2**40, -(2**40), 1.25, "x"):
        assert encode(value) == erlpack.pack(value)


def test_encoder_accepts_subclasses():
    class Color(enum.IntEnum):
        RED = 300

    class Name(str):
        pass

    class Items(list):
        pass

    class Mapping(dict):
        pass

    value = Mapping({Name("k"): Items([Color.RED, Name("v"), 2**100 + Color.RED])})
    assert decode(encode(value), big_ints_as_str=False) == {"k": [300, "v", 2**100 + 300]}


@pytest.mark.parametrize("value, type_name", [
    (b"bytes", "bytes"), ({1, 2}, "set"), (object(), "object"), (1j, "complex"),
    ({"a": [bytearray(b"x")]}, "bytearray"),
])
def test_encoder_rejects_unsupported_types_by_name(value, type_name):
    with pytest.raises(TypeError, match=f"type {type_name}\\b"):
        encode(value)


@pytest.mark.parametrize("key", [1, None, True, ("a",), b"k"])
def test_encoder_rejects_non_str_dict_keys(key):
    with pytest.raises(TypeError, match="keys must be str"):
        encode({"outer": {key: 1}})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encoder_rejects_non_finite_floats(value):
    with pytest.raises(ValueError, match="NaN or infinity"):
        encode([value])


def test_encoder_rejects_cycles_and_deep_nesting():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested deeper than 256"):
        encode(cyclic)
    deep: object = 1
    for _ in range(256):
        deep = [deep]
    assert decode(encode(deep)) == deep  # 256 levels, the limit itself, is fine
    with pytest.raises(ValueError, match="nested deeper"):
        encode([deep])


def test_encoder_rejects_surrogates():
    with pytest.raises(UnicodeEncodeError):
        encode("\ud800")


def test_encoder_large_payload_grows_buffer():
    big = {"members": [{"id": 2**60 + i, "name": "x" * (i % 50)} for i in range(5000)]}
    assert decode(encode(big), big_ints_as_str=False) == big


# ---------------------------------------------------------------------------
# Round trips and differential tests against erlpack


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
@example({"op": 0, "d": {"id": 175928847299117063}})
def test_roundtrip_property(value):
    data = encode(value)
    assert decode(data) == expected_from_python(value)
    assert decode(data, big_ints_as_str=False) == expected_from_python(value, False)


erlpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what erlpack.pack takes
erlpack_values = st.recursive(
    st.none() | st.booleans() | erlpack_ints | finite_floats | st.text(),
    lambda children: st.lists(children, max_size=6)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(erlpack_values)
def test_decode_matches_erlpack_unpack(value):
    packed = erlpack.pack(value)
    for as_str in (True, False):
        assert decode(packed, big_ints_as_str=as_str) == normalize_erlpack(erlpack.unpack(packed), as_str)


@settings(max_examples=300, deadline=None)
@given(erlpack_values)
def test_erlpack_unpacks_our_encoding(value):
    assert normalize_erlpack(erlpack.unpack(encode(value)), False) == expected_from_python(value, False)


def test_erlpack_small_atoms_and_tuples():
    # SMALL_ATOM_EXT (115) and tuples as erlpack writes them
    data = erlpack.pack({"t": erlpack.Atom("READY"), "x": (1, erlpack.Atom("nil"), "y")})
    assert decode(data) == {"t": "READY", "x": (1, None, "y")}


def test_map_keys_are_cached_str_objects():
    payload = encode([{"guild_id": 1, "user": {"id": 2}}, {"guild_id": 3, "user": {"id": 4}}])
    first, second = decode(payload)
    assert list(first)[0] is list(second)[0]
    assert list(first["user"])[0] is list(second["user"])[0]
    again = decode(payload)
    assert list(again[0])[0] is list(first)[0]
    # cached keys stay correct when many distinct keys share the table
    many = {f"key{i}": i for i in range(10000)}
    assert decode(encode(many)) == many
    latin1_atom = b"\x83t\x00\x00\x00\x02s\x01\xe9a\x01w\x02\xc3\xa9a\x02"   # Latin-1 'é' then UTF-8 'é'
    assert decode(latin1_atom) == {"\u00e9": 2}


def test_non_ascii_and_long_keys():
    value = {"\U0001f600": 1, "k" * 200: 2, "": 3, "\u00e9t\u00e9": [4]}
    assert decode(encode(value)) == value


def test_big_integers_as_text_and_int():
    for n in (0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64), 10**30):
        data = b"\x83n" + bytes([max(1, (abs(n).bit_length() + 7) // 8), n < 0]) + abs(n).to_bytes(
            max(1, (abs(n).bit_length() + 7) // 8), "little")
        assert decode(data) == str(n)
        assert decode(data, big_ints_as_str=False) == n
    # a zero with a sign byte of 1 is still "0"
    assert decode(b"\x83n\x01\x01\x00") == "0"
    assert decode(b"\x83n\x00\x00") == "0" and decode(b"\x83n\x00\x01", big_ints_as_str=False) == 0
    assert decode(b"\x83o\x00\x00\x00\x01\x01\x05") == "-5"


def test_huge_big_integer_text_is_refused_but_int_works():
    n = 2**(8 * 2000) - 1    # 4817 decimal digits: past Python's int-to-str limit
    data = b"\x83o" + struct.pack(">I", 2000) + b"\x00" + n.to_bytes(2000, "little")
    assert decode(data, big_ints_as_str=False) == n
    with pytest.raises(DecodeError, match="too long to turn into text"):
        decode(data)


def test_map_with_tuple_key_and_unhashable_key():
    assert decode(b"\x83t\x00\x00\x00\x01h\x02a\x01a\x02a\x03") == {(1, 2): 3}
    with pytest.raises(DecodeError, match="map key of type list"):
        decode(b"\x83t\x00\x00\x00\x01l\x00\x00\x00\x01a\x01ja\x03")
    with pytest.raises(DecodeError, match="map key of type dict"):
        decode(b"\x83t\x00\x00\x00\x01t\x00\x00\x00\x00a\x03")


# ---------------------------------------------------------------------------
# Untrusted input

VALID_SAMPLES = [
    encode(GATEWAY_COMMANDS["identify"]),
    encode(GATEWAY_COMMANDS["scalars"]),
    encode({"t": (1, 2), "big": 2**70, "s": [1, 2, 300]}),
    b"\x83k\x00\x03abc",
    b"\x83d\x00\x03abc",
    b"\x83c" + b"1.50000000000000000000e+00".ljust(31, b"\0"),
    *[(DATA / f"{name}.{variant}.etf").read_bytes()
      for name in ("discord_message_create", "map_mixed_keys", "atom_latin1", "atom_long_utf8",
                   "tuple_large", "big_2_pow_2040", "float_pi", "list_mixed")
      for variant in ("v0", "v1", "v2")],
    (DATA / "discord_guild_create_compressible.z.etf").read_bytes(),
]


@pytest.mark.parametrize("data", VALID_SAMPLES, ids=range(len(VALID_SAMPLES)))
def test_truncated_at_every_offset(data):
    decode(data)  # the whole is valid
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


@pytest.mark.parametrize("data", VALID_SAMPLES[:6], ids=range(6))
def test_trailing_bytes(data):
    with pytest.raises(DecodeError, match="1 trailing bytes after the term"):
        decode(data + b"j")


@pytest.mark.parametrize("data, message", [
    (b"", "empty data"),
    (b"\x82a\x01", "first byte is 130, not the version byte 131"),
    (b"\x83", "a tag was expected"),
    (b"\x83l\xff\xff\xff\xffj", "truncated term"),          # list of 2^32-1 in 7 bytes
    (b"\x83t\xff\xff\xff\xffa\x01a\x02", "truncated term"),  # map of 2^32-1 entries
    (b"\x83i\xff\xff\xff\xff", "truncated term"),            # large tuple
    (b"\x83h\xffa\x01", "truncated term"),                   # small tuple of 255
    (b"\x83m\xff\xff\xff\xffabc", "truncated term"),         # binary
    (b"\x83k\xff\xffab", "truncated term"),                  # string
    (b"\x83d\xff\xffab", "truncated term"),                  # atom
    (b"\x83v\x01\x00ab", "truncated term"),                  # utf8 atom
    (b"\x83s\x09ab", "truncated term"),                      # small atom
    (b"\x83w\x09ab", "truncated term"),                      # small utf8 atom
    (b"\x83n\xff\x00\x01", "truncated term"),                # small big
    (b"\x83o\xff\xff\xff\xff\x00\x01", "truncated term"),    # large big
    (b"\x83n\x01\x02\x01", "invalid big integer sign byte 2"),
    (b"\x83F\x00\x00", "truncated term"),
    (b"\x83b\x00\x00", "truncated term"),
    (b"\x83a", "truncated term"),
    (b"\x83c" + b"nonsense".ljust(31, b"\0"), "invalid FLOAT_EXT text"),
    (b"\x83c" + b"\0" * 31, "invalid FLOAT_EXT text"),
    (b"\x83c" + "1.5\u00e9".encode().ljust(31, b"\0"), "invalid FLOAT_EXT text"),
    (b"\x83l\x00\x00\x00\x01a\x01a\x02", "improper list"),
    (b"\x83l\x00\x00\x00\x01a\x01", "the list's tail was expected"),
    (b"\x83m\x00\x00\x00\x02\xc3\x28", "invalid UTF-8"),
    (b"\x83m\x00\x00\x00\x03\xed\xa0\x80", "invalid UTF-8"),          # surrogate
    (b"\x83m\x00\x00\x00\x02\xc0\xaf", "invalid UTF-8"),              # overlong
    (b"\x83w\x02\xff\xfe", "invalid UTF-8"),
    (b"\x83v\x00\x02\xff\xfe", "invalid UTF-8"),
    (b"\x83t\x00\x00\x00\x01m\x00\x00\x00\x01\xffa\x01", "invalid UTF-8"),  # cached key path
    (b"\x83t\x00\x00\x00\x01w\x01\xffa\x01", "invalid UTF-8"),
    (b"\x83g\x00", "tag 103 \\(PID_EXT\\)"),
    (b"\x83M\x00", "tag 77 \\(BIT_BINARY_EXT\\)"),
    (b"\x83l\x00\x00\x00\x01P\x00\x00\x00\x01x\x9cj", "only allowed as the whole term"),
])
def test_malformed_input(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


SUPPORTED_TAGS = {70, 80, 97, 98, 99, 100, 104, 105, 106, 107, 108, 109, 110, 111, 115, 116, 118, 119}


@pytest.mark.parametrize("tag", sorted(set(range(256)) - SUPPORTED_TAGS))
def test_unknown_tags_named_with_offset(tag):
    with pytest.raises(DecodeError, match=rf"tag {tag}\b.*\(offset 1 of 3\)"):
        decode(bytes([131, tag, 0]))
    # and inside a container, at its real offset
    with pytest.raises(DecodeError, match=rf"tag {tag}\b.*\(offset 8 of 10\)"):
        decode(b"\x83l\x00\x00\x00\x02a\x01" + bytes([tag, 0]))


def test_huge_declared_sizes_fail_fast():
    bombs = [
        b"\x83l\xff\xff\xff\xff" + b"a\x01" * 4,
        b"\x83t\xff\xff\xff\xff" + b"a\x01" * 4,
        b"\x83i\xff\xff\xff\xff" + b"a\x01" * 4,
        b"\x83m\xff\xff\xff\xff",
        b"\x83o\xff\xff\xff\xff\x00",
        # nested: every level declares 2^31 elements
        b"\x83" + b"l\x80\x00\x00\x00" * 100,
    ]
    start = time.perf_counter()
    for data in bombs:
        with pytest.raises(DecodeError, match="truncated term"):
            decode(data)
    # Not a speed test: a sanity bound that proves nothing was allocated or looped per element.
    assert time.perf_counter() - start < 1.0


def test_nesting_cap():
    for opener in (b"l\x00\x00\x00\x01", b"h\x01", b"i\x00\x00\x00\x01", b"t\x00\x00\x00\x01a\x00"):
        closer = b"j" if opener[0:1] == b"l" else b""
        ok = b"\x83" + opener * 256 + b"a\x01" + closer * 256
        decode(ok)
        too_deep = b"\x83" + opener * 257 + b"a\x01" + closer * 257
        with pytest.raises(DecodeError, match="nested deeper than 256 levels"):
            decode(too_deep)
    # far deeper than the C stack could take if recursion were unbounded
    with pytest.raises(DecodeError, match="nested deeper"):
        decode(b"\x83" + b"l\x00\x00\x00\x01" * 1_000_000)


def _compressed(term: bytes, declared: int | None = None, tail: bytes = b"") -> bytes:
    size = len(term) if declared is None else declared
    return b"\x83P" + struct.pack(">I", size) + zlib.compress(term) + tail


def test_compressed_terms():
    term = encode({"k": ["v" * 100] * 100})[1:]
    assert decode(_compressed(term)) == {"k": ["v" * 100] * 100}
    with pytest.raises(DecodeError, match="inflates to more than 9 bytes, 9 declared"):
        decode(_compressed(term, declared=9))
    with pytest.raises(DecodeError, match=f"inflates to only {len(term)} bytes, {len(term) + 1} declared"):
        decode(_compressed(term, declared=len(term) + 1))
    with pytest.raises(DecodeError, match="more than the limit of 67108865 bytes"):
        decode(_compressed(term, declared=2**32 - 1))
    # the caller's limit counts the whole plain term (version byte included)
    assert decode(_compressed(term), max_size=len(term) + 1) == {"k": ["v" * 100] * 100}
    with pytest.raises(DecodeError, match=f"declares {len(term)} bytes, more than the limit of {len(term)} bytes"):
        decode(_compressed(term), max_size=len(term))
    with pytest.raises(DecodeError, match="3 trailing bytes after the compressed term"):
        decode(_compressed(term, tail=b"abc"))
    with pytest.raises(DecodeError, match="corrupt zlib data"):
        decode(b"\x83P\x00\x00\x00\x05not zlib at all")
    with pytest.raises(DecodeError, match="truncated"):
        decode(_compressed(term)[:-3])
    with pytest.raises(DecodeError, match="inside the compressed term"):
        decode(_compressed(b"l\x00\x00\x00\x01a\x01a\x02"))    # improper list inside
    with pytest.raises(DecodeError, match="trailing bytes after the term .*inside the compressed term"):
        decode(_compressed(b"a\x01a\x02"))
    # a zip bomb declaring a small size is cut off at that size
    bomb = zlib.compress(b"j" * 50_000_000)
    with pytest.raises(DecodeError, match="inflates to more than 100 bytes"):
        decode(b"\x83P" + struct.pack(">I", 100) + bomb)


def test_old_float_ext():
    for text, value in ((b"1.50000000000000000000e+00", 1.5), (b"-3.25e-2", -0.0325), (b"0.0", 0.0)):
        assert decode(b"\x83c" + text.ljust(31, b"\0")) == value


def test_input_types():
    data = encode({"a": [1, 2]})
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(memoryview(b"xx" + data)[2:])
    with pytest.raises(TypeError, match="not str"):
        decode("\x83a\x01")
    with pytest.raises(TypeError):
        decode(12)
    with pytest.raises(TypeError, match="C-contiguous"):
        decode(memoryview(b"\x83\x00a\x00\x01")[::2])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_only_raise_decode_error(data):
    for blob in (b"\x83" + data, data):
        try:
            decode(blob)
        except DecodeError:
            pass


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID_SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 106, 108, 116, 80]))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos:pos + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_terms_only_raise_decode_error(data):
    for as_str in (True, False):
        try:
            decode(data, big_ints_as_str=as_str)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_every_strict_prefix_of_an_encoding_is_rejected(value, data):
    encoded = encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode(encoded[:cut])


# ---------------------------------------------------------------------------
# JSON and ETF forms of the same simulator traffic decode to equal objects


def _json_as_etf_rule(value):
    """JSON seen through the documented rule: integers outside 32 bits (ETF's
    SMALL_BIG: snowflakes, and also e.g. an activity's created_at) become str."""
    if isinstance(value, dict):
        return {k: _json_as_etf_rule(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_as_etf_rule(v) for v in value]
    if type(value) is int and not INT32_MIN <= value <= INT32_MAX:
        return str(value)
    return value


def test_simulator_traffic_json_and_etf_decode_alike():
    orjson = pytest.importorskip("orjson")
    from fastshard.testing.encoding import encode_payload, snowflakes_to_int
    from fastshard.testing.traffic import TrafficGenerator

    gen = TrafficGenerator(7)
    events = gen.steady_stream(400) + gen.guild_burst(4)
    for s, (t, d) in enumerate(events, 1):
        payload = {"op": 0, "t": t, "s": s, "d": d}
        etf_bytes = encode_payload(payload, "etf")
        from_json = orjson.loads(encode_payload(payload, "json"))
        assert decode(etf_bytes) == _json_as_etf_rule(from_json)
        assert decode(etf_bytes, big_ints_as_str=False) == snowflakes_to_int(from_json)
