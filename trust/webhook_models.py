"""Webhook tables: subscriptions, the outbox of messages and their attempts, and confirmed deletions.

Not projections (a replay does not rebuild them; they depend on subscriptions, which
are configuration kept off the ledger):

* ``webhook_subscriptions``: a partner organisation's endpoint, the event types it wants
  and how messages to it are signed;
* ``webhook_messages``: the outbox. One row per (subscription, causing ledger entry),
  written in the same transaction as that entry; its ``id`` is the Standard Webhooks
  ``webhook-id`` (the same on every retry and replay, so receivers can de-duplicate);
* ``webhook_attempts``: one row per delivery attempt, inserted when the attempt starts
  and completed with its outcome (an attempt left without an outcome was cut short).

A projection (rebuilt and compared by ``datatrust ledger replay``):

* ``deletion_confirmations``: one row per ``deletion.confirmed`` entry.

Timestamps are ``ledger.entry.format_at`` strings (fixed width, so they sort as text).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

TS = 32  # a format_at timestamp
ORG = 128
REF = 64  # sub_…, con_…, whk_…
MSG = 96  # msg_<seq>_<subscription>


class WebhookSubscription(SQLModel, table=True):
    """An endpoint a partner organisation registered, and the event types it receives there."""

    __tablename__ = "webhook_subscriptions"

    id: str = Field(sa_column=Column(String(REF), primary_key=True))
    organisation: str = Field(sa_column=Column(String(ORG), nullable=False, index=True))
    url: str = Field(sa_column=Column(Text, nullable=False))
    event_types: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON list
    scheme: str = Field(sa_column=Column(String(8), nullable=False))  # "v1a" (Ed25519) or "v1" (HMAC)
    secret: str | None = Field(default=None, sa_column=Column(String(REF), nullable=True))  # whsec_… for v1
    description: str = Field(sa_column=Column(String(200), nullable=False))
    is_active: bool = Field(sa_column=Column(Boolean, nullable=False))
    created_at: str = Field(sa_column=Column(String(TS), nullable=False))
    created_by: str = Field(sa_column=Column(String(ORG), nullable=False))
    updated_at: str = Field(sa_column=Column(String(TS), nullable=False))


class WebhookMessage(SQLModel, table=True):
    """One event for one subscription: the outbox row the delivery worker sends until it succeeds."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        UniqueConstraint("subscription", "seq", name="uq_webhook_messages_subscription_seq"),
        Index("ix_webhook_messages_due", "status", "next_attempt_at"),
        Index("ix_webhook_messages_organisation_seq", "organisation", "seq"),
    )

    id: str = Field(sa_column=Column(String(MSG), primary_key=True))
    subscription: str = Field(sa_column=Column(String(REF), nullable=False))
    organisation: str = Field(sa_column=Column(String(ORG), nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_type: str = Field(sa_column=Column(String(64), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))  # the exact JSON sent and signed
    event_at: str = Field(sa_column=Column(String(TS), nullable=False))
    queued_at: str = Field(sa_column=Column(String(TS), nullable=False))  # retry window starts here
    status: str = Field(sa_column=Column(String(16), nullable=False))  # pending | delivered | failed | cancelled
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    next_attempt_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    last_attempt_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    last_response_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    delivered_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))


class WebhookAttempt(SQLModel, table=True):
    """One delivery attempt of a message and, once it finished, its outcome."""

    __tablename__ = "webhook_attempts"

    message: str = Field(sa_column=Column(String(MSG), primary_key=True))
    attempt: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    started_at: str = Field(sa_column=Column(String(TS), nullable=False))
    finished_at: str | None = Field(default=None, sa_column=Column(String(TS), nullable=True))
    response_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    is_success: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))


class DeletionConfirmation(SQLModel, table=True):
    """A partner's confirmation that it deleted a subject's data (projection of ``deletion.confirmed``)."""

    __tablename__ = "deletion_confirmations"
    __table_args__ = (Index("ix_deletion_confirmations_subject", "subject", "seq"),)

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    organisation: str = Field(sa_column=Column(String(ORG), nullable=False, index=True))
    subject: str = Field(sa_column=Column(String(REF), nullable=False))
    consent: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    decision_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    deleted_at: str = Field(sa_column=Column(String(TS), nullable=False))
    recorded_at: str = Field(sa_column=Column(String(TS), nullable=False))
    actor: str = Field(sa_column=Column(String(ORG), nullable=False))


subscriptions_table = WebhookSubscription.__table__  # type: ignore[attr-defined]
messages_table = WebhookMessage.__table__  # type: ignore[attr-defined]
attempts_table = WebhookAttempt.__table__  # type: ignore[attr-defined]
deletions_table = DeletionConfirmation.__table__  # type: ignore[attr-defined]

DELETION_TABLES = ["deletion_confirmations"]
