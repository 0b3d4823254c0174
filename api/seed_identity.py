"""Demo accounts and the demo partner client, written to ``demo-credentials.json`` by the demo seed.

People are created here; appointing them as trustees is the governance seed's job
(``trust.membership.appoint``), and the partner organisation
``org_riverside_food_bank`` is registered there too. Passwords and the client secret
are fresh random values on every seed, and appear only in the credentials file.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from api.auth import service
from api.instance import Instance
from consent.principals import Scope
from trust.identity import register_client

DEMO_PARTNER_ORGANISATION = "org_riverside_food_bank"
DEMO_ACTOR = "trust"

DEMO_ADMIN = ("admin", "Morgan Ellis", "morgan.ellis@riverside-trust.example")
DEMO_TRUSTEES = [
    ("amira.haddad", "Amira Haddad", "amira.haddad@riverside-trust.example"),
    ("tomasz.nowak", "Tomasz Nowak", "tomasz.nowak@riverside-trust.example"),
    ("grace.okafor", "Grace Okafor", "grace.okafor@riverside-trust.example"),
    ("eleanor.price", "Eleanor Price", "eleanor.price@riverside-trust.example"),
]


def _passphrase() -> str:
    return f"riverside-{secrets.token_hex(3)}-{secrets.token_hex(3)}"


def seed_identity(instance: Instance, credentials: dict[str, Any], *, now: datetime | None = None) -> None:
    """Create the demo admin, trustees (not yet appointed) and the partner client; record their credentials."""
    moment = now or datetime.now(UTC)
    username, name, email = DEMO_ADMIN
    password = _passphrase()
    admin = service.create_account(
        instance, username=username, display_name=name, email=email, password=password, is_admin=True, now=moment
    )
    credentials["admin"] = {"username": admin.username, "password": password, "person_id": admin.id}
    trustees: list[dict[str, str]] = []
    for username, name, email in DEMO_TRUSTEES:
        password = _passphrase()
        person = service.create_account(
            instance, username=username, display_name=name, email=email, password=password, is_admin=False, now=moment
        )
        trustees.append({"username": person.username, "password": password, "person_id": person.id})
    credentials["trustees"] = trustees
    client_id, secret = register_client(
        instance.ledger,
        organisation=DEMO_PARTNER_ORGANISATION,
        name="Riverside Food Bank case-management system",
        scopes=[str(s) for s in Scope],
        auth_method="client_secret_basic",
        public_jwk=None,
        actor=DEMO_ACTOR,
        now=moment,
    )
    credentials["partner"] = {
        "client_id": client_id,
        "client_secret": secret,
        "organisation": DEMO_PARTNER_ORGANISATION,
        "token_endpoint": "/oauth/token",
        "scopes": sorted(str(s) for s in Scope),
    }
