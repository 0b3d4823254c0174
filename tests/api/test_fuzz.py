"""API fuzzing with Schemathesis against the app's own OpenAPI document, in-process on SQLite.

Every operation in ``/openapi.json`` is called with a bounded number of generated requests
(valid and invalid data), each as one of the roles the authorisation policy lets call it,
holding a credential obtained the way that role obtains it: the partner's token from
``/oauth/token`` with its client secret, the individual's from ``/v1/me/sign-in`` with the
access code on a consent receipt, people's tokens for an administrator, a trustee and an
ethics member, and for the public a browser's CSRF pair. So the fuzzing reaches past the
401 and 403 of the policy. For every answer:

* no 5xx;
* every 4xx is ``application/problem+json`` with ``type``, ``title`` and ``status``
  (the exceptions, each with its reason, are in :data:`NOT_PROBLEM_JSON`);
* all of Schemathesis's checks: status code, content type, headers and body conform to the
  document, invalid data is refused, and valid data is not refused except as
  :data:`VALID_BUT_REFUSED` explains.

The run is deterministic (``derandomize``, no example database): it fails the same way on
every machine. Hypothesis derives the examples from the test's source, so editing this file
changes them. ``DATATRUST_FUZZ_EXAMPLES=200`` makes a longer run; with
``DATATRUST_FUZZ_RANDOM=1`` each run draws new examples.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import PositiveDataAcceptanceConfig

from api.app import create_app
from api.auth.sessions import CSRF_COOKIE
from api.authz import POLICY
from api.instance import Instance, initialise
from consent.principals import Role
from tests.factories import (
    ALL_SCOPES,
    admin_principal,
    bearer,
    ethics_principal,
    make_client,
    make_organisation,
    make_person,
    trustee_principal,
)

BASE_URL = "https://testserver"
ORG = "org_fuzz_partner"
ROLES = ("admin", "trustee", "ethics", "partner", "individual", "public")
PROBLEM_JSON = "application/problem+json"
EXAMPLES = int(os.environ.get("DATATRUST_FUZZ_EXAMPLES", "15"))
RANDOM = os.environ.get("DATATRUST_FUZZ_RANDOM") == "1"

# Operations whose errors are not problem+json, and why (each documents what it sends instead).
NOT_PROBLEM_JSON = {
    ("POST", "/oauth/token"): "RFC 6749 §5.2: token endpoint errors are OAuth's own JSON (error, error_description)",
    ("GET", "/auth/link/{token}"): "a page for browsers: a used or unknown sign-in link is a page saying so",
}
# Schema-valid data the app may still refuse, and why: rules JSON Schema cannot state (the
# vocabulary in force, one field against another such as seq < size, a key that must parse, an
# organisation or person that must exist) are 422 problems naming the field; 400 is a bearer-token
# caller asking a browser endpoint for a CSRF token; 429 is the sign-in and comment throttles.
# Anything else -- 413, 415, 5xx -- for valid data still fails the run.
VALID_BUT_REFUSED = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]

CONSENT = {
    "person": {"name": "Fuzz Person", "contact": "fuzz@example.org"},
    "purposes": ["service_delivery.referral"],
    "categories": ["contact"],
    "wording_version": "fuzz-1",
    "wording_text": "May we refer you?",
}


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, from a throwaway trust (Schemathesis needs it when the module is collected)."""
    with tempfile.TemporaryDirectory(prefix="dt_fuzz_schema_") as tmp:
        instance = initialise(
            Path(tmp) / "trust",
            name="Schema",
            mission="Schema.",
            clock=lambda: datetime.now(UTC),
            database_url=f"sqlite:///{Path(tmp) / 'schema.db'}",
        )
        try:
            return create_app(instance).openapi()
        finally:
            instance.close()


OPENAPI = _openapi_document()
schema = schemathesis.openapi.from_dict(OPENAPI)
# The coverage phase would build every boundary case of every operation when this module is
# collected (seconds on each xdist worker, in every run of the suite) and run them all, without
# a bound; the fuzzing phase, positive and negative, stays within max_examples per operation.
schema.config.phases.coverage.enabled = False
schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=VALID_BUT_REFUSED)


@dataclass
class World:
    """The fuzzed app, one credential per role, and each operation's action."""

    app: FastAPI
    instance: Instance
    headers: dict[str, dict[str, str]]
    actions: dict[tuple[str, str], str | None]


def _actions(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(METHOD, path) -> the action its require() dependency declares (None: public by nature)."""
    found: dict[tuple[str, str], str | None] = {}

    def walk(dependant: Any) -> Iterator[str]:
        for dep in dependant.dependencies:
            action = getattr(dep.call, "action", None)
            if isinstance(action, str):
                yield action
            yield from walk(dep)

    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        actions = sorted(set(walk(dependant))) if dependant is not None else []
        for method in route.methods or set():
            found[(method, route.path or "")] = actions[0] if actions else None
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[World]:
    """A trust on SQLite with an administrator, a trustee, an ethics member, a partner client and an individual."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "db").mkdir()
    shutil.copy(sqlite_template, root / "db" / "datatrust.db")
    instance = initialise(
        root / "trust",
        name="Fuzz Trust",
        mission="Fuzzing.",
        clock=lambda: datetime.now(UTC),
        database_url=f"sqlite:///{root / 'db' / 'datatrust.db'}",
    )
    app = create_app(instance)
    headers: dict[str, dict[str, str]] = {}
    people = ((Role.ADMIN, admin_principal), (Role.TRUSTEE, trustee_principal), (Role.ETHICS, ethics_principal))
    for role, principal_of in people:
        person = make_person(instance, roles={role}, username=f"fuzz_{role}")
        headers[str(role)] = bearer(instance, principal_of(person), ttl_seconds=3600)
    make_organisation(instance, ORG, name="Fuzz Partner")
    client_id, secret = make_client(instance, organisation=ORG, scopes=ALL_SCOPES)
    with TestClient(app, base_url=BASE_URL) as client:
        token = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret or ""))
        assert token.status_code == 200, token.text
        headers["partner"] = {"Authorization": f"Bearer {token.json()['access_token']}"}
        recorded = client.post("/v1/consents", json=CONSENT, headers=headers["partner"])
        assert recorded.status_code == 201, recorded.text
        csrf = client.get("/auth/csrf").json()["csrf_token"]  # as the sign-in page's script does
        code = recorded.json()["receipt"]["access_code"]
        signed_in = client.post("/v1/me/sign-in", json={"access_code": code}, headers={"X-CSRF-Token": csrf})
        assert signed_in.status_code == 200, signed_in.text
        headers["individual"] = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        # The public: a browser with no session, holding the CSRF pair every page hands out.
        headers["public"] = {"X-CSRF-Token": csrf, "Cookie": f"{CSRF_COOKIE}={client.cookies[CSRF_COOKIE]}"}
    yield World(app=app, instance=instance, headers=headers, actions=_actions(app))
    instance.close()


def roles_for(world: World, method: str, path: str) -> list[str]:
    """The roles POLICY lets call this operation (every role for the public-by-nature ones, and other methods)."""
    action = world.actions.get((method, path))
    if action is None:
        return list(ROLES)
    rule = POLICY[action]
    if Role.PUBLIC in rule.roles:
        return list(ROLES)
    return [r for r in ROLES if r != "public" and Role(r) in rule.roles]


def role_for(case: schemathesis.Case[Any], roles: list[str]) -> str:
    """One of *roles*, chosen by the generated request itself (so an example replays as the same role)."""
    seed = repr((case.path_parameters, case.query, case.body)).encode()
    return roles[zlib.crc32(seed) % len(roles)]


def assert_problem(method: str, path: str, response: schemathesis.Response) -> None:
    """Every error is problem+json with type, title and status."""
    if response.status_code < 400 or (method, path) in NOT_PROBLEM_JSON:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith(PROBLEM_JSON), f"{method} {path}: {response.status_code} as {content_type!r}"
    body = response.json()
    assert {"type", "title", "status"} <= body.keys(), body
    assert body["status"] == response.status_code


@pytest.mark.xdist_group("fuzz")
def test_the_fuzzed_document_is_the_one_the_app_serves(world: World) -> None:
    """The document fuzzed is exactly what ``/openapi.json`` serves, and POLICY knows every operation's action."""
    with TestClient(world.app, base_url=BASE_URL) as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == OPENAPI
    operations = [(m.upper(), p) for p, ops in OPENAPI["paths"].items() for m in ops]
    assert len(operations) > 50
    assert all((m, p) in world.actions and roles_for(world, m, p) for m, p in operations)


@pytest.mark.slow
@pytest.mark.xdist_group("fuzz")
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
def test_api_fuzz(case: schemathesis.Case[Any], world: World) -> None:
    """No 5xx, errors are problem+json, answers match the document -- for every operation, as its roles."""
    method, path = case.method.upper(), case.path
    role = role_for(case, roles_for(world, method, path))
    headers = world.headers[role]
    response = case.call(base_url=BASE_URL, headers=headers, app=world.app)
    assert response.status_code < 500, f"{method} {path} as {role}: {response.status_code} {response.text[:500]}"
    assert_problem(method, path, response)
    case.validate_response(response, headers=headers, transport_kwargs={"base_url": BASE_URL})


# Requests the fuzzer found answered with a 500, each kept as a plain regression test.
FOUND: list[tuple[str, str, str, dict[str, Any], int]] = [
    # csrf_token() raised RuntimeError: AuthMiddleware issues no CSRF nonce to requests with credentials
    ("partner", "GET", "/auth/csrf", {}, 400),
    ("admin", "GET", "/auth/sign-in", {}, 400),
    # a body that is not JSON reached WithdrawIn.model_validate_json unguarded (pydantic's ValidationError)
    ("individual", "POST", "/v1/me/consents/con_x/withdraw", {"content": b"\x00"}, 422),
    # an unbounded int path parameter overflowed SQLite's INTEGER (OverflowError)
    ("partner", "GET", "/v1/checks/12019697027040556536037376", {}, 422),
    ("partner", "GET", "/v1/checks/12019697027040556536037376/replay", {}, 422),
    # at= in year 1 was formatted as '1-01-01T…' and failed to parse back (ValueError)
    (
        "partner",
        "POST",
        "/v1/checks/dry-run?at=0001-01-01T00:00:00Z",
        {
            "json": {
                "data_categories": ["contact"],
                "operation": "aggregate",
                "purpose": "research",
                "request": "req_00",
                "subjects": ["sub_0"],
            }
        },
        422,
    ),
]


@pytest.mark.xdist_group("fuzz")
@pytest.mark.parametrize("found", FOUND, ids=[f"{m} {u}" for _, m, u, _, _ in FOUND])
def test_what_the_fuzzer_found(world: World, found: tuple[str, str, str, dict[str, Any], int]) -> None:
    """Each is a problem document now, not a 500."""
    role, method, url, kwargs, status = found
    with TestClient(world.app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        response = client.request(method, url, headers=world.headers[role], **kwargs)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.xdist_group("fuzz")
def test_a_405_names_every_method_served_at_the_path(world: World) -> None:
    """Found by the fuzzer's coverage phase: Allow named only the first route's method (GET, not POST)."""
    with TestClient(world.app, base_url=BASE_URL) as client:
        response = client.request("OPTIONS", "/v1/agreements", headers=world.headers["admin"])
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["allow"] == "GET, POST"
        assert (
            client.put("/v1/webhooks/whk_x", headers=world.headers["partner"]).headers["allow"] == "DELETE, GET, PATCH"
        )
