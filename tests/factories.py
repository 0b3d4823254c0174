"""Plain functions that make people, clients, principals and tokens for tests.

Typical use::

    headers = bearer(instance, admin_principal())
    client.post("/v1/...", json=..., headers=headers)

A partner token is refused unless its organisation is registered and active, so
register it first: ``make_organisation(instance, "org_test")`` (or use
:func:`partner_bearer`, which does both).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import nacl.pwhash
from joserfc.jwk import OKPKey

from api.auth.tokens import issue_access_token
from api.instance import Instance
from consent.principals import Principal, Role, Scope
from trust import identity
from trust.identity import create_person, register_client

ALL_SCOPES = frozenset(str(s) for s in Scope)
DEFAULT_PASSWORD = "correct horse battery staple"


@contextmanager
def _cheap_password_hashing() -> Iterator[None]:
    """Hash test passwords with libsodium's minimum Argon2id cost (same algorithm, much faster)."""
    saved = identity.PWHASH_OPSLIMIT, identity.PWHASH_MEMLIMIT
    identity.PWHASH_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MIN
    identity.PWHASH_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MIN
    try:
        yield
    finally:
        identity.PWHASH_OPSLIMIT, identity.PWHASH_MEMLIMIT = saved


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def make_person(
    instance: Instance,
    *,
    roles: Iterable[Role] = (),
    username: str | None = None,
    password: str | None = DEFAULT_PASSWORD,
    display_name: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> str:
    """Create a person; ADMIN makes them an administrator, TRUSTEE/ETHICS appoints them. Returns the id."""
    roles = set(roles)
    username = username or f"user_{secrets.token_hex(4)}"
    with instance.db.write_engine.begin() as conn, _cheap_password_hashing():
        person_id = create_person(
            conn,
            username=username,
            password=password,
            display_name=display_name or username.replace("_", " ").title(),
            email=email,
            is_admin=Role.ADMIN in roles,
            now=_now(now),
        )
    for role in sorted(roles & {Role.TRUSTEE, Role.ETHICS}):
        from trust.membership import appoint  # noqa: PLC0415 - governance is optional for identity tests

        appoint(instance.ledger, person_id=person_id, role=str(role), is_chair=False, actor="trust", now=_now(now))
    return person_id


def make_organisation(
    instance: Instance, org_id: str = "org_test", *, name: str = "Test Organisation", kind: str = "charity"
) -> str:
    """Register *org_id* unless it already is; return it."""
    from trust.organisations import get_organisation, register_organisation  # noqa: PLC0415

    with instance.db.engine.connect() as conn:
        exists = get_organisation(conn, org_id) is not None
    if not exists:
        register_organisation(instance.ledger, org_id=org_id, name=name, kind=kind, actor="trust", now=_now(None))
    return org_id


def bearer(
    instance: Instance, principal: Principal, *, now: datetime | None = None, ttl_seconds: int = 900
) -> dict[str, str]:
    """An ``Authorization`` header carrying a valid access token for *principal*."""
    token = issue_access_token(instance, principal, now=_now(now), ttl_seconds=ttl_seconds)
    return {"Authorization": f"Bearer {token}"}


def partner_principal(
    org: str = "org_test", scopes: Iterable[str] = ALL_SCOPES, *, client_id: str | None = None
) -> Principal:
    """A partner organisation's machine client holding *scopes*."""
    return Principal(
        id=client_id or f"client_{org.removeprefix('org_')}",
        roles=frozenset({Role.PARTNER}),
        organisation=org,
        scopes=frozenset(str(s) for s in scopes),
    )


def partner_bearer(instance: Instance, org: str = "org_test", scopes: Iterable[str] = ALL_SCOPES) -> dict[str, str]:
    """Register *org* if needed and return a partner token header for it."""
    make_organisation(instance, org)
    return bearer(instance, partner_principal(org, scopes))


def individual_principal(subject: str) -> Principal:
    """An individual signed in for *subject* (as after a receipt access code)."""
    return Principal(id=subject, roles=frozenset({Role.INDIVIDUAL}), subject=subject)


def admin_principal(person_id: str = "person_admin") -> Principal:
    """An administrator."""
    return Principal(id=person_id, roles=frozenset({Role.ADMIN}))


def trustee_principal(person_id: str = "person_trustee") -> Principal:
    """A trustee (appoint the person with ``make_person(..., roles={Role.TRUSTEE})`` where it matters)."""
    return Principal(id=person_id, roles=frozenset({Role.TRUSTEE}))


def ethics_principal(person_id: str = "person_ethics") -> Principal:
    """A member of the ethics committee."""
    return Principal(id=person_id, roles=frozenset({Role.ETHICS}))


def make_client_key() -> tuple[OKPKey, dict[str, Any]]:
    """A fresh Ed25519 key pair for a private_key_jwt client: ``(private key, public JWK)``."""
    key = OKPKey.generate_key("Ed25519", private=True)
    public = {k: v for k, v in key.as_dict(private=False).items() if k in {"kty", "crv", "x"}}
    return key, public


def make_client(
    instance: Instance,
    *,
    organisation: str = "org_test",
    scopes: Iterable[str] = ALL_SCOPES,
    method: str = "client_secret_basic",
    public_jwk: dict[str, Any] | None = None,
    name: str = "Test partner system",
    now: datetime | None = None,
) -> tuple[str, str | None]:
    """Register a partner client: ``(client_id, secret)`` (secret None for private_key_jwt)."""
    if method == "private_key_jwt" and public_jwk is None:
        _, public_jwk = make_client_key()
    return register_client(
        instance.ledger,
        organisation=organisation,
        name=name,
        scopes=list(scopes),
        auth_method=method,
        public_jwk=public_jwk,
        actor="trust",
        now=_now(now),
    )
