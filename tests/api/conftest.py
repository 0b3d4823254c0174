"""Fixtures the API tests share."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from api.logs import PROJECT_LOGGERS, JsonFormatter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record, as the server writes it: JSON lines formatted when logged (inside the request)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root, project = logging.getLogger(), [logging.getLogger(name) for name in PROJECT_LOGGERS]
    saved = [logger.level for logger in project]
    root.addHandler(handler)
    for logger in project:
        logger.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    for logger, level in zip(project, saved, strict=True):
        logger.setLevel(level)
