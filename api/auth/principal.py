"""Turning a request into a principal (bearer token, session cookie, or the public).

* ``Authorization: Bearer <jwt>``: the token must verify (see ``api.auth.tokens``), or the
  request fails with 401 -- a bad token never falls back to a cookie or to the public.
  For a partner client the client must still be unsuspended and on the credential
  the token was issued under, and its organisation in good standing. (A token naming
  a client id the trust does not know can only have been signed here -- by a tool
  or a test -- and is judged by its organisation alone.)
* Any other ``Authorization`` scheme is refused (401): the API speaks Bearer only.
* Otherwise the session cookie, if it names a live session; a stale cookie counts as
  no cookie. A person's roles are read afresh on every request (a trustee removed
  at 10:00 is not a trustee at 10:01).
* Otherwise the public.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache, partial

from fastapi import Request
from itsdangerous import BadSignature, TimestampSigner
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.auth.keys import auth_keys
from api.auth.standing import StandingCache
from api.auth.store import get_session
from api.auth.tokens import AcceptedToken, accept_access_token
from api.deps import get_now
from api.instance import Instance
from api.problems import UnauthorisedError
from consent.principals import PUBLIC, Principal, Role
from ledger.errors import ForbiddenError
from trust.identity import check_client_standing, get_client, get_person, organisation_is_active, roles_of

SESSION_COOKIE = "dt_session"
StandingKey = tuple[str, int | None, str | None]  # client or principal id, credential version, organisation
SESSION_MAX_AGE_SECONDS = 8 * 3600
SESSION_SALT = "datatrust.session"


def session_signer(instance: Instance) -> TimestampSigner:
    """Signs session ids into cookie values."""
    return TimestampSigner(auth_keys(instance.data_dir).cookie_secret, salt=SESSION_SALT)


async def current_principal(request: Request) -> Principal:
    """Dependency form of :func:`get_principal`.

    A bearer token whose standing was confirmed a moment ago needs no database: it is
    verified here on the event loop. Anything else may read the database, so it runs in
    the thread pool.
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    token = _bearer_token(request)
    standing: StandingCache | None = getattr(request.app.state, "standing", None)
    if token is None:
        return await run_in_threadpool(get_principal, request)
    instance: Instance = request.app.state.instance
    now = get_now()
    principal, key = _token_principal(instance, token, now=now)
    await confirm_standing(instance, principal, key, now, standing)
    request.state.principal = principal
    request.state.principal_source = "bearer"
    return principal


def _bearer_token(request: Request) -> str | None:
    """The bearer token presented, None without an Authorization header; 401 for any other scheme."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        msg = "the API accepts only 'Authorization: Bearer <access token>'"
        raise UnauthorisedError(msg)
    return value.strip()


def get_principal(request: Request) -> Principal:
    """The principal making *request*; the public when no credentials are presented."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    instance: Instance = request.app.state.instance
    now = get_now()
    token = _bearer_token(request)
    if token is not None:
        standing = getattr(request.app.state, "standing", None)
        principal = principal_from_token(instance, token, now=now, standing=standing)
        source = "bearer"
    else:
        from_cookie = principal_from_cookie(instance, request.cookies.get(SESSION_COOKIE), now=now)
        principal, source = (PUBLIC, "public") if from_cookie is None else (from_cookie, "cookie")
    request.state.principal = principal
    request.state.principal_source = source
    return principal


def principal_source(request: Request) -> str:
    """How this request's principal was established: ``bearer``, ``cookie`` or ``public``."""
    return str(getattr(request.state, "principal_source", "public"))


def principal_from_token(
    instance: Instance, token: str, *, now: datetime, standing: StandingCache | None = None
) -> Principal:
    """Verify a bearer token and return its principal (raises UnauthorisedError).

    With *standing*, a client and organisation found in good standing a moment ago are not
    read again (see ``api.auth.standing`` for how soon a suspension binds).
    """
    principal, key = _token_principal(instance, token, now=now)
    if standing is None or not standing.is_good(key):
        _confirm_standing(instance, principal, key, now, standing)
    return principal


async def confirm_standing(
    instance: Instance, principal: Principal, key: StandingKey, now: datetime, standing: StandingCache | None
) -> None:
    """On the event loop: check the token's standing unless it is known to be good (raises UnauthorisedError).

    A known good standing costs nothing (and is renewed in the background when due); otherwise
    the database is read in the thread pool, one read at a time for all requests of one key.
    """
    if standing is None:
        await run_in_threadpool(_confirm_standing, instance, principal, key, now, standing)
        return
    known = standing.standing(key)
    if known == "good":  # the common case: nothing to read, nothing to build
        return
    read = partial(_confirm_standing, instance, principal, key, now, standing)
    if known == "renew":
        standing.refresh_ahead(key, read)
        return
    await standing.confirm(key, read)


def _confirm_standing(
    instance: Instance, principal: Principal, key: StandingKey, now: datetime, standing: StandingCache | None
) -> None:
    """Read the client's and organisation's standing (raises UnauthorisedError); remember it if good."""
    generation = standing.generation() if standing is not None else 0
    with instance.db.engine.connect() as conn:
        try:
            _check_standing(conn, principal, credential_version=key[1], now=now)
        except ForbiddenError as exc:
            if standing is not None:
                standing.forget(key)
            msg = f"the access token is no longer valid: {exc.detail}"
            raise UnauthorisedError(msg) from None
    if standing is not None:
        standing.remember(key, generation)


def _token_principal(instance: Instance, token: str, *, now: datetime) -> tuple[Principal, StandingKey]:
    """Verify *token* (no database) and return its principal and what its standing depends on."""
    return _principal_of(accept_access_token(instance, token, now=now))


@lru_cache(maxsize=4096)
def _principal_of(accepted: AcceptedToken) -> tuple[Principal, StandingKey]:
    """The principal an accepted token names, built once per accepted token.

    Keyed by the accepted token itself (compared by identity), which ``api.auth.tokens``
    hands out only while its claims hold, so a token that expires or is refused never gets
    here. Principal, its frozensets and the key are immutable, so requests may share them.
    """
    claims = accepted.claims
    try:
        roles = frozenset(Role(r) for r in claims.get("roles", ()))
    except ValueError:
        msg = "the access token is not valid: it names an unknown role"
        raise UnauthorisedError(msg) from None
    scope = claims.get("scope", "")
    principal = Principal(
        id=str(claims["sub"]),
        roles=roles,
        organisation=claims.get("org"),
        subject=claims.get("subject"),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
    )
    version = claims.get("cv")
    return principal, (principal.id, version if isinstance(version, int) else None, principal.organisation)


def _check_standing(conn: Connection, principal: Principal, *, credential_version: int | None, now: datetime) -> None:
    """A registered client must be in good standing; any partner's organisation must be active."""
    client = get_client(conn, principal.id) if principal.id.startswith("client_") else None
    if client is not None:
        check_client_standing(conn, principal.id, at=now, credential_version=credential_version, client=client)
    elif principal.organisation is not None and not organisation_is_active(conn, principal.organisation, now):
        msg = f"organisation {principal.organisation} is suspended or not registered"
        raise ForbiddenError(msg)


def principal_from_cookie(instance: Instance, cookie: str | None, *, now: datetime) -> Principal | None:
    """The principal of a live session cookie, or None."""
    if not cookie:
        return None
    try:
        session_id = session_signer(instance).unsign(cookie, max_age=SESSION_MAX_AGE_SECONDS).decode()
    except BadSignature:
        return None
    with instance.db.engine.connect() as conn:
        session = get_session(conn, session_id, now=now)
        if session is None:
            return None
        if session.kind == "individual":
            subject = session.principal_id
            return Principal(id=subject, roles=frozenset({Role.INDIVIDUAL}), subject=subject)
        person = get_person(conn, session.principal_id)
        if person is None:
            return None
        return Principal(id=person.id, roles=roles_of(conn, person.id, now), display_name=person.display_name)
