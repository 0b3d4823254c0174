"""Projectors: turn consent entries into the rows the API and the import read.

Each projector is a deterministic function of its entry (and earlier projection
rows), so ``datatrust ledger replay`` rebuilds identical tables. They read only
the entry's payload, never other ledger tables, and never fail on a payload the
service would not have written: such an entry is simply not projected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from consent import repository
from consent.models import PROJECTION_TABLES, grants_table
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


@dataclass(slots=True)
class _Deferred:
    savepoint: object  # the unit's savepoint: rows are collected only within it
    rows: list[dict[str, Any]] = field(default_factory=list)


_DEFERRED = "consent.deferred_grants"  # key in Connection.info (per database connection; one thread uses it)


def defer_grants(conn: Connection) -> None:
    """Collect the ``consent_grants`` rows of the rest of this unit and insert them at :func:`flush_grants`.

    For a bulk append (one unit of many ``consent.granted`` entries): call it from
    the unit's ``prepare`` and give its last entry ``project=flush_grants``; the
    rows then go in with one ``executemany`` instead of one insert each. Rows are
    collected only within the savepoint that was current here, so a unit that
    fails half-way leaves nothing that a later unit could pick up.
    """
    savepoint = conn.get_nested_transaction()
    if savepoint is not None:  # the writer applies a unit with callbacks inside a savepoint
        conn.info[_DEFERRED] = _Deferred(savepoint)


def flush_grants(conn: Connection, _entry: LedgerEntry | None = None) -> None:
    """Insert the rows collected since :func:`defer_grants` (a ``project`` callback)."""
    deferred = conn.info.pop(_DEFERRED, None)
    if deferred is not None and deferred.savepoint is conn.get_nested_transaction():
        repository.fast_insert(conn, grants_table, deferred.rows)


def project_grant(conn: Connection, entry: LedgerEntry) -> None:
    """``consent.granted`` -> one ``consent_grants`` row (now, or at :func:`flush_grants`)."""
    row = _grant_row(entry)
    deferred = conn.info.get(_DEFERRED)
    if deferred is not None:
        if deferred.savepoint is conn.get_nested_transaction():
            deferred.rows.append(row)
            return
        del conn.info[_DEFERRED]  # left by a unit that failed before its flush
    repository.insert_grant(conn, row)


def _grant_row(entry: LedgerEntry) -> dict[str, Any]:
    p = entry.payload
    return {
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
    }


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
