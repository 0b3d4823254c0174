"""Governance projection tables: rows derived from ledger entries, rebuilt by ``datatrust ledger replay``.

Every table here except ``request_comment_texts`` is a *projection*: written only by the
projectors in :mod:`trust.projections`, deterministic functions of the entries. Columns hold
str / int / bool only; timestamps are ``format_at`` strings (fixed width, so they sort as
text) and lists or objects are canonical JSON text. Anything that depends on the clock
(public notice over, voting closed, approval expired) is computed at read time from the
stored instants, never stored.

``request_comment_texts`` is the one exception: the text of public comments is kept
off-ledger (only its hash is on the ledger) so it can be moderated or erased. It is written in
the same transaction as the ``request.commented`` entry, but a replay does not recreate it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, Text
from sqlmodel import Field, SQLModel

TS = 32  # length of a format_at timestamp
ID = 64  # length of an id such as org_…, agr_…, req_…, person_…


class GovernanceConfigRow(SQLModel, table=True):
    """One adopted governance configuration (a ``trust.configured`` entry with a ``governance`` member)."""

    __tablename__ = "governance_configs"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: str = Field(sa_column=Column(String(TS), nullable=False))
    governance_hash: str = Field(sa_column=Column(String(64), nullable=False))
    document: str = Field(sa_column=Column(Text, nullable=False))


class OrganisationRow(SQLModel, table=True):
    """A registered organisation and, once suspended, when and why."""

    __tablename__ = "organisations"

    id: str = Field(sa_column=Column(String(ID), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    registered_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    registered_at: str = Field(sa_column=Column(String(TS), nullable=False))
    suspended_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    suspended_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    suspension_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class MembershipRow(SQLModel, table=True):
    """One appointment of a person as trustee or ethics-committee member (a new row per appointment)."""

    __tablename__ = "governance_members"

    appointed_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    person_id: str = Field(sa_column=Column(String(ID), nullable=False, index=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    is_chair: bool = Field(sa_column=Column(Boolean, nullable=False))
    vote_key: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    appointed_at: str = Field(sa_column=Column(String(TS), nullable=False))
    appointed_by: str = Field(sa_column=Column(String(128), nullable=False))
    removed_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    removed_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    removal_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AgreementRow(SQLModel, table=True):
    """One version of a data-use agreement, its signatures, supersession and termination."""

    __tablename__ = "agreements"

    agreement_id: str = Field(sa_column=Column(String(ID), primary_key=True))
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    organisation: str = Field(sa_column=Column(String(ID), nullable=False, index=True))
    title: str = Field(sa_column=Column(String(200), nullable=False))
    supersedes: str | None = Field(default=None, sa_column=Column(String(ID), nullable=True))
    purposes: str = Field(sa_column=Column(Text, nullable=False))
    categories: str = Field(sa_column=Column(Text, nullable=False))
    operations: str = Field(sa_column=Column(Text, nullable=False))
    retention_days: int = Field(sa_column=Column(Integer, nullable=False))
    geography: str = Field(sa_column=Column(Text, nullable=False))
    valid_from: str = Field(sa_column=Column(String(TS), nullable=False))
    valid_until: str = Field(sa_column=Column(String(TS), nullable=False))
    terms_hash: str = Field(sa_column=Column(String(64), nullable=False))
    proposed_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    trust_signed_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    trust_signed_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    organisation_signed_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    organisation_signed_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    superseded_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    superseded_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    terminated_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    terminated_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    termination_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class EthicsDecisionRow(SQLModel, table=True):
    """An ethics-committee decision; a later decision on the same request or project supersedes it."""

    __tablename__ = "ethics_decisions"

    decision_id: str = Field(sa_column=Column(String(ID), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: str = Field(sa_column=Column(String(TS), nullable=False))
    decided_by: str = Field(sa_column=Column(String(128), nullable=False))
    outcome: str = Field(sa_column=Column(String(32), nullable=False))
    request: str | None = Field(default=None, sa_column=Column(String(ID), nullable=True, index=True))
    project: str | None = Field(default=None, sa_column=Column(String(200), nullable=True, index=True))
    conditions_text: str = Field(sa_column=Column(Text, nullable=False))
    obligations: str = Field(sa_column=Column(Text, nullable=False))
    expires_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    superseded_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    superseded_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))


class AccessRequestRow(SQLModel, table=True):
    """An access request: what was asked, the schedule fixed at submission, the decision and revocation."""

    __tablename__ = "access_requests"

    request_id: str = Field(sa_column=Column(String(ID), primary_key=True))
    organisation: str = Field(sa_column=Column(String(ID), nullable=False, index=True))
    submitted_by: str = Field(sa_column=Column(String(128), nullable=False))
    title: str = Field(sa_column=Column(String(200), nullable=False))
    purpose: str = Field(sa_column=Column(String(128), nullable=False))
    categories: str = Field(sa_column=Column(Text, nullable=False))
    operation: str = Field(sa_column=Column(String(16), nullable=False))
    subjects: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    cohort: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    cohort_size: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    duration_days: int = Field(sa_column=Column(Integer, nullable=False))
    project: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    lay_summary: str = Field(sa_column=Column(Text, nullable=False))
    public_benefit: str = Field(sa_column=Column(Text, nullable=False))
    five_safes: str = Field(sa_column=Column(Text, nullable=False))
    proportionality: str = Field(sa_column=Column(Text, nullable=False))
    flags: str = Field(sa_column=Column(Text, nullable=False))
    track: str = Field(sa_column=Column(String(8), nullable=False))
    config_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    submitted_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    submitted_at: str = Field(sa_column=Column(String(TS), nullable=False))
    notice_ends_at: str = Field(sa_column=Column(String(TS), nullable=False))
    voting_ends_at: str = Field(sa_column=Column(String(TS), nullable=False, index=True))
    decided_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    decided_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    outcome: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    rule: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    quorum: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    tally: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    expires_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    revoked_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    revoked_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    revoked_by: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    revocation_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class VoteRow(SQLModel, table=True):
    """One ``vote.cast`` entry; only a trustee's latest vote on a request is current."""

    __tablename__ = "votes"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    request: str = Field(sa_column=Column(String(ID), nullable=False, index=True))
    trustee: str = Field(sa_column=Column(String(ID), nullable=False))
    at: str = Field(sa_column=Column(String(TS), nullable=False))
    choice: str = Field(sa_column=Column(String(8), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    agrees_with_preassessment: bool = Field(sa_column=Column(Boolean, nullable=False))
    signature: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    is_current: bool = Field(sa_column=Column(Boolean, nullable=False))


class ConflictRow(SQLModel, table=True):
    """A trustee's declared conflict of interest on a request (it recuses them)."""

    __tablename__ = "request_conflicts"

    request: str = Field(sa_column=Column(String(ID), primary_key=True))
    trustee: str = Field(sa_column=Column(String(ID), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: str = Field(sa_column=Column(String(TS), nullable=False))
    interest: str = Field(sa_column=Column(Text, nullable=False))


class CommentRow(SQLModel, table=True):
    """A public comment on a request during its notice period: the ledger holds only the text's hash."""

    __tablename__ = "request_comments"

    comment_id: str = Field(sa_column=Column(String(ID), primary_key=True))
    request: str = Field(sa_column=Column(String(ID), nullable=False, index=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    at: str = Field(sa_column=Column(String(TS), nullable=False))
    author: str = Field(sa_column=Column(String(128), nullable=False))
    text_hash: str = Field(sa_column=Column(String(64), nullable=False))


class CommentTextRow(SQLModel, table=True):
    """The text of a comment, off-ledger (not a projection: replay does not recreate it)."""

    __tablename__ = "request_comment_texts"

    comment_id: str = Field(sa_column=Column(String(ID), primary_key=True))
    text: str = Field(sa_column=Column(Text, nullable=False))


configs_table = GovernanceConfigRow.__table__  # type: ignore[attr-defined]
organisations_table = OrganisationRow.__table__  # type: ignore[attr-defined]
members_table = MembershipRow.__table__  # type: ignore[attr-defined]
agreements_table = AgreementRow.__table__  # type: ignore[attr-defined]
ethics_table = EthicsDecisionRow.__table__  # type: ignore[attr-defined]
requests_table = AccessRequestRow.__table__  # type: ignore[attr-defined]
votes_table = VoteRow.__table__  # type: ignore[attr-defined]
conflicts_table = ConflictRow.__table__  # type: ignore[attr-defined]
comments_table = CommentRow.__table__  # type: ignore[attr-defined]
comment_texts_table = CommentTextRow.__table__  # type: ignore[attr-defined]

PROJECTION_TABLES = [
    "governance_configs",
    "organisations",
    "governance_members",
    "agreements",
    "ethics_decisions",
    "access_requests",
    "votes",
    "request_conflicts",
    "request_comments",
]


def new_id(prefix: str) -> str:
    """A fresh random identifier such as ``req_3f9a…`` (ids are recorded in entries, so replay needs no randomness)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def dumps(value: object) -> str:
    """Canonical JSON text for list/object columns (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    """Parse a JSON column (None stays None)."""
    return None if text is None else json.loads(text)
