"""The delivery worker: sends outbox messages to partners, signed, until each is delivered or given up.

One loop: lease up to ``batch_size`` due messages (:func:`trust.webhook_deliveries.claim_due`),
POST them concurrently (``concurrency`` threads), record each outcome, repeat; when
nothing is due, sleep until ``poll_interval`` passes or the worker is woken. Delivery
is at least once: a message is marked delivered only after a 2xx answer, so a worker
killed mid-batch leaves its leased messages to be sent again when their lease runs
out, with the same ``webhook-id`` (receivers de-duplicate on it).

**Latency.** Inside ``datatrust serve`` the worker is woken by the commit of any
causing entry in that process, so the first attempt starts as soon as the entry is
durable. A worker in another process (``datatrust webhooks deliver``, or another API
server on the same PostgreSQL) finds it within ``poll_interval`` (1 s). Either way the
first attempt of a ``consent.withdrawn`` starts within :data:`FIRST_ATTEMPT_WITHIN`
(5 s) of the withdrawal being recorded, while a worker is running and not already busy
with a full batch of slow endpoints (each request is bounded by ``timeout``, 10 s).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from api.webhooks.signing import WebhookSigner, webhook_signer
from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.service import system_clock
from trust.webhook_deliveries import DELIVERED, FAILED, ClaimedMessage, claim_due, record_outcome
from trust.webhooks import CAUSING_KINDS

if TYPE_CHECKING:
    from api.instance import Instance

log = logging.getLogger(__name__)

USER_AGENT = "datatrust-webhooks/0.1 (+https://www.standardwebhooks.com/)"
FIRST_ATTEMPT_WITHIN = timedelta(seconds=5)  # documented bound, with the worker running (see the docstring)
MAX_ERROR_TEXT = 300


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one pass of the worker did."""

    attempted: int = 0
    delivered: int = 0
    failed: int = 0

    @property
    def retrying(self) -> int:
        """Attempts that failed and will be tried again."""
        return self.attempted - self.delivered - self.failed


class DeliveryWorker:
    """Sends due outbox messages. Thread-safe to wake; run one loop per worker."""

    def __init__(
        self,
        db: Database,
        signer: WebhookSigner,
        *,
        clock: Callable[[], datetime] = system_clock,
        batch_size: int = 50,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        lease: timedelta = timedelta(seconds=60),
        timeout: float = 10.0,
        rng: random.Random | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        if lease.total_seconds() <= timeout:
            msg = f"the lease ({lease.total_seconds()} s) must be longer than the request timeout ({timeout} s)"
            raise ValueError(msg)
        self.db = db
        self.signer = signer
        self.clock = clock
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.rng = rng or random.Random()
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout, follow_redirects=False, headers={"user-agent": USER_AGENT})
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="webhook-send")
        self._wake = threading.Event()

    def close(self) -> None:
        """Release the HTTP client and the sending threads."""
        self._pool.shutdown(wait=True)
        if self._owns_http:
            self.http.close()

    def wake(self) -> None:
        """Look for due messages now rather than at the next poll."""
        self._wake.set()

    def on_commit(self, entries: list[LedgerEntry]) -> None:
        """Ledger listener: wake when a committed batch holds an entry that may have queued messages."""
        if any(entry.kind in CAUSING_KINDS for entry in entries):
            self.wake()

    def run_once(self) -> BatchReport:
        """Lease one batch of due messages, send them, record the outcomes."""
        claimed = claim_due(self.db, now=self.clock(), lease=self.lease, limit=self.batch_size)
        if not claimed:
            return BatchReport()
        statuses = list(self._pool.map(self.deliver, claimed))
        return BatchReport(len(claimed), statuses.count(DELIVERED), statuses.count(FAILED))

    def deliver(self, message: ClaimedMessage) -> str:
        """Send one leased message and record the outcome; return the message's new status."""
        status, error = self.send(message)
        return record_outcome(self.db, message, now=self.clock(), response_status=status, error=error, rng=self.rng)

    def send(self, message: ClaimedMessage) -> tuple[int | None, str | None]:
        """POST the message, signed now; return ``(HTTP status or None, error text or None)``."""
        body = message.body.encode()
        timestamp = int(self.clock().timestamp())
        secret = message.secret if message.scheme == "v1" else None
        headers = self.signer.headers(message.id, timestamp, body, secret=secret)
        headers["content-type"] = "application/json"
        try:
            with self.http.stream("POST", message.url, content=body, headers=headers) as response:
                status = response.status_code  # the answer's body is not read: only the status counts
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TEXT]
        return status, None if 200 <= status < 300 else f"HTTP {status}"  # noqa: PLR2004 - HTTP 2xx

    def run(self, stop: threading.Event, *, on_batch: Callable[[BatchReport], None] | None = None) -> None:
        """Deliver until *stop* is set."""
        failing = False  # log an outage once when it starts and once when it ends, not every pass
        while not stop.is_set():
            try:
                report = self.run_once()
            except Exception:  # the database may be restarting: keep the worker alive and try again
                if not failing:
                    log.exception("webhook delivery pass failed; retrying quietly until it recovers")
                failing = True
                report = BatchReport()
            else:
                if failing:
                    log.warning("webhook delivery recovered")
                failing = False
            if report.attempted and on_batch is not None:
                on_batch(report)
            if report.attempted >= self.batch_size:
                continue  # more may be due right now
            self._wake.wait(self.poll_interval)
            self._wake.clear()


def start_delivery_worker(
    instance: Instance,
    *,
    poll_interval: float = 1.0,
    batch_size: int = 50,
    concurrency: int = 8,
    lease: timedelta = timedelta(seconds=60),
    timeout: float = 10.0,
) -> Callable[[], None]:
    """Run a delivery worker for *instance* in a background thread; return the function that stops it.

    The worker is woken by every commit of a causing entry in this process. Call the
    returned function before closing the instance.
    """
    worker = DeliveryWorker(
        instance.db,
        webhook_signer(instance.data_dir),
        clock=instance.clock,
        poll_interval=poll_interval,
        batch_size=batch_size,
        concurrency=concurrency,
        lease=lease,
        timeout=timeout,
    )
    stop = threading.Event()
    instance.ledger.add_listener(worker.on_commit)
    thread = threading.Thread(target=worker.run, args=(stop,), name="webhook-delivery", daemon=True)
    thread.start()

    def stop_worker() -> None:
        stop.set()
        worker.wake()
        thread.join()
        worker.close()

    return stop_worker
