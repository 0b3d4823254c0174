"""The entry format (DESIGN.md, "The ledger").

An entry is one JSON object canonicalised with RFC 8785::

    {"actor":"org_…","at":"2026-11-26T07:38:25.123456Z","kind":"consent.granted",
     "payload":{…},"prev":"<hex leaf hash of entry N-1>","seq":N,"v":1}

The stored bytes are exactly the hashed bytes. The payload is canonicalised on
the caller's thread and spliced in: RFC 8785 serialises each member independently
of its context and sorts these all-ASCII keys in the order written above, so the
splice equals ``rfc8785.dumps`` of the whole object (a property test pins this).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

import orjson
import rfc8785

from ledger.canonical import canonicalize
from ledger.errors import LedgerIntegrityError, ValidationError
from ledger.merkle import HASH_SIZE, leaf_hash

FORMAT_VERSION = 1
GENESIS_PREV = bytes(HASH_SIZE)  # DESIGN.md: 64 zeros for N=0

KINDS = frozenset(
    {
        "trust.configured",
        "key.added",
        "key.revoked",
        "org.registered",
        "org.suspended",
        "trustee.appointed",
        "trustee.removed",
        "agreement.signed",
        "agreement.terminated",
        "ethics.decided",
        "request.submitted",
        "request.commented",
        "request.conflict_declared",
        "vote.cast",
        "request.decided",
        "request.revoked",
        "consent.granted",
        "consent.withdrawn",
        "subject.erased",
        "check.decided",
        "client.registered",
        "client.rotated",
        "client.suspended",
        "deletion.confirmed",
    }
)


def format_at(moment: datetime) -> str:
    """Render a timezone-aware instant as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if moment.tzinfo is None:
        msg = "timestamps must be timezone-aware"
        raise ValidationError(msg)
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # strftime("%Y-%m-%dT%H:%M:%S.%fZ"), but with years before 1000 zero-padded too (strftime does not),
    # and several times faster: every append formats its timestamp, every check its instant.
    return _AT_FORMAT % (
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


_AT_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def parse_at(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_at`."""
    if not text.endswith("Z"):
        msg = f"timestamp {text!r} is not in UTC (…Z)"
        raise ValidationError(msg)
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A ledger entry as stored: canonical bytes and the fields read from them."""

    seq: int
    kind: str
    at: str
    actor: str
    prev: bytes
    payload: dict[str, Any]
    body: bytes
    leaf_hash: bytes

    @property
    def at_datetime(self) -> datetime:
        """The entry's timestamp as a datetime."""
        return parse_at(self.at)

    def to_json(self) -> dict[str, Any]:
        """The hashed object, as JSON values."""
        result: dict[str, Any] = json.loads(self.body)
        return result

    @classmethod
    def from_body(cls, body: bytes, *, expected_leaf: bytes | None = None) -> LedgerEntry:
        """Parse stored bytes, checking they are canonical and well formed."""
        try:
            obj = json.loads(body)
        except ValueError as exc:
            msg = f"entry is not JSON: {exc}"
            raise LedgerIntegrityError(msg) from exc
        if not isinstance(obj, dict) or set(obj) != {"v", "seq", "kind", "at", "actor", "prev", "payload"}:
            msg = "entry does not have exactly the fields v, seq, kind, at, actor, prev, payload"
            raise LedgerIntegrityError(msg, seq=obj.get("seq") if isinstance(obj, dict) else None)
        seq = obj["seq"]
        if obj["v"] != FORMAT_VERSION:
            msg = f"entry {seq} has unknown format version {obj['v']!r}"
            raise LedgerIntegrityError(msg, seq=seq)
        if rfc8785.dumps(obj) != body:
            msg = f"entry {seq} is not in RFC 8785 canonical form"
            raise LedgerIntegrityError(msg, seq=seq)
        computed = leaf_hash(body)
        if expected_leaf is not None and computed != expected_leaf:
            msg = f"entry {seq}: stored leaf hash does not match its bytes"
            raise LedgerIntegrityError(msg, seq=seq)
        try:
            prev = bytes.fromhex(obj["prev"])
        except (TypeError, ValueError) as exc:
            msg = f"entry {seq}: prev is not hex"
            raise LedgerIntegrityError(msg, seq=seq) from exc
        return cls(seq, obj["kind"], obj["at"], obj["actor"], prev, obj["payload"], body, computed)


_SAFE_INT = 2**53 - 1  # RFC 8785 §3.2.2.3: integers beyond this are not exact as IEEE 754 doubles


def _json_plain(value: Any) -> bool:
    """Whether *value* is made only of JSON's own types, exactly: nothing an encoder would have to coerce.

    That is ``dict`` with ``str`` keys, ``list``, ``str``, ``bool``, ``None`` and ``int`` within
    RFC 8785's exact range (no float, no tuple, no subclass such as an enum, no date).
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        return all(type(key) is str for key in value) and all(map(_json_plain, value.values()))
    if kind is list:
        return all(map(_json_plain, value))
    return False


_SORTED = orjson.OPT_SORT_KEYS


def _fast_canonical(value: dict[str, Any]) -> bytes | None:
    """RFC 8785 bytes of *value* via orjson, or None where only the full path (``rfc8785``) can decide.

    For a value of JSON's own types (:func:`_json_plain`) whose output is ASCII, orjson's
    sorted output is RFC 8785's: the same compact separators, keys in code-point order (for
    ASCII, RFC 8785's UTF-16 order), integers as their digits, and strings escaped alike (each
    of the 128 ASCII characters is tested against ``rfc8785``, and a property test holds the
    two to each other on arbitrary values). orjson is about five times faster than the
    standard library's encoder on a check's small objects, and needs no parse back.
    """
    try:
        if not _json_plain(value):
            return None
        out = orjson.dumps(value, option=_SORTED)
    except (orjson.JSONEncodeError, RecursionError):  # a lone surrogate, or nested too deeply for the shortcut
        return None
    return out if out.isascii() else None


class CanonicalPayload(dict[str, Any]):
    """A payload that carries its RFC 8785 bytes, so that appending it does not encode it again.

    Made only by :meth:`of` (which canonicalises, with every check of
    :func:`canonical_payload`) or by :meth:`restore` from the two halves :meth:`parts`
    returned, kept meanwhile by the same program (the bulk import stores them in
    its private scratch file between its two passes). :func:`canonical_payload`
    returns the carried bytes as they are. Do not change the mapping afterwards.
    """

    __slots__ = ("canonical",)
    canonical: bytes

    @classmethod
    def of(cls, payload: dict[str, Any]) -> CanonicalPayload:
        """Canonicalise *payload* now and keep the bytes with it."""
        made = cls(payload)
        made.canonical = canonical_payload(payload)
        return made

    @classmethod
    def restore(cls, payload: dict[str, Any], canonical: bytes) -> CanonicalPayload:
        """Put back together what :meth:`parts` returned (nothing is checked: the halves must be that pair)."""
        made = cls(payload)
        made.canonical = canonical
        return made

    def parts(self) -> tuple[dict[str, Any], bytes]:
        """``(plain dict, canonical bytes)``, e.g. to keep them somewhere and :meth:`restore` them later."""
        return dict(self), self.canonical


def canonical_payload(payload: dict[str, Any]) -> bytes:
    """Canonicalise a payload on the caller's side (raises on floats or bad values)."""
    if type(payload) is CanonicalPayload:
        return payload.canonical
    if not isinstance(payload, dict):
        msg = "an entry payload must be a JSON object"
        raise ValidationError(msg)
    fast = _fast_canonical(payload)
    return fast if fast is not None else canonicalize(payload)


_STRING_CACHE = {kind: rfc8785.dumps(kind) for kind in KINDS}  # kinds and actors repeat: encode each once
_STRING_CACHE_LIMIT = 4096


def _json_string(value: str) -> bytes:
    """RFC 8785 bytes of one string (the C encoder escapes exactly the characters RFC 8785 escapes)."""
    if type(value) is str:
        cached = _STRING_CACHE.get(value)
        if cached is not None:
            return cached
        try:
            result = encode_basestring(value).encode()
        except UnicodeEncodeError:  # a lone surrogate: let rfc8785 refuse it, as before
            pass
        else:
            if len(_STRING_CACHE) >= _STRING_CACHE_LIMIT:
                _STRING_CACHE.clear()
            _STRING_CACHE[value] = result
            return result
    encoded: bytes = rfc8785.dumps(value)
    return encoded


def build_entry(*, seq: int, kind: str, at: str, actor: str, prev: bytes, payload_bytes: bytes) -> tuple[bytes, bytes]:
    """Return ``(canonical bytes, leaf hash)`` of a new entry, splicing in the payload bytes."""
    body = b"".join(
        (
            b'{"actor":',
            _json_string(actor),
            b',"at":"',
            at.encode(),
            b'","kind":',
            _json_string(kind),
            b',"payload":',
            payload_bytes,
            b',"prev":"',
            prev.hex().encode(),
            b'","seq":',
            str(seq).encode(),
            b',"v":1}',
        )
    )
    return body, leaf_hash(body)
