"""Helpers for webhook tests: consents, permits, subscriptions and a local receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import httpx
from fastapi.testclient import TestClient

from api.instance import Instance
from consent.schemas import ConsentIn, PersonIn
from consent.service import RecordedConsent, record_consent
from ledger.entry import LedgerEntry
from trust import webhooks
from trust.rules.base import ProposedAction

ALL_EVENTS = list(webhooks.EVENT_TYPES.values())


def as_httpx(client: TestClient) -> httpx.Client:
    """Starlette's TestClient is httpx2's Client: the same API as the httpx Client the partner library takes."""
    return cast("httpx.Client", client)


def now() -> datetime:
    """The real clock (domain calls take it explicitly)."""
    return datetime.now(UTC)


def grant(instance: Instance, organisation: str = "org_collector", *, subject: str | None = None) -> RecordedConsent:
    """Record a consent collected by *organisation* (a new person unless *subject* is given)."""
    draft = ConsentIn(
        subject=subject,
        person=None if subject else PersonIn(name="Ada Example", contact="ada@example.org"),
        purposes=["research"],
        categories=["housing"],
        wording_version="v1",
        wording_text="I agree that the trust may share facts about my housing for research.",
    )
    return record_consent(
        instance.ledger, instance.vault, draft, organisation=organisation, actor="client_c", now=now()
    )


def permit(
    instance: Instance,
    organisation: str,
    subjects: list[str],
    *,
    excluded: tuple[str, ...] = (),
    decision: str = "permit",
) -> LedgerEntry:
    """Append a ``check.decided`` entry as the check service records it (the rules are not under test here)."""
    action = ProposedAction(
        organisation=organisation,
        purpose="research",
        categories=("housing",),
        operation="aggregate",
        request="req_test",
        subjects=(*subjects, *excluded),
        cohort_size=None,
        geography=None,
    )
    allowed = [] if decision == "deny" else list(subjects)
    payload = {
        "action": action.to_json(),
        "decision": decision,
        "subjects": {
            "permitted": allowed,
            "excluded": [{"subject": s, "rule": "consent", "reason": "no consent"} for s in excluded],
        },
        "obligations": [],
        "reasons": [],
        "as_of": instance.ledger.size() - 1,
        "evaluated_at": "2026-11-26T09:00:00.000000Z",
    }
    return instance.ledger.append("check.decided", payload, actor=f"client_{organisation}", now=now())


def subscribe(
    instance: Instance,
    organisation: str,
    url: str = "http://127.0.0.1:9/hook",
    *,
    event_types: list[str] | None = None,
    scheme: str = "v1a",
) -> webhooks.Subscription:
    """Register an endpoint for *organisation*."""
    return webhooks.create_subscription(
        instance.db,
        organisation=organisation,
        url=url,
        event_types=event_types or ALL_EVENTS,
        scheme=scheme,
        actor=f"client_{organisation}",
        now=now(),
        allow_local=True,
    )


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    id: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        """The parsed body."""
        result: dict[str, Any] = json.loads(self.body)
        return result


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request.

    The first *fail_first* requests get HTTP 500. With *hold_at* = n, the n-th request
    is recorded, ``holding`` is set, and the answer waits until ``release`` is set (so
    a test can kill the sender while that request is in flight).
    """

    def __init__(self, *, fail_first: int = 0, hold_at: int | None = None) -> None:
        self.requests: list[Received] = []
        self.fail_first = fail_first
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received = Received(
                    self.headers.get("webhook-id", ""), {k.lower(): v for k, v in self.headers.items()}, body
                )
                with receiver._lock:
                    receiver.requests.append(received)
                    count = len(receiver.requests)
                if count == receiver.hold_at:
                    receiver.holding.set()
                    receiver.release.wait(30)
                status = 500 if count <= receiver.fail_first else 200
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender went away (killed) while this request was held

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where to send webhooks."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/datatrust"

    def ids(self) -> list[str]:
        """The webhook-id of every request, in arrival order."""
        with self._lock:
            return [r.id for r in self.requests]

    def close(self) -> None:
        """Stop serving."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0) -> bool:
    """Poll *condition* until it holds or *timeout* seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
