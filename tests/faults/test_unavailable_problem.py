"""Which database errors the API answers with 503 problem+json (and Retry-After), and which stay a 500.

The fault tests provoke the real outages; these pin the classification without root or a cluster.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api import problems

OUTAGES: dict[str, BaseException] = {
    "postgresql-down": OperationalError(
        "SELECT 1", {}, psycopg.OperationalError('connection to server at "db.internal.example", port 5432 failed')
    ),
    "postgresql-raw": psycopg.OperationalError("terminating connection due to administrator command"),
    "sqlite-locked": OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")),
    "sqlite-full": OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full")),
    "pool-exhausted": PoolTimeoutError("QueuePool limit of size 10 overflow 20 reached"),
}
BUGS: dict[str, Exception] = {
    "sqlite-no-table": OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: nope")),
    "integrity": IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed: t.id")),
}


def _client(error: BaseException) -> TestClient:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("name", sorted(OUTAGES))
def test_an_outage_is_a_503_problem_with_retry_after(name: str) -> None:
    """Unreachable, restarting, locked or full: 503, Retry-After, a plain detail without hosts or driver text."""
    response = _client(OUTAGES[name]).get("/boom")
    assert response.status_code == 503
    assert response.headers["content-type"] == problems.PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["type"].endswith("/unavailable")
    assert body["instance"] == "/boom"
    assert "db.internal.example" not in body["detail"]
    assert ("full" in body["detail"]) == (name == "sqlite-full")


@pytest.mark.parametrize("name", sorted(BUGS))
def test_a_bad_query_stays_a_500(name: str) -> None:
    """A query that is wrong (not an outage) is not disguised as 'try again later'."""
    response = _client(BUGS[name]).get("/boom")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
