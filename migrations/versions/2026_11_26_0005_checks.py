"""Projections of recorded check decisions.

Revision ID: 0005_checks
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_checks"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the check decision projections."""
    op.create_table(
        "check_decisions",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("organisation", sa.String(length=64), nullable=False),
        sa.Column("request", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_check_decisions_organisation", "check_decisions", ["organisation"])
    op.create_table(
        "check_subjects",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("is_permitted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "seq"),
    )


def downgrade() -> None:
    """Drop the check decision projections."""
    op.drop_table("check_subjects")
    op.drop_index("ix_check_decisions_organisation", table_name="check_decisions")
    op.drop_table("check_decisions")
