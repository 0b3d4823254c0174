"""RFC 8785 (JCS) canonical bytes, and the entry splice that relies on them."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonicalize, parse
from ledger.entry import KINDS, LedgerEntry, build_entry, canonical_payload, format_at, parse_at
from ledger.errors import ValidationError
from ledger.merkle import leaf_hash

SAFE_INT = 2**53 - 1  # RFC 8785 §3.2.2.3 / I-JSON: integers beyond this are not exact in IEEE 754


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 §3.2.2.2: the two-character escapes, and \u00XX (lower-case hex) for other controls
        ("\b\t\n\f\r", rb'"\b\t\n\f\r"'),
        ("\u0000\u0001\u001f", rb'"\u0000\u0001\u001f"'),
        ('"\\', rb'"\"\\"'),
        # solidus, DEL, U+2028/2029 and non-ASCII are written as they are, in UTF-8
        ("/\u007f", b'"/\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),
        ("caf\u00e9 \u20ac", '"caf\u00e9 \u20ac"'.encode()),
        # astral characters (a surrogate pair in UTF-16) are four UTF-8 bytes, never \ud83d\ude00
        ("\U0001f600", b'"\xf0\x9f\x98\x80"'),
        ("a\U0001d11eb", b'"a\xf0\x9d\x84\x9eb"'),
        # integers: plain decimal, no exponent, no sign on zero
        (0, b"0"),
        (-0, b"0"),
        (-17, b"-17"),
        (SAFE_INT, b"9007199254740991"),
        (-SAFE_INT, b"-9007199254740991"),
        # literals and nesting without white space
        ([True, False, None], b"[true,false,null]"),
        ({"b": [], "a": {}}, b'{"a":{},"b":[]}'),
    ],
)
def test_canonical_scalars(value: Any, expected: bytes) -> None:
    """Strings, numbers and literals serialise exactly as RFC 8785 §3.2.2 prescribes."""
    assert canonicalize(value) == expected


def test_key_order_is_by_utf16_code_units() -> None:
    """Object keys sort by UTF-16 code units, so an astral key sorts before U+FB33 (unlike code point order)."""
    value = {"\ufb33": 1, "\U0001f600": 2, "\u20ac": 3, "\r": 4, "1": 5, "": 6, "\u0080": 7, "a": 8, "A": 9}
    expected = '{"":6,"\\r":4,"1":5,"A":9,"a":8,"\u0080":7,"\u20ac":3,"\U0001f600":2,"\ufb33":1}'.encode()
    assert canonicalize(value) == expected
    # The rule is not code point order: sorted() by code point puts U+FB33 before U+1F600.
    assert sorted(value)[-2:] == ["\ufb33", "\U0001f600"]


def test_rfc8785_appendix_example_key_order() -> None:
    """The RFC 8785 §3.2.3 sorting example comes out in the order the RFC gives."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonicalize(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_nested_keys_sorted_at_every_level() -> None:
    """Sorting applies recursively, inside arrays and nested objects."""
    value = {"z": [{"y": 1, "x": 2}], "a": {"d": None, "c": True}}
    assert canonicalize(value) == b'{"a":{"c":true,"d":null},"z":[{"x":2,"y":1}]}'


@pytest.mark.parametrize(
    "value",
    [
        1.5,  # a float at the top
        {"a": 1.0},  # integral floats are floats too: the ledger never stores them
        {"a": [1, 2, 0.1]},
        {"a": {"b": float("inf")}},
        {"a": float("nan")},
    ],
)
def test_floats_rejected(value: Any) -> None:
    """Floating-point numbers anywhere are refused with a path to the offending value."""
    with pytest.raises(ValidationError, match=r"floating-point number at \$"):
        canonicalize(value)


@pytest.mark.parametrize(
    "value",
    [
        2**53,  # outside the exact integer range of I-JSON
        -(2**53),
        "\ud800",  # a lone surrogate is not Unicode text
        {"\udc00": 1},
        {1: "non-string key"},
        {"a": {1, 2}},  # not a JSON type
        b"bytes",
    ],
)
def test_uncanonicalisable_values_rejected(value: Any) -> None:
    """Values RFC 8785 cannot represent raise the domain's ValidationError, not a library error."""
    with pytest.raises(ValidationError):
        canonicalize(value)


def test_parse_round_trip() -> None:
    """Parsing canonical bytes and canonicalising again gives the same bytes."""
    value = {"\U0001f600": ["\u0000", -1, {"k": None}], "\u20ac": True}
    data = canonicalize(value)
    assert parse(data) == value
    assert canonicalize(parse(data)) == data


def test_canonical_payload_requires_an_object() -> None:
    """An entry payload must be a JSON object."""
    with pytest.raises(ValidationError, match="must be a JSON object"):
        canonical_payload(["not", "an", "object"])  # type: ignore[arg-type]


# -- the entry splice --------------------------------------------------------------------------


def _json_payloads(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    scalars = st.none() | st.booleans() | st.integers(-SAFE_INT, SAFE_INT) | text
    values = st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
        max_leaves=20,
    )
    return st.dictionaries(text, values, max_size=6)


# Both all-ASCII payloads (which the entry module may encode by a faster path) and any Unicode text.
_payloads = _json_payloads(st.text(st.characters(max_codepoint=0x7F), max_size=10)) | _json_payloads(
    st.text(max_size=10)
)
_moments = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds; timezones= makes them aware
    max_value=datetime(9999, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=120, deadline=None)
@given(
    seq=st.integers(0, SAFE_INT),
    kind=st.sampled_from(sorted(KINDS)),
    actor=st.text(max_size=20),
    moment=_moments,
    prev=st.binary(min_size=32, max_size=32),
    payload=_payloads,
)
def test_build_entry_equals_rfc8785_of_whole_entry(
    *, seq: int, kind: str, actor: str, moment: datetime, prev: bytes, payload: dict[str, Any]
) -> None:
    """Splicing the pre-canonicalised payload gives exactly rfc8785.dumps of the whole entry object."""
    at = format_at(moment)
    body, leaf = build_entry(
        seq=seq, kind=kind, at=at, actor=actor, prev=prev, payload_bytes=canonical_payload(payload)
    )
    whole: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "kind": kind,
        "at": at,
        "actor": actor,
        "prev": prev.hex(),
        "payload": payload,
    }
    assert body == rfc8785.dumps(whole)
    assert leaf == leaf_hash(body)
    parsed = LedgerEntry.from_body(body, expected_leaf=leaf)
    assert (parsed.seq, parsed.kind, parsed.at, parsed.actor, parsed.prev, parsed.payload) == (
        seq,
        kind,
        at,
        actor,
        prev,
        payload,
    )
    assert b"\n" not in body  # export lines rely on it: control characters are always escaped


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=UTC), "0999-12-31T23:59:59.000005Z"),
        (datetime(2026, 11, 26, 9, 0, tzinfo=UTC), "2026-11-26T09:00:00.000000Z"),
    ],
)
def test_timestamps_are_fixed_width_and_round_trip(moment: datetime, text: str) -> None:
    """Years before 1000 are zero-padded too, so timestamps sort and parse like any other."""
    assert format_at(moment) == text
    assert parse_at(text) == moment


_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
_EARLIEST, _LATEST = datetime(1, 1, 2), datetime(9999, 12, 30)  # noqa: DTZ001 - hypothesis takes naive bounds


@given(st.datetimes(_EARLIEST, _LATEST), st.sampled_from(_ZONES))
def test_timestamps_are_strftime_in_utc(wall: datetime, zone: timezone) -> None:
    """Any aware instant: the UTC text strftime gives, the year padded to four digits."""
    moment = wall.replace(tzinfo=zone)
    utc = moment.astimezone(UTC)
    assert format_at(moment) == f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


# -- the payload shortcut --------------------------------------------------------------------------


class _Colour(enum.Enum):
    RED = "red"


class _Tag(str):
    __slots__ = ()


_odd_scalars = st.sampled_from(
    [1.0, 0.5, float("inf"), 2**53, -(2**53), 2**64, _Colour.RED, _Tag("x"), b"bytes", (1, 2), {1, 2}, "\ud800"]
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-SAFE_INT, max_value=SAFE_INT),
    st.text(alphabet=st.characters(codec="ascii")),
    st.text(),  # any Unicode, astral characters and U+E000-U+FFFF included (their key order differs in UTF-16)
)
# Keys whose order differs between code points and UTF-16 code units, among others.
_keys = st.text(max_size=6) | st.text(
    alphabet=st.sampled_from(["a", "\u00e9", "\ue000", "\uffff", "\U00010000"]), max_size=3
)
_payload_values = st.recursive(
    st.one_of(_json_scalars, _odd_scalars),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_keys, _payload_values, max_size=5))
def test_the_payload_shortcut_gives_exactly_what_the_general_path_gives(payload: dict[str, Any]) -> None:
    """``canonical_payload`` (orjson where it can) equals ``canonicalize`` (rfc8785): the same bytes or a refusal."""
    try:
        expected: bytes | None = canonicalize(payload)
    except ValidationError:
        expected = None
    if expected is None:
        with pytest.raises(ValidationError):
            canonical_payload(payload)
    else:
        assert canonical_payload(payload) == expected


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_is_written_as_rfc8785_writes_it(code: int) -> None:
    """As a value and as a key, each of the 128 ASCII characters gives RFC 8785's bytes through the shortcut."""
    payload: dict[str, Any] = {"value": chr(code), chr(code): code}
    assert canonical_payload(payload) == rfc8785.dumps(payload)


def test_keys_beyond_ascii_are_ordered_by_utf16_code_units_through_the_payload_path() -> None:
    """U+10000 sorts before U+FFFF in UTF-16 (a surrogate pair starts 0xD800), after it by code point."""
    payload = {"\uffff": 1, "\U00010000": {"\uffff": 2, "\U00010000": 3}}
    assert (
        canonical_payload(payload) == b'{"\xf0\x90\x80\x80":{"\xf0\x90\x80\x80":3,"\xef\xbf\xbf":2},"\xef\xbf\xbf":1}'
    )
