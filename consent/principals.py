"""Who is acting: principals and roles, as plain types every domain package can use.

A principal is produced at the edge (``api/auth``) from a token, a session cookie or
nothing at all (the public). Domain services receive it as an argument and use it
for resource-level decisions (is this the individual's own consent? is this trustee
recused?); role and scope checks happen once, in ``api/authz.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """The roles of the authorisation model."""

    ADMIN = "admin"
    TRUSTEE = "trustee"
    ETHICS = "ethics"
    PARTNER = "partner"
    INDIVIDUAL = "individual"
    PUBLIC = "public"


class Scope(StrEnum):
    """OAuth 2.0 scopes a partner client may hold."""

    CHECK = "check"
    CONSENTS_WRITE = "consents:write"
    REQUESTS_WRITE = "requests:write"
    AGREEMENTS_SIGN = "agreements:sign"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated (or anonymous) actor.

    * ``id``: ``person_…`` (a signed-in person), ``client_…`` (a partner's machine client),
      ``sub_…`` (an individual signed in with a receipt code) or ``public``.
    * ``organisation``: the partner organisation (``org_…``) a client or staff member acts for.
    * ``subject``: for an individual, the one subject they may see and act for.
    """

    id: str
    roles: frozenset[Role]
    organisation: str | None = None
    subject: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    display_name: str = ""

    def has(self, role: Role) -> bool:
        """Whether the principal holds *role*."""
        return role in self.roles

    @property
    def actor(self) -> str:
        """How the principal is named in ledger entries (never personal data)."""
        return self.id


PUBLIC = Principal(id="public", roles=frozenset({Role.PUBLIC}))
