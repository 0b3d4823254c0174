"""Who may call each governance endpoint: one table, every endpoint x every role."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance
from consent.principals import Principal, Scope
from tests.factories import (
    admin_principal,
    bearer,
    ethics_principal,
    individual_principal,
    make_organisation,
    partner_principal,
    trustee_principal,
)

ROLES = ("admin", "trustee", "ethics", "partner", "partner_no_scope", "individual", "public")
EVERYONE = frozenset(ROLES)
ADMIN = frozenset({"admin"})
REVIEWERS = frozenset({"admin", "trustee", "ethics"})
PREFIXES = ("/v1/governance", "/v1/organisations", "/v1/agreements", "/v1/ethics-decisions", "/v1/requests")

# (method, path, action, roles allowed). Paths use well-formed ids that do not exist: an allowed
# call then fails with 404 or 422, a refused one with 401 (public) or 403 naming the action.
MATRIX: list[tuple[str, str, str, frozenset[str]]] = [
    ("GET", "/v1/governance/config", "public.read", EVERYONE),
    ("GET", "/v1/governance/config/history", "public.read", EVERYONE),
    ("PUT", "/v1/governance/config", "trust.configure", ADMIN),
    ("GET", "/v1/governance/members", "public.read", EVERYONE),
    ("POST", "/v1/governance/members", "people.manage", ADMIN),
    ("POST", "/v1/governance/members/person_nobody/removal", "people.manage", ADMIN),
    ("GET", "/v1/organisations", "public.read", EVERYONE),
    ("GET", "/v1/organisations/org_nobody", "public.read", EVERYONE),
    ("POST", "/v1/organisations", "organisations.manage", ADMIN),
    ("POST", "/v1/organisations/org_nobody/suspension", "organisations.manage", ADMIN),
    ("GET", "/v1/agreements", "public.read", EVERYONE),
    ("GET", "/v1/agreements/agr_nothing", "public.read", EVERYONE),
    ("POST", "/v1/agreements", "agreements.manage", ADMIN),
    ("POST", "/v1/agreements/agr_nothing/versions", "agreements.manage", ADMIN),
    ("POST", "/v1/agreements/agr_nothing/signatures", "agreements.sign", frozenset({"admin", "partner"})),
    ("POST", "/v1/agreements/agr_nothing/termination", "agreements.manage", ADMIN),
    ("GET", "/v1/ethics-decisions", "public.read", EVERYONE),
    ("GET", "/v1/ethics-decisions/eth_nothing", "public.read", EVERYONE),
    ("POST", "/v1/ethics-decisions", "ethics.decide", frozenset({"ethics"})),
    ("GET", "/v1/requests", "public.read", EVERYONE),
    ("GET", "/v1/requests/req_nothing", "public.read", EVERYONE),
    ("POST", "/v1/requests", "requests.submit", frozenset({"partner"})),
    ("GET", "/v1/requests/req_nothing/preassessment", "requests.review", REVIEWERS),
    ("GET", "/v1/requests/req_nothing/comments", "requests.review", REVIEWERS),
    ("POST", "/v1/requests/req_nothing/comments", "requests.comment", EVERYONE),
    ("GET", "/v1/requests/req_nothing/conflicts", "public.read", EVERYONE),
    ("POST", "/v1/requests/req_nothing/conflicts", "requests.vote", frozenset({"trustee"})),
    ("GET", "/v1/requests/req_nothing/votes", "requests.review", REVIEWERS),
    ("POST", "/v1/requests/req_nothing/votes", "requests.vote", frozenset({"trustee"})),
    ("POST", "/v1/requests/req_nothing/revocation", "requests.revoke", frozenset({"admin", "trustee"})),
]


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


@pytest.fixture
def web(instance: Instance) -> Iterator[TestClient]:
    """An https client of the app, with the partner's organisation registered."""
    make_organisation(instance, "org_test")
    with TestClient(create_app(instance), base_url="https://testserver") as test_client:
        yield test_client


def _declared(route: Any) -> set[str]:
    found: set[str] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        action = getattr(dep.call, "action", None)
        if isinstance(action, str):
            found.add(action)
        stack.extend(dep.dependencies)
    return found


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_matrix_covers_every_governance_route(instance: Instance) -> None:
    """The table lists every governance route of the app, with the action the route declares."""
    app = create_app(instance)
    declared = {
        (method, route.path or ""): _declared(route)
        for route in iter_route_contexts(app.routes)
        if (route.path or "").startswith(PREFIXES) and getattr(route, "dependant", None) is not None
        for method in (route.methods or {"GET"}) - {"HEAD"}
    }
    table: dict[tuple[str, str], set[str]] = {}
    for method, path, action, _roles in MATRIX:
        template = next(
            (p for m, p in declared if m == method and _matches(p, path)), f"(no route for {method} {path})"
        )
        table[(method, template)] = {action}
    assert table == declared


def _matches(template: str, path: str) -> bool:
    parts, concrete = template.split("/"), path.split("/")
    return len(parts) == len(concrete) and all(
        a == b or (a.startswith("{") and a.endswith("}")) for a, b in zip(parts, concrete, strict=True)
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_governance_role_matrix(instance: Instance, web: TestClient) -> None:
    """For every governance endpoint and role, the call is allowed or refused exactly as the table says."""
    csrf = web.get("/auth/csrf").json()["csrf_token"]
    headers = {
        role: {"X-CSRF-Token": csrf, **(bearer(instance, p) if (p := principal_for(role)) else {})} for role in ROLES
    }
    mismatches: list[str] = []
    for method, path, action, allowed in MATRIX:
        for role in ROLES:
            kwargs: dict[str, Any] = {"headers": headers[role]}
            if method in {"POST", "PUT"}:
                kwargs["json"] = {}
            response = web.request(method, path, **kwargs)
            body = response.json() if response.headers.get("content-type", "").endswith("json") else {}
            refused = response.status_code in {401, 403} and isinstance(body, dict) and body.get("action") == action
            if role != "public" and response.status_code == 401:
                mismatches.append(f"{method} {path} as {role}: credentials refused ({body})")
            elif (role in allowed) == refused:
                mismatches.append(f"{method} {path} as {role}: {response.status_code} {body}")
            elif refused and response.status_code != (401 if role == "public" else 403):
                mismatches.append(f"{method} {path} as {role}: refused with {response.status_code}")
    assert mismatches == []
