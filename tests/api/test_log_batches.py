"""Log lines are written in batches, off the thread that logs them, and none is lost (``api.logs``)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance
from api.logs import ACCESS_LOGGER, PROJECT_LOGGERS, BatchedStreamHandler, JsonFormatter, configure_logging


class CountingStream(io.StringIO):
    """A text stream that counts the writes made to it, and the threads that made them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        """Count, then write."""
        self.writes += 1
        self.writers.add(threading.current_thread().name)
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, BatchedStreamHandler, CountingStream]]:
    """A logger of its own with a batched JSON handler on a counting stream."""
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, flush_seconds=0.05)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("datatrust.test-batches")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    yield log, handler, stream
    log.removeHandler(handler)
    handler.close()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_lines_logged_together_are_written_together_by_the_writer_thread(
    logger: tuple[logging.Logger, BatchedStreamHandler, CountingStream],
) -> None:
    """A hundred INFO lines logged at once reach the stream in order, in a few writes, none by the logging thread."""
    log, handler, stream = logger
    handler.flush_seconds = 1.0  # ample time for the hundred calls, however busy the machine
    for n in range(100):
        log.info("line %d", n)
    assert stream.writes == 0  # nothing written on the logging thread
    _wait_for(lambda: len(_lines(stream)) == 100)
    assert [line["message"] for line in _lines(stream)] == [f"line {n}" for n in range(100)]
    assert stream.writes <= 3
    assert stream.writers == {"log-writer"}


def test_a_warning_is_written_at_once_with_the_lines_before_it(
    logger: tuple[logging.Logger, BatchedStreamHandler, CountingStream],
) -> None:
    """A WARNING (or worse) does not wait for the batch: it and the pending lines are on the stream when log returns."""
    log, _handler, stream = logger
    log.info("before")
    log.warning("something is wrong")
    assert [line["message"] for line in _lines(stream)] == ["before", "something is wrong"]


def test_closing_the_handler_writes_what_is_pending(
    logger: tuple[logging.Logger, BatchedStreamHandler, CountingStream],
) -> None:
    """Closing (as logging does at exit) writes every pending line and stops the writer thread."""
    log, handler, stream = logger
    handler.flush_seconds = 60.0  # the writer would not write these for a minute
    log.info("last words")
    handler.close()
    assert [line["message"] for line in _lines(stream)] == ["last words"]
    assert not handler._writer.is_alive()


def test_a_request_line_reaches_the_stream_when_the_server_stops(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own set-up: request lines still pending when the app shuts down are written then."""
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for name in PROJECT_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    configure_logging(stream)
    [handler] = [h for h in root.handlers if isinstance(h, BatchedStreamHandler)]
    handler.flush_seconds = 60.0
    try:
        with TestClient(create_app(instance)) as client:
            assert client.get("/healthz").status_code == 200
            assert stream.getvalue() == ""  # pending: not written on the request's thread
        [line] = [d for d in _lines(stream) if d["logger"] == ACCESS_LOGGER]
        assert (line["path"], line["status"]) == ("/healthz", 200)
    finally:
        handler.close()
