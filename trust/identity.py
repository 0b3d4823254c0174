"""People and partner clients: who may sign in, and which machines may ask for tokens.

Two kinds of record live here:

* **People** (``person_…``) are off-ledger rows because they hold personal data (a
  name, an e-mail address, a password hash). The ledger only ever names them by their
  opaque id (as the actor of an entry, or in a ``trustee.appointed`` payload).
* **Partner clients** (``client_…``) are OAuth 2.0 clients of a partner organisation.
  Registering, rotating and suspending one are ledger entries (``client.registered``,
  ``client.rotated``, ``client.suspended``) whose payloads hold the client id, the
  organisation, the scopes, the authentication method and the public key (if any) with
  its RFC 7638 thumbprint -- never a secret. The ``oauth_clients`` table is their
  projection; the secret's hash sits in ``oauth_client_secrets``, written in the same
  transaction as the entry but not derived from it (a replay cannot recreate a secret).

Passwords are hashed with Argon2id (``nacl.pwhash.argon2id``); client secrets are 256-bit
random strings, so one SHA-256 suffices. This module never sees HTTP: rate limiting
by address, sessions and tokens are ``api/auth``'s business.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

import nacl.exceptions
import nacl.pwhash
from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, LargeBinary, String, Text, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from consent.principals import Role, Scope
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from ledger.projection import ProjectorRegistry
from ledger.service import Ledger

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 10
SECRET_PREFIX = "dts_"  # noqa: S105 - marks a string as a client secret (for secret scanners)
BAD_CREDENTIALS = "wrong username or password"  # the same words whether or not the username exists
# libsodium's "interactive" Argon2id limits (2 passes over 64 MiB); verification reads them from the hash.
PWHASH_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
PWHASH_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE

# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
_ALLOWED_CURVES = {"OKP": {"Ed25519"}, "EC": {"P-256", "P-384", "P-521"}}


class AuthMethod(StrEnum):
    """How a partner client authenticates at the token endpoint (RFC 7591 names)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - RFC 7591 method name, not a secret
    PRIVATE_KEY_JWT = "private_key_jwt"


# -- tables -------------------------------------------------------------------------------


class PersonRow(SQLModel, table=True):
    """A person who can sign in (off-ledger: personal data)."""

    __tablename__ = "people"

    id: str = Field(sa_column=Column(String(40), primary_key=True))
    username: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    display_name: str = Field(sa_column=Column(String(200), nullable=False))
    email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True, unique=True))
    password_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    is_admin: bool = Field(sa_column=Column(Boolean, nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


class ClientRow(SQLModel, table=True):
    """A partner's OAuth client: the projection of ``client.*`` entries."""

    __tablename__ = "oauth_clients"

    client_id: str = Field(sa_column=Column(String(64), primary_key=True))
    organisation: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    scopes: str = Field(sa_column=Column(String(400), nullable=False))
    auth_method: str = Field(sa_column=Column(String(32), nullable=False))
    key_thumbprint: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    public_jwk: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    credential_version: int = Field(sa_column=Column(Integer, nullable=False))
    is_suspended: bool = Field(sa_column=Column(Boolean, nullable=False))
    registered_at: str = Field(sa_column=Column(String(32), nullable=False))
    registered_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    changed_at: str = Field(sa_column=Column(String(32), nullable=False))


class ClientSecretRow(SQLModel, table=True):
    """The hash of a client's current secret (off-ledger; replaced on rotation)."""

    __tablename__ = "oauth_client_secrets"

    client_id: str = Field(sa_column=Column(String(64), primary_key=True))
    secret_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    credential_version: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: str = Field(sa_column=Column(String(32), nullable=False))


people = PersonRow.__table__  # type: ignore[attr-defined]
clients = ClientRow.__table__  # type: ignore[attr-defined]
client_secrets = ClientSecretRow.__table__  # type: ignore[attr-defined]

CLIENT_TABLES = ("oauth_clients",)


# -- people -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """A person who can sign in, as other code sees them (no password hash)."""

    id: str
    username: str
    display_name: str
    email: str | None
    is_admin: bool


def new_person_id() -> str:
    """A fresh opaque person id."""
    return "person_" + secrets.token_hex(8)


def hash_password(password: str) -> bytes:
    """Argon2id hash of *password* (with :data:`PWHASH_OPSLIMIT` and :data:`PWHASH_MEMLIMIT`)."""
    _check_password(password)
    hashed: bytes = nacl.pwhash.argon2id.str(password.encode(), opslimit=PWHASH_OPSLIMIT, memlimit=PWHASH_MEMLIMIT)
    return hashed


@cache
def _decoy_hash() -> bytes:
    """A hash to verify against when the username is unknown, so both paths take as long."""
    hashed: bytes = nacl.pwhash.argon2id.str(
        secrets.token_bytes(16), opslimit=PWHASH_OPSLIMIT, memlimit=PWHASH_MEMLIMIT
    )
    return hashed


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        msg = f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
        raise ValidationError(msg)


def _normal_email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        msg = f"{email!r} is not an e-mail address"
        raise ValidationError(msg)
    return email


def create_person(
    conn: Connection,
    *,
    username: str,
    password: str | None,
    display_name: str,
    email: str | None,
    is_admin: bool,
    now: datetime,
) -> str:
    """Create a person who can sign in; return their ``person_…`` id.

    *password* may be None for people who sign in only through OpenID Connect or a
    one-time link. Only the Argon2id hash is stored.
    """
    username = username.strip().lower()
    if not USERNAME_RE.fullmatch(username):
        msg = f"username {username!r} must be 2-64 lower-case letters, digits, dots, dashes or underscores"
        raise ValidationError(msg)
    if not display_name.strip():
        msg = "a display name is required"
        raise ValidationError(msg)
    values = {
        "id": new_person_id(),
        "username": username,
        "display_name": display_name.strip(),
        "email": _normal_email(email),
        "password_hash": None if password is None else hash_password(password),
        "is_admin": is_admin,
        "created_at": format_at(now),
    }
    existing = conn.execute(
        select(people.c.username, people.c.email).where(
            (people.c.username == username) | ((people.c.email == values["email"]) & people.c.email.is_not(None))
        )
    ).first()
    if existing is not None:
        what = f"username {username!r}" if existing[0] == username else "that e-mail address"
        msg = f"{what} already belongs to another account"
        raise ConflictError(msg)
    try:
        with conn.begin_nested():
            conn.execute(people.insert().values(**values))
    except IntegrityError as exc:
        msg = f"username {username!r} or its e-mail address is already taken"
        raise ConflictError(msg) from exc
    return str(values["id"])


def set_password(conn: Connection, person_id: str, password: str) -> None:
    """Replace a person's password (the old hash is overwritten)."""
    result = conn.execute(people.update().where(people.c.id == person_id).values(password_hash=hash_password(password)))
    if result.rowcount == 0:
        msg = f"person {person_id} does not exist"
        raise NotFoundError(msg)


def has_password(conn: Connection, person_id: str) -> bool:
    """Whether the person has set a password (people invited by link or OIDC may not have)."""
    row = conn.execute(select(people.c.password_hash).where(people.c.id == person_id)).first()
    return row is not None and row[0] is not None


def _person(row: Any) -> Person:
    return Person(row.id, row.username, row.display_name, row.email, bool(row.is_admin))


def get_person(conn: Connection, person_id: str) -> Person | None:
    """The person with id *person_id*, or None."""
    row = conn.execute(select(people).where(people.c.id == person_id)).first()
    return None if row is None else _person(row)


def find_person(conn: Connection, *, username: str | None = None, email: str | None = None) -> Person | None:
    """The person with this username or (case-insensitive) e-mail address, or None."""
    if username is not None:
        row = conn.execute(select(people).where(people.c.username == username.strip().lower())).first()
    elif email is not None:
        row = conn.execute(select(people).where(people.c.email == email.strip().lower())).first()
    else:
        return None
    return None if row is None else _person(row)


def list_people(conn: Connection) -> list[Person]:
    """Every person, by username."""
    return [_person(row) for row in conn.execute(select(people).order_by(people.c.username))]


def count_admins(conn: Connection) -> int:
    """How many people are administrators."""
    return int(conn.execute(select(func.count()).select_from(people).where(people.c.is_admin)).scalar_one())


def authenticate_password(conn: Connection, *, username: str, password: str, now: datetime) -> str:
    """Return the person id if *password* is right; raise ForbiddenError otherwise.

    The error says the same thing whether or not *username* exists, and an unknown
    username still costs one Argon2id verification so timing does not tell either.
    """
    del now  # accounts do not expire yet; the parameter keeps the domain's clock discipline
    row = conn.execute(
        select(people.c.id, people.c.password_hash).where(people.c.username == username.strip().lower())
    ).first()
    stored = bytes(row.password_hash) if row is not None and row.password_hash is not None else None
    try:
        nacl.pwhash.argon2id.verify(stored or _decoy_hash(), password.encode())
    except nacl.exceptions.InvalidkeyError:
        stored = None
    if row is None or stored is None:
        raise ForbiddenError(BAD_CREDENTIALS)
    return str(row.id)


# -- roles --------------------------------------------------------------------------------


def roles_of(conn: Connection, person_id: str, at: datetime) -> frozenset[Role]:
    """A person's roles at *at*: admin from the account, trustee and ethics from governance."""
    person = get_person(conn, person_id)
    if person is None:
        return frozenset()
    roles: set[Role] = {Role.ADMIN} if person.is_admin else set()
    try:
        from trust.membership import roles_of_person  # noqa: PLC0415 - governance may not be installed yet
    except ImportError:
        return frozenset(roles)
    return frozenset(roles | set(roles_of_person(conn, person_id, at)))


def organisation_is_active(conn: Connection, organisation: str, at: datetime) -> bool:
    """Whether *organisation* is registered and not suspended at *at* (governance decides)."""
    try:
        from trust.organisations import is_organisation_active  # noqa: PLC0415 - see roles_of
    except ImportError:
        return True
    return bool(is_organisation_active(conn, organisation, at))


# -- partner clients ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """A partner's OAuth 2.0 client, as projected from the ledger."""

    client_id: str
    organisation: str
    name: str
    scopes: frozenset[str]
    auth_method: AuthMethod
    public_jwk: dict[str, Any] | None
    key_thumbprint: str | None
    credential_version: int
    is_suspended: bool
    registered_at: str
    registered_seq: int


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url, no padding) of a public OKP or EC key."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    data = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def check_public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """Validate a partner's public key (Ed25519 or NIST EC) and return just its public members."""
    kty = jwk.get("kty")
    if kty not in _THUMBPRINT_MEMBERS:
        msg = f"key type {kty!r} is not accepted: register an Ed25519 (OKP) or EC public key"
        raise ValidationError(msg)
    if "d" in jwk:
        msg = "that JWK holds a private key: register only the public key and keep the private one secret"
        raise ValidationError(msg)
    if jwk.get("crv") not in _ALLOWED_CURVES[kty]:
        msg = f"curve {jwk.get('crv')!r} is not accepted for {kty} keys (use {sorted(_ALLOWED_CURVES[kty])})"
        raise ValidationError(msg)
    members = _THUMBPRINT_MEMBERS[kty]
    for member in members:
        value = jwk.get(member)
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            msg = f"JWK member {member!r} must be a base64url string"
            raise ValidationError(msg)
    return {m: jwk[m] for m in members}


def _check_scopes(scopes: list[str]) -> list[str]:
    known = {str(s) for s in Scope}
    unknown = sorted(set(scopes) - known)
    if unknown:
        msg = f"unknown scope(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
        raise ValidationError(msg)
    return sorted(set(scopes))


def hash_secret(secret: str) -> bytes:
    """SHA-256 of a client secret (secrets are 256-bit random, so no slow hash is needed)."""
    return hashlib.sha256(secret.encode()).digest()


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _store_secret(secret: str) -> Any:
    def project(conn: Connection, entry: LedgerEntry) -> None:
        client_id = entry.payload["client"]
        conn.execute(delete(client_secrets).where(client_secrets.c.client_id == client_id))
        conn.execute(
            client_secrets.insert().values(
                client_id=client_id,
                secret_hash=hash_secret(secret),
                credential_version=entry.payload.get("credential_version", 1),
                created_at=entry.at,
            )
        )

    return project


def _forget_secret(conn: Connection, entry: LedgerEntry) -> None:
    conn.execute(delete(client_secrets).where(client_secrets.c.client_id == entry.payload["client"]))


def register_client(
    ledger: Ledger,
    *,
    organisation: str,
    name: str,
    scopes: list[str],
    auth_method: str,
    public_jwk: dict[str, Any] | None,
    actor: str,
    now: datetime,
) -> tuple[str, str | None]:
    """Register a partner client; return ``(client_id, secret)`` (secret None for private_key_jwt).

    Appends ``client.registered``. The secret is shown once, here, and stored only as a hash.
    """
    try:
        method = AuthMethod(auth_method)
    except ValueError:
        msg = f"authentication method {auth_method!r} is not supported: use {' or '.join(AuthMethod)}"
        raise ValidationError(msg) from None
    if not re.fullmatch(r"org_[a-z0-9][a-z0-9_]{1,58}", organisation):
        msg = f"{organisation!r} is not an organisation id (org_…)"
        raise ValidationError(msg)
    if not name.strip():
        msg = "a client needs a name"
        raise ValidationError(msg)
    key = None
    if method is AuthMethod.PRIVATE_KEY_JWT:
        if public_jwk is None:
            msg = "private_key_jwt clients must register a public key (JWK)"
            raise ValidationError(msg)
        key = check_public_jwk(public_jwk)
    elif public_jwk is not None:
        msg = "client_secret_basic clients do not register a key"
        raise ValidationError(msg)
    client_id = "client_" + secrets.token_hex(8)
    secret = _new_secret() if method is AuthMethod.CLIENT_SECRET_BASIC else None
    payload = {
        "client": client_id,
        "organisation": organisation,
        "name": name.strip(),
        "scopes": _check_scopes(scopes),
        "auth_method": str(method),
        "public_jwk": key,
        "key_thumbprint": None if key is None else jwk_thumbprint(key),
        "credential_version": 1,
    }
    ledger.append(
        "client.registered", payload, actor=actor, now=now, project=None if secret is None else _store_secret(secret)
    )
    return client_id, secret


def rotate_client_secret(
    ledger: Ledger,
    *,
    client_id: str,
    public_jwk: dict[str, Any] | None = None,
    actor: str,
    now: datetime,
) -> str | None:
    """Replace a client's credential; the old one stops working at once.

    A ``client_secret_basic`` client gets a new secret (returned once); a
    ``private_key_jwt`` client must give its new *public_jwk* (returns None).
    Tokens issued under the old credential are refused from now on. Appends ``client.rotated``.
    """
    new_key = None if public_jwk is None else check_public_jwk(public_jwk)
    secret: str | None = None

    def prepare(conn: Connection) -> dict[str, Any]:
        nonlocal secret
        client = get_client(conn, client_id)
        if client is None:
            msg = f"client {client_id} is not registered"
            raise NotFoundError(msg)
        if client.auth_method is AuthMethod.PRIVATE_KEY_JWT and new_key is None:
            msg = f"client {client_id} uses private_key_jwt: give its new public key to rotate"
            raise ValidationError(msg)
        if client.auth_method is AuthMethod.CLIENT_SECRET_BASIC and new_key is not None:
            msg = f"client {client_id} uses a client secret: it has no key to rotate"
            raise ValidationError(msg)
        secret = _new_secret() if client.auth_method is AuthMethod.CLIENT_SECRET_BASIC else None
        return {
            "client": client_id,
            "credential_version": client.credential_version + 1,
            "public_jwk": new_key,
            "key_thumbprint": None if new_key is None else jwk_thumbprint(new_key),
        }

    def project(conn: Connection, entry: LedgerEntry) -> None:
        if secret is not None:
            _store_secret(secret)(conn, entry)

    ledger.append("client.rotated", actor=actor, now=now, prepare=prepare, project=project)
    return secret


def suspend_client(ledger: Ledger, *, client_id: str, reason: str, actor: str, now: datetime) -> LedgerEntry:
    """Suspend a client: it gets no token and its tokens stop working. Appends ``client.suspended``."""

    def prepare(conn: Connection) -> dict[str, Any]:
        client = get_client(conn, client_id)
        if client is None:
            msg = f"client {client_id} is not registered"
            raise NotFoundError(msg)
        if client.is_suspended:
            msg = f"client {client_id} is already suspended"
            raise InvalidStateError(msg)
        return {"client": client_id, "reason": reason.strip() or "suspended by the trust"}

    return ledger.append("client.suspended", actor=actor, now=now, prepare=prepare, project=_forget_secret)


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        organisation=row.organisation,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        auth_method=AuthMethod(row.auth_method),
        public_jwk=None if row.public_jwk is None else json.loads(row.public_jwk),
        key_thumbprint=row.key_thumbprint,
        credential_version=int(row.credential_version),
        is_suspended=bool(row.is_suspended),
        registered_at=row.registered_at,
        registered_seq=int(row.registered_seq),
    )


def get_client(conn: Connection, client_id: str) -> Client | None:
    """The client with this id, or None."""
    row = conn.execute(select(clients).where(clients.c.client_id == client_id)).first()
    return None if row is None else _client(row)


def list_clients(conn: Connection, *, organisation: str | None = None) -> list[Client]:
    """Registered clients, oldest first (optionally of one organisation)."""
    query = select(clients).order_by(clients.c.registered_seq)
    if organisation is not None:
        query = query.where(clients.c.organisation == organisation)
    return [_client(row) for row in conn.execute(query)]


def verify_client_secret(conn: Connection, client_id: str, secret: str) -> bool:
    """Whether *secret* is the client's current secret (constant-time comparison)."""
    row = conn.execute(select(client_secrets.c.secret_hash).where(client_secrets.c.client_id == client_id)).first()
    expected = bytes(row[0]) if row is not None else bytes(32)
    return hmac.compare_digest(expected, hash_secret(secret)) and row is not None


def check_client_standing(
    conn: Connection,
    client_id: str,
    *,
    at: datetime,
    credential_version: int | None = None,
    client: Client | None = None,
) -> Client:
    """Return the client if it may act at *at*; raise ForbiddenError saying why not.

    A client may not act when it is unknown or suspended, when its organisation is
    suspended (or not registered), or -- for a token -- when the credential the token
    was issued under has since been rotated away. A caller that has just read the client
    passes it as *client* (saves reading it again on every request).
    """
    if client is None or client.client_id != client_id:
        client = get_client(conn, client_id)
    if client is None:
        msg = f"client {client_id} is not registered"
        raise ForbiddenError(msg)
    if client.is_suspended:
        msg = f"client {client_id} is suspended"
        raise ForbiddenError(msg)
    if credential_version is not None and credential_version != client.credential_version:
        msg = f"the credentials of client {client_id} were rotated after this token was issued"
        raise ForbiddenError(msg)
    if not organisation_is_active(conn, client.organisation, at):
        msg = f"organisation {client.organisation} is suspended or not registered"
        raise ForbiddenError(msg)
    return client


# -- projection ---------------------------------------------------------------------------


def _project_client(conn: Connection, entry: LedgerEntry) -> None:
    payload = entry.payload
    client_id = payload["client"]
    if entry.kind == "client.registered":
        conn.execute(
            clients.insert().values(
                client_id=client_id,
                organisation=payload["organisation"],
                name=payload["name"],
                scopes=" ".join(payload["scopes"]),
                auth_method=payload["auth_method"],
                key_thumbprint=payload["key_thumbprint"],
                public_jwk=None if payload["public_jwk"] is None else json.dumps(payload["public_jwk"], sort_keys=True),
                credential_version=payload["credential_version"],
                is_suspended=False,
                registered_at=entry.at,
                registered_seq=entry.seq,
                changed_at=entry.at,
            )
        )
    elif entry.kind == "client.rotated":
        values: dict[str, Any] = {"credential_version": payload["credential_version"], "changed_at": entry.at}
        if payload["public_jwk"] is not None:
            values["public_jwk"] = json.dumps(payload["public_jwk"], sort_keys=True)
            values["key_thumbprint"] = payload["key_thumbprint"]
        conn.execute(clients.update().where(clients.c.client_id == client_id).values(**values))
    elif entry.kind == "client.suspended":
        conn.execute(
            clients.update().where(clients.c.client_id == client_id).values(is_suspended=True, changed_at=entry.at)
        )


def register_projectors(registry: ProjectorRegistry) -> None:
    """Project ``client.*`` entries into ``oauth_clients``."""
    registry.register(
        ["client.registered", "client.rotated", "client.suspended"], _project_client, tables=CLIENT_TABLES
    )
