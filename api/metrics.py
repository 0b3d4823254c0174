"""Prometheus metrics, one :class:`~prometheus_client.CollectorRegistry` per app (never the global one).

* ``datatrust_checks_total`` (counter): decisions answered by ``POST /v1/checks`` (dry runs
  included), by ``decision`` (``permit``, ``deny``).
* ``datatrust_http_request_duration_seconds`` (histogram): time to answer, by ``route`` (the
  route template, or ``unmatched``), ``method`` (``other`` for unusual ones) and ``status``
  class (``2xx``, ``4xx`` ...).
* ``datatrust_ledger_entries`` (gauge): entries in the ledger, read from its head at scrape time.
* ``datatrust_webhook_backlog`` (gauge): webhook messages not yet delivered (``pending`` outbox
  rows), counted at scrape time.
* ``datatrust_append_process_running`` (gauge): 1 while this server's append process
  (``ledger/remote.py``) appends its checks' decisions, 0 once it stopped or failed to start
  (the server then appends them itself: alert on it, as the server stays ready).

No label carries personal data: routes are templates (``/v1/checks/{decision_id}``), never paths.
``GET /metrics`` (``api/routes/ops.py``) serves :meth:`Metrics.render`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from api.instance import Instance
from trust.webhook_deliveries import PENDING
from trust.webhook_models import messages_table

DECISIONS = ("permit", "deny")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
APPEND_PROCESS_HELP = "1 while the append process appends this server's checks, else 0."
log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Gauges read from the database when Prometheus scrapes: the ledger's size and the webhook backlog."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def describe(self) -> Iterator[Metric]:
        """The metric families, without touching the database (called when registered)."""
        yield GaugeMetricFamily("datatrust_ledger_entries", "Entries in the ledger.")
        yield GaugeMetricFamily("datatrust_webhook_backlog", "Webhook messages waiting to be delivered.")
        yield GaugeMetricFamily("datatrust_append_process_running", APPEND_PROCESS_HELP)

    def collect(self) -> Iterator[Metric]:
        """Read the gauges (the database's two left out of the scrape, with a warning, if it does not answer)."""
        appender = self.instance.ledger.append_process
        running = appender is not None and appender.running
        yield GaugeMetricFamily("datatrust_append_process_running", APPEND_PROCESS_HELP, value=int(running))
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
        # Both series exist from the start, at 0 (and labels() is not called per check).
        self._decisions = {decision: self.checks.labels(decision=decision) for decision in DECISIONS}
        self.requests = Histogram(
            "datatrust_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status class.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._request_series: dict[tuple[str, str, int], Histogram] = {}  # labels() once per series
        self.registry.register(StateCollector(instance))

    def check_decided(self, decision: str) -> None:
        """Count one answered check."""
        series = self._decisions.get(decision)
        if series is None:  # not a decision this app makes today, but counted all the same
            series = self.checks.labels(decision=decision)
        series.inc()

    def request_answered(self, route: str | None, method: str, status: int, seconds: float) -> None:
        """Time one answered http request: *route* is its template (None when no route matched)."""
        method = method if method in METHODS else "other"
        key = (UNMATCHED if route is None else route, method, status // 100)
        series = self._request_series.get(key)
        if series is None:  # a bounded set: route templates x METHODS x status classes
            series = self.requests.labels(route=key[0], method=method, status=f"{key[2]}xx")
            self._request_series[key] = series
        series.observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics (made by :func:`install`)."""
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def install(app: FastAPI) -> Metrics:
    """Give *app* its own :class:`Metrics` (requests are timed into it by :class:`api.logs.EdgeMiddleware`)."""
    metrics = Metrics(app.state.instance)
    app.state.metrics = metrics
    return metrics
