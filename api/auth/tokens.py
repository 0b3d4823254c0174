"""Access tokens: short-lived JWTs (RFC 9068 profile) signed with the trust's Ed25519 token key.

Claims: ``iss``, ``aud``, ``sub`` (the principal id), ``iat``, ``nbf``, ``exp``, ``jti``,
``roles`` (list), ``scope`` (space-separated, RFC 9068 §2.2.3), ``client_id`` for
partner clients, ``org`` for a partner organisation, ``subject`` for an individual,
and ``cv`` (the client credential version) for tokens issued at the token endpoint.
The header is ``{"alg": "EdDSA", "typ": "at+jwt", "kid": …}``.

Validation accepts exactly one algorithm, ``EdDSA`` with our key, so ``alg: none``
and algorithm confusion (HS256 keyed with the public key) fail before any claim is
read; then ``typ``, ``kid``, ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` are checked.
JOSE work goes through joserfc, the library Authlib itself uses. A token that passed
every check is remembered, for the same key, issuer and audience, until its time-dependent
claims stop holding (see ``_Remembered``); then it is checked in full again.
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jws import JWSRegistry

from api.auth.keys import DEFAULT_AUDIENCE, auth_keys, auth_settings
from api.instance import Instance
from api.problems import UnauthorisedError
from consent.principals import Principal

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type, not a secret
DEFAULT_TTL_SECONDS = 900
LEEWAY_SECONDS = 5


def _quiet(name: str) -> Any:
    # joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name in favour of
    # "Ed25519"; we keep issuing "EdDSA" because most verifiers in use only know that name.
    alg = copy.copy(JWSRegistry.algorithms[name])
    alg.security_warning = None
    return alg


class TokenRegistry(JWSRegistry):
    """The JWS algorithms this trust signs and accepts: EdDSA over Ed25519 only."""

    algorithms = {ALGORITHM: _quiet(ALGORITHM)}  # noqa: RUF012 - the joserfc registry API is a class attribute


class AssertionRegistry(JWSRegistry):
    """Algorithms accepted for partners' client assertions (RFC 7523): Ed25519 and NIST EC keys."""

    algorithms = {  # noqa: RUF012 - as above
        ALGORITHM: _quiet(ALGORITHM),
        "Ed25519": JWSRegistry.algorithms["Ed25519"],
        "ES256": JWSRegistry.algorithms["ES256"],
        "ES384": JWSRegistry.algorithms["ES384"],
        "ES512": JWSRegistry.algorithms["ES512"],
    }


ASSERTION_ALGORITHMS = sorted(AssertionRegistry.algorithms)


def issue_access_token(
    instance: Instance,
    principal: Principal,
    *,
    now: datetime,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    audience: str = DEFAULT_AUDIENCE,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign an access token for *principal*, valid from *now* for *ttl_seconds*."""
    keys = auth_keys(instance.data_dir)
    settings = auth_settings(instance.data_dir, origin=instance.origin)
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": audience,
        "sub": principal.id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
        "roles": sorted(str(r) for r in principal.roles),
        "scope": " ".join(sorted(principal.scopes)),
    }
    if principal.id.startswith("client_"):
        claims["client_id"] = principal.id
    if principal.organisation is not None:
        claims["org"] = principal.organisation
    if principal.subject is not None:
        claims["subject"] = principal.subject
    claims.update(extra_claims or {})
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": keys.kid}
    return jwt.encode(
        header, claims, keys.signing_key, registry=TokenRegistry(algorithms=[ALGORITHM]), default_type=None
    )


def decode_access_token(
    instance: Instance, token: str, *, now: datetime, audience: str = DEFAULT_AUDIENCE
) -> dict[str, Any]:
    """Verify *token* and return its claims; raise UnauthorisedError saying what is wrong.

    The claims are the caller's own copy: changing them changes nothing remembered here.
    """
    claims: dict[str, Any] = _thawed(accept_access_token(instance, token, now=now, audience=audience).claims)
    return claims


def accept_access_token(
    instance: Instance, token: str, *, now: datetime, audience: str = DEFAULT_AUDIENCE
) -> AcceptedToken:
    """Verify *token* as :func:`decode_access_token` does; return it as accepted, claims read-only.

    A token already accepted (and still remembered) for the same issuer and audience under
    the same key is not validated again while *now* is inside the seconds its ``exp``, ``nbf`` and ``iat``
    allow; outside them, it goes through every check again and gets the same error as a
    token never seen (for example "the access token has expired"). The same accepted
    object is returned for as long as it is remembered.
    """
    keys = auth_keys(instance.data_dir)
    settings = auth_settings(instance.data_dir, origin=instance.origin, max_age=1.0)
    at = int(now.timestamp())  # the "now" joserfc compares with
    verified_by = (str(keys.public_jwks["keys"][0]["x"]), keys.kid)  # the public key itself, and its id
    accepted_as = (verified_by, settings.issuer, audience)
    accepted = _ACCEPTED.get(accepted_as, token)
    if accepted is not None and accepted.valid_at(at):
        return accepted
    claims = _VERIFIED.get(verified_by, token)
    if claims is None:
        claims = _verify_signature(token, keys.verify_key, kid=keys.kid)
        _VERIFIED.put(verified_by, token, claims)
    registry = jwt.JWTClaimsRegistry(
        now=at,
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
        nbf={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        msg = "the access token has expired"
        raise UnauthorisedError(msg) from None
    except JoseError as exc:
        msg = f"the access token is not valid: {exc.description or exc.error}"
        raise UnauthorisedError(msg) from None
    accepted = AcceptedToken(
        claims=_frozen(claims),
        # joserfc refuses when exp <= now - leeway, nbf > now + leeway or iat > now + leeway,
        # comparing its integer now with NumericDates that may be floats: the integers it
        # accepts are exactly max(ceil(nbf), ceil(iat)) - leeway <= now < ceil(exp) + leeway.
        not_before=max(math.ceil(claims["nbf"]), math.ceil(claims["iat"])),
        expires=math.ceil(claims["exp"]),
    )
    _ACCEPTED.put(accepted_as, token, accepted)
    return accepted


@dataclass(frozen=True, eq=False, slots=True)
class AcceptedToken:
    """A token that passed every check (signature, header, claims) for one issuer and audience.

    ``claims`` is shared between requests and read-only all the way down (lists are
    tuples, objects are read-only mappings). The time-dependent claims (``exp``, ``nbf``,
    ``iat``) hold for an integer ``now`` with ``not_before - LEEWAY_SECONDS <= now <
    expires + LEEWAY_SECONDS``, exactly the seconds joserfc accepts. Compared by identity,
    so it can key what is derived from it (``api.auth.principal``).
    """

    claims: Mapping[str, Any]
    not_before: int
    expires: int

    def valid_at(self, at: int) -> bool:
        """Whether the time-dependent claims hold at the integer timestamp *at*."""
        return self.not_before - LEEWAY_SECONDS <= at < self.expires + LEEWAY_SECONDS


def _frozen(value: Any) -> Any:
    """A read-only deep copy of a JSON value: lists become tuples, objects read-only mappings."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    """The plain JSON value again (dicts and lists) from :func:`_frozen`, a new copy each time."""
    kind = type(value)  # only what _frozen makes (and an exact type test is quicker than an ABC's)
    if kind is MappingProxyType:
        return {key: _thawed(item) for key, item in value.items()}
    if kind is tuple:
        return [_thawed(item) for item in value]
    return value


def _verify_signature(token: str, verify_key: Any, *, kid: str) -> dict[str, Any]:
    """Check *token*'s signature and header (no claims yet); return its claims."""
    try:
        decoded = jwt.decode(token, verify_key, algorithms=[ALGORITHM], registry=TokenRegistry(algorithms=[ALGORITHM]))
    except JoseError as exc:
        msg = f"the access token is not valid: {exc.description or exc.error}"
        raise UnauthorisedError(msg) from None
    except (ValueError, TypeError):
        msg = "the access token is not valid: it is not a signed JWT"
        raise UnauthorisedError(msg) from None
    if decoded.header.get("typ") != TOKEN_TYPE or decoded.header.get("kid") != kid:
        msg = "the access token is not valid: not an access token of this trust"
        raise UnauthorisedError(msg)
    return dict(decoded.claims)


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Remembered(Generic[_K, _V]):
    """A bounded, thread-safe map from (what it was checked under, exact token text) to a result.

    The least recently used entry goes when it is full. Two are kept:

    * ``_VERIFIED``: tokens whose signature and header verified, keyed by the public key
      and key id they verified under. A partner presents the same token on every call until
      it expires; checking its Ed25519 signature costs ~60 µs, more than deciding the check.
      The signature of the same bytes under the same key cannot stop being valid, so it is
      checked once, also for a token whose claims are refused (an expired token presented
      again is refused without verifying it again).
    * ``_ACCEPTED``: tokens that also passed the claims registry, keyed by that key, the
      issuer and the audience they were validated for, with the seconds in which their
      time-dependent claims hold (:class:`AcceptedToken`); outside those seconds every
      check runs again. Building and running the registry costs more than the rest of
      authentication.

    Nothing verified under another trust's key, or an old key, or accepted for another
    issuer or audience, is ever found. The client's standing is a separate matter, decided
    after this (``api.auth.principal`` and ``api.auth.standing``).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[_K, str], _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K, token: str) -> _V | None:
        """What was remembered for *token* under *key*, or None."""
        with self._lock:
            found = self._items.get((key, token))
            if found is not None:
                self._items.move_to_end((key, token))
            return found

    def put(self, key: _K, token: str, value: _V) -> None:
        """Remember *value* for *token* under *key*, forgetting the least recently used if full."""
        with self._lock:
            self._items[(key, token)] = value
            self._items.move_to_end((key, token))
            if len(self._items) > self._size:
                self._items.popitem(last=False)


_VERIFIED: _Remembered[tuple[str, str], dict[str, Any]] = _Remembered(size=4096)
_ACCEPTED: _Remembered[tuple[tuple[str, str], str, str], AcceptedToken] = _Remembered(size=4096)
