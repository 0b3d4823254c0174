"""Who asked to use one person's data, and what was decided: the individual's history of uses.

Every ``check.decided`` entry that named a subject is projected into ``check_subjects``
(subject, decision id, permitted or not) and ``check_decisions`` (who asked, for which
purpose and request, the overall decision, when) by :func:`trust.checks.record_projections`.
:func:`uses_of` reads them for one subject, newest first, with the organisation's name
and the purpose in plain words; for a use that was refused for this person it adds the
reason the check gave for leaving them out (read from the recorded entries of that page
only, never by scanning the ledger). Deletion confirmations partners recorded for the
subject come from :func:`trust.webhooks.deletions_for_subject`.

Nothing here reveals anything about anyone else: the other subjects a check named are
never read, only counted out of the query by the subject key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, select

from ledger.models import entries_table
from trust.check_models import check_decisions_table, check_subjects_table
from trust.config import vocabulary_in_force
from trust.models import organisations_table, requests_table
from trust.webhooks import deletions_for_subject

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


class UseOut(BaseModel):
    """One check decision that named the person."""

    decision_id: int = Field(description="The check.decided entry (the id the partner cites).")
    at: str
    organisation: str
    organisation_name: str
    purpose: str
    purpose_label: str
    request: str
    request_title: str | None
    decision: str = Field(description="The check's overall answer: permit or deny.")
    is_permitted: bool = Field(description="Whether this person's data was included in what was permitted.")
    reason: str | None = Field(description="Why this person was left out (None when included).")
    rule: str | None = Field(description="The rule that left this person out (None when included).")
    explanation: str = Field(description="What happened to the person's data, in plain words.")


class DeletionOut(BaseModel):
    """A partner's confirmation that it deleted the person's data."""

    seq: int
    organisation: str
    organisation_name: str
    consent: str | None
    decision_id: int | None
    deleted_at: str
    recorded_at: str


class UsesOut(BaseModel):
    """Every use of the person's data that partners asked for (newest first) and deletions confirmed."""

    subject: str
    total: int = Field(description="How many check decisions named the person in all (the list may be shorter).")
    uses: list[UseOut]
    deletions: list[DeletionOut]


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    is_permitted: bool
    organisation: str
    organisation_name: str | None
    purpose: str
    request: str
    request_title: str | None
    decision: str
    at: str


def _rows(conn: Connection, subject: str, limit: int) -> list[_Row]:
    s, d, o, r = check_subjects_table.c, check_decisions_table.c, organisations_table.c, requests_table.c
    query = (
        select(s.seq, s.is_permitted, d.organisation, o.name, d.purpose, d.request, r.title, d.decision, d.at)
        .select_from(
            check_subjects_table.join(check_decisions_table, d.seq == s.seq)
            .outerjoin(organisations_table, o.id == d.organisation)
            .outerjoin(requests_table, r.request_id == d.request)
        )
        .where(s.subject == subject)
        .order_by(s.seq.desc())
        .limit(limit)
    )
    return [_Row(int(row[0]), bool(row[1]), *row[2:]) for row in conn.execute(query)]


def _exclusions(conn: Connection, subject: str, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """The exclusion of *subject* recorded in each of the ``check.decided`` entries *seqs*."""
    if not seqs:
        return {}
    found: dict[int, dict[str, Any]] = {}
    rows = conn.execute(select(entries_table.c.seq, entries_table.c.body).where(entries_table.c.seq.in_(seqs)))
    for seq, body in rows:
        payload = json.loads(bytes(body))["payload"]
        for excluded in payload.get("subjects", {}).get("excluded", []):
            if excluded.get("subject") == subject:
                found[int(seq)] = excluded
                break
    return found


RULE_WORDS = {
    "organisation": "the organisation was not in good standing with the trust",
    "agreement": "no data-use agreement covered this use",
    "request": "the trustees had not approved this use, or their approval had ended",
    "ethics": "the ethics committee had not approved this use",
    "proportionality": "it asked for more than the trustees approved",
    "retention": "it did not meet the agreed limits on how long or where data is kept",
}


def explain(*, is_permitted: bool, rule: str | None, reason: str | None) -> str:
    """What a check meant for the person, in plain words."""
    if is_permitted:
        return "Your information was included in what the trust allowed."
    text = reason or ""
    if rule == "consent":
        if "erase" in text:
            why = "you asked for your details to be erased"
        elif "withdrawn" in text or "revoked" in text:
            why = "your consent had been withdrawn"
        elif "expired" in text or "only starts" in text:
            why = "your consent was not in force at the time"
        elif "replaced" in text:
            why = "you had replaced that consent with a newer one"
        else:
            why = "none of your consents covers this use"
    else:
        why = RULE_WORDS.get(rule or "", "the trust's rules did not allow it")
    return f"Your information was not included, because {why}."


def uses_of(conn: Connection, subject: str, *, limit: int = DEFAULT_LIMIT) -> UsesOut:
    """Check decisions that named *subject* (newest first, at most *limit*) and its deletion confirmations."""
    limit = max(1, min(limit, MAX_LIMIT))
    rows = _rows(conn, subject, limit)
    total = conn.execute(
        select(func.count()).select_from(check_subjects_table).where(check_subjects_table.c.subject == subject)
    ).scalar_one()
    exclusions = _exclusions(conn, subject, [row.seq for row in rows if not row.is_permitted])
    vocabulary = vocabulary_in_force(conn)
    uses = []
    for row in rows:
        excluded = exclusions.get(row.seq, {})
        uses.append(
            UseOut(
                decision_id=row.seq,
                at=row.at,
                organisation=row.organisation,
                organisation_name=row.organisation_name or row.organisation,
                purpose=row.purpose,
                purpose_label=vocabulary.label("purposes", row.purpose),
                request=row.request,
                request_title=row.request_title,
                decision=row.decision,
                is_permitted=row.is_permitted,
                reason=None if row.is_permitted else str(excluded.get("reason") or "the check was refused"),
                rule=None if row.is_permitted else excluded.get("rule"),
                explanation=explain(
                    is_permitted=row.is_permitted, rule=excluded.get("rule"), reason=excluded.get("reason")
                ),
            )
        )
    deletions = [
        DeletionOut(
            seq=d.seq,
            organisation=d.organisation,
            organisation_name=d.organisation_name or d.organisation,
            consent=d.consent,
            decision_id=d.decision_id,
            deleted_at=d.deleted_at,
            recorded_at=d.recorded_at,
        )
        for d in deletions_for_subject(conn, subject)
    ]
    return UsesOut(subject=subject, total=int(total), uses=uses, deletions=deletions)
