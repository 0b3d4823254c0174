"""Secrets never reach the logs: a real ``datatrust serve`` is driven through every way secrets travel.

The demo trust is seeded first (``datatrust demo --seed-only``, whose own output is not the
server's log), then ``datatrust serve`` runs on a free port with its standard output and error
captured to a file. The test signs in with an individual's access code (JSON and form), with
passwords (right and wrong), gets OAuth tokens with client credentials, registers and rotates a
client, follows a one-time sign-in link, uses bearer tokens, and sends tokens and secrets where
they do not belong (query strings, a bad ``Authorization`` header). Then no secret it saw -- nor
the key files' contents, in hex or base64 -- may appear in the log, while the log must hold one
JSON line per request (so the test cannot pass by logging nothing).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.keys import auth_keys
from api.instance import Instance
from api.logs import ACCESS_LOGGER, PROJECT_LOGGERS, configure_logging
from consent import access_codes
from tests.consent.support import ORG
from tests.factories import partner_bearer

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-c", "from api.cli import main; main()"]
STARTUP_SECONDS = 60


def encodings(raw: bytes) -> set[str]:
    """*raw* as it could be written down: hex (both cases) and base64 (standard and URL-safe, padded or not)."""
    forms = {raw.hex(), raw.hex().upper()}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update({encoded, encoded.rstrip("=")})
    return forms


def b64decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding."""
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def key_file_secrets(data_dir: Path) -> set[str]:
    """The private keys of a data directory in every written form, and the cookie key derived from them."""
    keys = data_dir / "keys"
    found: set[str] = set()
    log_key = (keys / "log.key").read_text().strip()
    found.add(log_key)
    seed_part = log_key.split("+", 4)[4]  # PRIVATE+KEY+<name>+<key id>+<base64>: the base64 may hold '+' too
    found.add(seed_part)
    found |= encodings(b64decode_any(seed_part)[1:])  # the Ed25519 seed after its algorithm byte
    found |= encodings((keys / "vault.key").read_bytes())
    token_key = json.loads((keys / "token.key").read_text())
    found.add(token_key["d"])
    found |= encodings(b64decode_any(token_key["d"]))
    found |= encodings(auth_keys(data_dir).cookie_secret)
    return found


def jwt_secrets(token: str) -> set[str]:
    """A bearer token, and its signature on its own (a log that cut the token short would still leak it)."""
    return {token, token.rsplit(".", 1)[-1]}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``datatrust serve`` and where its output goes."""

    base: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    secrets: set[str] = field(default_factory=set)

    def stop(self) -> str:
        """Stop the server the way Ctrl-C does and return everything it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo trust, seeded, then served by ``datatrust serve`` with its output in a file."""
    root = tmp_path_factory.mktemp("secrets")
    data_dir = root / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATATRUST_")}
    seeded = subprocess.run(
        [*CLI, "demo", "--seed-only", "--data-dir", str(data_dir)],
        capture_output=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr.decode(errors="replace")
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Server(f"http://127.0.0.1:{port}", data_dir, log, process)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(running.base + "/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"datatrust serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield running
    finally:
        running.stop()


def csrf_for(client: httpx.Client) -> str:
    """This browser's CSRF token (the client keeps the dt_csrf cookie)."""
    token = client.get("/auth/csrf").json()["csrf_token"]
    return str(token)


def drive(server: Server) -> set[str]:
    """Use every secret the demo trust has, the ways a browser and a partner would; return every secret seen."""
    creds: dict[str, Any] = json.loads((server.data_dir / "demo-credentials.json").read_text())
    seen: set[str] = set()
    partner = creds["partner"]
    seen.add(partner["client_secret"])
    seen |= {creds["admin"]["password"], *(t["password"] for t in creds["trustees"])}
    for person in creds["individuals"]:
        seen |= {person["access_code"], access_codes.normalise(person["access_code"])}

    # An individual signs in with the access code on their receipt: JSON (for a token), then a form.
    with httpx.Client(base_url=server.base) as browser:
        csrf = csrf_for(browser)
        seen.add(csrf)
        code = creds["individuals"][0]["access_code"]
        signed_in = browser.post("/v1/me/sign-in", json={"access_code": code}, headers={"X-CSRF-Token": csrf})
        assert signed_in.status_code == 200, signed_in.text
        individual_token = signed_in.json()["access_token"]
        seen |= jwt_secrets(individual_token)
        seen |= {c.value for c in browser.cookies.jar if c.value}
        assert browser.get("/v1/me/consents").status_code == 200
        form_code = creds["individuals"][1]["access_code"]
        form = browser.post("/me/sign-in", data={"access_code": form_code, "csrf_token": csrf})
        assert form.status_code in {200, 303}, form.text
        seen |= {c.value for c in browser.cookies.jar if c.value}
        wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
        seen.add(wrong)
        assert browser.post("/v1/me/sign-in", json={"access_code": wrong}, headers={"X-CSRF-Token": csrf}).is_error

    with httpx.Client(base_url=server.base) as api:
        bearer = {"Authorization": f"Bearer {individual_token}"}
        assert api.get("/v1/me/consents", headers=bearer).status_code == 200
        # Tokens where they do not belong: the query string, and a Basic header on the API.
        assert api.get("/v1/me/consents", params={"access_token": individual_token}).status_code == 401
        assert api.get("/no/such/path", params={"token": individual_token, "code": code}).status_code == 404
        basic = httpx.BasicAuth(partner["client_id"], partner["client_secret"])
        assert api.get("/v1/me/consents", auth=basic).status_code == 401
        tampered = individual_token[:-4] + ("AAAA" if not individual_token.endswith("AAAA") else "BBBB")
        seen |= jwt_secrets(tampered)
        assert api.get("/v1/me/consents", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401

        # The partner gets a token with client credentials and asks for a check.
        issued = api.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "check"}, auth=basic)
        assert issued.status_code == 200, issued.text
        partner_token = issued.json()["access_token"]
        seen |= jwt_secrets(partner_token)
        check = {
            "purpose": "research.social",
            "data_categories": ["housing"],
            "operation": "aggregate",
            "request": "req_unknown",
            "subjects": ["sub_nobody"],
        }
        answered = api.post("/v1/checks", json=check, headers={"Authorization": f"Bearer {partner_token}"})
        assert answered.status_code in {200, 404, 409, 422}, answered.text
        wrong_secret = httpx.BasicAuth(partner["client_id"], partner["client_secret"] + "x")
        seen.add(partner["client_secret"] + "x")
        refused = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=wrong_secret)
        assert refused.status_code == 401, refused.text
        form_secret = api.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": partner["client_id"],
                "client_secret": partner["client_secret"],
            },
        )
        assert form_secret.is_error or "access_token" in form_secret.json()

    # A trustee: a wrong password, then the right one. The admin registers and rotates a client,
    # and makes a one-time sign-in link that is then used.
    with httpx.Client(base_url=server.base) as desk:
        csrf = csrf_for(desk)
        trustee = creds["trustees"][0]
        bad = desk.post(
            "/auth/sign-in",
            json={"username": trustee["username"], "password": trustee["password"] + "!"},
            headers={"X-CSRF-Token": csrf},
        )
        seen.add(trustee["password"] + "!")
        assert bad.status_code == 403, bad.text
        good = desk.post(
            "/auth/sign-in",
            data={"username": trustee["username"], "password": trustee["password"], "csrf_token": csrf},
        )
        assert good.status_code in {200, 303}, good.text
        seen |= {c.value for c in desk.cookies.jar if c.value}

    with httpx.Client(base_url=server.base) as admin:
        csrf = csrf_for(admin)
        headers = {"X-CSRF-Token": csrf}
        admin_creds = creds["admin"]
        login = {"username": admin_creds["username"], "password": admin_creds["password"]}
        assert admin.post("/auth/sign-in", json=login, headers=headers).status_code == 200
        seen |= {c.value for c in admin.cookies.jar if c.value}
        client = {"organisation": partner["organisation"], "name": "Second system", "scopes": ["check"]}
        registered = admin.post("/v1/admin/clients", json=client, headers=headers)
        assert registered.status_code == 201, registered.text
        seen.add(registered.json()["client_secret"])
        client_id = registered.json()["client_id"]
        rotated = admin.post(f"/v1/admin/clients/{client_id}/rotate", json={}, headers=headers)
        assert rotated.status_code == 200, rotated.text
        seen.add(rotated.json()["client_secret"])
        trustee_id = creds["trustees"][1]["person_id"]
        link = admin.post(f"/v1/admin/people/{trustee_id}/sign-in-link", headers=headers)
        assert link.status_code == 201, link.text
        path = link.json()["path"]
        seen.add(path.rsplit("/", 1)[-1])
        assert admin.get("/metrics").status_code == 200

    with httpx.Client(base_url=server.base) as newcomer:
        csrf = csrf_for(newcomer)
        assert newcomer.get(path).status_code == 200
        used = newcomer.post(path, data={"csrf_token": csrf})
        assert used.status_code in {200, 303}, used.text
        seen |= {c.value for c in newcomer.cookies.jar if c.value}
    return seen


def test_no_secret_reaches_the_server_log(server: Server) -> None:
    """After every kind of secret has been used, none of them -- nor any key file -- is in the log."""
    seen = drive(server)
    secrets = {s for s in seen | key_file_secrets(server.data_dir) if len(s) >= 8}
    output = server.stop()
    requests = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in requests if r.get("logger") == ACCESS_LOGGER]
    assert len(access) >= 20, output
    assert all(r["request_id"] and r["path"].startswith("/") for r in access)
    assert {"/v1/me/sign-in", "/oauth/token", "/auth/link/{token}", "/no/such/path"} <= {r["path"] for r in access}
    assert any(r["logger"] == "datatrust.auth" and "sign-in failed" in r["message"] for r in requests), output
    leaked = sorted(s for s in secrets if s in output)
    assert leaked == [], f"secrets in the server log: {[s[:6] + '…' for s in leaked]}"
    assert "?" not in "".join(r["path"] for r in access)


def test_no_secret_reaches_the_log_in_process(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same logging set-up in this process: signing in with an access code and using the token logs no secret."""
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored afterwards, with the level
    monkeypatch.setattr(root, "level", root.level)
    for name in PROJECT_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    configure_logging(stream)
    with TestClient(create_app(instance)) as client:
        given = client.post(
            "/v1/consents",
            json={
                "person": {"name": "Priya Shah", "contact": "priya@example.org"},
                "purposes": ["research.social"],
                "categories": ["housing"],
                "wording_version": "v1",
                "wording_hash": "cd" * 32,
            },
            headers=partner_bearer(instance, ORG),
        )
        code = given.json()["receipt"]["access_code"]
        csrf = client.get("/auth/csrf").json()["csrf_token"]
        signed_in = client.post("/v1/me/sign-in", json={"access_code": code}, headers={"X-CSRF-Token": csrf})
        token = signed_in.json()["access_token"]
        client.get("/v1/me/consents", params={"access_token": token})
        client.get("/v1/me/consents", headers={"Authorization": f"Bearer {token}"})
        cookies = {c.value for c in client.cookies.jar if c.value}
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert sum(1 for d in lines if d["logger"] == ACCESS_LOGGER) >= 5, output
    secrets = {code, access_codes.normalise(code), token, token.rsplit(".", 1)[-1], csrf, *cookies}
    assert sorted(s for s in secrets if s in output) == []
