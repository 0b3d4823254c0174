"""Ledger entries, Merkle tree nodes, checkpoints and the subject vault.

Revision ID: 0001_ledger
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations.append_only import protect, unprotect

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("ledger_entries", "ledger_tree_nodes", "ledger_checkpoints")


def upgrade() -> None:
    """Create the ledger tables and make them append-only."""
    op.create_table(
        "ledger_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_ledger_entries_kind", "ledger_entries", ["kind"])
    op.create_table(
        "ledger_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "vault_keys",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_table(
        "vault_records",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "name"),
    )
    for table in APPEND_ONLY:
        protect(table)


def downgrade() -> None:
    """Drop the ledger tables."""
    for table in APPEND_ONLY:
        unprotect(table)
    op.drop_table("vault_records")
    op.drop_table("vault_keys")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_tree_nodes")
    op.drop_index("ix_ledger_entries_kind", table_name="ledger_entries")
    op.drop_table("ledger_entries")
