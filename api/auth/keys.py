"""The token-signing key and the auth settings of a trust.

``keys/token.key`` (mode 0600) holds an Ed25519 private JWK, separate from the
ledger's checkpoint key: access tokens are signed with it, and the HMAC key of the
session and CSRF cookies is derived from it (BLAKE2b keyed with the seed, with a
distinct personalisation), so one file is the whole of the web tier's secret.

Settings come from the ``[auth]`` and ``[oidc]`` tables of ``datatrust.toml``;
environment variables override them::

    [auth]
    issuer = "https://trust.example.org"        # DATATRUST_ISSUER; default https://<log origin>
    public_url = "https://trust.example.org"    # DATATRUST_PUBLIC_URL; default: the request's base URL
    secure_cookies = true                       # DATATRUST_SECURE_COOKIES; default: when served over https

    [oidc]                                      # OpenID Connect sign-in for people (optional)
    issuer = "https://login.example.org"        # DATATRUST_OIDC_ISSUER
    client_id = "datatrust"                     # DATATRUST_OIDC_CLIENT_ID
    client_secret = "…"                         # DATATRUST_OIDC_CLIENT_SECRET
    label = "Sign in with Example"
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import OKPKey

TOKEN_KEY_FILE = Path("keys") / "token.key"
DEFAULT_AUDIENCE = "datatrust-api"
DEFAULT_OIDC_LABEL = "Sign in with your organisation's account"
DEFAULT_OIDC_SCOPE = "openid email profile"

_lock = threading.Lock()
_keys: dict[Path, AuthKeys] = {}  # by the key file's path, as given and resolved
_keys_by_dir: dict[Path, AuthKeys] = {}  # by the data directory, as given
_settings: dict[tuple[Path, int, tuple[str | None, ...]], AuthSettings] = {}
_recent: dict[tuple[Path, str], tuple[float, AuthSettings]] = {}  # for callers that accept max_age
_ENV = (
    "DATATRUST_ISSUER",
    "DATATRUST_PUBLIC_URL",
    "DATATRUST_SECURE_COOKIES",
    "DATATRUST_OIDC_ISSUER",
    "DATATRUST_OIDC_CLIENT_ID",
    "DATATRUST_OIDC_CLIENT_SECRET",
)


@dataclass(frozen=True, slots=True)
class AuthKeys:
    """The token-signing key, its public JWKS and the derived cookie key."""

    signing_key: OKPKey
    verify_key: OKPKey
    kid: str
    public_jwks: dict[str, Any]
    cookie_secret: bytes

    def __repr__(self) -> str:
        return f"AuthKeys(kid={self.kid!r}, <private key hidden>)"


def create_token_key(data_dir: Path) -> None:
    """Write a new Ed25519 token key to ``keys/token.key`` (0600) unless one exists."""
    path = data_dir / TOKEN_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    key = OKPKey.generate_key("Ed25519", private=True)
    document = key.as_dict(private=True, kid=key.thumbprint())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(document) + "\n")


def auth_keys(data_dir: Path) -> AuthKeys:
    """The trust's token key (created on first use for data directories made before it existed)."""
    cached = _keys_by_dir.get(data_dir)  # every request asks: no path to build, no resolve() once known
    if cached is not None:
        return cached
    given = data_dir / TOKEN_KEY_FILE
    cached = _keys.get(given)
    if cached is not None:
        _keys_by_dir[data_dir] = cached
        return cached
    path = given.resolve()
    with _lock:
        cached = _keys.get(path)
        if cached is not None:
            _keys[given] = cached
            return cached
        if not path.exists():
            create_token_key(data_dir)
        document = json.loads(path.read_text())
        signing = OKPKey.import_key(document)
        public = {k: v for k, v in document.items() if k != "d"}
        kid = str(document.get("kid") or signing.thumbprint())
        public.update({"kid": kid, "use": "sig", "alg": "EdDSA"})
        seed = base64.urlsafe_b64decode(document["d"] + "=" * (-len(document["d"]) % 4))
        cookie_secret = hashlib.blake2b(b"session and CSRF cookies", key=seed, person=b"datatrust-cookie").digest()
        keys = AuthKeys(signing, OKPKey.import_key(public), kid, {"keys": [public]}, cookie_secret)
        _keys[path] = keys
        _keys[given] = keys
        _keys_by_dir[data_dir] = keys
        return keys


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """An external OpenID Connect provider people may sign in with."""

    issuer: str
    client_id: str
    client_secret: str
    label: str = DEFAULT_OIDC_LABEL
    scope: str = DEFAULT_OIDC_SCOPE

    def __repr__(self) -> str:
        return f"OidcSettings(issuer={self.issuer!r}, client_id={self.client_id!r}, <secret hidden>)"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How this trust names itself in tokens and where it is served."""

    issuer: str
    audience: str
    public_url: str | None
    secure_cookies: bool | None
    oidc: OidcSettings | None


def _bool(value: object) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def auth_settings(data_dir: Path, *, origin: str, max_age: float = 0.0) -> AuthSettings:
    """Read ``[auth]`` and ``[oidc]`` from the trust's config, with environment overrides.

    The config file and environment are looked at on every call (a parsed config is reused
    while the file is unchanged), unless *max_age* allows settings read within that many
    seconds: the bearer-token path, which runs on every API request, passes 1 second
    rather than ask the file system each time.
    """
    if max_age > 0:
        recent = _recent.get((data_dir, origin))
        if recent is not None and time.monotonic() - recent[0] < max_age:
            return recent[1]
        settings = auth_settings(data_dir, origin=origin)
        _recent[(data_dir, origin)] = (time.monotonic(), settings)
        return settings
    config_path = data_dir / "datatrust.toml"
    env = tuple(os.environ.get(name) for name in _ENV)
    mtime = config_path.stat().st_mtime_ns if config_path.exists() else 0
    cache_key = (config_path, mtime, env)
    with _lock:
        cached = _settings.get(cache_key)
    if cached is not None:
        return cached
    config = tomllib.loads(config_path.read_text()) if config_path.exists() else {}
    auth = config.get("auth", {})
    oidc = config.get("oidc", {})
    issuer = os.environ.get("DATATRUST_ISSUER") or auth.get("issuer") or f"https://{origin}"
    public_url = os.environ.get("DATATRUST_PUBLIC_URL") or auth.get("public_url")
    secure = _bool(os.environ.get("DATATRUST_SECURE_COOKIES") or auth.get("secure_cookies"))
    oidc_issuer = os.environ.get("DATATRUST_OIDC_ISSUER") or oidc.get("issuer")
    oidc_settings = None
    if oidc_issuer:
        client_id = os.environ.get("DATATRUST_OIDC_CLIENT_ID") or oidc.get("client_id")
        client_secret = os.environ.get("DATATRUST_OIDC_CLIENT_SECRET") or oidc.get("client_secret")
        if not client_id or not client_secret:
            msg = "[oidc] needs issuer, client_id and client_secret"
            raise ValueError(msg)
        oidc_settings = OidcSettings(
            issuer=str(oidc_issuer).rstrip("/"),
            client_id=str(client_id),
            client_secret=str(client_secret),
            label=str(oidc.get("label") or DEFAULT_OIDC_LABEL),
            scope=str(oidc.get("scope") or DEFAULT_OIDC_SCOPE),
        )
    settings = AuthSettings(
        issuer=str(issuer).rstrip("/"),
        audience=str(auth.get("audience") or DEFAULT_AUDIENCE),
        public_url=None if not public_url else str(public_url).rstrip("/"),
        secure_cookies=secure,
        oidc=oidc_settings,
    )
    with _lock:
        _settings[cache_key] = settings
    return settings
