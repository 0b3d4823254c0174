"""Tables and queries of the sign-in machinery: sessions, failed attempts, one-time links, used JWT ids.

None of this is a fact about the trust, so none of it is on the ledger. Secrets are
never stored: sessions, links and assertion ids are kept as SHA-256 hashes, and the
rate limiter keys on a hash of the account name and of the address (a mistyped
username is sometimes a password).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Connection, Index, Integer, String, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from ledger.entry import format_at
from ledger.errors import ForbiddenError


class SessionRow(SQLModel, table=True):
    """A signed-in browser session (the cookie holds the id; this row holds its hash)."""

    __tablename__ = "auth_sessions"

    id_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    principal_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))


class SignInFailureRow(SQLModel, table=True):
    """One failed sign-in, keyed by a hash of the account name or of the address."""

    __tablename__ = "auth_sign_in_failures"
    __table_args__ = (Index("ix_auth_sign_in_failures_key_at", "key_hash", "at"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    at: str = Field(sa_column=Column(String(32), nullable=False))


class SignInLinkRow(SQLModel, table=True):
    """A one-time sign-in link (``datatrust init`` prints one for the first admin)."""

    __tablename__ = "auth_sign_in_links"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    person_id: str = Field(sa_column=Column(String(40), nullable=False, index=True))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False))


class UsedAssertionRow(SQLModel, table=True):
    """A ``jti`` of a client assertion already used (RFC 7523 §3 item 7: no replays)."""

    __tablename__ = "auth_used_assertions"

    jti_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    expires_at: str = Field(sa_column=Column(String(32), nullable=False, index=True))


sessions = SessionRow.__table__  # type: ignore[attr-defined]
failures = SignInFailureRow.__table__  # type: ignore[attr-defined]
links = SignInLinkRow.__table__  # type: ignore[attr-defined]
used_assertions = UsedAssertionRow.__table__  # type: ignore[attr-defined]


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who it is for and until when."""

    principal_id: str
    kind: str  # "person" or "individual"
    expires_at: str


def create_session(conn: Connection, *, principal_id: str, kind: str, now: datetime, ttl: timedelta) -> str:
    """Record a new session and return its id (to be signed into the cookie)."""
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        sessions.insert().values(
            id_hash=_h(session_id),
            principal_id=principal_id,
            kind=kind,
            created_at=format_at(now),
            expires_at=format_at(now + ttl),
        )
    )
    return session_id


def get_session(conn: Connection, session_id: str, *, now: datetime) -> Session | None:
    """The session with this id if it exists and has not expired."""
    row = conn.execute(
        select(sessions.c.principal_id, sessions.c.kind, sessions.c.expires_at).where(
            sessions.c.id_hash == _h(session_id), sessions.c.expires_at > format_at(now)
        )
    ).first()
    return None if row is None else Session(row.principal_id, row.kind, row.expires_at)


def delete_session(conn: Connection, session_id: str) -> None:
    """End one session (sign-out)."""
    conn.execute(delete(sessions).where(sessions.c.id_hash == _h(session_id)))


def revoke_sessions_for(conn: Connection, principal_id: str) -> int:
    """End every session of *principal_id* (a person, or an individual's subject); return how many."""
    return int(conn.execute(delete(sessions).where(sessions.c.principal_id == principal_id)).rowcount)


def purge_expired_sessions(conn: Connection, *, now: datetime) -> None:
    """Delete sessions past their expiry."""
    conn.execute(delete(sessions).where(sessions.c.expires_at <= format_at(now)))


# -- failed sign-ins ----------------------------------------------------------------------


def recent_failures(conn: Connection, key: str, *, now: datetime, window: timedelta) -> int:
    """Failed sign-ins under *key* within *window* before *now*."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(failures)
            .where(failures.c.key_hash == _h(key), failures.c.at > format_at(now - window))
        ).scalar_one()
    )


def record_failure(conn: Connection, keys: list[str], *, now: datetime, window: timedelta) -> None:
    """Count one failed sign-in under each key (and forget failures older than the window)."""
    conn.execute(delete(failures).where(failures.c.at <= format_at(now - window)))
    conn.execute(failures.insert(), [{"key_hash": _h(key), "at": format_at(now)} for key in keys])


def clear_failures(conn: Connection, key: str) -> None:
    """Forget the failures under *key* (after a successful sign-in to that account)."""
    conn.execute(delete(failures).where(failures.c.key_hash == _h(key)))


# -- one-time sign-in links ---------------------------------------------------------------


def create_sign_in_link(conn: Connection, *, person_id: str, now: datetime, ttl: timedelta) -> str:
    """Record a one-time sign-in token for *person_id* and return it."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        links.insert().values(
            token_hash=_h(token), person_id=person_id, created_at=format_at(now), expires_at=format_at(now + ttl)
        )
    )
    return token


def peek_sign_in_link(conn: Connection, token: str, *, now: datetime) -> str | None:
    """The person a live link is for, without using it up."""
    row = conn.execute(
        select(links.c.person_id).where(links.c.token_hash == _h(token), links.c.expires_at > format_at(now))
    ).first()
    return None if row is None else str(row[0])


def consume_sign_in_link(conn: Connection, token: str, *, now: datetime) -> str:
    """Use a link up and return its person id; raise ForbiddenError if unknown, used or expired."""
    person_id = peek_sign_in_link(conn, token, now=now)
    deleted = conn.execute(delete(links).where(links.c.token_hash == _h(token))).rowcount
    if person_id is None or deleted != 1:
        msg = "this sign-in link is not valid: it was already used, has expired, or never existed"
        raise ForbiddenError(msg)
    return person_id


# -- client assertion replay ---------------------------------------------------------------


def use_assertion_id(conn: Connection, *, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Remember a client assertion's ``jti``; False if this client already used it."""
    conn.execute(delete(used_assertions).where(used_assertions.c.expires_at <= format_at(now)))
    try:
        with conn.begin_nested():
            conn.execute(
                used_assertions.insert().values(
                    jti_hash=_h(f"{client_id}\x00{jti}"), expires_at=format_at(max(expires_at, now))
                )
            )
    except IntegrityError:
        return False
    return True
