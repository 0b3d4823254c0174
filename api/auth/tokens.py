"""Access tokens: short-lived JWTs (RFC 9068 profile) signed with the trust's Ed25519 token key.

Claims: ``iss``, ``aud``, ``sub`` (the principal id), ``iat``, ``nbf``, ``exp``, ``jti``,
``roles`` (list), ``scope`` (space-separated, RFC 9068 §2.2.3), ``client_id`` for
partner clients, ``org`` for a partner organisation, ``subject`` for an individual,
and ``cv`` (the client credential version) for tokens issued at the token endpoint.
The header is ``{"alg": "EdDSA", "typ": "at+jwt", "kid": …}``.

Validation accepts exactly one algorithm, ``EdDSA`` with our key, so ``alg: none``
and algorithm confusion (HS256 keyed with the public key) fail before any claim is
read; then ``typ``, ``kid``, ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` are checked.
JOSE work goes through joserfc, the library Authlib itself uses.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

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
    """Verify *token* and return its claims; raise UnauthorisedError saying what is wrong."""
    keys = auth_keys(instance.data_dir)
    settings = auth_settings(instance.data_dir, origin=instance.origin, max_age=1.0)
    verified_by = (str(keys.public_jwks["keys"][0]["x"]), keys.kid)  # the public key itself, and its id
    claims = _VERIFIED.get(verified_by, token)
    if claims is None:
        claims = _verify_signature(token, keys.verify_key, kid=keys.kid)
        _VERIFIED.put(verified_by, token, claims)
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
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
    return dict(claims)


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


class _VerifiedTokens:
    """Tokens whose signature and header verified, by exact text and public key (the most recent kept).

    A partner presents the same token on every call until it expires; checking its
    Ed25519 signature costs ~60 µs, more than deciding the check. The signature of the
    same bytes under the same key cannot stop being valid, so it is checked once; the
    claims (expiry, not-before, issuer, audience) are still checked on every request,
    and the client's standing separately (``api.auth.standing``). Entries are keyed by the
    public key and key id they verified under, so nothing verified under another trust's
    key, or an old key, is ever found.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[tuple[str, str], str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], token: str) -> dict[str, Any] | None:
        with self._lock:
            claims = self._items.get((key, token))
            if claims is not None:
                self._items.move_to_end((key, token))
            return claims

    def put(self, key: tuple[str, str], token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._items[(key, token)] = claims
            if len(self._items) > self._size:
                self._items.popitem(last=False)


_VERIFIED = _VerifiedTokens(size=4096)
