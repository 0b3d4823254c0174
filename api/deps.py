"""Request-scoped dependencies: the trust instance and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from api.instance import Instance


def get_instance(request: Request) -> Instance:
    """The trust this app serves."""
    instance: Instance = request.app.state.instance
    return instance


def get_now() -> datetime:
    """The current instant (freezegun freezes it in tests)."""
    return datetime.now(UTC)


InstanceDep = Annotated[Instance, Depends(get_instance)]
ClockDep = Annotated[datetime, Depends(get_now)]
