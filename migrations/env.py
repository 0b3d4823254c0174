"""Alembic environment: runs revisions against the URL given in the config."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import api.auth.store  # noqa: F401 - sessions, sign-in throttling, one-time links
import consent.models  # noqa: F401 - consent projections and access codes
import ledger.models  # noqa: F401 - registers tables for autogenerate checks
import trust.check_models
import trust.identity  # people and partner clients
import trust.models  # governance projections
import trust.webhook_models  # noqa: F401 - webhook subscriptions, outbox, deletion confirmations
from ledger.db import Database

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Run revisions with a live connection."""
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None  # noqa: S101 - set by migrations.alembic_config
    db = Database.from_url(url)
    engine = db.engine.execution_options() if db.is_postgresql else db.write_engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    db.dispose()


run_migrations_online()
