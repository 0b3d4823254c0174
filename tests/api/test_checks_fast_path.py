"""The common good check is answered before routing (``api/routes/checks_fast.py``); all else is the route's.

The fast path must answer exactly as the route does, and must hand every other request (each
refusal and error included) to the route untouched, so that partners get the route's problem
documents. A spy on the route's own ``action_of`` tells which of the two answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from api.auth import principal as principal_module
from api.instance import Instance
from api.routes import checks as checks_route
from api.routes.checks_fast import CheckFastPath
from ledger.errors import UnavailableError
from tests.api.test_checks_api import BODY, PROBLEM, _assert_answer_shape, _check, org_a, story  # noqa: F401
from tests.event_loop import run_on_new_loop
from tests.factories import admin_principal, bearer, partner_principal
from tests.trust.rules_story import Story
from trust.checks import CheckService
from trust.organisations import suspend_organisation

VARYING = {"decision_id", "entry", "as_of", "evaluated_at"}  # what differs between two recordings of one check


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests that reached the route (each one calls the route's ``action_of`` once)."""
    calls: list[int] = []
    real: Callable[..., Any] = checks_route.action_of

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(checks_route, "action_of", spy)
    return calls


def test_a_good_check_is_answered_before_routing_as_the_route_answers(
    client: TestClient,
    org_a: dict[str, str],  # noqa: F811 - the fixture imported above
    routed: list[int],
) -> None:
    """Same status, headers and decision as the route's answer to the same check; recorded and readable."""
    _check(client, org_a)  # the first call confirms the client's standing (in the route), then it is known
    routed.clear()
    fast = _check(client, org_a)
    assert routed == [], "a good check went through the route"
    via_route = _check(client, org_a, dry_run="false")  # any query string goes to the route
    assert routed == [1]
    assert fast.status_code == via_route.status_code == 200
    assert set(fast.headers) - {"x-request-id"} == set(via_route.headers) - {"x-request-id"}
    assert fast.headers["content-type"] == via_route.headers["content-type"] == "application/json"
    answer = fast.json()
    _assert_answer_shape(answer)
    assert {k: v for k, v in answer.items() if k not in VARYING} == {
        k: v for k, v in via_route.json().items() if k not in VARYING
    }
    recorded = client.get(f"/v1/checks/{answer['decision_id']}", headers=org_a)
    assert recorded.status_code == 200
    assert recorded.json()["decision"] == answer["decision"]
    assert recorded.json()["entry"] == answer["entry"]


def test_the_metrics_label_the_fast_answer_with_the_route(
    client: TestClient,
    org_a: dict[str, str],  # noqa: F811
    instance: Instance,
) -> None:
    """The latency metric and the decision counter count a fast answer as the route's."""
    for _ in range(3):
        assert _check(client, org_a).status_code == 200
    text = client.get("/metrics", headers=bearer(instance, admin_principal())).text
    assert 'datatrust_http_request_duration_seconds_count{method="POST",route="/v1/checks",status="2xx"} 3.0' in text
    assert 'datatrust_checks_total{decision="permit"} 3.0' in text


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"headers": {}}, 401),  # no token
        ({"headers": {"Authorization": "Bearer not.a.token"}}, 401),
        ({"scopes": ["consents.write"]}, 403),  # a token without the check scope
        ({"body": {**BODY, "operation": "everything"}}, 422),
        ({"body": {**BODY, "recipient": "org_b"}}, 422),  # another organisation as the recipient
        ({"content": b"purpose=research", "content_type": "application/x-www-form-urlencoded"}, 422),
    ],
    ids=["no-token", "forged-token", "no-check-scope", "bad-operation", "other-recipient", "form-body"],
)
def test_everything_else_is_the_routes(
    client: TestClient,
    instance: Instance,
    story: Story,  # noqa: F811
    change: dict[str, Any],
    status: int,
) -> None:
    """Refusals come from the route (the fast path writes no problem documents), and nothing is recorded."""
    good = bearer(instance, partner_principal("org_a", ["check"]))
    assert _check(client, good).status_code == 200  # the client's standing is known from now on
    headers = change.get("headers", bearer(instance, partner_principal("org_a", change.get("scopes", ["check"]))))
    size = instance.ledger.size()
    if "content" in change:
        response = client.post(
            "/v1/checks", content=change["content"], headers={**headers, "Content-Type": change["content_type"]}
        )
    else:
        response = client.post("/v1/checks", json=change.get("body", BODY), headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert instance.ledger.size() == size


def test_the_first_authorization_header_is_the_one_read(
    client: TestClient,
    instance: Instance,
    org_a: dict[str, str],  # noqa: F811
) -> None:
    """Two Authorization headers, a bad token first: not answered here (the route reads the first, and refuses)."""
    assert _check(client, org_a).status_code == 200  # the client's standing is known from now on
    fast = CheckFastPath(client.app, fastapi_app=cast("FastAPI", client.app))
    good = org_a["Authorization"].encode()
    body = json.dumps(BODY).encode()

    def scope(*authorizations: bytes) -> dict[str, Any]:
        headers = [(b"content-type", b"application/json"), *((b"authorization", a) for a in authorizations)]
        return {"type": "http", "method": "POST", "path": "/v1/checks", "query_string": b"", "headers": headers}

    size = instance.ledger.size()
    assert run_on_new_loop(fast._answer(scope(b"Bearer not.a.token", good), body)) is None
    assert instance.ledger.size() == size
    assert run_on_new_loop(fast._answer(scope(good, b"Bearer not.a.token"), body)) is not None  # the control


def test_a_suspended_partner_is_refused_at_once_though_its_standing_was_known(
    client: TestClient,
    instance: Instance,
    story: Story,  # noqa: F811
) -> None:
    """The fast path trusts only a standing nothing has changed since: a suspension binds the very next check."""
    headers = bearer(instance, partner_principal("org_a", ["check"]))
    assert _check(client, headers).status_code == 200
    assert _check(client, headers).status_code == 200  # answered by the fast path
    suspend_organisation(instance.ledger, org_id="org_a", reason="misconduct", actor="trust", now=datetime.now(UTC))
    refused = _check(client, headers)
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"] == PROBLEM


def test_a_failed_recording_is_answered_by_the_route_with_its_problem(
    client: TestClient,
    org_a: dict[str, str],  # noqa: F811
    instance: Instance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the ledger cannot be written, nothing is recorded and the partner gets the route's 503."""
    assert _check(client, org_a).status_code == 200
    size = instance.ledger.size()

    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        msg = "the ledger could not be written: disk full"
        raise UnavailableError(msg)

    monkeypatch.setattr(CheckService, "decide_recorded", unavailable)
    _assert_the_routes_503(_check(client, org_a), instance, size)


def test_a_standing_that_cannot_be_read_is_answered_by_the_route_with_its_problem(
    client: TestClient,
    org_a: dict[str, str],  # noqa: F811
    instance: Instance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database is down when the standing must be read again: the partner gets the route's 503, not a 500."""
    assert _check(client, org_a).status_code == 200
    size = instance.ledger.size()
    cast("FastAPI", client.app).state.standing.clear()  # forgotten, as a second after it was read

    def unreachable(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, psycopg.OperationalError("connection refused"))

    monkeypatch.setattr(principal_module, "_check_standing", unreachable)
    _assert_the_routes_503(_check(client, org_a), instance, size)


def _assert_the_routes_503(response: Any, instance: Instance, size: int) -> None:
    """The route's 503 problem document, and nothing recorded."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert instance.ledger.size() == size
