"""Receipt access codes: entropy, forgiving reading, typo detection, hash-only storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consent import access_codes
from ledger.errors import ForbiddenError, ValidationError
from tests.consent.support import record


def test_codes_have_at_least_128_bits_and_are_grouped():
    """A code is 26 random base32 characters (130 bits) plus two check characters, in groups of four."""
    code = access_codes.new_code()
    groups = code.split("-")
    assert [len(g) for g in groups] == [4] * 7
    assert access_codes.BODY_LENGTH * 5 >= 128
    assert len({access_codes.new_code() for _ in range(200)}) == 200


def test_reading_is_forgiving():
    """Case, spaces, hyphens and the look-alike letters I, L and O do not matter."""
    code = access_codes.new_code()
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert access_codes.code_hash(typed) == access_codes.code_hash(code)


def test_a_typing_mistake_is_caught_before_any_lookup():
    """Changing one character of a code is detected by its check characters."""
    code = access_codes.new_code()
    changed = ("X" if code[0] != "X" else "Y") + code[1:]
    with pytest.raises(ValidationError, match="typing mistake"):
        access_codes.normalise(changed)
    with pytest.raises(ValidationError, match="28 letters"):
        access_codes.normalise("1234")


def test_only_the_hash_is_stored(instance):
    """The database holds the code's SHA-256, never the code."""
    recorded = record(instance)
    normalised = access_codes.normalise(recorded.access_code)
    with instance.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT code_hash, subject FROM consent_access_codes")).all()
        assert access_codes.redeem_access_code(conn, recorded.access_code, now=datetime.now(UTC)) == recorded.subject
    assert [tuple(r) for r in rows] == [(access_codes.code_hash(recorded.access_code), recorded.subject)]
    assert normalised not in repr(rows)


def test_an_unknown_code_is_refused(instance):
    """A well-formed code nobody holds is refused with the generic message."""
    with instance.db.engine.connect() as conn, pytest.raises(ForbiddenError, match="not recognised"):
        access_codes.redeem_access_code(conn, access_codes.new_code(), now=datetime.now(UTC))
