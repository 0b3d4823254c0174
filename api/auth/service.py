"""What the auth routes and the CLI call: each function is one unit of work on a trust.

Routes stay thin (parse, call one of these, answer); these functions own their
transactions and call the domain (``trust.identity``) and the auth store.

Sign-in throttling: at most :data:`ACCOUNT_LIMIT` failed attempts per account and
:data:`ADDRESS_LIMIT` per client address within :data:`WINDOW`. Beyond that an
attempt is refused *before* the password is checked (so guessing gains nothing and
costs us no Argon2id work) until the window has moved on. Failures are logged with
the account name and address, never the password. The count is read before the
password is checked, so a burst of parallel guesses can overshoot the limit by the
number in flight (bounded by the server's worker threads), never more.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from api.auth import store
from api.instance import Instance
from consent.principals import Principal, Role
from ledger.errors import DomainError, ForbiddenError, NotFoundError, ValidationError
from trust import identity
from trust.identity import Client, Person

log = logging.getLogger("datatrust.auth")

WINDOW = timedelta(minutes=1)
ACCOUNT_LIMIT = 10
ADDRESS_LIMIT = 30
LINK_TTL = timedelta(hours=24)


class SignInThrottledError(DomainError):
    """Too many failed sign-ins for this account or address (HTTP 429)."""

    slug = "too-many-attempts"
    title = "Too many sign-in attempts"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


def _account_key(username: str) -> str:
    return "account:" + username.strip().lower()


def _address_key(address: str) -> str:
    return "address:" + address


def sign_in_with_password(instance: Instance, *, username: str, password: str, address: str, now: datetime) -> str:
    """Check a username and password, subject to throttling; return the person id."""
    account, origin = _account_key(username), _address_key(address)
    with instance.db.engine.connect() as conn:
        by_account = store.recent_failures(conn, account, now=now, window=WINDOW)
        by_address = store.recent_failures(conn, origin, now=now, window=WINDOW)
    if by_account >= ACCOUNT_LIMIT or by_address >= ADDRESS_LIMIT:
        which = "this account" if by_account >= ACCOUNT_LIMIT else "your address"
        log.warning("sign-in refused unchecked (throttled): account=%r address=%s", username, address)
        msg = f"too many failed sign-ins for {which} in the last minute; wait a minute and try again"
        raise SignInThrottledError(msg, retry_after=int(WINDOW.total_seconds()))
    try:
        with instance.db.engine.connect() as conn:
            person_id = identity.authenticate_password(conn, username=username, password=password, now=now)
    except ForbiddenError:
        with instance.db.write_engine.begin() as conn:
            store.record_failure(conn, [account, origin], now=now, window=WINDOW)
        log.warning("sign-in failed: account=%r address=%s", username, address)
        raise
    with instance.db.write_engine.begin() as conn:
        store.clear_failures(conn, account)
    log.info("sign-in: %s from %s", person_id, address)
    return person_id


def sign_in_with_email(instance: Instance, *, email: str | None, email_verified: object) -> str:
    """Map a verified e-mail address from an OpenID provider to a person; return the id."""
    if not email or email_verified is not True:
        msg = "your identity provider did not vouch for your e-mail address (email_verified is not true)"
        raise ForbiddenError(msg)
    with instance.db.engine.connect() as conn:
        person = identity.find_person(conn, email=email)
    if person is None:
        log.warning("OIDC sign-in for an e-mail address with no account")
        msg = "there is no account for that e-mail address; ask the trust's administrator to create one"
        raise ForbiddenError(msg)
    return person.id


def whoami(instance: Instance, principal: Principal) -> dict[str, Any]:
    """A description of the signed-in principal."""
    del instance
    return {
        "id": principal.id,
        "roles": sorted(str(r) for r in principal.roles),
        "display_name": principal.display_name or None,
        "organisation": principal.organisation,
        "subject": principal.subject,
        "scopes": sorted(principal.scopes),
    }


def change_password(
    instance: Instance, principal: Principal, *, current_password: str | None, new_password: str, now: datetime
) -> None:
    """Let a signed-in person set or replace their password (the current one, if any, is checked)."""
    if not principal.id.startswith("person_"):
        msg = "only people with an account have a password"
        raise ForbiddenError(msg)
    with instance.db.engine.connect() as conn:
        person = identity.get_person(conn, principal.id)
    if person is None:
        msg = f"person {principal.id} does not exist"
        raise NotFoundError(msg)
    with instance.db.engine.connect() as conn:
        if identity.has_password(conn, person.id):
            try:
                identity.authenticate_password(conn, username=person.username, password=current_password or "", now=now)
            except ForbiddenError:
                msg = "the current password is not right"
                raise ForbiddenError(msg) from None
    reset_password(instance, person_id=person.id, password=new_password)


def reset_password(instance: Instance, *, person_id: str, password: str) -> None:
    """Set a person's password (operator action; no check of the old one)."""
    with instance.db.write_engine.begin() as conn:
        identity.set_password(conn, person_id, password)


def find_account(instance: Instance, username: str) -> Person | None:
    """The person with this username, or None."""
    with instance.db.engine.connect() as conn:
        return identity.find_person(conn, username=username)


# -- administration -----------------------------------------------------------------------


def create_account(
    instance: Instance,
    *,
    username: str,
    display_name: str,
    email: str | None,
    password: str | None,
    is_admin: bool,
    now: datetime,
) -> Person:
    """Create a person who can sign in."""
    with instance.db.write_engine.begin() as conn:
        person_id = identity.create_person(
            conn,
            username=username,
            password=password,
            display_name=display_name,
            email=email,
            is_admin=is_admin,
            now=now,
        )
        person = identity.get_person(conn, person_id)
    assert person is not None  # noqa: S101 - just inserted
    return person


def list_accounts(instance: Instance) -> list[Person]:
    """Every person who can sign in."""
    with instance.db.engine.connect() as conn:
        return identity.list_people(conn)


def issue_sign_in_link(instance: Instance, *, person_id: str, now: datetime) -> str:
    """A one-time sign-in token for *person_id* (valid for a day)."""
    with instance.db.write_engine.begin() as conn:
        if identity.get_person(conn, person_id) is None:
            msg = f"person {person_id} does not exist"
            raise NotFoundError(msg)
        return store.create_sign_in_link(conn, person_id=person_id, now=now, ttl=LINK_TTL)


def sign_in_link_person(instance: Instance, token: str, *, now: datetime) -> Person:
    """The person a live link is for (the link is not used up)."""
    with instance.db.engine.connect() as conn:
        person_id = store.peek_sign_in_link(conn, token, now=now)
        person = None if person_id is None else identity.get_person(conn, person_id)
    if person is None:
        msg = "this sign-in link is not valid: it was already used, has expired, or never existed"
        raise ForbiddenError(msg)
    return person


def use_sign_in_link(instance: Instance, token: str, *, now: datetime) -> str:
    """Use a one-time link up; return its person id."""
    with instance.db.write_engine.begin() as conn:
        return store.consume_sign_in_link(conn, token, now=now)


def first_admin(
    instance: Instance, *, username: str, display_name: str, email: str | None, now: datetime
) -> tuple[Person, str]:
    """Create the first administrator (no password yet) and a one-time sign-in token."""
    with instance.db.engine.connect() as conn:
        if identity.count_admins(conn):
            msg = "this trust already has an administrator"
            raise ValidationError(msg)
    person = create_account(
        instance, username=username, display_name=display_name, email=email, password=None, is_admin=True, now=now
    )
    return person, issue_sign_in_link(instance, person_id=person.id, now=now)


def list_partner_clients(instance: Instance, *, organisation: str | None = None) -> list[Client]:
    """Registered partner clients."""
    with instance.db.engine.connect() as conn:
        return identity.list_clients(conn, organisation=organisation)


def get_partner_client(instance: Instance, client_id: str) -> Client:
    """One partner client (NotFoundError if unknown)."""
    with instance.db.engine.connect() as conn:
        client = identity.get_client(conn, client_id)
    if client is None:
        msg = f"client {client_id} is not registered"
        raise NotFoundError(msg)
    return client


def revoke_all_sessions(instance: Instance, principal_id: str) -> int:
    """End every browser session of a person or of an individual's subject."""
    with instance.db.write_engine.begin() as conn:
        return store.revoke_sessions_for(conn, principal_id)


def roles_for(instance: Instance, person_id: str, at: datetime) -> frozenset[Role]:
    """A person's roles at *at*."""
    with instance.db.engine.connect() as conn:
        return identity.roles_of(conn, person_id, at)
