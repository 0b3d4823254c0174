"""Fixtures for webhook tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.webhooks.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local endpoint that answers 200 to everything."""
    server = Receiver()
    yield server
    server.close()
