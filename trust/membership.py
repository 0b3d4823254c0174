"""Trustees and ethics-committee members: appointments and removals.

Ledger payloads (actor: the admin who recorded it)::

    trustee.appointed {"person": "person_…", "role": "trustee" | "ethics", "is_chair": bool,
                       "vote_key": "<base64 Ed25519 public key>" | null}
    trustee.removed   {"person": "person_…", "role": "trustee" | "ethics", "reason": "plain words"}

People (accounts, names) belong to ``trust/identity.py``: appointments name ``person_…``
ids only, never a name. ``vote_key`` is the public half of a key the trustee holds
themselves; a vote may carry their signature, which anyone can check against it.

A person holds a role from the instant of appointment until the instant of removal.
Each role has at most one chair at a time; to change chair, remove and re-appoint.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, and_, or_, select

from consent.principals import Role
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, InvalidStateError, ValidationError
from ledger.service import Ledger
from trust.models import members_table

PERSON_ID = re.compile(r"^person_[A-Za-z0-9_-]{1,56}$")
ROLES: dict[str, Role] = {"trustee": Role.TRUSTEE, "ethics": Role.ETHICS}
MemberRole = Literal["trustee", "ethics"]
ED25519_PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Member:
    """One appointment (``removed_at`` is None while the person is in office)."""

    person_id: str
    role: str
    is_chair: bool
    appointed_seq: int
    appointed_at: str
    vote_key: str | None
    removed_seq: int | None
    removed_at: str | None
    removal_reason: str | None


def _from_row(row: Row[Any]) -> Member:
    return Member(
        person_id=row.person_id,
        role=row.role,
        is_chair=bool(row.is_chair),
        appointed_seq=int(row.appointed_seq),
        appointed_at=row.appointed_at,
        vote_key=row.vote_key,
        removed_seq=row.removed_seq,
        removed_at=row.removed_at,
        removal_reason=row.removal_reason,
    )


def _in_office(at: str) -> Any:
    t = members_table.c
    return and_(t.appointed_at <= at, or_(t.removed_at.is_(None), t.removed_at > at))


def active_members(conn: Connection, role: str, at: datetime) -> list[Member]:
    """Everyone holding *role* at *at*, in order of appointment."""
    moment = format_at(at)
    rows = conn.execute(
        select(members_table)
        .where(members_table.c.role == role, _in_office(moment))
        .order_by(members_table.c.appointed_seq)
    )
    return [_from_row(row) for row in rows]


def current_appointment(conn: Connection, person_id: str, role: str, at: datetime) -> Member | None:
    """The appointment by which *person_id* holds *role* at *at*, or None."""
    row = conn.execute(
        select(members_table).where(
            members_table.c.person_id == person_id, members_table.c.role == role, _in_office(format_at(at))
        )
    ).first()
    return None if row is None else _from_row(row)


def roles_of_person(conn: Connection, person_id: str, at: datetime) -> frozenset[Role]:
    """The governance roles (TRUSTEE, ETHICS) *person_id* holds at *at*."""
    rows = conn.execute(
        select(members_table.c.role).where(members_table.c.person_id == person_id, _in_office(format_at(at)))
    )
    return frozenset(ROLES[role] for (role,) in rows if role in ROLES)


def chair_of(conn: Connection, role: str, at: datetime) -> str | None:
    """The person chairing *role* at *at*, or None."""
    chairs = [m.person_id for m in active_members(conn, role, at) if m.is_chair]
    return chairs[0] if chairs else None


def list_members(conn: Connection, *, include_former: bool = False, at: datetime) -> list[Member]:
    """Members in office at *at* (and, if asked, everyone ever appointed), in order of appointment."""
    query = select(members_table).order_by(members_table.c.appointed_seq)
    if not include_former:
        query = query.where(_in_office(format_at(at)))
    return [_from_row(row) for row in conn.execute(query)]


def _check_role(role: str) -> None:
    if role not in ROLES:
        msg = f"role must be trustee or ethics; got {role!r}"
        raise ValidationError(msg)


def _check_person(person_id: str) -> None:
    if not PERSON_ID.match(person_id):
        msg = f"person id {person_id!r} must look like person_…"
        raise ValidationError(msg)


def parse_vote_key(vote_key: str) -> bytes:
    """Decode a base64 Ed25519 public key (32 bytes) or raise :class:`ValidationError`."""
    try:
        raw = base64.b64decode(vote_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = "vote_key must be a base64 Ed25519 public key"
        raise ValidationError(msg) from exc
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        msg = f"vote_key must be 32 bytes of Ed25519 public key; got {len(raw)}"
        raise ValidationError(msg)
    return raw


def appoint(
    ledger: Ledger,
    *,
    person_id: str,
    role: MemberRole | str,
    is_chair: bool,
    actor: str,
    now: datetime,
    vote_key: str | None = None,
) -> LedgerEntry:
    """Record ``trustee.appointed`` (refused if already in office, or if the role already has a chair)."""
    _check_role(role)
    _check_person(person_id)
    if vote_key is not None:
        parse_vote_key(vote_key)

    def prepare(conn: Connection) -> dict[str, object]:
        if current_appointment(conn, person_id, role, now) is not None:
            msg = f"{person_id} already holds the {role} role"
            raise ConflictError(msg)
        if is_chair:
            chair = chair_of(conn, role, now)
            if chair is not None:
                msg = f"{chair} already chairs the {role} members; remove them first"
                raise ConflictError(msg)
        return {"person": person_id, "role": role, "is_chair": is_chair, "vote_key": vote_key}

    return ledger.append("trustee.appointed", actor=actor, now=now, prepare=prepare)


def remove(
    ledger: Ledger, *, person_id: str, role: MemberRole | str, reason: str, actor: str, now: datetime
) -> LedgerEntry:
    """Record ``trustee.removed``: the person stops holding *role* from this instant."""
    _check_role(role)
    reason = reason.strip()
    if not reason:
        msg = "a removal needs a reason"
        raise ValidationError(msg)

    def prepare(conn: Connection) -> dict[str, object]:
        if current_appointment(conn, person_id, role, now) is None:
            msg = f"{person_id} does not hold the {role} role"
            raise InvalidStateError(msg)
        return {"person": person_id, "role": role, "reason": reason}

    return ledger.append("trustee.removed", actor=actor, now=now, prepare=prepare)


def directory(conn: Connection, *, at: datetime, include_former: bool = False) -> list[tuple[Member, str | None]]:
    """Members with their display names (from the identity tables; names never go on the ledger)."""
    from trust.identity import get_person  # noqa: PLC0415 - identity imports this module for roles

    result = []
    for member in list_members(conn, at=at, include_former=include_former):
        person = get_person(conn, member.person_id)
        result.append((member, None if person is None else person.display_name))
    return result
