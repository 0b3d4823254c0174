"""Identity: people, partner clients (projection and secret hashes), sessions, sign-in throttling.

Revision ID: 0002_identity
Revises: 0001_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_identity"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the identity tables."""
    op.create_table(
        "people",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("password_hash", sa.LargeBinary(), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("organisation", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.String(length=400), nullable=False),
        sa.Column("auth_method", sa.String(length=32), nullable=False),
        sa.Column("key_thumbprint", sa.String(length=64), nullable=True),
        sa.Column("public_jwk", sa.Text(), nullable=True),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("is_suspended", sa.Boolean(), nullable=False),
        sa.Column("registered_at", sa.String(length=32), nullable=False),
        sa.Column("registered_seq", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_index("ix_oauth_clients_organisation", "oauth_clients", ["organisation"])
    op.create_table(
        "oauth_client_secrets",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_auth_sessions_principal_id", "auth_sessions", ["principal_id"])
    op.create_table(
        "auth_sign_in_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auth_sign_in_failures_key_at", "auth_sign_in_failures", ["key_hash", "at"])
    op.create_table(
        "auth_sign_in_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_auth_sign_in_links_person_id", "auth_sign_in_links", ["person_id"])
    op.create_table(
        "auth_used_assertions",
        sa.Column("jti_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("jti_hash"),
    )
    op.create_index("ix_auth_used_assertions_expires_at", "auth_used_assertions", ["expires_at"])


def downgrade() -> None:
    """Drop the identity tables."""
    op.drop_index("ix_auth_used_assertions_expires_at", table_name="auth_used_assertions")
    op.drop_table("auth_used_assertions")
    op.drop_index("ix_auth_sign_in_links_person_id", table_name="auth_sign_in_links")
    op.drop_table("auth_sign_in_links")
    op.drop_index("ix_auth_sign_in_failures_key_at", table_name="auth_sign_in_failures")
    op.drop_table("auth_sign_in_failures")
    op.drop_index("ix_auth_sessions_principal_id", table_name="auth_sessions")
    op.drop_table("auth_sessions")
    op.drop_table("oauth_client_secrets")
    op.drop_index("ix_oauth_clients_organisation", table_name="oauth_clients")
    op.drop_table("oauth_clients")
    op.drop_table("people")
