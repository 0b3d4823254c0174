"""Sign-in, sessions, the OAuth 2.0 endpoints for partners, and the admin API for accounts and clients.

Protocol endpoints (``/oauth/token``, ``/.well-known/*``) are public by nature and
speak OAuth's own JSON; everything else declares its action for ``require`` and,
when it changes state, checks the CSRF token of cookie-borne requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.auth import oidc, service
from api.auth.keys import auth_keys
from api.auth.oauth import JWKS_PATH, METADATA_PATH, TOKEN_PATH, TrustAuthorizationServer, server_metadata
from api.auth.sessions import csrf_token, end_session, start_person_session, verify_csrf
from api.authz import require
from api.deps import ClockDep, InstanceDep, get_now
from consent.principals import Principal
from ledger.errors import ForbiddenError, ValidationError
from trust import identity

router = APIRouter(tags=["auth"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "auth" / "templates")

CsrfChecked = Depends(verify_csrf)
ClientPath = Annotated[str, PathParam(max_length=64, description="The client id (client_…).")]
PersonPath = Annotated[str, PathParam(max_length=64, description="The person id (person_…).")]
LinkToken = Annotated[str, PathParam(max_length=128, description="The token of a one-time sign-in link.")]


def _server(request: Request) -> TrustAuthorizationServer:
    server = getattr(request.app.state, "oauth_server", None)
    if server is None:
        server = TrustAuthorizationServer(request.app.state.instance)
        request.app.state.oauth_server = server
    return server


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a signed-in browser to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


# -- OAuth 2.0 for partner systems ------------------------------------------------------------


class TokenOut(BaseModel):
    """An access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str | None = None


class OAuthErrorOut(BaseModel):
    """An OAuth error (RFC 6749 §5.2): the token endpoint speaks OAuth's own JSON, not problem+json."""

    error: str
    error_description: str | None = None


TOKEN_REQUEST: dict[str, Any] = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["grant_type"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                    "scope": {"type": "string", "maxLength": 200, "description": "Fewer scopes than the client's."},
                    "client_id": {"type": "string", "maxLength": 64},
                    "client_assertion_type": {
                        "type": "string",
                        "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                    },
                    "client_assertion": {"type": "string", "maxLength": 4096, "description": "For private_key_jwt."},
                },
            }
        }
    },
}


@router.post(
    TOKEN_PATH,
    summary="OAuth 2.0 token endpoint (client credentials)",
    response_model=TokenOut,
    responses={
        400: {"model": OAuthErrorOut, "description": "Not a valid token request (RFC 6749 §5.2)"},
        401: {"model": OAuthErrorOut, "description": "The client did not authenticate (invalid_client)"},
    },
    openapi_extra={"requestBody": TOKEN_REQUEST},
)
async def token(request: Request) -> Response:
    """Issue an access token to a partner client (RFC 6749 §4.4; client_secret_basic or private_key_jwt)."""
    return await _server(request).token_response(request)


@router.get(JWKS_PATH, summary="Public keys that verify this trust's access tokens")
def jwks(instance: InstanceDep) -> JSONResponse:
    """The JSON Web Key Set of the token-signing key."""
    return JSONResponse(auth_keys(instance.data_dir).public_jwks, headers={"Cache-Control": "public, max-age=300"})


@router.get(METADATA_PATH, summary="OAuth 2.0 authorisation server metadata (RFC 8414)")
def metadata(request: Request, instance: InstanceDep) -> JSONResponse:
    """Where the token endpoint and keys are, and what they accept."""
    return JSONResponse(server_metadata(instance, str(request.base_url)))


# -- sessions for people ----------------------------------------------------------------------


class SignInJson(BaseModel):
    """A local-account sign-in."""

    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body that a route reads itself (it also takes a form)."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}
    }


class SignedInPersonOut(BaseModel):
    """A person signed in with a password (the session cookie is set)."""

    person: str


class WhoAmI(BaseModel):
    """The principal behind this request."""

    id: str
    roles: list[str]
    display_name: str | None
    organisation: str | None
    subject: str | None
    scopes: list[str]


class CsrfOut(BaseModel):
    """A CSRF token for scripts (send it back as ``X-CSRF-Token`` with the ``dt_csrf`` cookie)."""

    csrf_token: str


def _page(request: Request, *, page: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
    instance = request.app.state.instance
    settings = oidc.oidc_settings(instance)
    values = {
        "page": page,
        "title": title,
        "trust_name": instance.name,
        "csrf_token": csrf_token(request),
        "oidc_label": settings.label if settings else None,
        "error": None,
        "username": "",
        "next": "/",
        **context,
    }
    return templates.TemplateResponse(request, "auth_page.html", values, status_code=status)


@router.get("/auth/sign-in", response_class=HTMLResponse, summary="Sign-in page")
def sign_in_page(
    request: Request,
    _: Annotated[Principal, Depends(require("session.create"))],
    next_: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> HTMLResponse:
    """The sign-in form (local account, or the organisation's identity provider)."""
    return _page(request, page="sign_in", title="Sign in", next=_safe_next(next_))


@router.post(
    "/auth/sign-in",
    summary="Sign in with a username and password (form or JSON)",
    dependencies=[CsrfChecked],
    response_model=SignedInPersonOut,
    responses={303: {"description": "A form sign-in: on to the page it came from"}},
    openapi_extra=json_body(SignInJson),
)
async def sign_in(
    request: Request, instance: InstanceDep, now: ClockDep, _: Annotated[Principal, Depends(require("session.create"))]
) -> Response:
    """Check the password (rate-limited per account and per address) and start a session."""
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if is_json:
        try:
            body = SignInJson.model_validate_json(await request.body())
        except ValueError:
            msg = "send a JSON object with a username and a password"
            raise ValidationError(msg) from None
        username, password, target = body.username, body.password, "/"
    else:
        form = await request.form()
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or "/"))
    address = request.client.host if request.client else "unknown"
    try:
        person_id = await run_in_threadpool(
            service.sign_in_with_password, instance, username=username, password=password, address=address, now=now
        )
    except (ForbiddenError, service.SignInThrottledError) as exc:
        if is_json:
            raise
        status = 429 if isinstance(exc, service.SignInThrottledError) else 403
        return _page(request, page="sign_in", title="Sign in", status=status, error=exc.detail, username=username)
    if is_json:
        response: Response = JSONResponse({"person": person_id})
    else:
        response = RedirectResponse(target, status_code=303)
    start_person_session(response, instance, person_id, now)
    return response


@router.post(
    "/auth/sign-out",
    summary="Sign out",
    dependencies=[CsrfChecked],
    status_code=204,
    responses={303: {"description": "Without Accept: application/json, on to the home page"}},
)
def sign_out(
    request: Request, instance: InstanceDep, _: Annotated[Principal, Depends(require("session.create"))]
) -> Response:
    """End this browser's session."""
    wants_json = "application/json" in request.headers.get("accept", "")
    response: Response = Response(status_code=204) if wants_json else RedirectResponse("/", status_code=303)
    end_session(request, response, instance)
    return response


@router.get("/auth/csrf", response_model=CsrfOut, summary="A CSRF token for scripted form posts")
def get_csrf(request: Request, _: Annotated[Principal, Depends(require("session.create"))]) -> CsrfOut:
    """The token matching this browser's ``dt_csrf`` cookie."""
    return CsrfOut(csrf_token=csrf_token(request))


@router.get("/auth/session", response_model=WhoAmI, summary="Who am I")
def session_info(instance: InstanceDep, principal: Annotated[Principal, Depends(require("session.read"))]) -> WhoAmI:
    """The signed-in principal: id, roles, organisation or subject, scopes."""
    return WhoAmI(**service.whoami(instance, principal))


class PasswordChange(BaseModel):
    """A new password, with the current one."""

    current_password: str | None = Field(default=None, max_length=1000, description="omit if none is set yet")
    new_password: str = Field(min_length=identity.MIN_PASSWORD_LENGTH, max_length=1000)


@router.post("/auth/password", status_code=204, summary="Change my password", dependencies=[CsrfChecked])
def change_password(
    body: PasswordChange,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("account.write"))],
) -> Response:
    """Replace the signed-in person's password."""
    service.change_password(
        instance, principal, current_password=body.current_password, new_password=body.new_password, now=now
    )
    return Response(status_code=204)


@router.get(
    "/auth/link/{token}",
    response_class=HTMLResponse,
    summary="One-time sign-in link",
    responses={
        403: {"content": {"text/html": {}}, "description": "A page: the link was used, expired or never existed"}
    },
)
def link_page(
    request: Request,
    token: LinkToken,
    instance: InstanceDep,
    now: ClockDep,
    _: Annotated[Principal, Depends(require("session.create"))],
) -> HTMLResponse:
    """Confirm before using the link (so a link previewer cannot use it up)."""
    try:
        person = service.sign_in_link_person(instance, token, now=now)
    except ForbiddenError as exc:
        return _page(request, page="error", title="Sign-in link", status=403, error=exc.detail)
    return _page(request, page="link", title="Sign in", token=token, display_name=person.display_name)


@router.post("/auth/link/{token}", summary="Use a one-time sign-in link", dependencies=[CsrfChecked])
def use_link(
    token: LinkToken, instance: InstanceDep, now: ClockDep, _: Annotated[Principal, Depends(require("session.create"))]
) -> Response:
    """Use the link up and start a session."""
    person_id = service.use_sign_in_link(instance, token, now=now)
    response = RedirectResponse("/", status_code=303)
    start_person_session(response, instance, person_id, now)
    return response


@router.get("/auth/oidc/login", summary="Sign in with the configured OpenID Connect provider")
async def oidc_login(request: Request, _: Annotated[Principal, Depends(require("session.create"))]) -> Response:
    """Redirect to the provider (authorization code flow with PKCE, state and nonce)."""
    return await oidc.start(request, str(request.url_for("oidc_callback")))


@router.get("/auth/oidc/callback", name="oidc_callback", summary="Return from the OpenID Connect provider")
async def oidc_callback(
    request: Request, instance: InstanceDep, _: Annotated[Principal, Depends(require("session.create"))]
) -> Response:
    """Check state, nonce and the ID token; map the verified e-mail address to a person; start a session."""
    claims = await oidc.finish(request)
    person_id = await run_in_threadpool(
        service.sign_in_with_email, instance, email=claims.get("email"), email_verified=claims.get("email_verified")
    )
    response = RedirectResponse("/", status_code=303)
    start_person_session(response, instance, person_id, get_now())
    return response


# -- administration -------------------------------------------------------------------------


class ClientIn(BaseModel):
    """A partner client to register."""

    organisation: str = Field(max_length=64, description="the partner organisation (org_…)")
    name: str = Field(min_length=1, max_length=200, description="what the client is, e.g. 'case management system'")
    scopes: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=10, description="any of check, consents:write, requests:write, agreements:sign"
    )
    auth_method: str = Field(
        default="client_secret_basic", max_length=32, description="client_secret_basic or private_key_jwt"
    )
    public_jwk: dict[str, Any] | None = Field(
        default=None, max_length=16, description="Ed25519 or EC public JWK (private_key_jwt)"
    )


class ClientOut(BaseModel):
    """A registered partner client (never its secret)."""

    client_id: str
    organisation: str
    name: str
    scopes: list[str]
    auth_method: str
    key_thumbprint: str | None
    credential_version: int
    is_suspended: bool
    registered_at: str
    registered_seq: int


class ClientCredentialsOut(BaseModel):
    """A client id and, for client_secret_basic, the secret: shown once, stored only as a hash."""

    client_id: str
    client_secret: str | None


class RotateIn(BaseModel):
    """For private_key_jwt clients: the new public key."""

    public_jwk: dict[str, Any] | None = Field(default=None, max_length=16)


class SuspendIn(BaseModel):
    """Why the client is suspended."""

    reason: str = Field(min_length=1, max_length=500)


class PersonIn(BaseModel):
    """An account to create."""

    username: str = Field(max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, min_length=identity.MIN_PASSWORD_LENGTH, max_length=1000)
    is_admin: bool = False


class PersonOut(BaseModel):
    """An account (no password hash)."""

    id: str
    username: str
    display_name: str
    email: str | None
    is_admin: bool


class LinkOut(BaseModel):
    """A one-time sign-in link, valid for a day."""

    path: str


def _client_out(client: identity.Client) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        organisation=client.organisation,
        name=client.name,
        scopes=sorted(client.scopes),
        auth_method=str(client.auth_method),
        key_thumbprint=client.key_thumbprint,
        credential_version=client.credential_version,
        is_suspended=client.is_suspended,
        registered_at=client.registered_at,
        registered_seq=client.registered_seq,
    )


@router.get("/v1/admin/clients", response_model=list[ClientOut], summary="Partner clients")
def list_clients(
    instance: InstanceDep,
    _: Annotated[Principal, Depends(require("clients.manage"))],
    organisation: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ClientOut]:
    """Every registered partner client, oldest first."""
    return [_client_out(c) for c in service.list_partner_clients(instance, organisation=organisation)]


@router.post(
    "/v1/admin/clients",
    response_model=ClientCredentialsOut,
    status_code=201,
    summary="Register a partner client",
    dependencies=[CsrfChecked],
)
def create_client(
    body: ClientIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("clients.manage"))],
) -> ClientCredentialsOut:
    """Record ``client.registered``; the secret (client_secret_basic) is returned once."""
    client_id, secret = identity.register_client(
        instance.ledger,
        organisation=body.organisation,
        name=body.name,
        scopes=body.scopes,
        auth_method=body.auth_method,
        public_jwk=body.public_jwk,
        actor=principal.actor,
        now=now,
    )
    return ClientCredentialsOut(client_id=client_id, client_secret=secret)


@router.get("/v1/admin/clients/{client_id}", response_model=ClientOut, summary="One partner client")
def get_client(
    client_id: ClientPath, instance: InstanceDep, _: Annotated[Principal, Depends(require("clients.manage"))]
) -> ClientOut:
    """A registered client."""
    return _client_out(service.get_partner_client(instance, client_id))


@router.post(
    "/v1/admin/clients/{client_id}/rotate",
    response_model=ClientCredentialsOut,
    summary="Rotate a client's secret or key",
    dependencies=[CsrfChecked],
)
def rotate_client(
    client_id: ClientPath,
    body: RotateIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("clients.manage"))],
) -> ClientCredentialsOut:
    """Record ``client.rotated``: the old secret or key, and tokens issued under it, stop working."""
    secret = identity.rotate_client_secret(
        instance.ledger, client_id=client_id, public_jwk=body.public_jwk, actor=principal.actor, now=now
    )
    return ClientCredentialsOut(client_id=client_id, client_secret=secret)


@router.post(
    "/v1/admin/clients/{client_id}/suspend",
    response_model=ClientOut,
    summary="Suspend a partner client",
    dependencies=[CsrfChecked],
)
def suspend_client(
    client_id: ClientPath,
    body: SuspendIn,
    instance: InstanceDep,
    now: ClockDep,
    principal: Annotated[Principal, Depends(require("clients.manage"))],
) -> ClientOut:
    """Record ``client.suspended``: no new tokens, and its tokens stop working."""
    identity.suspend_client(instance.ledger, client_id=client_id, reason=body.reason, actor=principal.actor, now=now)
    return _client_out(service.get_partner_client(instance, client_id))


@router.get("/v1/admin/people", response_model=list[PersonOut], summary="Accounts")
def list_people(instance: InstanceDep, _: Annotated[Principal, Depends(require("people.manage"))]) -> list[PersonOut]:
    """Every person who can sign in."""
    return [PersonOut(**vars_of(p)) for p in service.list_accounts(instance)]


@router.post(
    "/v1/admin/people",
    response_model=PersonOut,
    status_code=201,
    summary="Create an account",
    dependencies=[CsrfChecked],
)
def create_person(
    body: PersonIn, instance: InstanceDep, now: ClockDep, _: Annotated[Principal, Depends(require("people.manage"))]
) -> PersonOut:
    """Create a person who can sign in (appointing trustees is a governance action)."""
    person = service.create_account(
        instance,
        username=body.username,
        display_name=body.display_name,
        email=body.email,
        password=body.password,
        is_admin=body.is_admin,
        now=now,
    )
    return PersonOut(**vars_of(person))


@router.post(
    "/v1/admin/people/{person_id}/sign-in-link",
    response_model=LinkOut,
    status_code=201,
    summary="A one-time sign-in link for a person",
    dependencies=[CsrfChecked],
)
def create_sign_in_link(
    person_id: PersonPath,
    instance: InstanceDep,
    now: ClockDep,
    _: Annotated[Principal, Depends(require("people.manage"))],
) -> LinkOut:
    """Hand the path to the person over a channel you trust; it works once, for a day."""
    return LinkOut(path=f"/auth/link/{service.issue_sign_in_link(instance, person_id=person_id, now=now)}")


def vars_of(person: identity.Person) -> dict[str, Any]:
    """A person as a plain dict."""
    return {
        "id": person.id,
        "username": person.username,
        "display_name": person.display_name,
        "email": person.email,
        "is_admin": person.is_admin,
    }
