"""Shared fixtures: databases (SQLite and PostgreSQL), a trust instance, an app client, a fixed clock.

Every storage test runs on both engines. PostgreSQL is used when reachable at
``DATATRUST_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
where it is not, those cases skip with the reason, unless ``DATATRUST_REQUIRE_SYSTEM=1``
(set by ``.ci/run``), which turns every skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance, initialise
from ledger.db import Database, sqlite_url
from migrations import upgrade

PG_URL = os.environ.get("DATATRUST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SYSTEM = os.environ.get("DATATRUST_REQUIRE_SYSTEM") == "1"
FIXED_NOW = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


def _pg_dsn(database: str | None = None) -> str:
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(_pg_dsn(), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip().splitlines()[0]}"


_PG_PROBLEM = _pg_reachable()


def skip_or_fail(reason: str) -> None:
    """Skip for a missing system component, or fail when the CI flag demands it."""
    if REQUIRE_SYSTEM:
        pytest.fail(f"required system component missing (DATATRUST_REQUIRE_SYSTEM=1): {reason}")
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under DATATRUST_REQUIRE_SYSTEM=1 a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SYSTEM and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under DATATRUST_REQUIRE_SYSTEM=1: {report.longrepr}"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "datatrust.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    Database.from_url(url).dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template of each test's database."""
    if _PG_PROBLEM:
        skip_or_fail(_PG_PROBLEM)
    name = f"dt_template_{_worker()}_{os.getpid()}"
    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(_pg_dsn(name).replace("postgresql://", "postgresql+psycopg://"))
    yield name
    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_pg_database(template: str) -> tuple[str, str]:
    """Create an empty migrated PostgreSQL database; return ``(name, url)``."""
    name = f"dt_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, _pg_dsn(name).replace("postgresql://", "postgresql+psycopg://")


def drop_pg_database(name: str) -> None:
    """Drop a database made by :func:`fresh_pg_database`."""
    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, migrated database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "db" / "datatrust.db"
        target.parent.mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    template = request.getfixturevalue("pg_template")
    name, url = fresh_pg_database(template)
    yield url
    drop_pg_database(name)


@pytest.fixture
def sqlite_only_url(tmp_path: Path, sqlite_template: Path) -> str:
    """An empty migrated SQLite database (for tests about SQLite itself)."""
    target = tmp_path / "only" / "datatrust.db"
    target.parent.mkdir()
    shutil.copy(sqlite_template, target)
    return sqlite_url(target.parent)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty directory for a trust."""
    return tmp_path / "trust"


@pytest.fixture
def instance(data_dir: Path, db_url: str) -> Iterator[Instance]:
    """A freshly initialised trust on each database engine."""
    inst = initialise(
        data_dir, name="Test Trust", mission="Testing.", clock=lambda: datetime.now(UTC), database_url=db_url
    )
    yield inst
    inst.close()


@pytest.fixture
def client(instance: Instance) -> Iterator[TestClient]:
    """An HTTP client for the app serving :func:`instance`."""
    with TestClient(create_app(instance)) as test_client:
        yield test_client
