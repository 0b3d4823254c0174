"""Retries: a failing endpoint gets the event later, on an exponential schedule with jitter, for at least 24 hours."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
import pytest
from freezegun import freeze_time

from api.instance import Instance
from api.webhooks.signing import webhook_signer
from api.webhooks.worker import DeliveryWorker
from consent.service import withdraw_consent
from datatrust_client import WebhookVerifier
from ledger.entry import parse_at
from tests.webhooks.helpers import grant, now, subscribe
from trust.webhook_deliveries import (
    FIRST_RETRY,
    MAX_RETRY_DELAY,
    RETRY_FOR,
    Delivery,
    get_delivery,
    list_deliveries,
    retry_delay,
)


class FlakyEndpoint:
    """An httpx transport standing in for a partner that fails the first *failures* requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer 503 to the first *failures* requests, then 204."""
        self.seen.append(request)
        if len(self.seen) <= self.failures:
            return httpx.Response(503)
        return httpx.Response(204)


def _queue_one(instance: Instance) -> Delivery:
    consent = grant(instance, "org_collector")
    subscribe(instance, "org_collector", url="https://partner.example/hooks")
    withdraw_consent(
        instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
    )
    (message,) = list_deliveries(instance.db, organisation="org_collector")
    return message


def _worker(instance: Instance, endpoint: FlakyEndpoint) -> DeliveryWorker:
    http = httpx.Client(transport=httpx.MockTransport(endpoint))
    return DeliveryWorker(
        instance.db, webhook_signer(instance.data_dir), rng=random.Random(7), http=http, concurrency=1
    )


@pytest.mark.parametrize(
    "attempt",
    [1, 2, 5, 10, 30],  # from the first delay, through doubling, to the cap
)
def test_retry_delay_doubles_with_jitter_up_to_the_cap(attempt: int) -> None:
    """After failed attempt n the wait is in [b/2, b] with b = min(10 s * 2^(n-1), 2 h)."""
    base = min(MAX_RETRY_DELAY, FIRST_RETRY * 2 ** (attempt - 1))
    delays = {retry_delay(attempt, random.Random(seed)) for seed in range(50)}
    assert all(base / 2 <= d <= base for d in delays)
    assert len(delays) > 1  # jitter: retries of many messages do not line up


def test_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(instance: Instance) -> None:
    """Each failure schedules the next attempt per the backoff; nothing is sent early; attempt four delivers."""
    message = _queue_one(instance)
    endpoint = FlakyEndpoint(failures=3)
    worker = _worker(instance, endpoint)
    rng = random.Random(7)  # the worker's own generator draws the same jitter
    try:
        with freeze_time(parse_at(message.queued_at)) as clock:
            for attempt in (1, 2, 3):
                assert worker.run_once().attempted == 1
                state = get_delivery(instance.db, message.id, organisation=None)
                expected = parse_at(state.last_attempt_at or "") + retry_delay(attempt, rng)
                assert (state.status, state.attempts, state.last_response_status) == ("pending", attempt, 503)
                assert parse_at(state.next_attempt_at or "") == expected
                clock.move_to(expected - timedelta(microseconds=1))
                assert worker.run_once().attempted == 0  # not due yet
                clock.move_to(expected)
            report = worker.run_once()
        final = get_delivery(instance.db, message.id, organisation=None)
    finally:
        worker.close()
    assert (report.delivered, final.status, final.attempts) == (1, "delivered", 4)
    assert [a.response_status for a in final.history] == [503, 503, 503, 204]
    assert [a.is_success for a in final.history] == [False, False, False, True]
    assert {r.headers["webhook-id"] for r in endpoint.seen} == {message.id}  # one idempotency id throughout
    last = endpoint.seen[-1]
    verifier = WebhookVerifier.from_public_key(webhook_signer(instance.data_dir).public_key)
    event = verifier.verify(last.content, dict(last.headers), now=int(last.headers["webhook-timestamp"]))
    assert event.type == "consent.withdrawn"


def test_failing_endpoint_is_retried_for_at_least_24_hours_then_given_up(instance: Instance) -> None:
    """An endpoint that never answers 2xx is tried until an attempt fails 24 h after queueing, then marked failed."""
    message = _queue_one(instance)
    worker = _worker(instance, FlakyEndpoint(failures=10_000))
    queued = parse_at(message.queued_at)
    try:
        with freeze_time(queued) as clock:
            while True:
                worker.run_once()
                state = get_delivery(instance.db, message.id, organisation=None)
                if state.status != "pending":
                    break
                clock.move_to(parse_at(state.next_attempt_at or ""))
    finally:
        worker.close()
    last_attempt = parse_at(state.history[-1].started_at)
    assert state.status == "failed"
    assert RETRY_FOR <= last_attempt - queued <= RETRY_FOR + MAX_RETRY_DELAY
    assert 15 <= state.attempts <= 40
    gaps = [
        parse_at(b.started_at) - parse_at(a.started_at) for a, b in zip(state.history, state.history[1:], strict=False)
    ]
    assert max(gaps) <= MAX_RETRY_DELAY
    assert gaps[0] < gaps[4] < gaps[8]  # exponential growth before the cap
