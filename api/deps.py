"""Request-scoped dependencies: the trust instance and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from api.instance import Instance


async def get_instance(request: Request) -> Instance:
    """The trust this app serves.

    Dependencies that do not block are ``async``: FastAPI runs a plain ``def`` dependency in
    the thread pool, a hop that cost more than the rest of a check's own work.
    """
    instance: Instance = request.app.state.instance
    return instance


def get_now() -> datetime:
    """The current instant (freezegun freezes it in tests)."""
    return datetime.now(UTC)


async def _now() -> datetime:
    return get_now()


InstanceDep = Annotated[Instance, Depends(get_instance)]
ClockDep = Annotated[datetime, Depends(_now)]
