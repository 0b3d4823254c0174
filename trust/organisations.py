"""Organisations: registration and suspension.

Ledger payloads (actor: the admin who recorded it)::

    org.registered  {"organisation": "org_<slug>", "name": "Riverside Food Bank", "kind": "charity"}
    org.suspended   {"organisation": "org_<slug>", "reason": "plain words"}

An organisation id is ``org_<slug>`` chosen at registration (lower-case letters, digits and
underscores) and never reused. A suspended organisation is denied on every check from the
instant its ``org.suspended`` entry is recorded; there is no un-suspension (register anew).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from ledger.service import Ledger
from trust.models import organisations_table

ORG_ID = re.compile(r"^org_[a-z0-9][a-z0-9_]{1,58}$")
ORGANISATION_KINDS = (
    "charity",
    "community_group",
    "council",
    "public_body",
    "university",
    "research_institute",
    "health_provider",
    "company",
    "other",
)
ACTIVE, SUSPENDED = "active", "suspended"


@dataclass(frozen=True, slots=True)
class Organisation:
    """An organisation as the projection records it (``suspended_at`` is a ``format_at`` string)."""

    id: str
    name: str
    kind: str
    status: str
    registered_seq: int
    registered_at: str
    suspended_seq: int | None
    suspended_at: str | None
    suspension_reason: str | None

    def is_active_at(self, at: datetime) -> bool:
        """Whether the organisation was registered and not suspended at *at*."""
        moment = format_at(at)
        return self.registered_at <= moment and (self.suspended_at is None or self.suspended_at > moment)


def _from_row(row: Row[Any]) -> Organisation:
    return Organisation(
        id=row.id,
        name=row.name,
        kind=row.kind,
        status=row.status,
        registered_seq=int(row.registered_seq),
        registered_at=row.registered_at,
        suspended_seq=row.suspended_seq,
        suspended_at=row.suspended_at,
        suspension_reason=row.suspension_reason,
    )


def get_organisation(conn: Connection, org_id: str) -> Organisation | None:
    """The organisation named *org_id*, or None."""
    row = conn.execute(select(organisations_table).where(organisations_table.c.id == org_id)).first()
    return None if row is None else _from_row(row)


def is_organisation_active(conn: Connection, org_id: str, at: datetime) -> bool:
    """Whether *org_id* is registered and was not suspended at or before *at*."""
    org = get_organisation(conn, org_id)
    return org is not None and org.is_active_at(at)


def require_organisation(conn: Connection, org_id: str) -> Organisation:
    """The organisation, or :class:`NotFoundError`."""
    org = get_organisation(conn, org_id)
    if org is None:
        msg = f"organisation {org_id} is not registered"
        raise NotFoundError(msg)
    return org


def require_active(conn: Connection, org_id: str, at: datetime) -> Organisation:
    """The organisation if active at *at*; :class:`ForbiddenError` if suspended."""
    org = require_organisation(conn, org_id)
    if not org.is_active_at(at):
        msg = f"organisation {org_id} is suspended (since {org.suspended_at}): {org.suspension_reason}"
        raise ForbiddenError(msg)
    return org


def list_organisations(conn: Connection) -> list[Organisation]:
    """Every registered organisation, in order of registration."""
    rows = conn.execute(select(organisations_table).order_by(organisations_table.c.registered_seq))
    return [_from_row(row) for row in rows]


def register_organisation(
    ledger: Ledger, *, org_id: str, name: str, kind: str, actor: str, now: datetime
) -> LedgerEntry:
    """Record ``org.registered`` (refused if the id is malformed or already used)."""
    if not ORG_ID.match(org_id):
        msg = f"organisation id {org_id!r} must look like org_<slug> (lower-case letters, digits, underscores)"
        raise ValidationError(msg)
    if kind not in ORGANISATION_KINDS:
        msg = f"organisation kind must be one of {', '.join(ORGANISATION_KINDS)}; got {kind!r}"
        raise ValidationError(msg)
    name = name.strip()
    if not 1 <= len(name) <= 200:  # noqa: PLR2004 - column width
        msg = "organisation name must be 1 to 200 characters"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, object]:
        if get_organisation(conn, org_id) is not None:
            msg = f"organisation {org_id} is already registered"
            raise ConflictError(msg)
        return {"organisation": org_id, "name": name, "kind": kind}

    return ledger.append("org.registered", actor=actor, now=now, prepare=prepare)


def suspend_organisation(ledger: Ledger, *, org_id: str, reason: str, actor: str, now: datetime) -> LedgerEntry:
    """Record ``org.suspended``: every check for the organisation is denied from this instant."""
    reason = reason.strip()
    if not reason:
        msg = "a suspension needs a reason"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, object]:
        org = require_organisation(conn, org_id)
        if org.status == SUSPENDED:
            msg = f"organisation {org_id} is already suspended (since {org.suspended_at})"
            raise InvalidStateError(msg)
        return {"organisation": org_id, "reason": reason}

    return ledger.append("org.suspended", actor=actor, now=now, prepare=prepare)
