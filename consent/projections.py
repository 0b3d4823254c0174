"""Projectors: turn consent entries into the rows the API and the import read.

Each projector is a deterministic function of its entry (and earlier projection
rows), so ``datatrust ledger replay`` rebuilds identical tables. They read only
the entry's payload, never other ledger tables, and never fail on a payload the
service would not have written: such an entry is simply not projected.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from consent import repository
from consent.models import PROJECTION_TABLES
from consent.vocabulary import Vocabulary
from ledger.canonical import canonicalize
from ledger.entry import LedgerEntry
from ledger.errors import ValidationError
from ledger.service import Ledger

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json(value: list[str] | None) -> str | None:
    """A JSON array of strings, exactly as ``json.dumps`` writes it (compactly)."""
    if value is None:
        return None
    joined = '","'.join(value)
    quotes = 2 * (len(value) - 1)  # the separators' own quotes: any more means an element has one
    if joined.isascii() and joined.isprintable() and joined.count('"') == quotes and "\\" not in joined:
        return f'["{joined}"]' if value else "[]"  # codes and ids need no escaping: skip the encoder
    return _ENCODER.encode(value)


def project_grant(conn: Connection, entry: LedgerEntry) -> None:
    """``consent.granted`` -> one ``consent_grants`` row."""
    p = entry.payload
    repository.insert_grant(
        conn,
        {
            "consent": p["consent"],
            "seq": entry.seq,
            "subject": p["subject"],
            "organisation": p["organisation"],
            "purposes": _json(p["purposes"]),
            "categories": _json(p["categories"]),
            "recipients": _json(p.get("recipients")),
            "operations": _json(p.get("operations")),
            "valid_from": p["valid_from"],
            "valid_until": p.get("valid_until"),
            "explicit": bool(p.get("explicit", False)),
            "wording_hash": p.get("wording_hash", ""),
            "wording_version": p.get("wording_version", ""),
            "vocabulary": p.get("vocabulary", ""),
            "on_behalf": bool(p.get("on_behalf", False)),
            "granted_at": entry.at,
            "actor": entry.actor,
        },
    )


def project_withdrawal(conn: Connection, entry: LedgerEntry) -> None:
    """``consent.withdrawn`` -> a ``consent_withdrawals`` row (the first withdrawal of a consent counts)."""
    p = entry.payload
    repository.insert_withdrawal(
        conn,
        {
            "consent": p["consent"],
            "seq": entry.seq,
            "subject": p["subject"],
            "by": p["by"],
            "reason": p.get("reason", ""),
            "withdrawn_at": entry.at,
            "actor": entry.actor,
        },
    )


def project_erasure(conn: Connection, entry: LedgerEntry) -> None:
    """``subject.erased`` -> a ``consent_erasures`` row."""
    p = entry.payload
    repository.insert_erasure(
        conn, {"subject": p["subject"], "seq": entry.seq, "by": p["by"], "erased_at": entry.at, "actor": entry.actor}
    )


def project_vocabulary(conn: Connection, entry: LedgerEntry) -> None:
    """``trust.configured`` holding a ``vocabulary`` -> a ``consent_vocabularies`` row."""
    document: Any = entry.payload.get("vocabulary")
    if not isinstance(document, dict):
        return
    try:
        vocabulary = Vocabulary.from_document(document)
    except ValidationError:
        return
    repository.insert_vocabulary(
        conn,
        {
            "seq": entry.seq,
            "hash": vocabulary.hash,
            "version": vocabulary.version,
            "document": canonicalize(vocabulary.to_document()).decode(),
            "adopted_at": entry.at,
        },
    )


def register(ledger: Ledger) -> None:
    """Register the consent projectors on *ledger* (called once, in ``Instance.open``)."""
    tables = list(PROJECTION_TABLES)
    ledger.projectors.register(["consent.granted"], project_grant, tables=tables[0:1])
    ledger.projectors.register(["consent.withdrawn"], project_withdrawal, tables=tables[1:2])
    ledger.projectors.register(["subject.erased"], project_erasure, tables=tables[2:3])
    ledger.projectors.register(["trust.configured"], project_vocabulary, tables=tables[3:4])
