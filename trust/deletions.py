"""Deletion confirmations: a partner says it deleted a subject's data, on the ledger.

Entry ``deletion.confirmed`` (actor: the partner's client or staff member)::

    {"organisation": "org_…",        the partner that deleted (from the caller's token)
     "subject": "sub_…",              whose data
     "consent": "con_…" | null,       the consent whose withdrawal prompted it, if one
     "decision_id": N | null,         the check decision under which the data was shared, if one
     "deleted_at": "2026-…Z"}         when the partner deleted it (not after the entry's own time)

Projected into ``deletion_confirmations`` (rebuilt and compared by ``datatrust ledger
replay``) and read by :func:`deletions_for_subject`, so the individual's page can say
"deleted by Riverside Food Bank on 26 November 2026".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from consent.models import grants_table, withdrawals_table
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, NotFoundError, ValidationError
from ledger.service import Ledger
from trust.check_models import check_decisions_table, check_subjects_table
from trust.models import organisations_table
from trust.webhook_models import deletions_table


@dataclass(frozen=True, slots=True)
class DeletionConfirmation:
    """A partner's confirmation that it deleted a subject's data."""

    seq: int
    organisation: str
    organisation_name: str | None
    subject: str
    consent: str | None
    decision_id: int | None
    deleted_at: str
    recorded_at: str
    is_new: bool = True

    def to_json(self) -> dict[str, Any]:
        """As the API shows it."""
        return {
            "seq": self.seq,
            "organisation": self.organisation,
            "organisation_name": self.organisation_name,
            "subject": self.subject,
            "consent": self.consent,
            "decision_id": self.decision_id,
            "deleted_at": self.deleted_at,
            "recorded_at": self.recorded_at,
        }


def _deletions_query() -> Any:
    d, o = deletions_table.c, organisations_table.c
    return (
        select(deletions_table, o.name.label("organisation_name"))
        .select_from(deletions_table.outerjoin(organisations_table, o.id == d.organisation))
        .order_by(d.seq)
    )


def _confirmation(row: Row[Any], *, is_new: bool = True) -> DeletionConfirmation:
    return DeletionConfirmation(
        seq=int(row.seq),
        organisation=row.organisation,
        organisation_name=row.organisation_name,
        subject=row.subject,
        consent=row.consent,
        decision_id=None if row.decision_id is None else int(row.decision_id),
        deleted_at=row.deleted_at,
        recorded_at=row.recorded_at,
        is_new=is_new,
    )


def deletions_for_subject(conn: Connection, subject: str) -> list[DeletionConfirmation]:
    """Every confirmed deletion of *subject*'s data, oldest first ("deleted by partner X on date")."""
    return [_confirmation(row) for row in conn.execute(_deletions_query().where(deletions_table.c.subject == subject))]


class _AlreadyConfirmedError(ConflictError):
    def __init__(self, row: Row[Any]) -> None:
        super().__init__("already confirmed")
        self.row = row


def _check_deletion(
    conn: Connection, *, organisation: str, subject: str, consent: str | None, decision_id: int | None
) -> None:
    d = deletions_table.c
    same = conn.execute(
        _deletions_query().where(
            d.organisation == organisation,
            d.subject == subject,
            d.consent.is_(None) if consent is None else d.consent == consent,
            d.decision_id.is_(None) if decision_id is None else d.decision_id == decision_id,
        )
    ).first()
    if same is not None:
        raise _AlreadyConfirmedError(same)
    if decision_id is not None:
        s, c = check_subjects_table.c, check_decisions_table.c
        named = conn.execute(
            select(s.seq)
            .select_from(check_subjects_table.join(check_decisions_table, c.seq == s.seq))
            .where(s.seq == decision_id, s.subject == subject, c.organisation == organisation)
        ).first()
        if named is None:
            msg = f"check decision {decision_id} is not a decision of {organisation} naming subject {subject}"
            raise NotFoundError(msg, field="decision_id")
    if consent is not None:
        g = grants_table.c
        if conn.execute(select(g.consent).where(g.consent == consent, g.subject == subject)).first() is None:
            msg = f"consent {consent} is not a consent of subject {subject}"
            raise NotFoundError(msg, field="consent")
    if not _has_received(conn, organisation, subject):
        msg = (
            f"{organisation} has no record of receiving subject {subject}: "
            "no permit decision gave it the subject and it collected none of the subject's consents"
        )
        raise NotFoundError(msg, field="subject")


def _has_received(conn: Connection, organisation: str, subject: str) -> bool:
    s, c, g = check_subjects_table.c, check_decisions_table.c, grants_table.c
    permit = conn.execute(
        select(s.seq)
        .select_from(check_subjects_table.join(check_decisions_table, c.seq == s.seq))
        .where(s.subject == subject, s.is_permitted.is_(True), c.organisation == organisation, c.decision == "permit")
        .limit(1)
    ).first()
    if permit is not None:
        return True
    return (
        conn.execute(select(g.consent).where(g.subject == subject, g.organisation == organisation).limit(1)).first()
        is not None
    )


def confirm_deletion(
    ledger: Ledger,
    *,
    organisation: str,
    subject: str,
    consent: str | None,
    decision_id: int | None,
    deleted_at: datetime,
    actor: str,
    now: datetime,
) -> DeletionConfirmation:
    """Record ``deletion.confirmed``: *organisation* deleted *subject*'s data at *deleted_at*.

    Only an organisation that received the subject under a permit, or collected one of
    its consents, may confirm. Confirming the same (subject, consent, decision) again
    returns the first confirmation (``is_new`` False) and appends nothing.
    """
    if deleted_at.tzinfo is None:
        msg = "deleted_at must include a time zone, e.g. 2026-11-26T09:00:00Z"
        raise ValidationError(msg, field="deleted_at")
    if deleted_at > now:
        msg = f"deleted_at ({format_at(deleted_at)}) is in the future; confirm a deletion once it is done"
        raise ValidationError(msg, field="deleted_at")

    def prepare(conn: Connection) -> dict[str, Any]:
        _check_deletion(conn, organisation=organisation, subject=subject, consent=consent, decision_id=decision_id)
        return {
            "organisation": organisation,
            "subject": subject,
            "consent": consent,
            "decision_id": decision_id,
            "deleted_at": format_at(deleted_at),
        }

    try:
        with ledger.db.engine.connect() as conn:  # a repeat is answered without a trip through the writer
            _check_deletion(conn, organisation=organisation, subject=subject, consent=consent, decision_id=decision_id)
        entry = ledger.append("deletion.confirmed", actor=actor, now=now, prepare=prepare)
    except _AlreadyConfirmedError as done:
        return _confirmation(done.row, is_new=False)
    with ledger.db.engine.connect() as conn:
        row = conn.execute(_deletions_query().where(deletions_table.c.seq == entry.seq)).first()
    assert row is not None  # noqa: S101 - projected in the entry's transaction
    return _confirmation(row)


def project_deletion(conn: Connection, entry: LedgerEntry) -> None:
    """Projector for ``deletion.confirmed``."""
    p = entry.payload
    conn.execute(
        insert(deletions_table).values(
            seq=entry.seq,
            organisation=p["organisation"],
            subject=p["subject"],
            consent=p.get("consent"),
            decision_id=p.get("decision_id"),
            deleted_at=p["deleted_at"],
            recorded_at=entry.at,
            actor=entry.actor,
        )
    )


@dataclass(frozen=True, slots=True)
class OwedDeletion:
    """A withdrawn consent whose subject *organisation* holds (collected, or received under a permit)."""

    subject: str
    consent: str
    decision_id: int | None
    withdrawn_at: str


def owed_deletions(conn: Connection, organisation: str, *, limit: int = 100) -> list[OwedDeletion]:
    """Withdrawn consents whose subject *organisation* holds and has not yet confirmed deleting, oldest first."""
    w, g, s, c, d = (
        withdrawals_table.c,
        grants_table.c,
        check_subjects_table.c,
        check_decisions_table.c,
        deletions_table.c,
    )
    confirmed = select(d.subject).where(d.organisation == organisation)
    collected = (
        select(w.subject, w.consent, w.withdrawn_at, w.seq)
        .select_from(withdrawals_table.join(grants_table, g.consent == w.consent))
        .where(g.organisation == organisation, w.subject.not_in(confirmed))
        .order_by(w.seq)
        .limit(limit)
    )
    received = (
        select(w.subject, w.consent, w.withdrawn_at, w.seq, func.max(s.seq))
        .select_from(
            withdrawals_table.join(check_subjects_table, s.subject == w.subject).join(
                check_decisions_table, c.seq == s.seq
            )
        )
        .where(
            c.organisation == organisation,
            c.decision == "permit",
            s.is_permitted.is_(True),
            s.seq < w.seq,
            w.subject.not_in(confirmed),
        )
        .group_by(w.subject, w.consent, w.withdrawn_at, w.seq)
        .order_by(w.seq)
        .limit(limit)
    )
    found: dict[str, tuple[int, OwedDeletion]] = {}
    for subject, consent, at, seq in conn.execute(collected):
        found[consent] = (int(seq), OwedDeletion(subject, consent, None, at))
    for subject, consent, at, seq, decision in conn.execute(received):
        found[consent] = (int(seq), OwedDeletion(subject, consent, int(decision), at))
    return [owed for _seq, owed in sorted(found.values(), key=lambda item: item[0])][:limit]
