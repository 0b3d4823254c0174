"""Prometheus metrics, one :class:`~prometheus_client.CollectorRegistry` per app (never the global one).

* ``datatrust_checks_total`` (counter): decisions answered by ``POST /v1/checks`` (dry runs
  included), by ``decision`` (``permit``, ``deny``).
* ``datatrust_http_request_duration_seconds`` (histogram): time to answer, by ``route`` (the
  route template, or ``unmatched``), ``method`` (``other`` for unusual ones) and ``status``
  class (``2xx``, ``4xx`` ...).
* ``datatrust_ledger_entries`` (gauge): entries in the ledger, read from its head at scrape time.
* ``datatrust_webhook_backlog`` (gauge): webhook messages not yet delivered (``pending`` outbox
  rows), counted at scrape time.

No label carries personal data: routes are templates (``/v1/checks/{decision_id}``), never paths.
``GET /metrics`` (``api/routes/ops.py``) serves :meth:`Metrics.render`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from api.instance import Instance
from trust.webhook_deliveries import PENDING
from trust.webhook_models import messages_table

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DECISIONS = ("permit", "deny")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Gauges read from the database when Prometheus scrapes: the ledger's size and the webhook backlog."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def describe(self) -> Iterator[Metric]:
        """The metric families, without touching the database (called when registered)."""
        yield GaugeMetricFamily("datatrust_ledger_entries", "Entries in the ledger.")
        yield GaugeMetricFamily("datatrust_webhook_backlog", "Webhook messages waiting to be delivered.")

    def collect(self) -> Iterator[Metric]:
        """Read both gauges (left out of the scrape, with a warning, if the database does not answer)."""
        try:
            size = self.instance.ledger.size()  # the head entry's seq + 1: one indexed row
            with self.instance.db.engine.connect() as conn:
                query = select(func.count()).select_from(messages_table).where(messages_table.c.status == PENDING)
                backlog = int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer (%s)", exc.__class__.__name__)
            return
        yield GaugeMetricFamily("datatrust_ledger_entries", "Entries in the ledger.", value=size)
        yield GaugeMetricFamily("datatrust_webhook_backlog", "Webhook messages waiting to be delivered.", value=backlog)


class Metrics:
    """One app's metrics and their registry."""

    def __init__(self, instance: Instance) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "datatrust_checks",
            "Share decisions answered by POST /v1/checks, by decision.",
            ["decision"],
            registry=self.registry,
        )
        for decision in DECISIONS:
            self.checks.labels(decision=decision)  # both series exist from the start, at 0
        self.requests = Histogram(
            "datatrust_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.registry.register(StateCollector(instance))

    def check_decided(self, decision: str) -> None:
        """Count one answered check."""
        self.checks.labels(decision=decision).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics (made by :func:`install`)."""
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


class MetricsMiddleware:
    """Times every http request into :attr:`Metrics.requests`."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app answers
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(
                route=route if isinstance(route, str) else UNMATCHED,
                method=method if method in METHODS else "other",
                status=f"{status // 100}xx",
            ).observe(time.perf_counter() - started)


def install(app: FastAPI) -> None:
    """Give *app* its own :class:`Metrics` and add :class:`MetricsMiddleware`."""
    metrics = Metrics(app.state.instance)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
