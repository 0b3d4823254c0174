"""An exception no route or handler dealt with: a problem+json 500 with the usual headers, logged with its traceback.

The app is the real one (``create_app``) with a test-only router added, whose routes fail in
the ways a bug would: an exception before the response, a database error that is not an
outage (which the database handler hands on), and an exception halfway through a streamed body.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance
from api.logs import ACCESS_LOGGER
from api.security_headers import API_POLICY

PROBLEM = "application/problem+json"
SECRET_TEXT = "secret-detail-7f3a in /srv/datatrust/internal/module.py"
ALWAYS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}

failing = APIRouter()


@failing.get("/test/boom")
async def boom() -> None:
    """A bug: an exception whose text names internals."""
    raise RuntimeError(SECRET_TEXT)


@failing.post("/test/boom-sync/{token}")
def boom_sync(token: str) -> None:
    """A bug in a sync route (run in the thread pool) under a path whose parameter is a secret."""
    raise KeyError(f"{SECRET_TEXT} {token}")


@failing.get("/test/bad-query")
async def bad_query() -> None:
    """A broken query: a database error that is not an outage, so the database handler lets it through."""
    raise sqlite3.OperationalError(f"no such table: {SECRET_TEXT}")


@failing.get("/test/broken-stream")
async def broken_stream() -> StreamingResponse:
    """A response that starts, then fails before its body is complete."""

    async def body() -> AsyncIterator[bytes]:
        yield b"first part"
        raise RuntimeError(SECRET_TEXT)

    return StreamingResponse(body(), media_type="text/plain")


@pytest.fixture
def app(instance: Instance) -> FastAPI:
    """The real app, plus the failing routes."""
    application = create_app(instance)
    application.include_router(failing)
    return application


@pytest.fixture
def web(app: FastAPI) -> Iterator[TestClient]:
    """A client that would raise any exception reaching the server (none should)."""
    with TestClient(app) as test_client:
        yield test_client


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The request log lines written so far."""
    return [d for d in (json.loads(line) for line in stream.getvalue().splitlines()) if d["logger"] == ACCESS_LOGGER]


def assert_bare_500(response: Any, request_id: str, instance: str) -> None:
    """A problem+json 500 with the security headers and the request id, and nothing about the error."""
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    for name, value in ALWAYS.items():
        assert response.headers[name] == value, name
    assert response.headers["content-security-policy"] == API_POLICY
    assert response.headers["x-request-id"] == request_id
    assert response.json() == {
        "type": "https://datatrust.local/problems/internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": f"the server failed to answer this request; it was logged under request id {request_id}",
        "instance": instance,
        "request_id": request_id,
    }
    for leak in ("secret-detail", "/srv/", ".py", "Traceback", "Error"):
        assert leak not in response.text, leak


def test_unhandled_exception_is_a_problem_with_headers_and_request_id(web: TestClient, json_log: io.StringIO) -> None:
    """The 500 carries the headers and the caller's id; its one log line has the same id and the traceback."""
    response = web.get("/test/boom", headers={"X-Request-ID": "trace-500"})
    assert_bare_500(response, "trace-500", "/test/boom")
    [line] = access_lines(json_log)
    assert (line["request_id"], line["status"], line["level"]) == ("trace-500", 500, "ERROR")
    assert (line["method"], line["path"], line["message"]) == ("GET", "/test/boom", "GET /test/boom 500")
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "in boom" in line["exception"]
    assert f"RuntimeError: {SECRET_TEXT}" in line["exception"]


def test_a_generated_request_id_is_the_one_in_the_body_and_the_log(web: TestClient, json_log: io.StringIO) -> None:
    """Without a caller's id the fresh one is in the header, the problem and the log line alike."""
    response = web.get("/test/boom")
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert_bare_500(response, request_id, "/test/boom")
    assert [line["request_id"] for line in access_lines(json_log)] == [request_id]


def test_secret_path_parameter_stays_out_of_the_problem_and_the_log_line(
    web: TestClient, json_log: io.StringIO
) -> None:
    """A failing sync route under a secret parameter: the problem and the line name the route template."""
    response = web.post("/test/boom-sync/tok_neverechoed", headers={"X-Request-ID": "sync-1"})
    assert_bare_500(response, "sync-1", "/test/boom-sync/{token}")
    assert "tok_neverechoed" not in response.text
    [line] = access_lines(json_log)
    assert (line["path"], line["status"], line["level"]) == ("/test/boom-sync/{token}", 500, "ERROR")
    assert "KeyError" in line["exception"]


def test_a_database_error_that_is_not_an_outage_is_the_same_500(web: TestClient, json_log: io.StringIO) -> None:
    """A broken query is a bug, not a 503: the database handler hands it on, and it ends as the bare 500."""
    response = web.get("/test/bad-query", headers={"X-Request-ID": "db-bug"})
    assert_bare_500(response, "db-bug", "/test/bad-query")
    [line] = access_lines(json_log)
    assert "sqlite3.OperationalError: no such table" in line["exception"]


def test_hsts_is_on_the_500_over_https(app: FastAPI) -> None:
    """Over https the 500 also has Strict-Transport-Security, like every other answer."""
    with TestClient(app, base_url="https://testserver") as https:
        response = https.get("/test/boom", headers={"X-Request-ID": "tls-500"})
    assert_bare_500(response, "tls-500", "/test/boom")
    assert response.headers["strict-transport-security"] == "max-age=31536000"


def test_the_500_is_counted_under_its_route(app: FastAPI, web: TestClient) -> None:
    """The metrics time the failed request under its route template and the 5xx class."""
    web.get("/test/boom")
    web.get("/test/boom")
    text = app.state.metrics.render().decode()
    series = 'datatrust_http_request_duration_seconds_count{method="GET",route="/test/boom",status="5xx"}'
    assert f"{series} 2.0" in text.splitlines()


def test_a_failure_after_the_response_started_is_logged_and_passed_on(app: FastAPI, json_log: io.StringIO) -> None:
    """Once the status has gone out nothing can replace it: the line logs the traceback, the server gets the error."""
    with TestClient(app) as test_client, pytest.raises(RuntimeError, match="secret-detail"):
        test_client.get("/test/broken-stream", headers={"X-Request-ID": "stream-1"})
    [line] = access_lines(json_log)
    assert (line["request_id"], line["status"], line["level"]) == ("stream-1", 200, "ERROR")
    assert f"RuntimeError: {SECRET_TEXT}" in line["exception"]


def test_handled_errors_stay_info_without_a_traceback(web: TestClient, json_log: io.StringIO) -> None:
    """A 404 is an answer, not a failure: its line is INFO and has no exception."""
    assert web.get("/no/such/thing").status_code == 404
    [line] = access_lines(json_log)
    assert (line["status"], line["level"]) == (404, "INFO")
    assert "exception" not in line
