"""Projectors: governance entries → the tables in :mod:`trust.models`.

Each projector is a deterministic function of the entry and of rows earlier entries wrote,
so ``datatrust ledger replay`` rebuilds identical tables. The domain functions validate
everything in their ``prepare`` callbacks before an entry is appended; projectors trust the
payload and only record it. Payload formats are documented in the modules that write them
(:mod:`trust.config`, :mod:`trust.organisations`, :mod:`trust.membership`,
:mod:`trust.agreements`, :mod:`trust.ethics`, :mod:`trust.requests`, :mod:`trust.votes`).
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, insert, update

from ledger.entry import LedgerEntry
from ledger.projection import ProjectorRegistry
from trust.models import (
    PROJECTION_TABLES,
    agreements_table,
    comments_table,
    configs_table,
    conflicts_table,
    dumps,
    ethics_table,
    members_table,
    organisations_table,
    requests_table,
    votes_table,
)


def project_config(conn: Connection, entry: LedgerEntry) -> None:
    """``trust.configured`` with a ``governance`` member adopts a configuration; other ones are ignored."""
    governance = entry.payload.get("governance")
    if not isinstance(governance, dict):
        return
    conn.execute(
        insert(configs_table).values(
            seq=entry.seq,
            at=entry.at,
            governance_hash=str(entry.payload.get("governance_hash", "")),
            document=dumps(governance),
        )
    )


def project_org_registered(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the organisation."""
    p = entry.payload
    conn.execute(
        insert(organisations_table).values(
            id=p["organisation"],
            name=p["name"],
            kind=p["kind"],
            status="active",
            registered_seq=entry.seq,
            registered_at=entry.at,
        )
    )


def project_org_suspended(conn: Connection, entry: LedgerEntry) -> None:
    """Mark the organisation suspended from this entry."""
    t = organisations_table.c
    conn.execute(
        update(organisations_table)
        .where(t.id == entry.payload["organisation"], t.suspended_seq.is_(None))
        .values(
            status="suspended",
            suspended_seq=entry.seq,
            suspended_at=entry.at,
            suspension_reason=entry.payload.get("reason", ""),
        )
    )


def project_appointed(conn: Connection, entry: LedgerEntry) -> None:
    """Insert an appointment."""
    p = entry.payload
    conn.execute(
        insert(members_table).values(
            appointed_seq=entry.seq,
            person_id=p["person"],
            role=p["role"],
            is_chair=bool(p.get("is_chair", False)),
            vote_key=p.get("vote_key"),
            appointed_at=entry.at,
            appointed_by=entry.actor,
        )
    )


def project_removed(conn: Connection, entry: LedgerEntry) -> None:
    """End the person's open appointment in the role."""
    p, t = entry.payload, members_table.c
    conn.execute(
        update(members_table)
        .where(t.person_id == p["person"], t.role == p["role"], t.removed_seq.is_(None))
        .values(removed_seq=entry.seq, removed_at=entry.at, removal_reason=p.get("reason", ""))
    )


def project_agreement_signed(conn: Connection, entry: LedgerEntry) -> None:
    """Record a signature (the first one also records the terms); both signatures put it in force."""
    p, t = entry.payload, agreements_table.c
    key = and_(t.agreement_id == p["agreement"], t.version == p["version"])
    row = conn.execute(agreements_table.select().where(key)).first()
    if row is None:
        conn.execute(
            insert(agreements_table).values(
                agreement_id=p["agreement"],
                version=p["version"],
                organisation=p["organisation"],
                title=p.get("title", ""),
                supersedes=p.get("supersedes"),
                purposes=dumps(p["purposes"]),
                categories=dumps(p["categories"]),
                operations=dumps(p["operations"]),
                retention_days=p["retention_days"],
                geography=dumps(p["geography"]),
                valid_from=p["valid_from"],
                valid_until=p["valid_until"],
                terms_hash=p["terms_hash"],
                proposed_seq=entry.seq,
            )
        )
        row = conn.execute(agreements_table.select().where(key)).first()
    assert row is not None  # noqa: S101 - inserted just above
    party = "trust" if p["party"] == "trust" else "organisation"
    conn.execute(
        update(agreements_table).where(key).values({f"{party}_signed_seq": entry.seq, f"{party}_signed_at": entry.at})
    )
    other_signed = row.organisation_signed_seq if party == "trust" else row.trust_signed_seq
    if other_signed is None:
        return
    # Now in force: earlier versions of this agreement, and any agreement it names, are superseded.
    superseded = [and_(t.agreement_id == p["agreement"], t.version < p["version"])]
    if p.get("supersedes") and p["supersedes"] != p["agreement"]:
        superseded.append(t.agreement_id == p["supersedes"])
    for clause in superseded:
        conn.execute(
            update(agreements_table)
            .where(clause, t.superseded_seq.is_(None))
            .values(superseded_seq=entry.seq, superseded_at=entry.at)
        )


def project_agreement_terminated(conn: Connection, entry: LedgerEntry) -> None:
    """Mark the named version terminated."""
    p, t = entry.payload, agreements_table.c
    conn.execute(
        update(agreements_table)
        .where(t.agreement_id == p["agreement"], t.version == p["version"], t.terminated_seq.is_(None))
        .values(terminated_seq=entry.seq, terminated_at=entry.at, termination_reason=p.get("reason", ""))
    )


def project_ethics(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the decision; it supersedes earlier decisions on the same request (or else project)."""
    p, t = entry.payload, ethics_table.c
    target = t.request == p["request"] if p.get("request") else and_(t.request.is_(None), t.project == p["project"])
    conn.execute(
        update(ethics_table)
        .where(target, t.superseded_seq.is_(None))
        .values(superseded_seq=entry.seq, superseded_at=entry.at)
    )
    conn.execute(
        insert(ethics_table).values(
            decision_id=p["decision"],
            seq=entry.seq,
            at=entry.at,
            decided_by=entry.actor,
            outcome=p["outcome"],
            request=p.get("request"),
            project=p.get("project"),
            conditions_text=p.get("conditions_text", ""),
            obligations=dumps(p.get("obligations", [])),
            expires_at=p.get("expires_at"),
        )
    )


def project_request_submitted(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the request with the schedule fixed at submission."""
    p = entry.payload
    conn.execute(
        insert(requests_table).values(
            request_id=p["request"],
            organisation=p["organisation"],
            submitted_by=entry.actor,
            title=p.get("title", ""),
            purpose=p["purpose"],
            categories=dumps(p["categories"]),
            operation=p["operation"],
            subjects=None if p.get("subjects") is None else dumps(p["subjects"]),
            cohort=p.get("cohort"),
            cohort_size=p.get("cohort_size"),
            duration_days=p["duration_days"],
            project=p.get("project"),
            lay_summary=p["lay_summary"],
            public_benefit=p["public_benefit"],
            five_safes=dumps(p["five_safes"]),
            proportionality=dumps(p["proportionality"]),
            flags=dumps(p["flags"]),
            track=p.get("track", "full"),
            config_seq=p["config_seq"],
            submitted_seq=entry.seq,
            submitted_at=entry.at,
            notice_ends_at=p["notice_ends_at"],
            voting_ends_at=p["voting_ends_at"],
        )
    )


def project_comment(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the comment's hash (its text is stored off-ledger by the domain)."""
    p = entry.payload
    conn.execute(
        insert(comments_table).values(
            comment_id=p["comment"],
            request=p["request"],
            seq=entry.seq,
            at=entry.at,
            author=entry.actor,
            text_hash=p["text_hash"],
        )
    )


def project_conflict(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the declaration (it recuses the trustee)."""
    p = entry.payload
    conn.execute(
        insert(conflicts_table).values(
            request=p["request"], trustee=p["trustee"], seq=entry.seq, at=entry.at, interest=p["interest"]
        )
    )


def project_vote(conn: Connection, entry: LedgerEntry) -> None:
    """Insert the vote as the trustee's current one; their earlier votes on the request stay, not current."""
    p, t = entry.payload, votes_table.c
    conn.execute(
        update(votes_table).where(t.request == p["request"], t.trustee == p["trustee"]).values(is_current=False)
    )
    conn.execute(
        insert(votes_table).values(
            seq=entry.seq,
            request=p["request"],
            trustee=p["trustee"],
            at=entry.at,
            choice=p["choice"],
            reason=p["reason"],
            agrees_with_preassessment=bool(p["agrees_with_preassessment"]),
            signature=p.get("signature"),
            is_current=True,
        )
    )


def project_decided(conn: Connection, entry: LedgerEntry) -> None:
    """Record the decision, the rule applied and the tally."""
    p, t = entry.payload, requests_table.c
    conn.execute(
        update(requests_table)
        .where(t.request_id == p["request"], t.decided_seq.is_(None))
        .values(
            decided_seq=entry.seq,
            decided_at=entry.at,
            outcome=p["outcome"],
            rule=p["rule"],
            quorum=p["quorum"],
            tally=dumps(p["tally"]),
            expires_at=p.get("expires_at"),
        )
    )


def project_revoked(conn: Connection, entry: LedgerEntry) -> None:
    """Record the revocation; it binds every check from this entry on."""
    p, t = entry.payload, requests_table.c
    conn.execute(
        update(requests_table)
        .where(t.request_id == p["request"], t.revoked_seq.is_(None))
        .values(revoked_seq=entry.seq, revoked_at=entry.at, revoked_by=entry.actor, revocation_reason=p["reason"])
    )


PROJECTORS = {
    "trust.configured": project_config,
    "org.registered": project_org_registered,
    "org.suspended": project_org_suspended,
    "trustee.appointed": project_appointed,
    "trustee.removed": project_removed,
    "agreement.signed": project_agreement_signed,
    "agreement.terminated": project_agreement_terminated,
    "ethics.decided": project_ethics,
    "request.submitted": project_request_submitted,
    "request.commented": project_comment,
    "request.conflict_declared": project_conflict,
    "vote.cast": project_vote,
    "request.decided": project_decided,
    "request.revoked": project_revoked,
}


def register(registry: ProjectorRegistry) -> None:
    """Register every governance projector and the tables they own."""
    for kind, projector in PROJECTORS.items():
        registry.register([kind], projector, tables=PROJECTION_TABLES)
