"""The console side of identity: ``datatrust init`` bootstraps an admin; ``clients`` and ``people`` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from api.instance import Instance
from tests.factories import make_client_key
from trust.identity import get_client, verify_client_secret

runner = CliRunner()


def invoke(*args: str, data_dir: Path, stdin: str | None = None) -> str:
    """Run ``datatrust`` and return its output, failing on a non-zero exit."""
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_creates_the_first_admin_with_a_one_time_link(tmp_path: Path) -> None:
    """``datatrust init`` prints a sign-in link that signs the first admin in exactly once."""
    data_dir = tmp_path / "trust"
    output = invoke("init", "--name", "Riverside Data Trust", data_dir=data_dir)
    assert "First administrator: admin" in output
    link = re.search(r"http://127\.0\.0\.1:8000(/auth/link/[A-Za-z0-9_-]+)", output)
    assert link is not None
    assert (data_dir / "keys" / "token.key").stat().st_mode & 0o777 == 0o600
    instance = Instance.open(data_dir)
    try:
        with TestClient(create_app(instance), base_url="https://trust.test") as browser:
            page = browser.get(link.group(1))
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            browser.post(link.group(1), data={"csrf_token": token.group(1)})
            assert browser.get("/auth/session").json()["roles"] == ["admin"]
    finally:
        instance.close()
    password = "a long enough passphrase"
    invoke("people", "set-password", "admin", data_dir=data_dir, stdin=f"{password}\n{password}\n")


def test_clients_register_rotate_suspend_and_list(tmp_path: Path) -> None:
    """The operator registers a client (secret shown once), rotates it, lists and suspends it."""
    data_dir = tmp_path / "trust"
    invoke("init", data_dir=data_dir)
    output = invoke(
        "clients",
        "register",
        "--organisation",
        "org_riverside_food_bank",
        "--name",
        "Case system",
        "--scope",
        "check",
        "--scope",
        "consents:write",
        data_dir=data_dir,
    )
    client_id = re.search(r"client_id:\s+(client_\w+)", output)
    first = re.search(r"client_secret:\s+(dts_\S+)", output)
    assert client_id is not None
    assert first is not None
    rotated = re.search(
        r"client_secret:\s+(dts_\S+)", invoke("clients", "rotate", client_id.group(1), data_dir=data_dir)
    )
    assert rotated is not None
    listing = invoke("clients", "list", data_dir=data_dir)
    assert client_id.group(1) in listing
    assert "check consents:write" in listing
    assert first.group(1) not in listing
    invoke("clients", "suspend", client_id.group(1), "--reason", "contract ended", data_dir=data_dir)
    instance = Instance.open(data_dir)
    try:
        with instance.db.engine.connect() as conn:
            assert not verify_client_secret(conn, client_id.group(1), first.group(1))
            client = get_client(conn, client_id.group(1))
        assert client is not None
        assert client.is_suspended
        assert client.credential_version == 2
    finally:
        instance.close()


def test_clients_register_with_a_public_key_file(tmp_path: Path) -> None:
    """A private_key_jwt client is registered from a JWK file and gets no secret."""
    data_dir = tmp_path / "trust"
    invoke("init", data_dir=data_dir)
    _, public = make_client_key()
    key_file = tmp_path / "partner.jwk"
    key_file.write_text(json.dumps(public))
    output = invoke(
        "clients",
        "register",
        "--organisation",
        "org_riverside_food_bank",
        "--name",
        "Research platform",
        "--scope",
        "check",
        "--method",
        "private_key_jwt",
        "--public-key",
        str(key_file),
        data_dir=data_dir,
    )
    assert "client_secret" not in output


def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    """A domain error is reported in one line with a non-zero exit."""
    data_dir = tmp_path / "trust"
    invoke("init", data_dir=data_dir)
    result = runner.invoke(
        app,
        [
            "clients",
            "register",
            "--organisation",
            "org_x1",
            "--name",
            "x",
            "--scope",
            "root",
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: unknown scope")
    assert len(result.output.strip().splitlines()) == 1


def test_people_create_and_link(tmp_path: Path) -> None:
    """``people create`` makes an account and prints its first sign-in link; ``people link`` another."""
    data_dir = tmp_path / "trust"
    invoke("init", data_dir=data_dir)
    output = invoke("people", "create", "tomasz", "--name", "Tomasz Nowak", data_dir=data_dir)
    assert "/auth/link/" in output
    assert "/auth/link/" in invoke("people", "link", "tomasz", data_dir=data_dir)
    assert "tomasz  Tomasz Nowak" in invoke("people", "list", data_dir=data_dir)


def test_seed_identity_records_working_demo_credentials(instance: Instance) -> None:
    """The demo seed's admin can sign in and its partner client can get a token once its organisation exists."""
    from api.seed_identity import seed_identity  # noqa: PLC0415
    from tests.factories import make_organisation  # noqa: PLC0415

    credentials: dict[str, object] = {}
    seed_identity(instance, credentials)
    make_organisation(instance, "org_riverside_food_bank", name="Riverside Food Bank")
    admin = credentials["admin"]
    partner = credentials["partner"]
    trustees = credentials["trustees"]
    assert isinstance(admin, dict)
    assert isinstance(partner, dict)
    assert isinstance(trustees, list)
    assert 3 <= len(trustees) <= 5
    assert {"username", "password", "person_id"} <= set(trustees[0])
    with TestClient(create_app(instance), base_url="https://trust.test") as browser:
        csrf = browser.get("/auth/csrf").json()["csrf_token"]
        signed_in = browser.post(
            "/auth/sign-in",
            json={"username": admin["username"], "password": admin["password"]},
            headers={"X-CSRF-Token": csrf},
        )
        assert signed_in.json() == {"person": admin["person_id"]}
        token = browser.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(partner["client_id"], partner["client_secret"]),
        )
        assert token.status_code == 200, token.text
        assert partner["organisation"] == "org_riverside_food_bank"
