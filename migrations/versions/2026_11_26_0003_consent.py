"""Consent projections (grants, withdrawals, erasures, vocabularies) and receipt access codes.

Revision ID: 0003_consent
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_consent"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the consent tables."""
    op.create_table(
        "consent_grants",
        sa.Column("consent", sa.String(length=80), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=128), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("operations", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.String(length=32), nullable=False),
        sa.Column("valid_until", sa.String(length=32), nullable=True),
        sa.Column("explicit", sa.Boolean(), nullable=False),
        sa.Column("wording_hash", sa.String(length=64), nullable=False),
        sa.Column("wording_version", sa.String(length=64), nullable=False),
        sa.Column("vocabulary", sa.String(length=64), nullable=False),
        sa.Column("on_behalf", sa.Boolean(), nullable=False),
        sa.Column("granted_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("consent"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_consent_grants_subject_seq", "consent_grants", ["subject", "seq"])
    op.create_table(
        "consent_withdrawals",
        sa.Column("consent", sa.String(length=80), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("by", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("withdrawn_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("consent"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_consent_withdrawals_subject", "consent_withdrawals", ["subject"])
    op.create_table(
        "consent_erasures",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(length=16), nullable=False),
        sa.Column("erased_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
        sa.UniqueConstraint("seq"),
    )
    op.create_table(
        "consent_vocabularies",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("adopted_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "consent_access_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("consent", sa.String(length=80), nullable=False),
        sa.Column("issued_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_consent_access_codes_subject", "consent_access_codes", ["subject"])


def downgrade() -> None:
    """Drop the consent tables."""
    op.drop_index("ix_consent_access_codes_subject", table_name="consent_access_codes")
    op.drop_table("consent_access_codes")
    op.drop_table("consent_vocabularies")
    op.drop_table("consent_erasures")
    op.drop_index("ix_consent_withdrawals_subject", table_name="consent_withdrawals")
    op.drop_table("consent_withdrawals")
    op.drop_index("ix_consent_grants_subject_seq", table_name="consent_grants")
    op.drop_table("consent_grants")
