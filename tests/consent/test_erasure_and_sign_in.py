"""Erasure leaves no readable key behind; receipt-code and password sign-ins are throttled separately."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth import service as auth_service
from consent import access_codes
from ledger.models import vault_keys_table, vault_records_table
from tests.api.test_me import csrf, give, sign_in
from tests.consent.support import ORG
from tests.factories import DEFAULT_PASSWORD, make_person, partner_bearer


def _sealed(instance, subject: str) -> tuple[bytes, list[bytes]]:
    with instance.db.engine.connect() as conn:
        key = conn.execute(select(vault_keys_table.c.sealed_key).where(vault_keys_table.c.subject == subject))
        texts = conn.execute(select(vault_records_table.c.ciphertext).where(vault_records_table.c.subject == subject))
        return bytes(key.scalar_one()), [bytes(t) for (t,) in texts]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # reads SQLite's files (PostgreSQL: a VACUUM)
def test_erasure_leaves_the_key_in_no_database_file(instance, client):
    """After POST /v1/me/erasure the sealed key and ciphertexts are in neither the database nor its log."""
    partner = partner_bearer(instance, ORG)
    alice = give(client, partner)
    give(client, partner, person={"name": "Joe Bloggs", "contact": "joe@example.org"})
    key, texts = _sealed(instance, alice["subject"])
    folder = Path(instance.db.engine.url.database or "").parent
    files = sorted(folder.glob("datatrust.db*"))
    assert any(key in f.read_bytes() for f in files)  # the test can see the key while it exists
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 200
    done = client.post("/v1/me/erasure", json={"confirm": True}, headers=csrf(client))
    assert done.status_code == 200, done.text
    for blob in [key, *texts]:
        assert not any(blob in f.read_bytes() for f in folder.glob("datatrust.db*")), "erased bytes left on disk"
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 403


def test_erasure_on_either_engine_leaves_nothing_readable(instance, client):
    """The erased subject's vault rows are gone on both engines, and the other person's details still read."""
    partner = partner_bearer(instance, ORG)
    alice = give(client, partner)
    joe = give(client, partner, person={"name": "Joe Bloggs", "contact": "joe@example.org"})
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 200
    assert client.post("/v1/me/erasure", json={"confirm": True}, headers=csrf(client)).status_code == 200
    with instance.db.engine.connect() as conn:
        rows = conn.execute(select(vault_records_table).where(vault_records_table.c.subject == alice["subject"]))
        assert rows.all() == []
        assert not instance.vault.has_key(conn, alice["subject"])
        assert instance.vault.read(conn, joe["subject"]) == {"name": "Joe Bloggs", "contact": "joe@example.org"}


def _password_sign_in(client: TestClient, password: str):
    return client.post("/auth/sign-in", json={"username": "amira", "password": password}, headers=csrf(client))


def test_mistyped_codes_do_not_lock_trustees_out_of_password_sign_in(instance, client, monkeypatch):
    """Failed receipt codes from an address count against code sign-in only, not a trustee's password."""
    monkeypatch.setattr(auth_service, "ADDRESS_LIMIT", 3)
    make_person(instance, username="amira")
    partner = partner_bearer(instance, ORG)
    alice = give(client, partner)
    for _ in range(3):
        assert sign_in(client, access_codes.new_code()).status_code == 403
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 429  # codes: throttled
    assert _password_sign_in(client, DEFAULT_PASSWORD).status_code == 200  # the trustee: not affected


def test_failed_passwords_do_not_lock_individuals_out_of_code_sign_in(instance, client, monkeypatch):
    """Failed passwords from an address count against password sign-in only, not receipt codes."""
    monkeypatch.setattr(auth_service, "ADDRESS_LIMIT", 3)
    monkeypatch.setattr(auth_service, "ACCOUNT_LIMIT", 100)  # only the per-address limit is in play
    make_person(instance, username="amira")
    partner = partner_bearer(instance, ORG)
    alice = give(client, partner)
    for _ in range(3):
        assert _password_sign_in(client, "wrong password").status_code == 403
    assert _password_sign_in(client, DEFAULT_PASSWORD).status_code == 429  # passwords: throttled
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 200  # the individual: not affected


def test_a_good_code_does_not_reset_the_count_of_failures(instance, client, monkeypatch):
    """A valid code (codes can be used again) never clears the failures that lead to throttling."""
    monkeypatch.setattr(auth_service, "ADDRESS_LIMIT", 3)
    partner = partner_bearer(instance, ORG)
    alice = give(client, partner)
    for _ in range(2):
        assert sign_in(client, access_codes.new_code()).status_code == 403
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 200
    assert sign_in(client, access_codes.new_code()).status_code == 403
    assert sign_in(client, alice["receipt"]["access_code"]).status_code == 429
