"""The authorisation matrix: every route of the full app by every role, checked against ``POLICY``.

The table is generated from the app's route table, so a route added without a
``require(action)`` dependency (and not on the short public allow-list below) fails
:func:`test_every_route_declares_its_action`, and a route whose behaviour disagrees
with ``POLICY`` fails :func:`test_route_role_matrix`.

A refusal *by the policy* is a 401 (public) or 403 (anyone else) whose problem document
names the route's action; anything else -- 200, 404, 422, or a 403 from the domain
about one resource -- means the policy let the request through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.principal import SESSION_COOKIE
from api.auth.sessions import start_individual_session, start_person_session
from api.authz import POLICY, Rule
from api.instance import Instance
from consent.principals import Principal, Role, Scope
from tests.factories import (
    admin_principal,
    bearer,
    ethics_principal,
    individual_principal,
    make_organisation,
    make_person,
    partner_principal,
    trustee_principal,
)

# Routes that are public by nature and therefore carry no require(): documentation, the
# OAuth protocol endpoints (they authenticate clients themselves), static files, and the
# public ledger read API (DESIGN.md "Public read API").
PUBLIC_ROUTES = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/static",
    "/oauth/token",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/v1/ledger/checkpoint",
    "/v1/ledger/verifier-key",
    "/v1/ledger/entries",
    "/v1/ledger/proofs/inclusion",
    "/v1/ledger/proofs/consistency",
}

ROLES = ["admin", "trustee", "ethics", "partner", "partner_no_scope", "individual", "public"]


@dataclass(frozen=True)
class Endpoint:
    """One method of one route and the action it declares."""

    method: str
    path: str
    action: str | None
    param_types: dict[str, str]


def _actions(dependant: Dependant) -> Iterator[str]:
    for dep in dependant.dependencies:
        action = getattr(dep.call, "action", None)
        if isinstance(action, str):
            yield action
        yield from _actions(dep)


def endpoints(app: Any) -> list[Endpoint]:
    """Every (method, path) of the app with the action its require() dependency declares."""
    found: list[Endpoint] = []
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        dependant = getattr(route, "dependant", None)
        actions = sorted(set(_actions(dependant))) if dependant is not None else []
        assert len(actions) <= 1, f"{path} declares several actions: {actions}"
        convertors = getattr(route, "param_convertors", {}) or {}
        types = {name: type(conv).__name__ for name, conv in convertors.items()}
        action = actions[0] if actions else None
        found.extend(Endpoint(m, path, action, types) for m in sorted((route.methods or {"GET"}) - {"HEAD"}))
    return found


def principal_for(role: str) -> Principal | None:
    """The principal playing *role* (None for the public)."""
    return {
        "admin": admin_principal(),
        "trustee": trustee_principal(),
        "ethics": ethics_principal(),
        "partner": partner_principal("org_test", [str(s) for s in Scope]),
        "partner_no_scope": partner_principal("org_test", []),
        "individual": individual_principal("sub_matrixsubject"),
        "public": None,
    }[role]


def expected_allowed(role: str, rule: Rule) -> bool:
    """What POLICY says, computed from its data (not by calling authorise)."""
    if Role.PUBLIC in rule.roles:
        return True
    if role == "public":
        return False
    if role.startswith("partner"):
        if Role.PARTNER not in rule.roles:
            return False
        return rule.scope is None or role == "partner"
    return Role(role) in rule.roles


def concrete(endpoint: Endpoint) -> str:
    """The path with placeholder values for its parameters."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        kind = endpoint.param_types.get(name, "StringConvertor")
        return "1" if kind == "IntegerConvertor" else f"x_{name}"

    return re.sub(r"\{([^}]+)\}", value, endpoint.path)


@pytest.fixture
def app_client(instance: Instance) -> Iterator[TestClient]:
    """An https client of the full app, with the partner's organisation registered."""
    make_organisation(instance, "org_test")
    with TestClient(create_app(instance), base_url="https://testserver") as test_client:
        yield test_client


def test_every_route_declares_its_action(instance: Instance) -> None:
    """Each route has a require(action) naming an action in POLICY, or is on the public allow-list."""
    app = create_app(instance)
    undecided = [
        f"{e.method} {e.path}"
        for e in endpoints(app)
        if e.action is None and not any(e.path == p or e.path.startswith(p + "/") for p in PUBLIC_ROUTES)
    ]
    assert undecided == [], f"routes without an authorisation decision: {undecided}"
    unknown = sorted({e.action for e in endpoints(app) if e.action is not None and e.action not in POLICY})
    assert unknown == []


def test_route_role_matrix(instance: Instance, app_client: TestClient) -> None:
    """For every route and role, the app allows or refuses exactly as POLICY says."""
    csrf = app_client.get("/auth/csrf").json()["csrf_token"]
    headers_for = {
        role: {"X-CSRF-Token": csrf, **(bearer(instance, p) if (p := principal_for(role)) else {})} for role in ROLES
    }
    mismatches: list[str] = []
    checked = 0
    for endpoint in endpoints(app_client.app):
        if endpoint.action is None:
            continue
        rule = POLICY[endpoint.action]
        url = concrete(endpoint)
        for role in ROLES:
            kwargs: dict[str, Any] = {"headers": headers_for[role], "follow_redirects": False}
            if endpoint.method in {"POST", "PUT", "PATCH", "DELETE"}:
                kwargs["json"] = {}
            response = app_client.request(endpoint.method, url, **kwargs)
            checked += 1
            body: dict[str, Any] = {}
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                body = response.json()
            by_policy = response.status_code in {401, 403} and body.get("action") == endpoint.action
            allowed = expected_allowed(role, rule)
            where = f"{endpoint.method} {endpoint.path} as {role}"
            if role != "public" and response.status_code == 401:
                mismatches.append(f"{where}: credentials refused ({body.get('detail')})")
            elif allowed and by_policy:
                mismatches.append(f"{where}: refused, but POLICY[{endpoint.action!r}] allows it")
            elif not allowed and not by_policy:
                mismatches.append(f"{where}: got {response.status_code}, but POLICY[{endpoint.action!r}] refuses it")
            elif not allowed and response.status_code != (401 if role == "public" else 403):
                mismatches.append(f"{where}: refused with {response.status_code}")
    assert mismatches == []
    assert checked >= len(ROLES) * 10


COOKIE_ROLES = [Role.ADMIN, Role.TRUSTEE, Role.ETHICS, Role.INDIVIDUAL]


def _session_cookie(instance: Instance, role: Role) -> str:
    """A signed session cookie value for a fresh person (or individual) holding *role*."""
    response = Response()
    if role is Role.INDIVIDUAL:
        start_individual_session(response, instance, "sub_csrfsubject", datetime.now(UTC))
    else:
        start_person_session(response, instance, make_person(instance, roles={role}), datetime.now(UTC))
    return response.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def test_every_cookie_borne_state_change_needs_a_csrf_token(instance: Instance, app_client: TestClient) -> None:
    """Each state-changing route a browser session may use refuses a request without a CSRF token."""
    cookies = {role: _session_cookie(instance, role) for role in COOKIE_ROLES}
    app_client.get("/auth/csrf")  # the browser has its dt_csrf cookie, but sends no token
    unprotected: list[str] = []
    for endpoint in endpoints(app_client.app):
        if endpoint.action is None or endpoint.method in {"GET", "HEAD", "OPTIONS"}:
            continue
        rule = POLICY[endpoint.action]
        roles = [r for r in COOKIE_ROLES if r in rule.roles or Role.PUBLIC in rule.roles]
        if not roles:
            continue  # only partner machines (bearer tokens) may call it
        app_client.cookies.set(SESSION_COOKIE, cookies[roles[0]])
        response = app_client.request(endpoint.method, concrete(endpoint), json={}, follow_redirects=False)
        if response.status_code != 403 or "CSRF" not in response.json().get("detail", ""):
            unprotected.append(f"{endpoint.method} {endpoint.path} as {roles[0]}: {response.status_code}")
    app_client.cookies.delete(SESSION_COOKIE)
    assert unprotected == []
