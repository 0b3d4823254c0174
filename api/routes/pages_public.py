"""The public pages: the home page, the public register, one request in plain words, comments, the Atom feed.

This module also holds what every page module shares (:func:`page`, :func:`require_page`,
:func:`form_fields`, :func:`install`):

* Pages are rendered by :func:`api.pages.render` from ``templates/pages/`` and sent with a
  strict Content-Security-Policy: scripts and styles only from this app, no inline script
  or style, forms only to this app, no framing.
* Each route declares its action with :func:`require_page`, which authorises exactly as
  :func:`api.authz.require` does; when a browser asks for a page it may not see, the
  refusal becomes a page (sign in first, or "not allowed") instead of problem+json.
  API clients still get the problem document with its ``action``.
* Every form posts a CSRF token (``csrf_token()`` in templates). Forms that anyone may use
  without signing in (a public comment) check it with :func:`api.auth.sessions.verify_csrf`
  too; for signed-in people :func:`api.authz.require` checks it.
* Form errors are shown above the form and beside the field they concern, in words a
  non-expert understands; the domain's message is kept when it is already plain.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.auth.principal import current_principal
from api.auth.service import SignInThrottledError
from api.auth.sessions import verify_csrf
from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.instance import Instance
from api.pages import render, wants_html
from api.problems import UnauthorisedError
from api.routes.governance import read
from api.routes.requests import _throttle_comment
from consent.principals import Principal, Role
from ledger.errors import DomainError, ForbiddenError, NotFoundError, ValidationError
from trust import register, requests

router = APIRouter(tags=["pages"], include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ATOM = "http://www.w3.org/2005/Atom"
RequestPath = Annotated[str, Path(pattern=r"^req_[A-Za-z0-9_-]{1,60}$")]
MAX_FORM_FIELD = 5000


# -- shared by every page module ------------------------------------------------------------------


def page(request: Request, template: str, *, title: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``pages/<template>`` with the page headers (CSP and friends)."""
    response = render(request, f"pages/{template}", status_code=status_code, title=title, **context)
    response.headers.update(PAGE_HEADERS)
    return response


class PageRefusalError(Exception):
    """A browser asked for a page its principal may not see."""

    def __init__(self, *, status: int, detail: str, sign_in: str | None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.sign_in = sign_in


def _sign_in_for(action: str, path: str) -> str:
    target = quote(path, safe="/")
    if action.startswith("me."):
        return f"/me/sign-in?next={target}"
    return f"/auth/sign-in?next={target}"


def require_page(action: str) -> Callable[..., Awaitable[Principal]]:
    """Like :func:`api.authz.require`, but a browser that is refused gets a page, not a problem document."""
    check = require(action)

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)  # as require() does: one dependency level, not two
        try:
            return await check(request)
        except (UnauthorisedError, ForbiddenError) as exc:
            if not wants_html(request):
                raise
            is_public = principal.roles == {Role.PUBLIC}
            sign_in = _sign_in_for(action, request.url.path) if is_public and request.method == "GET" else None
            raise PageRefusalError(status=401 if is_public else 403, detail=exc.detail, sign_in=sign_in) from exc

    dependency.__name__ = f"require_page_{action.replace('.', '_')}"
    dependency.action = action  # type: ignore[attr-defined]
    return dependency


def install(app: FastAPI) -> None:
    """Show refusals of page requests as pages (a redirect to sign in, or a short explanation)."""

    @app.exception_handler(PageRefusalError)
    async def _refused(request: Request, exc: PageRefusalError) -> Response:
        if exc.sign_in is not None:
            return RedirectResponse(exc.sign_in, status_code=303)
        csrf = "CSRF" in exc.detail
        signed_out = exc.status == 401  # noqa: PLR2004 - HTTP status
        title = "You cannot use this page"
        if csrf or signed_out:
            title = "This form has expired" if csrf else "Please sign in again"
        return page(
            request,
            "refused.html",
            title=title,
            status_code=exc.status,
            is_csrf=csrf,
            is_signed_out=signed_out,
            detail=exc.detail,
        )


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted form as strings (files and over-long values are cut down to text)."""
    form = await request.form()
    return {key: value[:MAX_FORM_FIELD] for key, value in form.items() if isinstance(value, str)}


def field_error(field: str, message: str) -> dict[str, str]:
    """One error for the error summary, tied to the form field with id *field*."""
    return {"field": field, "message": message}


def sentence(text: str) -> str:
    """A domain message as a sentence: capital first letter, full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def base_url(request: Request) -> str:
    """The site's own address, without a trailing slash."""
    return str(request.base_url).rstrip("/")


async def verify_page_csrf(request: Request) -> None:
    """:func:`api.auth.sessions.verify_csrf` for forms anyone may send; a browser is told what to do."""
    try:
        await verify_csrf(request)
    except ForbiddenError as exc:
        if not wants_html(request):
            raise
        raise PageRefusalError(status=403, detail=exc.detail, sign_in=None) from exc


Public = Annotated[Principal, Depends(require_page("public.read"))]
Commenter = Annotated[Principal, Depends(require_page("requests.comment"))]
Csrf = Annotated[None, Depends(verify_page_csrf)]


# -- home and register ------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request, instance: InstanceDep, now: ClockDep, _: Public) -> HTMLResponse:
    """What the trust is, and the three ways in."""
    profile = read(instance, register.trust_profile)
    notice = read(instance, register.request_summaries, at=now, states=(requests.PUBLIC_NOTICE,))
    return page(request, "home.html", title="Home", profile=profile, in_notice=notice)


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, instance: InstanceDep, now: ClockDep, _: Public) -> HTMLResponse:
    """Everything the trust asks, decides and does, in plain words."""
    view = read(instance, register.public_register, at=now)
    checkpoint = instance.ledger.latest_checkpoint()
    verifier_key = instance.ledger.signer.verifier.to_text()
    return page(
        request,
        "register.html",
        title="Public register",
        nav="register",
        register=view,
        checkpoint=checkpoint,
        verifier_key=verifier_key,
        base=base_url(request),
    )


def _request_page(
    request: Request,
    instance: Instance,
    request_id: str,
    now: datetime,
    *,
    status_code: int = 200,
    errors: list[dict[str, str]] | None = None,
    comment: str = "",
    thanks: bool = False,
) -> HTMLResponse:
    try:
        dossier = read(instance, register.request_dossier, request_id, at=now, for_reviewer=False)
    except NotFoundError:
        return page(request, "not_found.html", title="Request not found", status_code=404, what="access request")
    title = dossier.summary.request.title
    return page(
        request,
        "request.html",
        title=title,
        nav="register",
        dossier=dossier,
        errors=errors or [],
        comment=comment,
        thanks=thanks,
        status_code=status_code,
    )


@router.get("/register/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request, request_id: RequestPath, instance: InstanceDep, now: ClockDep, _: Public
) -> HTMLResponse:
    """One access request in plain words, with a comment form while it is on public notice."""
    return _request_page(request, instance, request_id, now, thanks="commented" in request.query_params)


@router.post("/register/requests/{request_id}/comments", response_class=HTMLResponse)
async def post_comment(
    request: Request,
    request_id: RequestPath,
    instance: InstanceDep,
    now: ClockDep,
    principal: Commenter,
    _csrf: Csrf,
) -> Response:
    """Record a public comment (its text stays off the ledger), then show the request again."""
    text = (await form_fields(request)).get("comment", "").strip()
    if not text:
        errors = [field_error("comment", "Write your comment before sending it.")]
        return _request_page(request, instance, request_id, now, status_code=422, errors=errors)
    if len(text) > requests.MAX_COMMENT:
        errors = [
            field_error(
                "comment",
                f"Your comment is {len(text)} characters long. Shorten it to {requests.MAX_COMMENT} or fewer.",
            )
        ]
        return _request_page(request, instance, request_id, now, status_code=422, errors=errors, comment=text)
    address = request.client.host if request.client is not None else "unknown"
    try:
        await run_in_threadpool(_throttle_comment, instance, address, now)
        await run_in_threadpool(
            requests.comment_on_request,
            instance.ledger,
            request_id=request_id,
            text=text,
            actor=principal.actor,
            now=now,
        )
    except SignInThrottledError:
        errors = [
            field_error("comment", "You have sent several comments in the last minute. Wait a minute and try again.")
        ]
        return _request_page(request, instance, request_id, now, status_code=429, errors=errors, comment=text)
    except NotFoundError:
        return page(request, "not_found.html", title="Request not found", status_code=404, what="access request")
    except (ValidationError, DomainError) as exc:
        message = sentence(exc.detail)
        if "closed" in exc.detail:
            message = "Comments on this request have closed: its public notice period has ended."
        status = 422 if isinstance(exc, ValidationError) else 409
        return _request_page(
            request,
            instance,
            request_id,
            now,
            status_code=status,
            errors=[field_error("comment", message)],
            comment=text,
        )
    return RedirectResponse(f"/register/requests/{request_id}?commented=1#comment-form", status_code=303)


# -- the Atom feed ----------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def atom_feed(
    *, base: str, origin: str, profile: register.TrustProfile, items: list[register.FeedItem], trust_name: str
) -> bytes:
    """An Atom 1.0 (RFC 4287) document of *items*."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    year = (profile.configured_at or "2026")[:4]
    host, _, path = origin.partition("/")
    tag = f"tag:{host},{year}:{path or 'trust'}"
    _sub(feed, "title", f"{trust_name}: decisions")
    _sub(feed, "subtitle", "Access requests decided or revoked by the trustees, and ethics committee decisions.")
    _sub(feed, "id", f"{tag}/decisions")
    _sub(feed, "updated", max((i.at for i in items), default=profile.configured_at or "2026-01-01T00:00:00Z"))
    _sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/register/feed.atom")
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/register")
    author = _sub(feed, "author")
    _sub(author, "name", trust_name)
    for item in items:
        entry = _sub(feed, "entry")
        _sub(entry, "title", item.title)
        _sub(entry, "id", f"{tag}/entry/{item.seq}")
        _sub(entry, "updated", item.at)
        _sub(entry, "published", item.at)
        href = f"{base}/register/requests/{item.request}" if item.request else f"{base}/register#ethics"
        _sub(entry, "link", rel="alternate", type="text/html", href=href)
        _sub(entry, "category", term=item.kind)
        _sub(entry, "summary", item.summary, type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


@router.get("/register/feed.atom")
def feed(request: Request, instance: InstanceDep, now: ClockDep, _: Public) -> Response:
    """New decisions as an Atom feed, newest first."""
    items = read(instance, register.decision_feed, at=now)
    profile = read(instance, register.trust_profile)
    body = atom_feed(
        base=base_url(request), origin=instance.origin, profile=profile, items=items, trust_name=instance.name
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8", headers={"Cache-Control": "max-age=60"})
