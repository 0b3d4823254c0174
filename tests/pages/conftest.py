"""A seeded trust shared by the page tests, on SQLite and on PostgreSQL.

Seeding the demo story takes a couple of seconds, so the page tests share one seeded trust
per database engine (per xdist worker). Tests that change something use resources no other
test looks at (their own request, trustee, person or organisation), so their order does not
matter.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance, initialise
from tests.conftest import drop_pg_database, fresh_pg_database
from tests.pages.support import World, seed_world

HTML = {"Accept": "text/html,application/xhtml+xml"}
TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Instance, World]]:
    """A trust seeded with the demo story and some checks: ``(instance, world)``."""
    base = tmp_path_factory.mktemp(f"pages-{request.param}")
    drop: str | None = None
    if request.param == "sqlite":
        (base / "db").mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), base / "db" / "datatrust.db")
        url = f"sqlite:///{base / 'db' / 'datatrust.db'}"
    else:
        drop, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    instance = initialise(
        base / "trust",
        name="Riverside Community Data Trust",
        mission="Help Riverside's charities learn what works, without anyone losing control of their data.",
        clock=lambda: datetime.now(UTC),
        database_url=url,
    )
    try:
        yield instance, seed_world(instance)
    finally:
        instance.close()
        if drop is not None:
            drop_pg_database(drop)


@pytest.fixture
def app_client(seeded: tuple[Instance, World]) -> Iterator[TestClient]:
    """A browser-like client (asks for HTML) of the seeded trust, signed in as nobody."""
    with TestClient(create_app(seeded[0]), headers=HTML) as client:
        yield client


def csrf(client: TestClient) -> str:
    """A CSRF token for this client's browser (its ``dt_csrf`` cookie is set on the way)."""
    token: str = client.get("/auth/csrf", headers={"Accept": "application/json"}).json()["csrf_token"]
    return token


def sign_in_person(client: TestClient, username: str, password: str) -> None:
    """Sign a person in through the sign-in form."""
    response = client.post(
        "/auth/sign-in",
        data={"username": username, "password": password, "csrf_token": csrf(client), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def sign_in_individual(client: TestClient, code: str) -> None:
    """Sign an individual in with a receipt access code, through the page's form."""
    response = client.post(
        "/me/sign-in", data={"access_code": code, "csrf_token": csrf(client), "next": "/me"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/me"


def title_of(html: str) -> str:
    """The page's <title> text."""
    found = TITLE.search(html)
    assert found is not None, "the page has no <title>"
    return found.group(1).strip()


@pytest.fixture
def world(seeded: tuple[Instance, World]) -> World:
    """What the seeded trust holds."""
    return seeded[1]


@pytest.fixture
def trust(seeded: tuple[Instance, World]) -> Instance:
    """The seeded trust instance."""
    return seeded[0]
