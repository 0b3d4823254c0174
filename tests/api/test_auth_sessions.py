"""People signing in: sessions, cookies, CSRF, throttling, one-time links, sign-out and revocation."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import nacl.pwhash
import pytest
from fastapi import Response
from fastapi.testclient import TestClient
from freezegun import freeze_time

from api.app import create_app
from api.auth import service
from api.auth.principal import SESSION_COOKIE
from api.auth.sessions import CSRF_COOKIE, start_individual_session
from api.instance import Instance
from consent.principals import Role
from tests.factories import admin_principal, bearer, make_person
from trust import identity

PASSWORD = "riverside-walks-at-dawn"


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hash with libsodium's minimum Argon2id cost so these tests stay quick (the algorithm is unchanged)."""
    monkeypatch.setattr(identity, "PWHASH_OPSLIMIT", nacl.pwhash.argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(identity, "PWHASH_MEMLIMIT", nacl.pwhash.argon2id.MEMLIMIT_MIN)
    identity._decoy_hash.cache_clear()
    yield
    identity._decoy_hash.cache_clear()


@pytest.fixture
def web(instance: Instance) -> Iterator[TestClient]:
    """A browser-like https client of the app."""
    with TestClient(create_app(instance), base_url="https://testserver") as client:
        yield client


def csrf(client: TestClient) -> str:
    """Fetch a CSRF token for this client's browser (sets the dt_csrf cookie)."""
    token: str = client.get("/auth/csrf").json()["csrf_token"]
    return token


def form_token(html: str) -> str:
    """The CSRF token in a rendered form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str, **extra: str) -> object:
    """Post the sign-in form the way a browser would."""
    page = client.get("/auth/sign-in")
    data = {"username": username, "password": password, "csrf_token": form_token(page.text), **extra}
    return client.post("/auth/sign-in", data=data, follow_redirects=False)


def test_sign_in_form_starts_a_session_with_safe_cookie_flags(instance: Instance, web: TestClient) -> None:
    """A right password starts a session whose cookie is HttpOnly, SameSite=Lax and Secure over https."""
    person_id = make_person(instance, roles={Role.ADMIN}, username="amira", password=PASSWORD)
    response = sign_in(web, "amira", PASSWORD, next="/v1/admin/people")
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/v1/admin/people"  # type: ignore[attr-defined]
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" in cookie
    me = web.get("/auth/session").json()
    assert me["id"] == person_id
    assert me["roles"] == ["admin"]


def test_redirect_after_sign_in_stays_on_this_site(instance: Instance, web: TestClient) -> None:
    """A ``next`` pointing at another site is replaced by the home page."""
    make_person(instance, username="amira", password=PASSWORD)
    response = sign_in(web, "amira", PASSWORD, next="//evil.example/steal")
    assert response.headers["location"] == "/"  # type: ignore[attr-defined]


def test_wrong_password_re_renders_the_form_with_an_error(instance: Instance, web: TestClient) -> None:
    """A browser gets the form back (403) with a plain-language error and no session."""
    make_person(instance, username="amira", password=PASSWORD)
    response = sign_in(web, "amira", "not the password")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert "wrong username or password" in response.text  # type: ignore[attr-defined]
    assert 'role="alert"' in response.text  # type: ignore[attr-defined]
    assert web.get("/auth/session").json()["id"] == "public"


def test_json_sign_in_with_csrf_header(instance: Instance, web: TestClient) -> None:
    """Scripts sign in with JSON and the X-CSRF-Token header."""
    person_id = make_person(instance, username="amira", password=PASSWORD)
    response = web.post(
        "/auth/sign-in", json={"username": "amira", "password": PASSWORD}, headers={"X-CSRF-Token": csrf(web)}
    )
    assert response.json() == {"person": person_id}
    wrong = web.post(
        "/auth/sign-in", json={"username": "amira", "password": "nope nope"}, headers={"X-CSRF-Token": csrf(web)}
    )
    assert wrong.status_code == 403
    assert wrong.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "token",
    [
        None,  # no token at all
        "forged",  # not signed by the trust
        "other-browser",  # a valid token, but for another browser's nonce
    ],
)
def test_state_changing_form_post_without_valid_csrf_token_is_refused(
    instance: Instance, web: TestClient, token: str | None
) -> None:
    """Form posts with a missing, forged or foreign CSRF token get 403 problem+json and change nothing."""
    make_person(instance, username="amira", password=PASSWORD)
    web.get("/auth/sign-in")  # this browser now has its own dt_csrf cookie
    data = {"username": "amira", "password": PASSWORD}
    if token == "forged":
        data["csrf_token"] = "eyJmb3JnZWQiOnRydWV9.Zm9yZ2Vk"
    elif token == "other-browser":
        with TestClient(web.app, base_url="https://testserver") as other:
            data["csrf_token"] = csrf(other)
    response = web.post("/auth/sign-in", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "CSRF" in response.json()["detail"]
    assert SESSION_COOKIE not in web.cookies


def test_cookie_session_needs_csrf_but_bearer_token_does_not(instance: Instance, web: TestClient) -> None:
    """An admin's browser session must send the CSRF token to change state; a bearer-token call need not."""
    make_person(instance, roles={Role.ADMIN}, username="amira", password=PASSWORD)
    sign_in(web, "amira", PASSWORD)
    body = {"username": "tomasz", "display_name": "Tomasz Nowak"}
    refused = web.post("/v1/admin/people", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    created = web.post("/v1/admin/people", json=body, headers={"X-CSRF-Token": csrf(web)})
    assert created.status_code == 201
    with TestClient(web.app, base_url="https://testserver") as api:
        by_token = api.post(
            "/v1/admin/people", json={**body, "username": "tomasz2"}, headers=bearer(instance, admin_principal())
        )
    assert by_token.status_code == 201


def test_brute_force_is_refused_unchecked_then_the_window_passes(
    instance: Instance, web: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 11th wrong password within a minute is refused without checking; the right one works after the window."""
    make_person(instance, username="amira", password=PASSWORD)
    token = csrf(web)
    checks: list[int] = []
    real_verify = nacl.pwhash.argon2id.verify

    def counting_verify(hashed: bytes, password: bytes) -> bool:
        checks.append(1)
        return bool(real_verify(hashed, password))

    monkeypatch.setattr(nacl.pwhash.argon2id, "verify", counting_verify)
    start = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    with freeze_time(start, real_asyncio=True) as clock:
        for attempt in range(10):
            response = web.post(
                "/auth/sign-in",
                json={"username": "amira", "password": f"guess {attempt}"},
                headers={"X-CSRF-Token": token},
            )
            assert response.status_code == 403
            clock.tick(timedelta(seconds=2))
        assert len(checks) == 10
        eleventh = web.post(
            "/auth/sign-in", json={"username": "amira", "password": PASSWORD}, headers={"X-CSRF-Token": token}
        )
        assert eleventh.status_code == 429
        assert eleventh.json()["type"].endswith("/too-many-attempts")
        assert eleventh.headers["retry-after"] == "60"
        assert len(checks) == 10  # refused without checking, even though it was the right password
        clock.move_to(start + timedelta(seconds=18) + service.WINDOW + timedelta(seconds=1))  # last failure + 1 min
        ok = web.post(
            "/auth/sign-in", json={"username": "amira", "password": PASSWORD}, headers={"X-CSRF-Token": token}
        )
        assert ok.status_code == 200
        assert len(checks) == 11


def test_throttling_also_applies_per_address(instance: Instance, web: TestClient) -> None:
    """Spreading guesses over many accounts from one address is throttled too."""
    make_person(instance, username="amira", password=PASSWORD)
    token = csrf(web)
    with freeze_time(datetime(2026, 11, 26, 9, 0, tzinfo=UTC), real_asyncio=True):
        for attempt in range(service.ADDRESS_LIMIT):
            response = web.post(
                "/auth/sign-in",
                json={"username": f"user{attempt}", "password": "guess guess"},
                headers={"X-CSRF-Token": token},
            )
            assert response.status_code == 403
        refused = web.post(
            "/auth/sign-in", json={"username": "amira", "password": PASSWORD}, headers={"X-CSRF-Token": token}
        )
    assert refused.status_code == 429
    assert "your address" in refused.json()["detail"]


def test_failed_sign_ins_are_logged_without_the_password(
    instance: Instance, web: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The log names the account and address of a failure but never the password tried."""
    make_person(instance, username="amira", password=PASSWORD)
    with caplog.at_level(logging.INFO, logger="datatrust.auth"):
        sign_in(web, "amira", "Sekrit-Guess-42")
        sign_in(web, "amira", PASSWORD)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "sign-in failed: account='amira'" in text
    assert "Sekrit-Guess-42" not in text
    assert PASSWORD not in text


def test_sign_out_ends_the_session_on_the_server(instance: Instance, web: TestClient) -> None:
    """After sign-out, replaying the old session cookie gets nothing."""
    make_person(instance, username="amira", password=PASSWORD)
    sign_in(web, "amira", PASSWORD)
    stolen = web.cookies[SESSION_COOKIE]
    response = web.post("/auth/sign-out", data={"csrf_token": csrf(web)}, follow_redirects=False)
    assert response.status_code == 303
    with TestClient(web.app, base_url="https://testserver", cookies={SESSION_COOKIE: stolen}) as replay:
        assert replay.get("/auth/session").json()["id"] == "public"


def test_revoke_sessions_for_ends_every_session_of_a_person(instance: Instance, web: TestClient) -> None:
    """Erasure or removal can end all of someone's sessions at once."""
    person_id = make_person(instance, username="amira", password=PASSWORD)
    with TestClient(web.app, base_url="https://testserver") as phone:
        sign_in(web, "amira", PASSWORD)
        sign_in(phone, "amira", PASSWORD)
        assert phone.get("/auth/session").json()["id"] == person_id
        assert service.revoke_all_sessions(instance, person_id) == 2
        assert phone.get("/auth/session").json()["id"] == "public"
    assert web.get("/auth/session").json()["id"] == "public"


def test_tampered_session_cookie_counts_as_no_session(web: TestClient) -> None:
    """A cookie not signed by the trust is ignored (the request is the public's)."""
    web.cookies.set(SESSION_COOKIE, "made-up.value.sig")
    assert web.get("/auth/session").json()["id"] == "public"


def test_individual_session_is_bound_to_one_subject(instance: Instance, web: TestClient) -> None:
    """start_individual_session signs an individual in with the INDIVIDUAL role for their subject only."""
    response = Response()
    start_individual_session(response, instance, "sub_abc123", datetime.now(UTC), secure=True)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    web.cookies.set(SESSION_COOKIE, cookie.split(";")[0].split("=", 1)[1])
    me = web.get("/auth/session").json()
    assert me["id"] == me["subject"] == "sub_abc123"
    assert me["roles"] == ["individual"]
    assert service.revoke_all_sessions(instance, "sub_abc123") == 1
    assert web.get("/auth/session").json()["id"] == "public"


def test_one_time_link_signs_in_once(instance: Instance, web: TestClient) -> None:
    """The first admin's link shows a confirmation page, signs in on POST, and never works again."""
    person, token = service.first_admin(
        instance, username="admin", display_name="Administrator", email=None, now=datetime.now(UTC)
    )
    page = web.get(f"/auth/link/{token}")
    assert page.status_code == 200
    assert "Sign in as Administrator" in page.text
    used = web.post(f"/auth/link/{token}", data={"csrf_token": form_token(page.text)}, follow_redirects=False)
    assert used.status_code == 303
    assert web.get("/auth/session").json()["id"] == person.id
    again = web.post(f"/auth/link/{token}", data={"csrf_token": csrf(web)}, follow_redirects=False)
    assert again.status_code == 403
    assert web.get(f"/auth/link/{token}").status_code == 403


def test_person_sets_then_changes_a_password(instance: Instance, web: TestClient) -> None:
    """An account made without a password can set one, and must give it to change it later."""
    person, token = service.first_admin(
        instance, username="admin", display_name="Administrator", email=None, now=datetime.now(UTC)
    )
    page = web.get(f"/auth/link/{token}")
    web.post(f"/auth/link/{token}", data={"csrf_token": form_token(page.text)})
    headers = {"X-CSRF-Token": csrf(web)}
    assert web.post("/auth/password", json={"new_password": PASSWORD}, headers=headers).status_code == 204
    wrong = web.post(
        "/auth/password", json={"current_password": "not it at all", "new_password": "x" * 12}, headers=headers
    )
    assert wrong.status_code == 403
    with TestClient(web.app, base_url="https://testserver") as fresh:
        assert sign_in(fresh, "admin", PASSWORD).status_code == 303  # type: ignore[attr-defined]
        assert fresh.get("/auth/session").json()["id"] == person.id


def test_csrf_cookie_is_issued_to_browsers_not_to_token_clients(instance: Instance, web: TestClient) -> None:
    """Browsers get a dt_csrf cookie on first contact; bearer-token API calls do not."""
    first = web.get("/v1/ledger/checkpoint")
    assert any(c.startswith(CSRF_COOKIE + "=") for c in first.headers.get_list("set-cookie"))
    with TestClient(web.app, base_url="https://testserver") as api:
        response = api.get("/auth/session", headers=bearer(instance, admin_principal()))
    assert not any(c.startswith(CSRF_COOKIE + "=") for c in response.headers.get_list("set-cookie"))
