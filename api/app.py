"""The FastAPI application: thin routes over the domain packages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.instance import Instance
from api.routes import checks as checks_routes
from api.routes import ledger as ledger_routes

ROUTERS = [
    ledger_routes.router,
    checks_routes.router,
]


def create_app(instance: Instance, *, close_on_shutdown: bool = False) -> FastAPI:
    """Build the app serving *instance*."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            instance.close()

    app = FastAPI(
        title="datatrust",
        version="0.1.0",
        summary="Data-trust governance and consent ledger",
        lifespan=lifespan,
    )
    app.state.instance = instance
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
