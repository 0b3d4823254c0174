"""Structured logs: one JSON object per line, and one line per HTTP request, each with a request id.

:class:`EdgeMiddleware` -- the one outermost middleware, which also adds the security headers
(:mod:`api.security_headers`) and times the request (:mod:`api.metrics`) -- gives every request
an id -- the caller's ``X-Request-ID`` when it matches :data:`REQUEST_ID_PATTERN`, a fresh random
one otherwise -- returns it in the ``X-Request-ID`` response header, and logs one line on
``datatrust.access``::

    {"timestamp": "2026-11-26T09:00:00.123Z", "level": "INFO", "logger": "datatrust.access",
     "message": "GET /v1/ledger/checkpoint 200", "request_id": "3f9c…", "method": "GET",
     "path": "/v1/ledger/checkpoint", "status": 200, "duration_ms": 1.8}

An exception no route or handler dealt with is answered with a problem+json 500 that says
nothing about it but the request id (:func:`api.problems.server_error`); that request's line is
then an ERROR with the traceback in ``exception``.

What is never logged: query strings, bodies, headers, cookies and tokens. The path is logged
without its query string, and a path parameter that is itself a secret (the one-time sign-in
link ``/auth/link/{token}``) is logged as its route template. Records logged by any other
logger while a request is handled carry its ``request_id`` too.

:func:`configure_logging` (called by ``datatrust serve`` and ``datatrust demo``) sends every
record to standard error through :class:`JsonFormatter`: this project's own loggers
(``datatrust``, ``api``, ``trust``, ``consent``, ``ledger``) from INFO, everything else --
uvicorn, httpx, SQLAlchemy -- from WARNING. Uvicorn's access log is turned off there, since
the line above replaces it.

Lines are written in batches (:class:`BatchedStreamHandler`): each is formatted when logged,
and written with the others of the moment at most :data:`FLUSH_SECONDS` later by a thread of
its own, at once for a WARNING or worse, and at exit. One write per request on the event loop
was the costliest part of a check: every system call there lets the ledger's writer thread
take the GIL, and the loop then waits for it back (about 90 µs a request on a 2-core machine).
A server killed outright (SIGKILL) loses the INFO lines of its last few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import server_error
from api.security_headers import hold_docs_page, secure_headers

if TYPE_CHECKING:
    from api.metrics import Metrics


REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ACCESS_LOGGER = "datatrust.access"
PROJECT_LOGGERS = ("datatrust", "api", "trust", "consent", "ledger")
SECRET_PARAM = re.compile(r"token|secret|code|password|key", re.IGNORECASE)  # path parameters never logged
MAX_LOGGED_PATH = 256
_HANDLER_MARK = "_datatrust_json"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger(ACCESS_LOGGER)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NOT_EXTRA = _STANDARD | {"request_id"}  # written first, not again among the extras
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)  # json.dumps would build one per call


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, request_id and ``extra`` fields."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        """Render *record* as one line of JSON."""
        document: dict[str, Any] = {
            "timestamp": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            document["request_id"] = request_id
        document.update({k: v for k, v in record.__dict__.items() if k not in _NOT_EXTRA})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(document, default=str).decode()
        except TypeError:  # what orjson cannot write (an integer over 64 bits, a non-string key): the slower encoder
            return _ENCODER.encode(document)

    def _timestamp(self, created: float) -> str:
        """``2026-11-26T09:00:00.123Z`` (UTC, milliseconds): the seconds part is formatted once a second."""
        whole = int(created)
        second, text = self._second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}{int((created - whole) * 1000):03d}Z"


FLUSH_SECONDS = 0.05


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches, off the logging thread (see the module documentation)."""

    def __init__(self, stream: TextIO, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one batch written at a time, in the order taken
        self._waiting = threading.Event()  # set when the first line of a batch is pending
        self._closing = False
        self._writer = threading.Thread(target=self._write_batches, name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record* now (its request id is this task's) and queue the line; write at once if WARNING or worse."""
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        with self._pending_lock:
            self._pending.append(line)
            first = len(self._pending) == 1
        if record.levelno >= logging.WARNING:
            self.flush()
        elif first:
            self._waiting.set()

    def flush(self) -> None:
        """Write every pending line now, in one write."""
        with self._write_lock:
            with self._pending_lock:
                lines, self._pending = self._pending, []
            if lines and self.stream is not None:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()

    def close(self) -> None:
        """Write what is pending and stop the writer thread."""
        self._closing = True
        self._waiting.set()
        if self._writer is not threading.current_thread():
            self._writer.join(timeout=5)
        self.flush()
        super().close()

    def _write_batches(self) -> None:
        while True:
            self._waiting.wait()
            if self._closing:
                return
            time.sleep(self.flush_seconds)  # the lines of this moment gather meanwhile
            self._waiting.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not stop the writer
                with contextlib.suppress(Exception):
                    sys.__stderr__.write("datatrust: could not write log lines\n")  # type: ignore[union-attr]


def flush_logs() -> None:
    """Write every log line still pending in this process (e.g. before reading the stream)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def _exc_info(failure: BaseException | None) -> tuple[type[BaseException], BaseException, Any] | None:
    return None if failure is None else (type(failure), failure, failure.__traceback__)


def configure_logging(stream: TextIO | None = None) -> None:
    """Send every log record to *stream* (standard error) as JSON lines; safe to call twice.

    Records no longer carry the process id, thread and process names, which no line shows:
    each cost a system call or a lookup on every request's log line.
    """
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = BatchedStreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` when it is safe to repeat, else a new random id."""
    for key, value in headers:
        if key.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID_PATTERN.match(text):
                return text
            break
    # Unique, not secret: Python's generator (seeded from the OS, reseeded in a forked child), not
    # os.urandom per request, a system call that hands the GIL to the ledger's writer thread mid-request.
    return f"{random.getrandbits(128):032x}"


def logged_path(scope: Scope, path: str) -> str:
    """*path* (as requested, without its query string), or its route template when a parameter is a secret."""
    template = getattr(scope.get("route"), "path", None)
    params = scope.get("path_params") or {}
    if isinstance(template, str) and any(SECRET_PARAM.search(str(name)) for name in params):
        return template
    return path[:MAX_LOGGED_PATH]


class EdgeMiddleware:
    """The outermost middleware, in one layer on every http request (the hot path pays for one).

    It gives the request its id, wraps ``send`` once to add the id and the security headers
    (:func:`api.security_headers.secure_headers`) to the response, times the request once into
    the metrics (:meth:`api.metrics.Metrics.request_answered`) and logs its line. An exception
    nothing inside handled becomes the :func:`api.problems.server_error` 500 (with the headers
    and id of every other answer), and the log line is an ERROR carrying the traceback; when the
    response had already started, the exception goes on to the server after being logged.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope.get("headers") or ())
        scope.setdefault("state", {})["request_id"] = request_id
        requested = str(scope.get("path", ""))  # before routing: a mount changes root_path, not this
        https = scope.get("scheme") == "https"
        id_header = (_REQUEST_ID_KEY, request_id.encode("latin-1"))
        status = 0  # none sent yet

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                raw = [h for h in message.get("headers", ()) if h[0].lower() != _REQUEST_ID_KEY]
                headers = secure_headers(raw, https=https)
                headers.append(id_header)
                message["headers"] = headers
            await send(message)

        inner_send = hold_docs_page(send_edge) if requested in self.docs_paths else send_edge
        failure: BaseException | None = None
        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, inner_send)
        except Exception as exc:
            failure = exc
            if status:
                raise  # the response has begun: too late to replace it, so the server cuts it short
            response = server_error(logged_path(scope, requested), request_id)
            await response(scope, receive, send_edge)
        finally:
            seconds = time.perf_counter() - started
            answered = status or 500  # the app never answered (e.g. the client went away)
            route = getattr(scope.get("route"), "path", None)
            method = str(scope.get("method", ""))
            self.metrics.request_answered(route if isinstance(route, str) else None, method, answered, seconds)
            level = logging.INFO if failure is None else logging.ERROR
            if access_log.isEnabledFor(level):
                path = logged_path(scope, requested)
                extra = {
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": answered,
                    "duration_ms": round(seconds * 1000, 2),
                }
                # makeRecord and handle, as Logger.log does, without looking up the caller's source line
                # (nobody logs it, and it cost a fifth of the log line on every request).
                record = access_log.makeRecord(
                    ACCESS_LOGGER,
                    level,
                    __file__,
                    0,
                    "%s %s %s",
                    (method, path, answered),
                    _exc_info(failure),
                    extra=extra,
                )
                access_log.handle(record)
            request_id_var.reset(token)


def install(app: FastAPI, *, metrics: Metrics, docs_paths: frozenset[str] = frozenset()) -> None:
    """Add :class:`EdgeMiddleware` (outside every middleware added before it), timing into *metrics*."""
    app.add_middleware(EdgeMiddleware, metrics=metrics, docs_paths=docs_paths)
