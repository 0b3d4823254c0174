"""Limits on requests: body size (413), JSON nesting depth (422), and lengths of lists and strings (422).

Driven over HTTP against the full app. Every refusal is a problem document and records nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance
from api.limits import BODY_LIMITS, DEFAULT_MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth_exceeds
from consent.principals import Role
from tests.event_loop import run_on_new_loop
from tests.factories import admin_principal, bearer, ethics_principal, make_person, partner_bearer

PROBLEM = "application/problem+json"
ORG = "org_limits_partner"
CONSENT = {
    "person": {"name": "Ada Limit", "contact": "ada@example.org"},
    "purposes": ["service_delivery.referral"],
    "categories": ["contact"],
    "wording_version": "limits-1",
    "wording_text": "May we refer you?",
}


@pytest.fixture
def web(instance: Instance) -> Iterator[TestClient]:
    """An https client of the full app."""
    with TestClient(create_app(instance), base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture
def partner(instance: Instance) -> dict[str, str]:
    """A partner's token with every scope."""
    return partner_bearer(instance, ORG)


@pytest.fixture
def admin(instance: Instance) -> dict[str, str]:
    """An administrator's token."""
    return bearer(instance, admin_principal(make_person(instance, roles={Role.ADMIN})))


def _padded(body: dict[str, Any], size: int) -> bytes:
    """*body* as JSON followed by whitespace up to *size* bytes: still valid JSON, and still a valid request."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def _assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/" + slug)
    assert problem["status"] == status
    return problem


# -- body size ------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_records_nothing(instance: Instance, web: TestClient, partner) -> None:
    """A consent padded past 1 MiB is refused with 413 before the route runs; the same consent under it is recorded."""
    size = instance.ledger.size()
    refused = web.post("/v1/consents", content=_padded(CONSENT, DEFAULT_MAX_BODY_BYTES + 1), headers=_json(partner))
    problem = _assert_problem(refused, 413, "payload-too-large")
    assert problem["limit"] == DEFAULT_MAX_BODY_BYTES
    assert str(DEFAULT_MAX_BODY_BYTES) in problem["detail"]
    assert instance.ledger.size() == size

    accepted = web.post("/v1/consents", content=_padded(CONSENT, DEFAULT_MAX_BODY_BYTES), headers=_json(partner))
    assert accepted.status_code == 201, accepted.text[:500]
    assert instance.ledger.size() > size


def test_a_streamed_body_is_counted_as_it_arrives(instance: Instance, web: TestClient, partner) -> None:
    """A chunked upload declares no length: the bytes are counted, and the first one over the limit ends it."""
    size = instance.ledger.size()
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield json.dumps(CONSENT).encode()
        for _ in range(40):  # 40 x 64 KiB of whitespace: 2.5 MiB in all
            sent.append(1)
            yield b" " * 65536

    response = web.post("/v1/consents", content=chunks(), headers=_json(partner))
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _assert_problem(response, 413, "payload-too-large")
    assert instance.ledger.size() == size


def test_a_declared_length_over_the_limit_is_refused_unread(instance: Instance) -> None:
    """A Content-Length over the limit is answered at once: not one byte of the body is read."""
    app = create_app(instance)
    messages: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        pytest.fail("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/v1/consents",
        "raw_path": b"/v1/consents",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"5000000")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "state": {},
    }
    run_on_new_loop(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert (b"content-type", PROBLEM.encode()) in start["headers"]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert json.loads(body)["limit"] == DEFAULT_MAX_BODY_BYTES


def test_an_access_request_may_be_larger(web: TestClient, partner) -> None:
    """POST /v1/requests names up to 100 000 subjects, so it takes 8 MiB; past that it is 413 too."""
    limit = BODY_LIMITS[("POST", "/v1/requests")]
    assert limit > DEFAULT_MAX_BODY_BYTES
    draft = {"title": "Too big?"}  # incomplete: the route answers, naming what is missing
    within = web.post("/v1/requests", content=_padded(draft, 2 * DEFAULT_MAX_BODY_BYTES), headers=_json(partner))
    problem = _assert_problem(within, 422, "validation-error")
    assert "purpose" in {e["field"] for e in problem["errors"]}
    over = web.post("/v1/requests", content=_padded(draft, limit + 1), headers=_json(partner))
    assert _assert_problem(over, 413, "payload-too-large")["limit"] == limit


# -- JSON depth -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_too_deeply_is_a_clear_422(instance: Instance, web: TestClient, admin, depth: int) -> None:
    """Nesting past the limit -- just past it, or far past any parser's recursion -- is one clear problem."""
    seq = instance.ledger.size()
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # inside {"governance": {"x": …}}: depth + 1 levels in all
    body = '{"governance": {"x": ' + nested + "}}"
    response = web.put("/v1/governance/config", content=body.encode(), headers=_json(admin))
    problem = _assert_problem(response, 422, "json-too-deep")
    assert problem["limit"] == MAX_JSON_DEPTH
    assert problem["errors"] == [{"field": "body", "message": problem["detail"]}]
    assert f"more than {MAX_JSON_DEPTH} deep" in problem["detail"]
    assert instance.ledger.size() == seq


def test_json_within_the_depth_limit_reaches_the_route(web: TestClient, admin) -> None:
    """At the limit (and with brackets inside strings, which are not nesting) the route itself answers."""
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    body = '{"governance": {"x": ' + nested + ', "note": "' + "[{" * 500 + '"}}'
    response = web.put("/v1/governance/config", content=body.encode(), headers=_json(admin))
    problem = _assert_problem(response, 422, "validation-error")
    assert "governance" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (b'{"a": [[1]]}', False),
        (b'"[[[[[["', False),
        (b'{"a": "\\"[[[[[[", "b": [[]]}', False),  # an escaped quote does not end the string
        (b"[[[[[[[", True),  # cut short: still too deep
        (b'[{"a": [{"b": [[]]}]}]', True),
    ],
)
def test_the_depth_scanner(body: bytes, deeper: bool) -> None:
    """Only brackets outside strings count."""
    assert json_depth_exceeds(body, 5) is deeper


# -- lists and strings ----------------------------------------------------------------------


@dataclass(frozen=True)
class Overlong:
    """A request with one list or string over its limit, and the field the 422 must name."""

    role: str
    method: str
    path: str
    body: dict[str, Any]
    field: str


def _ethics_decision(obligations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"outcome": "approved", "obligations": obligations}


OVERLONG = [
    Overlong("partner", "POST", "/v1/consents", {**CONSENT, "purposes": ["research"] * 51}, "purposes"),
    Overlong("partner", "POST", "/v1/consents", {**CONSENT, "recipients": ["org_a"] * 201}, "recipients"),
    Overlong("partner", "POST", "/v1/consents", {**CONSENT, "wording_text": "x" * 20_001}, "wording_text"),
    Overlong("partner", "POST", "/v1/checks", {"data_categories": ["contact"] * 51}, "data_categories"),
    Overlong("partner", "POST", "/v1/requests", {"categories": ["contact"] * 51}, "categories"),
    Overlong("partner", "POST", "/v1/webhooks", {"event_types": ["subject.erased"] * 7}, "event_types"),
    Overlong("admin", "POST", "/v1/admin/clients", {"scopes": ["check"] * 11}, "scopes"),
    Overlong("admin", "POST", "/v1/admin/clients", {"public_jwk": {f"k{n}": n for n in range(17)}}, "public_jwk"),
    Overlong("admin", "POST", "/v1/admin/people", {"username": "u" * 65}, "username"),
    Overlong("admin", "POST", "/v1/admin/people", {"email": "u" * 321}, "email"),
    Overlong("admin", "POST", "/v1/agreements", {"geography": ["GB"] * 51}, "geography"),
    Overlong("admin", "POST", "/v1/agreements", {"geography": ["G" * 65]}, "geography.0"),
    Overlong("admin", "PUT", "/v1/governance/config", {"governance": {f"t{n}": {} for n in range(33)}}, "governance"),
    Overlong(
        "ethics",
        "POST",
        "/v1/ethics-decisions",
        _ethics_decision([{"type": "operations", "value": ["aggregate"] * 51}]),
        "obligations.0.value",
    ),
    Overlong(
        "ethics",
        "POST",
        "/v1/ethics-decisions",
        _ethics_decision([{"type": "min_cohort", "value": 20}] * 51),
        "obligations",
    ),
]


@pytest.mark.parametrize("case", OVERLONG, ids=[f"{c.method} {c.path} {c.field}" for c in OVERLONG])
def test_overlong_lists_and_strings_are_422_naming_the_field(
    instance: Instance, web: TestClient, partner, admin, case: Overlong
) -> None:
    """Each list and string in a request has a maximum length; one over it is a 422 naming the field."""
    headers = {"partner": partner, "admin": admin}.get(case.role) or bearer(
        instance, ethics_principal(make_person(instance, roles={Role.ETHICS}))
    )
    seq = instance.ledger.size()
    response = web.request(case.method, case.path, json=case.body, headers=headers)
    problem = _assert_problem(response, 422, "validation-error")
    fields = {e["field"] for e in problem["errors"]}
    assert any(f == case.field or f.startswith(case.field + ".") for f in fields), fields
    assert instance.ledger.size() == seq


# -- every request field has a bound --------------------------------------------------------

_UNBOUNDED_PATTERN = re.compile(r"[+*]|\{\d*,\}")


def _bounded_string(node: dict[str, Any]) -> bool:
    pattern = node.get("pattern")
    return bool(
        {"maxLength", "enum", "const"} & node.keys()
        or node.get("format") in {"date", "date-time"}
        or (pattern is not None and not _UNBOUNDED_PATTERN.search(pattern))
    )


def _unbounded(node: dict[str, Any], where: str, components: dict[str, Any], out: list[str]) -> None:
    """Append to *out* every array, string, number or open object under *node* that has no upper bound."""
    while "$ref" in node:
        node = components[node["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            _unbounded(sub, where, components, out)
    kind = node.get("type")
    if kind == "array":
        if "maxItems" not in node:
            out.append(f"{where}: list without maxItems")
        if "items" in node:
            _unbounded(node["items"], where + "[]", components, out)
    elif kind == "string" and not _bounded_string(node):
        out.append(f"{where}: string without maxLength")
    elif kind in {"integer", "number"}:
        if "maximum" not in node or "minimum" not in node:
            out.append(f"{where}: {kind} without minimum and maximum")
    elif kind == "object" or "properties" in node:
        for name, sub in node.get("properties", {}).items():
            _unbounded(sub, f"{where}.{name}", components, out)
        extra = node.get("additionalProperties", "properties" not in node)
        if extra not in {False, None} and "maxProperties" not in node:
            out.append(f"{where}: open object without maxProperties")


def test_every_request_field_has_a_bound(web: TestClient) -> None:
    """Every parameter and body field in the OpenAPI document has a maximum (length, items, properties or value)."""
    document = web.get("/openapi.json").json()
    components = document["components"]["schemas"]
    unbounded: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                where = f"{label} {parameter['in']} {parameter['name']}"
                _unbounded(parameter.get("schema", {}), where, components, unbounded)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _unbounded(media.get("schema", {}), f"{label} body", components, unbounded)
    assert unbounded == []
