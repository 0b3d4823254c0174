"""Fixtures the fault tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import drop_pg_database, fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite in the data directory, else the URL of a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        drop_pg_database(name)
