"""``datatrust clients …`` and ``datatrust people …``: partner clients and accounts from the console.

Secrets are printed once and stored only as hashes; registering, rotating and
suspending a client are ledger entries recorded with the actor ``trust`` (the
operator at the console).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.auth import service
from api.auth.keys import auth_settings
from api.cli_common import DEFAULT_DATA_DIR, DataDir, clean_errors, opened, out
from api.instance import Instance
from ledger.errors import ValidationError
from trust import identity

CLI_ACTOR = "trust"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

clients_app = typer.Typer(help="Register partner clients and rotate their credentials.", no_args_is_help=True)
people_app = typer.Typer(help="Accounts of people who sign in (administrators, trustees, staff).", no_args_is_help=True)


def _now() -> datetime:
    return datetime.now(UTC)


def sign_in_url(instance: Instance, token: str) -> str:
    """The full URL of a one-time sign-in link."""
    base = auth_settings(instance.data_dir, origin=instance.origin).public_url or DEFAULT_BASE_URL
    return f"{base}/auth/link/{token}"


def bootstrap_admin(instance: Instance, *, username: str = "admin") -> list[str]:
    """Create the first administrator and return the lines telling the operator how to sign in."""
    person, token = service.first_admin(
        instance, username=username, display_name="Administrator", email=None, now=_now()
    )
    return [
        f"First administrator: {person.username} ({person.id}).",
        f"Sign in once, within 24 hours, at: {sign_in_url(instance, token)}",
        f"Then set a password with: datatrust people set-password {person.username} --data-dir {instance.data_dir}",
    ]


def _read_jwk(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        msg = f"{path} does not hold a JWK (a JSON object)"
        raise ValidationError(msg)
    return value


@clients_app.command("register")
@clean_errors
def clients_register(  # noqa: PLR0917 - typer maps each parameter to an option
    organisation: Annotated[str, typer.Option(help="The partner organisation (org_…).")],
    name: Annotated[str, typer.Option(help="What the client is, e.g. 'case management system'.")],
    scope: Annotated[list[str], typer.Option("--scope", help="A scope to grant (repeat for several).")],
    method: Annotated[str, typer.Option(help="client_secret_basic or private_key_jwt.")] = "client_secret_basic",
    public_key: Annotated[
        Path | None, typer.Option(help="JWK file of the public key (private_key_jwt).", exists=True, dir_okay=False)
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Register a partner client (prints its secret once)."""
    with opened(data_dir) as instance:
        client_id, secret = identity.register_client(
            instance.ledger,
            organisation=organisation,
            name=name,
            scopes=scope,
            auth_method=method,
            public_jwk=_read_jwk(public_key),
            actor=CLI_ACTOR,
            now=_now(),
        )
    out.print(f"client_id:     {client_id}", highlight=False)
    if secret is not None:
        out.print(f"client_secret: {secret}", highlight=False)
        out.print("Store the secret now: it is not shown again (the trust keeps only its hash).")


@clients_app.command("rotate")
@clean_errors
def clients_rotate(
    client_id: Annotated[str, typer.Argument(help="The client to rotate.")],
    public_key: Annotated[
        Path | None, typer.Option(help="New public JWK (private_key_jwt clients).", exists=True, dir_okay=False)
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Replace a client's secret (or key); the old one and its tokens stop working at once."""
    with opened(data_dir) as instance:
        secret = identity.rotate_client_secret(
            instance.ledger, client_id=client_id, public_jwk=_read_jwk(public_key), actor=CLI_ACTOR, now=_now()
        )
    if secret is not None:
        out.print(f"client_secret: {secret}", highlight=False)
        out.print("Store the new secret now: it is not shown again.")
    else:
        out.print(f"New key registered for {client_id}.")


@clients_app.command("suspend")
@clean_errors
def clients_suspend(
    client_id: Annotated[str, typer.Argument(help="The client to suspend.")],
    reason: Annotated[str, typer.Option(help="Why, in plain words (recorded on the ledger).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Suspend a client: it gets no token and its tokens stop working."""
    with opened(data_dir) as instance:
        entry = identity.suspend_client(
            instance.ledger, client_id=client_id, reason=reason, actor=CLI_ACTOR, now=_now()
        )
    out.print(f"Suspended {client_id} (ledger entry {entry.seq}).")


@clients_app.command("list")
@clean_errors
def clients_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List partner clients."""
    with opened(data_dir) as instance:
        for client in service.list_partner_clients(instance):
            status = "suspended" if client.is_suspended else "active"
            out.print(
                f"{client.client_id}  {client.organisation}  {client.auth_method}  "
                f"{' '.join(sorted(client.scopes))}  {status}  {client.name}",
                highlight=False,
            )


@people_app.command("create")
@clean_errors
def people_create(
    username: Annotated[str, typer.Argument(help="Sign-in name (lower case).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    email: Annotated[str | None, typer.Option(help="E-mail address (for OpenID Connect sign-in).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make an administrator.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create an account and print a one-time sign-in link for it."""
    with opened(data_dir) as instance:
        person = service.create_account(
            instance, username=username, display_name=name, email=email, password=None, is_admin=admin, now=_now()
        )
        token = service.issue_sign_in_link(instance, person_id=person.id, now=_now())
        out.print(f"Created {person.username} ({person.id}).", highlight=False)
        out.print(f"One-time sign-in link (24 hours): {sign_in_url(instance, token)}", highlight=False)


@people_app.command("link")
@clean_errors
def people_link(
    username: Annotated[str, typer.Argument(help="Whose link.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print a new one-time sign-in link for an account."""
    with opened(data_dir) as instance:
        person = _person(instance, username)
        token = service.issue_sign_in_link(instance, person_id=person.id, now=_now())
        out.print(f"One-time sign-in link (24 hours): {sign_in_url(instance, token)}", highlight=False)


@people_app.command("set-password")
@clean_errors
def people_set_password(
    username: Annotated[str, typer.Argument(help="Whose password.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="The new password.")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Set an account's password (prompted, never echoed)."""
    with opened(data_dir) as instance:
        person = _person(instance, username)
        service.reset_password(instance, person_id=person.id, password=password)
    out.print(f"Password set for {username}.")


@people_app.command("list")
@clean_errors
def people_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List accounts."""
    with opened(data_dir) as instance:
        for person in service.list_accounts(instance):
            flag = "admin" if person.is_admin else ""
            out.print(f"{person.id}  {person.username}  {person.display_name}  {flag}", highlight=False)


def _person(instance: Instance, username: str) -> identity.Person:
    person = service.find_account(instance, username)
    if person is None:
        msg = f"there is no account {username!r}"
        raise ValueError(msg)
    return person


def register(app: typer.Typer) -> None:
    """Add ``clients`` and ``people`` to the ``datatrust`` command."""
    app.add_typer(clients_app, name="clients")
    app.add_typer(people_app, name="people")
