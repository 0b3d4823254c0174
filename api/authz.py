"""The one authorisation decision: may this principal perform this action?

Every route declares its action with ``Depends(require("…"))``; nothing else in the
routes checks roles. Resource-level rules (an individual's own consent, a recused
trustee, a suspended organisation) are decided by the domain with the principal it
is given, and raise ``ForbiddenError``.

``POLICY`` maps each action to the roles allowed and, for machine clients, the OAuth
scope required. A refusal by this table carries an ``action`` member in its problem
document (and ``required_scope`` when only the scope was missing), which tells it apart
from a refusal by the domain about one resource. The authorisation-matrix test walks the app's route table and fails
for any route without an action here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from api.auth.principal import current_principal, principal_source
from api.auth.sessions import SAFE_METHODS, verify_csrf
from api.problems import UnauthorisedError
from consent.principals import Principal, Role, Scope
from ledger.errors import ForbiddenError

ANYONE = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may perform an action: any of *roles*; partners must also hold *scope*."""

    roles: frozenset[Role]
    scope: Scope | None = None
    description: str = ""


def _r(*roles: Role, scope: Scope | None = None, description: str = "") -> Rule:
    return Rule(frozenset(roles), scope, description)


A, T, E, P, IND, PUB = Role.ADMIN, Role.TRUSTEE, Role.ETHICS, Role.PARTNER, Role.INDIVIDUAL, Role.PUBLIC

POLICY: dict[str, Rule] = {
    # public reading
    "public.read": Rule(ANYONE, description="public register, ledger, vocabularies, agreements, decisions"),
    # identity and clients
    "clients.manage": _r(A, description="register partner clients, rotate secrets"),
    "people.manage": _r(A, description="create accounts, appoint trustees and ethics members"),
    "session.create": Rule(ANYONE, description="sign in or out, get a CSRF token, follow a one-time link"),
    "session.read": Rule(ANYONE, description="who am I (also for people who hold no role yet, and the public)"),
    "account.write": _r(A, T, E, P, description="change one's own password (people with an account)"),
    # consent
    "consents.write": _r(P, scope=Scope.CONSENTS_WRITE, description="record or withdraw on behalf"),
    "consents.import": _r(A, description="bulk import"),
    "me.read": _r(IND, description="an individual's own consents and uses"),
    "me.write": _r(IND, description="an individual withdraws or erases"),
    # governance
    "organisations.manage": _r(A),
    "trust.configure": _r(A),
    "agreements.manage": _r(A),
    "agreements.sign": _r(A, P, scope=Scope.AGREEMENTS_SIGN),
    "ethics.decide": _r(E),
    "requests.submit": _r(P, scope=Scope.REQUESTS_WRITE),
    "requests.comment": Rule(ANYONE),
    "requests.review": _r(T, A, E, description="pre-assessment, comments, tallies in progress"),
    "requests.vote": _r(T),
    "requests.revoke": _r(T, A),
    # the check
    "checks.create": _r(P, scope=Scope.CHECK),
    "checks.dry_run": _r(P, T, A, E, scope=Scope.CHECK),
    "checks.read": _r(P, T, A, E),
    # webhooks and deletions
    "webhooks.manage": _r(P, A),
    "deletions.confirm": _r(P),
    # operations
    "admin.read": _r(A),
}


def authorise(principal: Principal, action: str) -> None:
    """Raise unless *principal* may perform *action* (fails closed on unknown actions)."""
    rule = POLICY.get(action)
    if rule is None:
        msg = f"no authorisation rule for action {action!r}"
        raise ForbiddenError(msg)
    if not principal.roles & rule.roles and PUB not in rule.roles:  # what the public may do, anyone may
        if principal.roles == {PUB}:
            msg = "sign in to do this"
            raise UnauthorisedError(msg, action=action)
        msg = f"{principal.id} may not {action.replace('.', ' ')}"
        raise ForbiddenError(msg, action=action)
    needs_scope = rule.scope is not None and principal.has(P) and not principal.roles & (rule.roles - {P})
    if needs_scope and rule.scope not in principal.scopes:
        msg = f"this token lacks the {rule.scope} scope needed to {action.replace('.', ' ')}"
        raise ForbiddenError(msg, action=action, required_scope=str(rule.scope))


def require(action: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authorises *action* and returns the principal.

    When the principal comes from a session cookie and the request changes state, the
    CSRF token is checked too (as :func:`api.auth.sessions.verify_csrf` does), so no
    cookie-borne state change can skip it even if its route forgot to ask.
    """
    if action not in POLICY:
        msg = f"no authorisation rule for action {action!r}"
        raise KeyError(msg)

    # The principal is resolved by calling current_principal here, not as a nested Depends: FastAPI
    # spends tens of microseconds solving each dependency level on every request.
    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        authorise(principal, action)
        if request.method not in SAFE_METHODS and principal_source(request) == "cookie":
            await verify_csrf(request)
        return principal

    dependency.__name__ = f"require_{action.replace('.', '_')}"
    dependency.action = action  # type: ignore[attr-defined]
    return dependency
