"""Webhook subscriptions, the outbox and its attempts, and confirmed deletions.

Revision ID: 0006_webhooks
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_webhooks"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the webhook tables."""
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("scheme", sa.String(length=8), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_subscriptions_organisation", "webhook_subscriptions", ["organisation"])
    op.create_table(
        "webhook_messages",
        sa.Column("id", sa.String(length=96), nullable=False),
        sa.Column("subscription", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("event_at", sa.String(length=32), nullable=False),
        sa.Column("queued_at", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.String(length=32), nullable=True),
        sa.Column("last_attempt_at", sa.String(length=32), nullable=True),
        sa.Column("last_response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription", "seq", name="uq_webhook_messages_subscription_seq"),
    )
    op.create_index("ix_webhook_messages_due", "webhook_messages", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_messages_organisation_seq", "webhook_messages", ["organisation", "seq"])
    op.create_table(
        "webhook_attempts",
        sa.Column("message", sa.String(length=96), nullable=False),
        sa.Column("attempt", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("started_at", sa.String(length=32), nullable=False),
        sa.Column("finished_at", sa.String(length=32), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("is_success", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("message", "attempt"),
    )
    op.create_table(
        "deletion_confirmations",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("organisation", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("consent", sa.String(length=80), nullable=True),
        sa.Column("decision_id", sa.BigInteger(), nullable=True),
        sa.Column("deleted_at", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_deletion_confirmations_subject", "deletion_confirmations", ["subject", "seq"])
    op.create_index("ix_deletion_confirmations_organisation", "deletion_confirmations", ["organisation"])


def downgrade() -> None:
    """Drop the webhook tables."""
    op.drop_index("ix_deletion_confirmations_organisation", table_name="deletion_confirmations")
    op.drop_index("ix_deletion_confirmations_subject", table_name="deletion_confirmations")
    op.drop_table("deletion_confirmations")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_messages_organisation_seq", table_name="webhook_messages")
    op.drop_index("ix_webhook_messages_due", table_name="webhook_messages")
    op.drop_table("webhook_messages")
    op.drop_index("ix_webhook_subscriptions_organisation", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
