"""Server-rendered HTML pages: one Jinja2 environment for every HTML route.

Pages extend ``templates/base.html`` (British English, usable without
JavaScript, one ``<main>`` landmark, a skip link, a visible focus ring) and load
only ``/static/style.css``, served by the app itself: nothing comes from a CDN.

Use :func:`render` from a route::

    return render(request, "receipt.html", title="Your consent receipt", receipt=...)

Every template can use ``trust_name``, ``principal`` (or None), ``csrf_token()``
(for a hidden ``csrf_token`` field in any form that changes something) and the
filters ``long_date`` (``2026-03-01T…Z`` → ``1 March 2026``) and ``grouped``
(split a long hex string into groups for reading aloud and printing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from consent.summaries import long_date

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")


def grouped(text: str, size: int = 8) -> str:
    """``"abcdef0123…"`` → ``"abcdef01 23…"`` (for long hashes on screen and paper)."""
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(("html",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["long_date"] = long_date
environment.filters["grouped"] = grouped


def _csrf(request: Request) -> str:
    from api.auth.sessions import csrf_token  # noqa: PLC0415 - only forms need it

    return csrf_token(request)


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render *template* with the shared page context."""
    instance = request.app.state.instance
    page = {
        "request": request,
        "trust_name": instance.name,
        "principal": getattr(request.state, "principal", None),
        "csrf_token": lambda: _csrf(request),
        **context,
    }
    html = environment.get_template(template).render(page)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def organisation_names(instance: Any) -> Callable[[str], str]:
    """A function naming organisations for people (``org_riverside_food_bank`` -> ``Riverside Food Bank``)."""
    from trust.organisations import list_organisations  # noqa: PLC0415 - pages only

    with instance.db.engine.connect() as conn:
        names = {o.id: o.name for o in list_organisations(conn)}
    return lambda org: names.get(org, org)


def wants_html(request: Request, format_: str | None = None) -> bool:
    """Whether the caller asked for a page (``?format=html`` or an Accept header preferring HTML)."""
    if format_ is not None:
        return format_ == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]
