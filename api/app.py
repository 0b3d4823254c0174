"""The FastAPI application: thin routes over the domain packages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import limits, logs, metrics, problems, security_headers
from api.append_process import command as append_process_command
from api.auth import web as auth_web
from api.instance import Instance
from api.pages import STATIC_DIR
from api.routes import agreements as agreements_routes
from api.routes import auth as auth_routes
from api.routes import checks as checks_routes
from api.routes import checks_fast, pages_admin, pages_me, pages_public, pages_trustee
from api.routes import consents as consents_routes
from api.routes import ethics as ethics_routes
from api.routes import governance as governance_routes
from api.routes import ledger as ledger_routes
from api.routes import me as me_routes
from api.routes import ops as ops_routes
from api.routes import requests as requests_routes
from api.routes import webhooks as webhooks_routes
from api.webhooks.worker import start_delivery_worker
from ledger.remote import AppendProcess
from trust.requests import start_closer

# FastAPI tries the routers in this order on every request: the check (the hot path, called before
# every share) and the probes come first. No two routers serve the same path.
ROUTERS = [
    checks_routes.router,
    ops_routes.router,
    ledger_routes.router,
    auth_routes.router,
    consents_routes.router,
    me_routes.router,
    webhooks_routes.router,
    governance_routes.router,
    agreements_routes.router,
    ethics_routes.router,
    requests_routes.router,
    pages_public.router,
    pages_me.router,
    pages_trustee.router,
    pages_admin.router,
]


def create_app(
    instance: Instance, *, close_on_shutdown: bool = False, background: bool = False, append_process: bool = False
) -> FastAPI:
    """Build the app serving *instance*.

    With *background*, the app's lifespan also runs the governance closer (records decisions
    when voting periods end) and the webhook delivery worker, and stops both before the
    instance is closed. With *append_process*, it starts a child process that appends the
    event loop's entries (the checks' decisions: :mod:`ledger.remote`), and stops it first.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stoppers: list[Callable[[], None]] = []
        if background:
            closer = start_closer(instance.ledger, clock=instance.clock)
            stoppers.append(closer.stop)
            stoppers.append(start_delivery_worker(instance))
        appender = None
        if append_process:
            command, env = append_process_command(instance)
            appender = AppendProcess(command, env=env, notify=instance.ledger.notify_listeners)
            if await appender.start():
                instance.ledger.append_process = appender
        try:
            yield
        finally:
            if appender is not None:
                instance.ledger.append_process = None  # from now on in this process
                await appender.aclose()  # what it was sent is answered, its last checkpoint signed
            for stop in reversed(stoppers):
                stop()
            if close_on_shutdown:
                instance.close()
            logs.flush_logs()  # the request lines still pending, written before the server exits

    app = FastAPI(
        title="datatrust",
        version="0.1.0",
        summary="Data-trust governance and consent ledger",
        lifespan=lifespan,
        # No OpenTelemetry: the trust has its own request log and /metrics (api.logs, api.metrics).
        # Off, FastAPI skips asking for OpenTelemetry providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.instance = instance
    problems.install(app)
    auth_web.install(app)
    pages_public.install(app)  # page refusals as pages (sign in first) for browsers
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    checks_fast.install(app)  # the common good check, answered before routing (api/routes/checks_fast.py)
    limits.install(app)  # body size and JSON depth limits (413/422 before any route reads the body)
    # Outermost, one layer around everything above: the request id, the security headers, the
    # request's timing and log line, and the problem+json 500 for an exception nothing handled.
    logs.install(app, metrics=metrics.install(app), docs_paths=security_headers.docs_paths(app))
    return app
