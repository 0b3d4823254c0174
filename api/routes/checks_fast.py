"""The common ``POST /v1/checks`` answered without FastAPI's routing and dependency solving.

A partner calls the check before every share, so its request handling is the hot path. Most
calls are alike: no query string, a JSON body of a few subjects, a bearer token that was
verified a moment ago, from a client in good standing. :class:`CheckFastPath`, a middleware
just inside the request limits (body size, JSON depth) and the edge (request id, security
headers, log line, latency metric), answers exactly those with the same domain calls as the
route in :mod:`api.routes.checks`: the token's principal, :func:`api.authz.authorise` for
``checks.create``, the ``CheckIn`` model, the same action, and
:meth:`trust.checks.CheckService.decide_recorded` (the decision is durable before the answer).

Anything else goes on, untouched, to the route, which decides it afresh: a query string
(``dry_run``, ``at``), another content type, no bearer token, a token that does not verify
or whose client is not in good standing (read as the route reads it, see
:func:`api.auth.principal.confirm_standing`), a refusal, a body the model refuses, more
subjects than are decided on the event loop, and an error while recording (nothing was
recorded then). So every refusal and error a partner can get is the route's own, with its
problem document; this path only makes the answer to a good request cheaper (about half the
CPU of the routed request). ``tests/api/test_checks_fast_path.py`` holds the two to each other.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth.principal import _token_principal, confirm_standing
from api.authz import authorise
from api.deps import get_now
from api.limits import replay_body
from api.routes.checks import ON_LOOP_SUBJECTS, CheckIn, action_of
from api.routes.checks import router as checks_router
from ledger.errors import DomainError

PATH = "/v1/checks"
_JSON = b"application/json"


class CheckFastPath:
    """Answers the common good ``POST /v1/checks`` itself; passes every other request on."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # The route itself, for the latency metric's label (as if the router had matched it).
        self.route = next(
            route
            for route in checks_router.routes
            if getattr(route, "path", None) == PATH and "POST" in (getattr(route, "methods", None) or ())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        message = await receive()  # the request limits hand the whole body over in one message
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, replay_body(b"", receive, first=message), send)
            return
        body = bytes(message.get("body", b""))
        answer = await self._answer(scope, body)
        if answer is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        scope["route"] = self.route
        headers = [(b"content-type", _JSON), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The recorded answer, or None when the route must handle the request."""
        authorization = content_type = None
        for name, value in scope.get("headers") or ():  # the first of each, as the route reads them
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        scheme, _, credential = (authorization or b"").partition(b" ")
        token = credential.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
        json_body = content_type is not None and content_type.split(b";")[0].strip().lower() == _JSON
        state = self.fastapi_app.state
        instance = state.instance
        service = instance.checks
        if not token or not json_body or service is None:
            return None
        now = get_now()
        try:
            principal, standing_key = _token_principal(instance, token, now=now)
            try:
                await confirm_standing(instance, principal, standing_key, now, state.standing)
            except Exception:  # noqa: BLE001 - a refusal or a storage error: the route reads it again and answers
                return None
            authorise(principal, "checks.create")
            action = action_of(CheckIn.model_validate_json(body), principal)
        except (DomainError, ValueError):  # a refusal, or a body the model refuses (pydantic's is a ValueError)
            return None
        if len(action.subjects) > ON_LOOP_SUBJECTS:
            return None
        try:
            result = await service.decide_recorded(action, actor=principal.actor, now=now)
        except DomainError:
            return None  # nothing was recorded: the route tries again and answers with its problem document
        state.metrics.check_decided(result.decision.decision)
        answer: bytes = result.answer()
        return answer


def install(app: FastAPI) -> None:
    """Add :class:`CheckFastPath` (add it inside the request limits: they must see every body first)."""
    app.add_middleware(CheckFastPath, fastapi_app=app)
