"""Receipt access codes: how a person with no account signs in to see and withdraw their consents.

A code is 26 random characters of Crockford's base32 (130 bits of entropy) and
two check characters, shown once in the receipt in groups of four::

    7KQ2-M9XH-4D0R-PB1W-ZT6N-C8VF-J3EA

Only the SHA-256 of the normalised code is stored (``consent_access_codes``),
off the ledger. A slow password hash is not needed: nobody can guess 130 random
bits, so a fast hash protects the codes as well as a slow one would.

The two check characters (10 bits of SHA-256 of the body) catch typing mistakes
before any database lookup, and let a receipt's verifier notice a code that was
changed. Reading is forgiving: case, spaces and hyphens are ignored, and the
letters I, L and O read as 1, 1 and 0.

A code signs in as long as its subject is not erased; the same code may be used
again (it is "one-time" in that the trust shows it only once). Erasure deletes
every code of the subject. :func:`redeem_access_code` raises the same
``ForbiddenError`` whether a code is unknown or its subject erased, so a wrong
code says nothing about whether anyone exists.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, delete, select

from consent.models import access_codes_table, erasures_table
from consent.repository import fast_insert
from ledger.entry import format_at
from ledger.errors import ForbiddenError, ValidationError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
BODY_LENGTH = 26  # 26 x 5 bits = 130 bits of entropy
CHECK_LENGTH = 2
GROUP = 4
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_PAIRS = [ALPHABET[n & 31] + ALPHABET[n >> 5] for n in range(1024)]  # two base32 digits at a time
NOT_RECOGNISED = "that access code was not recognised: check it against your receipt"


def _check(body: str) -> str:
    value = int.from_bytes(hashlib.sha256(body.encode()).digest()[:2], "big") >> 6  # 10 bits
    return ALPHABET[value >> 5] + ALPHABET[value & 31]


def new_code() -> str:
    """A new random access code, formatted for people (groups of four, hyphenated)."""
    return new_code_and_hash()[0]


def new_code_and_hash(random: bytes | None = None) -> tuple[str, str]:
    """A new code and its stored hash (the bulk import passes 17 bytes of ``secrets.token_bytes`` per code)."""
    value = int.from_bytes(random or secrets.token_bytes(17), "big") >> 6  # 136 random bits, keep 130
    body = "".join([_PAIRS[(value >> shift) & 1023] for shift in range(0, 5 * BODY_LENGTH, 10)])
    text = body + _check(body)
    return format_code(text), hashlib.sha256(text.encode()).hexdigest()


def format_code(code: str) -> str:
    """Group a normalised code in fours."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalise(code: str) -> str:
    """The canonical form of a typed code (raises ValidationError if it cannot be one of ours)."""
    text = "".join(code.split()).replace("-", "").upper().translate(_READ_AS)
    if len(text) != BODY_LENGTH + CHECK_LENGTH or any(ch not in ALPHABET for ch in text):
        msg = f"an access code has {BODY_LENGTH + CHECK_LENGTH} letters and digits: check it against your receipt"
        raise ValidationError(msg)
    if _check(text[:BODY_LENGTH]) != text[BODY_LENGTH:]:
        msg = "that access code has a typing mistake in it: check it against your receipt"
        raise ValidationError(msg)
    return text


def code_hash(code: str) -> str:
    """The stored form of a code: SHA-256 hex of its normalised text."""
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def store_codes(conn: Connection, codes: Iterable[tuple[str, str, str]], *, now: datetime) -> None:
    """Store ``(code, subject, consent)`` triples as hashes (called inside the entry's transaction)."""
    store_hashes(conn, [(code_hash(c), s, k) for c, s, k in codes], now=now)


def store_hashes(conn: Connection, hashes: Iterable[tuple[str, str, str]], *, now: datetime) -> None:
    """Store ``(code hash, subject, consent)`` triples."""
    issued = format_at(now)
    rows = [{"code_hash": h, "subject": s, "consent": k, "issued_at": issued} for h, s, k in hashes]
    fast_insert(conn, access_codes_table, rows)


def redeem_access_code(conn: Connection, code: str, *, now: datetime) -> str:
    """Return the subject a code signs in as.

    Raises ForbiddenError, with the same words, for an unknown code and for a code
    whose subject was erased; ValidationError for text that cannot be a code at all.
    """
    del now  # codes do not expire; kept so a later expiry rule needs no signature change
    digest = code_hash(code)  # a mistyped code is a ValidationError: it says nothing about anyone
    row = conn.execute(select(access_codes_table.c.subject).where(access_codes_table.c.code_hash == digest)).first()
    if row is None:
        raise ForbiddenError(NOT_RECOGNISED)
    subject = str(row[0])
    erased = conn.execute(select(erasures_table.c.seq).where(erasures_table.c.subject == subject)).first()
    if erased is not None:
        raise ForbiddenError(NOT_RECOGNISED)
    return subject


def revoke_codes(conn: Connection, subject: str) -> None:
    """Delete every access code of *subject* (on erasure)."""
    conn.execute(delete(access_codes_table).where(access_codes_table.c.subject == subject))
