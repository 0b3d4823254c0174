"""Webhook deliveries: leasing due outbox messages, recording outcomes, the retry schedule, and reading them.

A worker calls :func:`claim_due` to lease messages for one attempt each, sends them,
and calls :func:`record_outcome`. Every attempt is a ``webhook_attempts`` row from the
moment it starts, so a partner or an administrator can see each try and its answer
(:func:`list_deliveries`, :func:`get_delivery`); an attempt without an outcome was cut
short (the worker stopped) and its message is retried when the lease runs out.

Retry schedule (:func:`retry_delay`): after failed attempt *n* the next one waits a
delay drawn uniformly from [b/2, b] with ``b = min(10 s * 2^(n-1), 2 h)`` ("equal
jitter"). A message keeps being retried until it is delivered or an attempt fails at
least :data:`RETRY_FOR` (24 hours) after the message was queued; it is then ``failed``.
So every message is tried for at least 24 hours, and for at most about 26.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, insert, select, update

from ledger.db import Database
from ledger.entry import format_at, parse_at
from ledger.errors import NotFoundError, ValidationError
from trust.webhook_models import attempts_table, messages_table, subscriptions_table

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)
RETRY_FOR = timedelta(hours=24)  # a message is retried at least this long after it was queued
FIRST_RETRY = timedelta(seconds=10)  # the delay after the first failure, before jitter
MAX_RETRY_DELAY = timedelta(hours=2)  # the delay doubles after each failure up to this cap
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt (``is_success`` None: the worker stopped before the answer was recorded)."""

    attempt: int
    started_at: str
    finished_at: str | None
    response_status: int | None
    error: str | None
    is_success: bool | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox message and where its delivery stands."""

    id: str
    subscription: str
    organisation: str
    seq: int
    event_type: str
    status: str
    attempts: int
    event_at: str
    queued_at: str
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: str | None
    payload: dict[str, Any] | None = None
    history: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the API shows it (``payload`` and ``history`` only in the detailed view)."""
        return asdict(self)


def _delivery(row: Row[Any], *, with_payload: bool = False) -> Delivery:
    return Delivery(
        id=row.id,
        subscription=row.subscription,
        organisation=row.organisation,
        seq=int(row.seq),
        event_type=row.event_type,
        status=row.status,
        attempts=int(row.attempts),
        event_at=row.event_at,
        queued_at=row.queued_at,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_response_status=row.last_response_status,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        payload=json.loads(row.body) if with_payload else None,
    )


def list_deliveries(
    db: Database,
    *,
    organisation: str | None,
    status: str | None = None,
    subscription: str | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Messages of *organisation* (every organisation's for None), newest first."""
    if status is not None and status not in STATUSES:
        msg = f"unknown delivery status {status!r}: use one of {', '.join(STATUSES)}"
        raise ValidationError(msg, field="status")
    m = messages_table.c
    query = select(messages_table).order_by(m.seq.desc(), m.id).limit(max(1, min(limit, MAX_PAGE)))
    for column, value in ((m.organisation, organisation), (m.status, status), (m.subscription, subscription)):
        if value is not None:
            query = query.where(column == value)
    if before_seq is not None:
        query = query.where(m.seq < before_seq)
    with db.engine.connect() as conn:
        return [_delivery(row) for row in conn.execute(query)]


def get_delivery(db: Database, delivery_id: str, *, organisation: str | None) -> Delivery:
    """One message with its body and every attempt, if *organisation* owns it (or None: an administrator)."""
    m, a = messages_table.c, attempts_table.c
    query = select(messages_table).where(m.id == delivery_id)
    if organisation is not None:
        query = query.where(m.organisation == organisation)
    with db.engine.connect() as conn:
        row = conn.execute(query).first()
        if row is None:
            msg = f"webhook delivery {delivery_id} was not found"
            raise NotFoundError(msg)
        history = [
            Attempt(int(r.attempt), r.started_at, r.finished_at, r.response_status, r.error, r.is_success)
            for r in conn.execute(select(attempts_table).where(a.message == delivery_id).order_by(a.attempt))
        ]
    delivery = _delivery(row, with_payload=True)
    delivery.history.extend(history)
    return delivery


def retry_delay(attempt: int, rng: random.Random) -> timedelta:
    """Delay after failed attempt number *attempt* (1, 2, …): exponential, capped, with "equal jitter".

    The base doubles from :data:`FIRST_RETRY` up to :data:`MAX_RETRY_DELAY`; the delay is
    drawn uniformly from [base/2, base], so many failing messages spread out rather
    than retrying in lock step.
    """
    exponent = min(max(attempt - 1, 0), 20)
    base = min(MAX_RETRY_DELAY, FIRST_RETRY * (2**exponent))
    half = base.total_seconds() / 2
    return timedelta(seconds=half + rng.uniform(0, half))


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message a worker has leased for one attempt."""

    id: str
    attempt: int
    url: str
    scheme: str
    secret: str | None
    body: str


def claim_due(db: Database, *, now: datetime, lease: timedelta, limit: int) -> list[ClaimedMessage]:
    """Lease up to *limit* due messages for one attempt each.

    The lease moves ``next_attempt_at`` to ``now + lease``: if the worker dies before
    recording the outcome, the message is due again when the lease runs out (at least
    once). Workers in several processes never lease the same message at once
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises write transactions).
    """
    m, s = messages_table.c, subscriptions_table.c
    stamp = format_at(now)
    query = (
        select(m.id, m.attempts, m.body, s.url, s.scheme, s.secret)
        .select_from(messages_table.join(subscriptions_table, s.id == m.subscription))
        .where(m.status == PENDING, m.next_attempt_at <= stamp, s.is_active.is_(True))
        .order_by(m.next_attempt_at, m.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=messages_table)
    )
    claimed: list[ClaimedMessage] = []
    with db.write_engine.begin() as conn:
        for row in conn.execute(query).all():
            attempt = int(row.attempts) + 1
            conn.execute(
                update(messages_table)
                .where(m.id == row.id)
                .values(attempts=attempt, next_attempt_at=format_at(now + lease), last_attempt_at=stamp)
            )
            conn.execute(insert(attempts_table).values(message=row.id, attempt=attempt, started_at=stamp))
            claimed.append(ClaimedMessage(row.id, attempt, row.url, row.scheme, row.secret, row.body))
    return claimed


def record_outcome(
    db: Database,
    claimed: ClaimedMessage,
    *,
    now: datetime,
    response_status: int | None,
    error: str | None,
    rng: random.Random,
) -> str:
    """Record an attempt's outcome (2xx is success) and schedule the next one; return the message's status."""
    is_success = response_status is not None and 200 <= response_status < 300  # noqa: PLR2004 - HTTP 2xx
    m, a = messages_table.c, attempts_table.c
    stamp = format_at(now)
    with db.write_engine.begin() as conn:
        conn.execute(
            update(attempts_table)
            .where(a.message == claimed.id, a.attempt == claimed.attempt)
            .values(finished_at=stamp, response_status=response_status, error=error, is_success=is_success)
        )
        row = conn.execute(select(m.status, m.attempts, m.queued_at).where(m.id == claimed.id)).first()
        if row is None or row.status != PENDING:
            return CANCELLED if row is None else str(row.status)
        last = {"last_response_status": response_status, "last_error": error}
        if is_success:
            values = {**last, "status": DELIVERED, "delivered_at": stamp, "next_attempt_at": None}
        elif int(row.attempts) != claimed.attempt:  # the lease ran out and another attempt is under way
            values = last
        elif now - parse_at(row.queued_at) >= RETRY_FOR:
            values = {**last, "status": FAILED, "next_attempt_at": None}
        else:
            values = {**last, "next_attempt_at": format_at(now + retry_delay(claimed.attempt, rng))}
        conn.execute(update(messages_table).where(m.id == claimed.id).values(values))
        return str(values.get("status", PENDING))
