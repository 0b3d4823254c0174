"""Consent tables.

Projections (rebuilt by ``datatrust ledger replay``, written only by ``consent/projections.py``):

* ``consent_grants``: one row per ``consent.granted`` entry;
* ``consent_withdrawals``: one row per withdrawn consent (its first ``consent.withdrawn`` entry);
* ``consent_erasures``: one row per erased subject (its first ``subject.erased`` entry);
* ``consent_vocabularies``: one row per ``trust.configured`` entry that adopts a vocabulary.

Every row is inserted once and never updated: a consent's status is derived at read
time from these rows and the instant asked about (``consent/status.py``), so it cannot
drift from the ledger.

Off the ledger (secrets that no replay can rebuild):

* ``consent_access_codes``: SHA-256 of each receipt access code and the subject it signs in.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Text
from sqlmodel import Field, SQLModel

ID = 80  # con_… ids: "con_" + up to 64 client-chosen characters
REF = 64  # sub_… and hashes
ORG = 128
AT = 32


class ConsentGrant(SQLModel, table=True):
    """A recorded consent, as granted. Lists are canonical JSON arrays; null means "any"."""

    __tablename__ = "consent_grants"
    __table_args__ = (Index("ix_consent_grants_subject_seq", "subject", "seq"),)

    consent: str = Field(sa_column=Column(String(ID), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    subject: str = Field(sa_column=Column(String(REF), nullable=False))
    organisation: str = Field(sa_column=Column(String(ORG), nullable=False))
    purposes: str = Field(sa_column=Column(Text, nullable=False))
    categories: str = Field(sa_column=Column(Text, nullable=False))
    recipients: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    operations: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    valid_from: str = Field(sa_column=Column(String(AT), nullable=False))
    valid_until: str | None = Field(default=None, sa_column=Column(String(AT), nullable=True))
    explicit: bool = Field(sa_column=Column(Boolean, nullable=False))
    wording_hash: str = Field(sa_column=Column(String(REF), nullable=False))
    wording_version: str = Field(sa_column=Column(String(REF), nullable=False))
    vocabulary: str = Field(sa_column=Column(String(REF), nullable=False))
    on_behalf: bool = Field(sa_column=Column(Boolean, nullable=False))
    granted_at: str = Field(sa_column=Column(String(AT), nullable=False))
    actor: str = Field(sa_column=Column(String(ORG), nullable=False))


class ConsentWithdrawal(SQLModel, table=True):
    """The withdrawal (or revocation, ``by == "trust"``) of one consent."""

    __tablename__ = "consent_withdrawals"

    consent: str = Field(sa_column=Column(String(ID), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    subject: str = Field(sa_column=Column(String(REF), nullable=False, index=True))
    by: str = Field(sa_column=Column(String(16), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    withdrawn_at: str = Field(sa_column=Column(String(AT), nullable=False))
    actor: str = Field(sa_column=Column(String(ORG), nullable=False))


class ConsentErasure(SQLModel, table=True):
    """The erasure of one subject: every consent of theirs is inactive from ``erased_at``."""

    __tablename__ = "consent_erasures"

    subject: str = Field(sa_column=Column(String(REF), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    by: str = Field(sa_column=Column(String(16), nullable=False))
    erased_at: str = Field(sa_column=Column(String(AT), nullable=False))
    actor: str = Field(sa_column=Column(String(ORG), nullable=False))


class ConsentVocabulary(SQLModel, table=True):
    """A vocabulary the trust adopted; the one with the highest ``seq`` is in force."""

    __tablename__ = "consent_vocabularies"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(sa_column=Column(String(REF), nullable=False))
    version: str = Field(sa_column=Column(String(REF), nullable=False))
    document: str = Field(sa_column=Column(Text, nullable=False))
    adopted_at: str = Field(sa_column=Column(String(AT), nullable=False))


class AccessCode(SQLModel, table=True):
    """A receipt access code, kept only as its SHA-256 (the code itself is shown once)."""

    __tablename__ = "consent_access_codes"

    code_hash: str = Field(sa_column=Column(String(REF), primary_key=True))
    subject: str = Field(sa_column=Column(String(REF), nullable=False, index=True))
    consent: str = Field(sa_column=Column(String(ID), nullable=False))
    issued_at: str = Field(sa_column=Column(String(AT), nullable=False))


grants_table = ConsentGrant.__table__  # type: ignore[attr-defined]
withdrawals_table = ConsentWithdrawal.__table__  # type: ignore[attr-defined]
erasures_table = ConsentErasure.__table__  # type: ignore[attr-defined]
vocabularies_table = ConsentVocabulary.__table__  # type: ignore[attr-defined]
access_codes_table = AccessCode.__table__  # type: ignore[attr-defined]

PROJECTION_TABLES = ("consent_grants", "consent_withdrawals", "consent_erasures", "consent_vocabularies")
