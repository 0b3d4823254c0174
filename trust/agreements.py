"""Data-use agreements between the trust and a partner organisation.

Ledger payloads::

    agreement.signed {"agreement": "agr_…", "version": 1, "supersedes": "agr_…" | null,
                      "organisation": "org_…", "party": "trust" | "organisation",
                      "title": "plain words",
                      "purposes": ["service_delivery", …], "categories": ["housing", …],
                      "operations": ["aggregate", "pseudonymised"],   # of aggregate/pseudonymised/identifiable
                      "retention_days": 365, "geography": ["GB"],       # ISO 3166-1 alpha-2
                      "valid_from": "2026-12-01T00:00:00.000000Z", "valid_until": "2027-12-01T00:00:00.000000Z",
                      "terms_hash": "<hex SHA-256 of the RFC 8785 bytes of every member above except party>"}
    agreement.terminated {"agreement": "agr_…", "version": n, "reason": "plain words"}

The trust proposes an agreement by signing it (``party: "trust"``, actor: the admin); the
organisation signs the same terms (``party: "organisation"``, actor: its client or staff),
quoting the terms hash it read. A version is IN FORCE at instant t when both signatures are
recorded by t, ``valid_from <= t < valid_until``, and it is neither terminated nor superseded
by t. An amendment is a new version of the same agreement id (``version`` + 1,
``supersedes`` = the id); it supersedes the earlier versions from the moment both parties
have signed it, and until then the earlier version stays in force.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from consent.vocabulary import Vocabulary
from ledger.canonical import canonicalize
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from ledger.service import Ledger
from trust.config import OPERATIONS, vocabulary_in_force
from trust.models import agreements_table, loads, new_id
from trust.organisations import require_active

PARTIES = ("trust", "organisation")
COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_RETENTION_DAYS = 3650
MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class Terms:
    """What an agreement permits (the members covered by ``terms_hash``, with id and version)."""

    organisation: str
    title: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    operations: tuple[str, ...]
    retention_days: int
    geography: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class Agreement:
    """One version of an agreement as projected (instants are ``format_at`` strings)."""

    id: str
    version: int
    organisation: str
    title: str
    supersedes: str | None
    purposes: list[str]
    categories: list[str]
    operations: list[str]
    retention_days: int
    geography: list[str]
    valid_from: str
    valid_until: str
    terms_hash: str
    proposed_seq: int
    trust_signed_seq: int | None
    trust_signed_at: str | None
    organisation_signed_seq: int | None
    organisation_signed_at: str | None
    superseded_seq: int | None
    superseded_at: str | None
    terminated_seq: int | None
    terminated_at: str | None
    termination_reason: str | None

    @property
    def signed_at(self) -> str | None:
        """When the second signature was recorded (None while awaiting one)."""
        if self.trust_signed_at is None or self.organisation_signed_at is None:
            return None
        return max(self.trust_signed_at, self.organisation_signed_at)

    def status_at(self, at: datetime) -> str:
        """awaiting_signature | scheduled | in_force | expired | terminated | superseded, at *at*."""
        moment = format_at(at)
        if self.terminated_at is not None and self.terminated_at <= moment:
            return "terminated"
        if self.superseded_at is not None and self.superseded_at <= moment:
            return "superseded"
        signed = self.signed_at
        if signed is None or signed > moment:
            return "awaiting_signature"
        if moment < self.valid_from:
            return "scheduled"
        if moment >= self.valid_until:
            return "expired"
        return "in_force"

    def is_in_force_at(self, at: datetime) -> bool:
        """Whether this version is in force at *at*."""
        return self.status_at(at) == "in_force"

    def evidence(self) -> list[int]:
        """The ledger entries that put this version in force (its two signatures)."""
        return sorted(s for s in (self.trust_signed_seq, self.organisation_signed_seq) if s is not None)


def _from_row(row: Row[Any]) -> Agreement:
    return Agreement(
        id=row.agreement_id,
        version=int(row.version),
        organisation=row.organisation,
        title=row.title,
        supersedes=row.supersedes,
        purposes=loads(row.purposes),
        categories=loads(row.categories),
        operations=loads(row.operations),
        retention_days=int(row.retention_days),
        geography=loads(row.geography),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        terms_hash=row.terms_hash,
        proposed_seq=int(row.proposed_seq),
        trust_signed_seq=row.trust_signed_seq,
        trust_signed_at=row.trust_signed_at,
        organisation_signed_seq=row.organisation_signed_seq,
        organisation_signed_at=row.organisation_signed_at,
        superseded_seq=row.superseded_seq,
        superseded_at=row.superseded_at,
        terminated_seq=row.terminated_seq,
        terminated_at=row.terminated_at,
        termination_reason=row.termination_reason,
    )


# -- reads -------------------------------------------------------------------------------


def agreement_versions(conn: Connection, agreement_id: str) -> list[Agreement]:
    """Every version of an agreement, oldest first."""
    t = agreements_table.c
    rows = conn.execute(select(agreements_table).where(t.agreement_id == agreement_id).order_by(t.version))
    return [_from_row(row) for row in rows]


def get_agreement(conn: Connection, agreement_id: str, version: int | None = None) -> Agreement:
    """One version (the latest if *version* is None), or :class:`NotFoundError`."""
    versions = agreement_versions(conn, agreement_id)
    if version is not None:
        versions = [v for v in versions if v.version == version]
    if not versions:
        which = f"version {version} of agreement" if version is not None else "agreement"
        msg = f"{which} {agreement_id} does not exist"
        raise NotFoundError(msg)
    return versions[-1]


def list_agreements(conn: Connection, *, organisation: str | None = None) -> list[Agreement]:
    """The latest version of every agreement (optionally of one organisation), oldest first."""
    t = agreements_table.c
    query = select(agreements_table).order_by(t.proposed_seq)
    if organisation is not None:
        query = query.where(t.organisation == organisation)
    latest: dict[str, Agreement] = {}
    for row in conn.execute(query):
        agreement = _from_row(row)
        if agreement.id not in latest or latest[agreement.id].version < agreement.version:
            latest[agreement.id] = agreement
    return list(latest.values())


def agreements_in_force(conn: Connection, organisation: str, at: datetime) -> list[Agreement]:
    """Every agreement version of *organisation* in force at *at*."""
    t = agreements_table.c
    rows = conn.execute(select(agreements_table).where(t.organisation == organisation).order_by(t.proposed_seq))
    return [a for a in (_from_row(row) for row in rows) if a.is_in_force_at(at)]


# -- validation --------------------------------------------------------------------------


def terms_hash(terms: dict[str, Any]) -> str:
    """Hex SHA-256 of the RFC 8785 bytes of the terms (every payload member except party and terms_hash)."""
    return hashlib.sha256(canonicalize(terms)).hexdigest()


def _check_terms(terms: Terms, vocabulary: Vocabulary) -> dict[str, Any]:
    title = terms.title.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        msg = f"an agreement needs a title of 1 to {MAX_TITLE} characters"
        raise ValidationError(msg)
    purposes = vocabulary.check("purposes", terms.purposes, field="purposes")
    categories = vocabulary.check("categories", terms.categories, field="categories")
    operations = [op for op in OPERATIONS if op in terms.operations]
    unknown = set(terms.operations) - set(OPERATIONS)
    if unknown or not operations:
        msg = f"operations must be a non-empty subset of {', '.join(OPERATIONS)}"
        raise ValidationError(msg)
    if not 1 <= terms.retention_days <= MAX_RETENTION_DAYS:
        msg = f"retention_days must be between 1 and {MAX_RETENTION_DAYS}"
        raise ValidationError(msg)
    geography = sorted(set(terms.geography))
    if not geography or not all(COUNTRY.match(code) for code in geography):
        msg = "geography must list ISO 3166-1 alpha-2 country codes such as GB"
        raise ValidationError(msg)
    if terms.valid_until <= terms.valid_from:
        msg = "valid_until must be later than valid_from"
        raise ValidationError(msg)
    return {
        "organisation": terms.organisation,
        "title": title,
        "purposes": purposes,
        "categories": categories,
        "operations": operations,
        "retention_days": terms.retention_days,
        "geography": geography,
        "valid_from": format_at(terms.valid_from),
        "valid_until": format_at(terms.valid_until),
    }


def _terms_of(agreement: Agreement) -> dict[str, Any]:
    return {
        "agreement": agreement.id,
        "version": agreement.version,
        "supersedes": agreement.supersedes,
        "organisation": agreement.organisation,
        "title": agreement.title,
        "purposes": agreement.purposes,
        "categories": agreement.categories,
        "operations": agreement.operations,
        "retention_days": agreement.retention_days,
        "geography": agreement.geography,
        "valid_from": agreement.valid_from,
        "valid_until": agreement.valid_until,
    }


# -- writes ------------------------------------------------------------------------------


def propose_agreement(ledger: Ledger, *, terms: Terms, actor: str, now: datetime) -> LedgerEntry:
    """Record the trust's signature on a new agreement (version 1); the organisation signs next."""
    agreement_id = new_id("agr")

    def prepare(conn: Connection) -> dict[str, Any]:
        require_active(conn, terms.organisation, now)
        body = {
            "agreement": agreement_id,
            "version": 1,
            "supersedes": None,
            **_check_terms(terms, vocabulary_in_force(conn)),
        }
        return {**body, "party": "trust", "terms_hash": terms_hash(body)}

    return ledger.append("agreement.signed", actor=actor, now=now, prepare=prepare)


def amend_agreement(ledger: Ledger, *, agreement_id: str, terms: Terms, actor: str, now: datetime) -> LedgerEntry:
    """Record the trust's signature on a new version; it supersedes the old one once both have signed."""

    def prepare(conn: Connection) -> dict[str, Any]:
        latest = get_agreement(conn, agreement_id)
        if latest.organisation != terms.organisation:
            msg = f"agreement {agreement_id} is with {latest.organisation}; an amendment cannot change the party"
            raise ValidationError(msg)
        status = latest.status_at(now)
        if status in {"terminated", "awaiting_signature"}:
            msg = f"version {latest.version} of agreement {agreement_id} is {status.replace('_', ' ')}; cannot amend it"
            raise InvalidStateError(msg)
        require_active(conn, terms.organisation, now)
        body = {
            "agreement": agreement_id,
            "version": latest.version + 1,
            "supersedes": agreement_id,
            **_check_terms(terms, vocabulary_in_force(conn)),
        }
        return {**body, "party": "trust", "terms_hash": terms_hash(body)}

    return ledger.append("agreement.signed", actor=actor, now=now, prepare=prepare)


def sign_agreement(
    ledger: Ledger,
    *,
    agreement_id: str,
    version: int | None,
    party: str,
    expected_terms_hash: str,
    organisation: str | None,
    actor: str,
    now: datetime,
) -> LedgerEntry:
    """Record one party's signature on exactly the terms it read (*expected_terms_hash*).

    *organisation* is the organisation the signer acts for (required for ``party="organisation"``).
    """
    if party not in PARTIES:
        msg = f"party must be trust or organisation; got {party!r}"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, Any]:
        agreement = get_agreement(conn, agreement_id, version)
        if party == "organisation" and organisation != agreement.organisation:
            msg = f"only {agreement.organisation} may sign agreement {agreement_id} as the organisation"
            raise ForbiddenError(msg)
        if expected_terms_hash != agreement.terms_hash:
            msg = (
                f"version {agreement.version} of agreement {agreement_id} has terms hash {agreement.terms_hash}, "
                f"not {expected_terms_hash}: read the current terms before signing"
            )
            raise ConflictError(msg)
        status = agreement.status_at(now)
        if status in {"terminated", "superseded"}:
            msg = f"version {agreement.version} of agreement {agreement_id} is {status}; it can no longer be signed"
            raise InvalidStateError(msg)
        signed = agreement.trust_signed_seq if party == "trust" else agreement.organisation_signed_seq
        if signed is not None:
            msg = f"the {party} already signed version {agreement.version} of agreement {agreement_id} (entry {signed})"
            raise ConflictError(msg)
        require_active(conn, agreement.organisation, now)
        return {**_terms_of(agreement), "party": party, "terms_hash": agreement.terms_hash}

    return ledger.append("agreement.signed", actor=actor, now=now, prepare=prepare)


def terminate_agreement(ledger: Ledger, *, agreement_id: str, reason: str, actor: str, now: datetime) -> LedgerEntry:
    """Record ``agreement.terminated`` for the latest version: it stops being in force from this instant."""
    reason = reason.strip()
    if not reason:
        msg = "a termination needs a reason"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, Any]:
        agreement = get_agreement(conn, agreement_id)
        status = agreement.status_at(now)
        if status in {"terminated", "expired"}:
            msg = f"agreement {agreement_id} is already {status}"
            raise InvalidStateError(msg)
        return {"agreement": agreement_id, "version": agreement.version, "reason": reason}

    return ledger.append("agreement.terminated", actor=actor, now=now, prepare=prepare)


def summary(agreement: Agreement, at: datetime) -> dict[str, Any]:
    """A JSON summary for the register (status computed at *at*)."""
    return {
        **_terms_of(agreement),
        "terms_hash": agreement.terms_hash,
        "status": agreement.status_at(at),
        "trust_signed_seq": agreement.trust_signed_seq,
        "organisation_signed_seq": agreement.organisation_signed_seq,
        "terminated_seq": agreement.terminated_seq,
        "termination_reason": agreement.termination_reason,
        "superseded_seq": agreement.superseded_seq,
    }
