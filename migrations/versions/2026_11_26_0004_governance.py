"""Governance projections: configs, organisations, members, agreements, ethics, requests, votes.

Revision ID: 0004_governance
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_governance"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

TS = 32
ID = 64


def _ts(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=TS), nullable=nullable)


def upgrade() -> None:
    """Create the governance projection tables and the off-ledger comment texts."""
    op.create_table(
        "governance_configs",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        _ts("at", nullable=False),
        sa.Column("governance_hash", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=ID), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registered_seq", sa.BigInteger(), nullable=False),
        _ts("registered_at", nullable=False),
        sa.Column("suspended_seq", sa.BigInteger(), nullable=True),
        _ts("suspended_at"),
        sa.Column("suspension_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "governance_members",
        sa.Column("appointed_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.String(length=ID), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_chair", sa.Boolean(), nullable=False),
        sa.Column("vote_key", sa.String(length=128), nullable=True),
        _ts("appointed_at", nullable=False),
        sa.Column("appointed_by", sa.String(length=128), nullable=False),
        sa.Column("removed_seq", sa.BigInteger(), nullable=True),
        _ts("removed_at"),
        sa.Column("removal_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("appointed_seq"),
    )
    op.create_index("ix_governance_members_person_id", "governance_members", ["person_id"])
    op.create_table(
        "agreements",
        sa.Column("agreement_id", sa.String(length=ID), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("organisation", sa.String(length=ID), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("supersedes", sa.String(length=ID), nullable=True),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("operations", sa.Text(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("geography", sa.Text(), nullable=False),
        _ts("valid_from", nullable=False),
        _ts("valid_until", nullable=False),
        sa.Column("terms_hash", sa.String(length=64), nullable=False),
        sa.Column("proposed_seq", sa.BigInteger(), nullable=False),
        sa.Column("trust_signed_seq", sa.BigInteger(), nullable=True),
        _ts("trust_signed_at"),
        sa.Column("organisation_signed_seq", sa.BigInteger(), nullable=True),
        _ts("organisation_signed_at"),
        sa.Column("superseded_seq", sa.BigInteger(), nullable=True),
        _ts("superseded_at"),
        sa.Column("terminated_seq", sa.BigInteger(), nullable=True),
        _ts("terminated_at"),
        sa.Column("termination_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("agreement_id", "version"),
    )
    op.create_index("ix_agreements_organisation", "agreements", ["organisation"])
    op.create_table(
        "ethics_decisions",
        sa.Column("decision_id", sa.String(length=ID), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _ts("at", nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("request", sa.String(length=ID), nullable=True),
        sa.Column("project", sa.String(length=200), nullable=True),
        sa.Column("conditions_text", sa.Text(), nullable=False),
        sa.Column("obligations", sa.Text(), nullable=False),
        _ts("expires_at"),
        sa.Column("superseded_seq", sa.BigInteger(), nullable=True),
        _ts("superseded_at"),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index("ix_ethics_decisions_request", "ethics_decisions", ["request"])
    op.create_index("ix_ethics_decisions_project", "ethics_decisions", ["project"])
    op.create_table(
        "access_requests",
        sa.Column("request_id", sa.String(length=ID), nullable=False),
        sa.Column("organisation", sa.String(length=ID), nullable=False),
        sa.Column("submitted_by", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=128), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("subjects", sa.Text(), nullable=True),
        sa.Column("cohort", sa.Text(), nullable=True),
        sa.Column("cohort_size", sa.Integer(), nullable=True),
        sa.Column("duration_days", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=True),
        sa.Column("lay_summary", sa.Text(), nullable=False),
        sa.Column("public_benefit", sa.Text(), nullable=False),
        sa.Column("five_safes", sa.Text(), nullable=False),
        sa.Column("proportionality", sa.Text(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("track", sa.String(length=8), nullable=False),
        sa.Column("config_seq", sa.BigInteger(), nullable=False),
        sa.Column("submitted_seq", sa.BigInteger(), nullable=False),
        _ts("submitted_at", nullable=False),
        _ts("notice_ends_at", nullable=False),
        _ts("voting_ends_at", nullable=False),
        sa.Column("decided_seq", sa.BigInteger(), nullable=True),
        _ts("decided_at"),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("quorum", sa.Integer(), nullable=True),
        sa.Column("tally", sa.Text(), nullable=True),
        _ts("expires_at"),
        sa.Column("revoked_seq", sa.BigInteger(), nullable=True),
        _ts("revoked_at"),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.Column("revocation_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_access_requests_organisation", "access_requests", ["organisation"])
    op.create_index("ix_access_requests_voting_ends_at", "access_requests", ["voting_ends_at"])
    op.create_table(
        "votes",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("request", sa.String(length=ID), nullable=False),
        sa.Column("trustee", sa.String(length=ID), nullable=False),
        _ts("at", nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("agrees_with_preassessment", sa.Boolean(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_votes_request", "votes", ["request"])
    op.create_table(
        "request_conflicts",
        sa.Column("request", sa.String(length=ID), nullable=False),
        sa.Column("trustee", sa.String(length=ID), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _ts("at", nullable=False),
        sa.Column("interest", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request", "trustee"),
    )
    op.create_table(
        "request_comments",
        sa.Column("comment_id", sa.String(length=ID), nullable=False),
        sa.Column("request", sa.String(length=ID), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _ts("at", nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("comment_id"),
    )
    op.create_index("ix_request_comments_request", "request_comments", ["request"])
    op.create_table(
        "request_comment_texts",
        sa.Column("comment_id", sa.String(length=ID), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("comment_id"),
    )


def downgrade() -> None:
    """Drop the governance tables."""
    op.drop_table("request_comment_texts")
    op.drop_index("ix_request_comments_request", table_name="request_comments")
    op.drop_table("request_comments")
    op.drop_table("request_conflicts")
    op.drop_index("ix_votes_request", table_name="votes")
    op.drop_table("votes")
    op.drop_index("ix_access_requests_voting_ends_at", table_name="access_requests")
    op.drop_index("ix_access_requests_organisation", table_name="access_requests")
    op.drop_table("access_requests")
    op.drop_index("ix_ethics_decisions_project", table_name="ethics_decisions")
    op.drop_index("ix_ethics_decisions_request", table_name="ethics_decisions")
    op.drop_table("ethics_decisions")
    op.drop_index("ix_agreements_organisation", table_name="agreements")
    op.drop_table("agreements")
    op.drop_index("ix_governance_members_person_id", table_name="governance_members")
    op.drop_table("governance_members")
    op.drop_table("organisations")
    op.drop_table("governance_configs")
