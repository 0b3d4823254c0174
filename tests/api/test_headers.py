"""Security headers on every response, pages without inline code, and the flags of every cookie."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.auth
from api.app import create_app
from api.auth.principal import SESSION_COOKIE
from api.auth.sessions import CSRF_COOKIE
from api.instance import Instance
from api.pages import TEMPLATES_DIR
from api.routes.pages_public import CONTENT_SECURITY_POLICY
from api.security_headers import API_POLICY
from tests.consent.support import ORG
from tests.factories import DEFAULT_PASSWORD, make_person, partner_bearer

TEMPLATE_DIRS = [TEMPLATES_DIR, Path(api.auth.__file__).with_name("templates")]
CONSENT = {
    "person": {"name": "Priya Shah", "contact": "priya@example.org"},
    "purposes": ["research.social"],
    "categories": ["housing"],
    "wording_version": "v1",
    "wording_hash": "cd" * 32,
}
# One of each kind of response: JSON, a problem document (401, 404, 405, 422), a page, the
# sign-in form, a static file, the Atom feed, a redirect, a probe.
PATHS = [
    "/v1/ledger/checkpoint",
    "/v1/me/consents",
    "/no/such/thing",
    "/v1/checks/not-a-number",
    "/register",
    "/auth/sign-in",
    "/static/style.css",
    "/register/feed.atom",
    "/me",
    "/healthz",
]
ALWAYS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


@pytest.fixture
def https(instance: Instance) -> Iterator[TestClient]:
    """A client of the app that reaches it over https."""
    with TestClient(create_app(instance), base_url="https://testserver") as test_client:
        yield test_client


def cookies_set(response: Any) -> dict[str, dict[str, str | bool]]:
    """Each Set-Cookie of *response* by name, with its attributes (lower-case keys)."""
    found: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            flags = {k: v for k, v in morsel.items() if v}
            found[name] = {"value": morsel.value, **flags}
    return found


def sign_in_with_access_code(client: TestClient, instance: Instance) -> Any:
    """Record a consent, then sign in with its receipt's access code (JSON, with a CSRF token)."""
    given = client.post("/v1/consents", json=CONSENT, headers=partner_bearer(instance, ORG))
    assert given.status_code == 201, given.text
    csrf = client.get("/auth/csrf").json()["csrf_token"]
    code = given.json()["receipt"]["access_code"]
    response = client.post("/v1/me/sign-in", json={"access_code": code}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    return response


# -- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_every_response_has_the_security_headers(client: TestClient, path: str) -> None:
    """JSON, problems, pages, static files and redirects all carry CSP, nosniff, no-referrer and DENY, once each."""
    response = client.get(path, follow_redirects=False)
    for name, value in ALWAYS.items():
        assert response.headers.get_list(name) == [value], (path, name, response.status_code)
    assert len(response.headers.get_list("content-security-policy")) == 1, path
    assert len(response.headers.get_list("x-request-id")) == 1, path
    policy = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "strict-transport-security" not in response.headers  # plain http


def test_api_responses_get_the_allow_nothing_policy(client: TestClient) -> None:
    """JSON and problem+json answers get default-src 'none'."""
    for path in ("/v1/ledger/checkpoint", "/v1/me/consents", "/no/such/thing"):
        assert client.get(path).headers["content-security-policy"] == API_POLICY
    assert API_POLICY.startswith("default-src 'none'")


def test_html_keeps_the_page_policy(client: TestClient) -> None:
    """Pages, the sign-in form and HTML problem pages get the pages' own policy (styles from 'self')."""
    for path in ("/register", "/auth/sign-in", "/me/sign-in"):
        response = client.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path


def test_hsts_only_over_https(https: TestClient, client: TestClient) -> None:
    """Strict-Transport-Security is sent on https responses only."""
    for path in ("/v1/ledger/checkpoint", "/register", "/no/such/thing"):
        assert https.get(path).headers["strict-transport-security"] == "max-age=31536000", path
        assert "strict-transport-security" not in client.get(path).headers, path


def test_api_docs_allow_their_inline_script_by_hash_only(client: TestClient) -> None:
    """/docs and /redoc name the hash of each inline block instead of allowing 'unsafe-inline'."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy, path
        blocks = re.findall(r"<(script|style)>(.*?)</\1>", response.text, re.DOTALL)
        assert blocks, path
        for _kind, text in blocks:
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy, path


def test_templates_have_no_inline_style_or_script() -> None:
    """No template needs 'unsafe-inline': no <style>, style= attribute, inline <script> or on* handler."""
    patterns = (r"<style", r"\sstyle=", r"<script(?![^>]*\ssrc=)", r"\son[a-z]+\s*=")
    templates = [t for directory in TEMPLATE_DIRS for t in sorted(directory.rglob("*.html"))]
    assert len(templates) > 10
    offenders = [f"{t}: {p}" for t in templates for p in patterns if re.search(p, t.read_text(), re.IGNORECASE)]
    assert offenders == []


def test_sign_in_form_is_styled_from_a_static_file(client: TestClient) -> None:
    """The sign-in page links /static/auth.css, which is served as CSS."""
    page = client.get("/auth/sign-in")
    assert '<link rel="stylesheet" href="/static/auth.css">' in page.text
    assert "<style" not in page.text
    sheet = client.get("/static/auth.css")
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in sheet.text


# -- cookies --------------------------------------------------------------------------------------


def test_session_and_csrf_cookies_are_httponly_lax_and_secure_over_https(https: TestClient, instance: Instance) -> None:
    """Over https, the individual's session cookie and the CSRF cookie are HttpOnly, SameSite=Lax and Secure."""
    first = https.get("/auth/csrf")
    csrf_cookie = cookies_set(first)[CSRF_COOKIE]
    response = sign_in_with_access_code(https, instance)
    session = cookies_set(response)[SESSION_COOKIE]
    for cookie in (csrf_cookie, session):
        assert cookie["httponly"] is True
        assert str(cookie["samesite"]).lower() == "lax"
        assert cookie["secure"] is True
        assert cookie["path"] == "/"


def test_cookies_are_not_secure_over_plain_http(client: TestClient, instance: Instance) -> None:
    """On plain http (a local demo) the cookies still are HttpOnly and SameSite=Lax, but cannot be Secure."""
    response = sign_in_with_access_code(client, instance)
    session = cookies_set(response)[SESSION_COOKIE]
    assert session["httponly"] is True
    assert str(session["samesite"]).lower() == "lax"
    assert "secure" not in session


def test_a_persons_session_cookie_has_the_same_flags(https: TestClient, instance: Instance) -> None:
    """A trustee's password sign-in sets the same HttpOnly, SameSite=Lax, Secure session cookie."""
    make_person(instance, username="flag_tester")
    csrf = https.get("/auth/csrf").json()["csrf_token"]
    response = https.post(
        "/auth/sign-in",
        json={"username": "flag_tester", "password": DEFAULT_PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code in {200, 204, 303}, response.text
    session = cookies_set(response)[SESSION_COOKIE]
    assert (session["httponly"], str(session["samesite"]).lower(), session["secure"]) == (True, "lax", True)


def test_signing_out_clears_the_cookie_with_secure_over_https(https: TestClient, instance: Instance) -> None:
    """The cookie that ends a session is marked Secure too over https (the middleware adds what is missing)."""
    sign_in_with_access_code(https, instance)
    csrf = https.get("/auth/csrf").json()["csrf_token"]
    response = https.post("/auth/sign-out", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    cleared = cookies_set(response)[SESSION_COOKIE]
    assert cleared["value"] == ""
    assert cleared["secure"] is True
    assert cleared["httponly"] is True
