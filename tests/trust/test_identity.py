"""People and partner clients: accounts, passwords, roles, client registration, rotation, suspension."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from api.instance import Instance
from consent.principals import Role
from ledger.db import Database
from ledger.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from ledger.projection import diff_tables, rebuild
from migrations import upgrade
from tests.factories import make_client_key, make_organisation
from trust import identity
from trust.identity import (
    authenticate_password,
    check_client_standing,
    create_person,
    get_client,
    get_person,
    register_client,
    roles_of,
    rotate_client_secret,
    suspend_client,
    verify_client_secret,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


PASSPHRASE = "a long passphrase"


def _person(instance: Instance, username: str = "amira", *, password: str | None = PASSPHRASE, **kw: object) -> str:
    with instance.db.write_engine.begin() as conn:
        return create_person(
            conn,
            username=username,
            password=password,
            display_name=str(kw.get("display_name", "Amira Haddad")),
            email=kw.get("email"),  # type: ignore[arg-type]
            is_admin=bool(kw.get("is_admin", False)),
            now=NOW,
        )


def test_create_person_stores_only_an_argon2id_hash(instance: Instance) -> None:
    """The password is stored as an Argon2id hash, never in clear, and the person reads back without it."""
    person_id = _person(instance, email="Amira@Example.org")
    assert person_id.startswith("person_")
    with instance.db.engine.connect() as conn:
        row = conn.execute(select(identity.people).where(identity.people.c.id == person_id)).one()
        person = get_person(conn, person_id)
    assert bytes(row.password_hash).startswith(b"$argon2id$")
    assert b"a long passphrase" not in bytes(row.password_hash)
    assert person == identity.Person(person_id, "amira", "Amira Haddad", "amira@example.org", is_admin=False)


def test_usernames_and_emails_are_unique(instance: Instance) -> None:
    """A second account with the same username or e-mail address is a conflict."""
    _person(instance, email="a@example.org")
    with pytest.raises(ConflictError, match="username 'amira'"):
        _person(instance)
    with pytest.raises(ConflictError, match="e-mail address"):
        _person(instance, "other", email="A@example.org")


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("Bad Name!", "a long passphrase", "username"),  # spaces and punctuation
        ("ok", "short", "at least 10"),  # too short a password
    ],
)
def test_create_person_validates(instance: Instance, username: str, password: str, message: str) -> None:
    """Malformed usernames and short passwords are refused."""
    with pytest.raises(ValidationError, match=message):
        _person(instance, username, password=password)


def test_authenticate_password_does_not_reveal_whether_the_account_exists(instance: Instance) -> None:
    """Right password gives the id; a wrong password and an unknown username fail with the same words."""
    person_id = _person(instance)
    with instance.db.engine.connect() as conn:
        assert authenticate_password(conn, username="AMIRA", password="a long passphrase", now=NOW) == person_id
        with pytest.raises(ForbiddenError) as wrong:
            authenticate_password(conn, username="amira", password="wrong passphrase", now=NOW)
        with pytest.raises(ForbiddenError) as unknown:
            authenticate_password(conn, username="nobody", password="wrong passphrase", now=NOW)
    assert wrong.value.detail == unknown.value.detail == identity.BAD_CREDENTIALS


def test_account_without_password_cannot_sign_in_with_one(instance: Instance) -> None:
    """A person invited by link or OpenID Connect has no password to guess."""
    _person(instance, password=None)
    with instance.db.engine.connect() as conn, pytest.raises(ForbiddenError):
        authenticate_password(conn, username="amira", password="", now=NOW)


def test_roles_combine_admin_flag_and_governance_appointments(instance: Instance) -> None:
    """An admin account is ADMIN; appointment as trustee adds TRUSTEE from that instant."""
    person_id = _person(instance, is_admin=True)
    from trust.membership import appoint  # noqa: PLC0415

    appoint(instance.ledger, person_id=person_id, role="trustee", is_chair=False, actor="trust", now=NOW)
    with instance.db.engine.connect() as conn:
        assert roles_of(conn, person_id, NOW + timedelta(seconds=1)) == {Role.ADMIN, Role.TRUSTEE}
        assert roles_of(conn, person_id, NOW - timedelta(days=1)) == {Role.ADMIN}
        assert roles_of(conn, "person_nobody", NOW) == frozenset()


def test_register_client_records_no_secret_on_the_ledger(instance: Instance) -> None:
    """client.registered names the client, organisation, scopes and method; the secret is only hashed."""
    client_id, secret = register_client(
        instance.ledger,
        organisation="org_riverside",
        name="Case system",
        scopes=["check", "consents:write"],
        auth_method="client_secret_basic",
        public_jwk=None,
        actor="person_admin",
        now=NOW,
    )
    assert secret is not None
    assert secret.startswith("dts_")
    entry = instance.ledger.get(instance.ledger.size() - 1)
    assert entry.kind == "client.registered"
    assert entry.payload == {
        "client": client_id,
        "organisation": "org_riverside",
        "name": "Case system",
        "scopes": ["check", "consents:write"],
        "auth_method": "client_secret_basic",
        "public_jwk": None,
        "key_thumbprint": None,
        "credential_version": 1,
    }
    assert secret.encode() not in entry.body
    with instance.db.engine.connect() as conn:
        stored = conn.execute(select(identity.client_secrets.c.secret_hash)).scalar_one()
        assert secret.encode() not in bytes(stored)
        assert verify_client_secret(conn, client_id, secret)
        assert not verify_client_secret(conn, client_id, secret + "x")
        assert not verify_client_secret(conn, "client_unknown", secret)


def test_private_key_client_records_its_public_key_and_thumbprint(instance: Instance) -> None:
    """A private_key_jwt client has no secret; its public key and RFC 7638 thumbprint are on the ledger."""
    key, public = make_client_key()
    client_id, secret = register_client(
        instance.ledger,
        organisation="org_riverside",
        name="Research platform",
        scopes=["check"],
        auth_method="private_key_jwt",
        public_jwk=public,
        actor="trust",
        now=NOW,
    )
    assert secret is None
    with instance.db.engine.connect() as conn:
        client = get_client(conn, client_id)
    assert client is not None
    assert client.public_jwk == public
    assert client.key_thumbprint == key.thumbprint()


@pytest.mark.parametrize(
    ("method", "jwk", "message"),
    [
        ("private_key_jwt", None, "must register a public key"),  # no key at all
        ("private_key_jwt", {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "key type 'RSA'"),  # RSA is not offered
        ("private_key_jwt", {"kty": "OKP", "crv": "X25519", "x": "abc"}, "curve 'X25519'"),  # not a signing curve
        ("private_key_jwt", {"kty": "OKP", "crv": "Ed25519", "x": "abc", "d": "secret"}, "private key"),  # leaked d
        ("client_secret_basic", {"kty": "OKP", "crv": "Ed25519", "x": "abc"}, "do not register a key"),
        ("client_secret_jwt", None, "not supported"),  # not one of our methods
    ],
)
def test_register_client_validates_the_method_and_key(
    instance: Instance, method: str, jwk: dict[str, str] | None, message: str
) -> None:
    """Bad keys and methods are refused before anything is appended."""
    size = instance.ledger.size()
    with pytest.raises(ValidationError, match=message):
        register_client(
            instance.ledger,
            organisation="org_riverside",
            name="x",
            scopes=["check"],
            auth_method=method,
            public_jwk=jwk,
            actor="trust",
            now=NOW,
        )
    assert instance.ledger.size() == size


def test_unknown_scope_is_refused(instance: Instance) -> None:
    """Only the four scopes of the trust can be granted."""
    with pytest.raises(ValidationError, match="unknown scope"):
        register_client(
            instance.ledger,
            organisation="org_riverside",
            name="x",
            scopes=["admin"],
            auth_method="client_secret_basic",
            public_jwk=None,
            actor="trust",
            now=NOW,
        )


def test_rotation_replaces_the_secret_and_bumps_the_credential_version(instance: Instance) -> None:
    """After rotation the old secret fails, the new one works, and the entry holds no secret."""
    client_id, old = register_client(
        instance.ledger,
        organisation="org_riverside",
        name="x",
        scopes=["check"],
        auth_method="client_secret_basic",
        public_jwk=None,
        actor="trust",
        now=NOW,
    )
    new = rotate_client_secret(instance.ledger, client_id=client_id, actor="trust", now=NOW)
    assert old is not None
    assert new is not None
    entry = instance.ledger.get(instance.ledger.size() - 1)
    assert entry.kind == "client.rotated"
    assert new.encode() not in entry.body
    with instance.db.engine.connect() as conn:
        assert not verify_client_secret(conn, client_id, old)
        assert verify_client_secret(conn, client_id, new)
        client = get_client(conn, client_id)
    assert client is not None
    assert client.credential_version == 2
    with pytest.raises(NotFoundError):
        rotate_client_secret(instance.ledger, client_id="client_nope", actor="trust", now=NOW)


def test_suspended_client_and_suspended_organisation_lose_standing(instance: Instance) -> None:
    """A suspended client, or a client of a suspended or unknown organisation, may not act."""
    make_organisation(instance, "org_riverside")
    client_id, _ = register_client(
        instance.ledger,
        organisation="org_riverside",
        name="x",
        scopes=["check"],
        auth_method="client_secret_basic",
        public_jwk=None,
        actor="trust",
        now=NOW,
    )
    later = datetime.now(UTC) + timedelta(seconds=1)
    with instance.db.engine.connect() as conn:
        assert check_client_standing(conn, client_id, at=later).client_id == client_id
        with pytest.raises(ForbiddenError, match="were rotated"):
            check_client_standing(conn, client_id, at=later, credential_version=0)
    from trust.organisations import suspend_organisation  # noqa: PLC0415

    suspend_organisation(instance.ledger, org_id="org_riverside", reason="misconduct", actor="trust", now=later)
    with instance.db.engine.connect() as conn, pytest.raises(ForbiddenError, match="organisation org_riverside"):
        check_client_standing(conn, client_id, at=later + timedelta(seconds=1))
    suspend_client(instance.ledger, client_id=client_id, reason="key leaked", actor="trust", now=later)
    with instance.db.engine.connect() as conn, pytest.raises(ForbiddenError, match="is suspended"):
        check_client_standing(conn, client_id, at=later)
    from ledger.errors import InvalidStateError  # noqa: PLC0415

    with pytest.raises(InvalidStateError):
        suspend_client(instance.ledger, client_id=client_id, reason="again", actor="trust", now=later)


def test_client_projection_replays_from_the_ledger(instance: Instance, tmp_path: object) -> None:
    """Rebuilding oauth_clients from the entries alone gives the live table."""
    _, public = make_client_key()
    client_id, _ = register_client(
        instance.ledger,
        organisation="org_riverside",
        name="x",
        scopes=["check"],
        auth_method="private_key_jwt",
        public_jwk=public,
        actor="trust",
        now=NOW,
    )
    _, public2 = make_client_key()
    rotate_client_secret(instance.ledger, client_id=client_id, public_jwk=public2, actor="trust", now=NOW)
    suspend_client(instance.ledger, client_id=client_id, reason="ended", actor="trust", now=NOW)
    url = f"sqlite:///{tmp_path}/replay.db"
    upgrade(url)
    target = Database.from_url(url)
    try:
        with instance.db.engine.connect() as live, target.write_engine.begin() as conn:
            rebuild(live, conn, instance.ledger.projectors)
        with instance.db.engine.connect() as live, target.engine.connect() as conn:
            assert diff_tables(live, conn, identity.CLIENT_TABLES) == []
            row = conn.execute(select(identity.clients)).one()
    finally:
        target.dispose()
    assert json.loads(row.public_jwk) == public2
    assert row.is_suspended
