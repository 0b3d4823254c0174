"""Operations endpoints, metrics and the request log: ``/healthz``, ``/readyz``, ``/metrics``, ``X-Request-ID``."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.app import create_app
from api.instance import Instance
from api.logs import ACCESS_LOGGER
from consent.service import withdraw_consent
from ledger.db import Database
from tests.factories import admin_principal, bearer, partner_bearer, partner_principal, trustee_principal
from tests.trust.rules_story import BASELINE_CHECK, baseline, ledger_sink
from tests.webhooks.helpers import grant, now

PROBLEM = "application/problem+json"
LOOPBACK = ("127.0.0.1", 50000)
CHECK = BASELINE_CHECK


@pytest.fixture
def local(instance: Instance) -> Iterator[TestClient]:
    """A client of the app connecting from 127.0.0.1 (the test client's usual address is not an IP)."""
    with TestClient(create_app(instance), client=LOOPBACK) as test_client:
        yield test_client


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        series, _, label_text = metric.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if series == name and got == wanted:
            return float(value)
    return None


def break_database(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the instance at a database that cannot be opened."""
    dead = create_engine("sqlite:////nonexistent-datatrust-dir/none.db")
    monkeypatch.setattr(instance, "db", Database("sqlite:////nonexistent-datatrust-dir/none.db", dead, dead))


# -- probes ---------------------------------------------------------------------------------------


def test_healthz_answers_ok_without_the_database(
    instance: Instance, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness is 200 {"status": "ok"} even when the database is gone, and is never cached."""
    break_database(instance, monkeypatch)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


def test_healthz_ignores_credentials(client: TestClient) -> None:
    """A probe that happens to send a malformed token is still told the process is alive."""
    assert client.get("/healthz", headers={"Authorization": "Bearer not-a-token"}).status_code == 200


def test_readyz_is_200_when_database_and_ledger_writer_work(client: TestClient) -> None:
    """Readiness answers 200 when both dependencies are healthy."""
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_problem_when_the_database_does_not_answer(
    instance: Instance, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database unreachable, readiness is a 503 problem document with Retry-After."""
    break_database(instance, monkeypatch)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) > 0
    assert "database does not answer" in response.json()["detail"]


def test_readyz_is_503_when_the_ledger_writer_has_stopped(instance: Instance, client: TestClient) -> None:
    """Once the ledger's writer thread stops, readiness says so (and no longer 200)."""
    instance.ledger.close()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: the ledger writer is not running"
    assert "retry-after" in response.headers


# -- who may read /metrics ------------------------------------------------------------------------


def test_metrics_are_served_to_a_loopback_client(local: TestClient) -> None:
    """A Prometheus on the same machine reads the metrics without credentials."""
    response = local.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "datatrust_checks_total" in response.text


def test_metrics_are_refused_to_a_remote_anonymous_client(client: TestClient) -> None:
    """Anyone else without credentials gets 401 naming the admin.read action."""
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["action"] == "admin.read"
    assert "datatrust_" not in response.text


def test_metrics_are_refused_to_a_loopback_client_behind_a_proxy(local: TestClient) -> None:
    """A loopback connection that names a forwarded client is a proxy, not a local reader."""
    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "1.2.3.4"}):
        assert local.get("/metrics", headers=header).status_code == 401, header


def test_metrics_need_an_administrator_from_elsewhere(instance: Instance, client: TestClient) -> None:
    """A remote administrator may read the metrics; a trustee or a partner may not."""
    assert client.get("/metrics", headers=bearer(instance, admin_principal())).status_code == 200
    refused = client.get("/metrics", headers=bearer(instance, trustee_principal()))
    assert (refused.status_code, refused.json()["action"]) == (403, "admin.read")
    assert client.get("/metrics", headers=partner_bearer(instance, "org_test")).status_code == 403


# -- what the metrics say -------------------------------------------------------------------------


def test_checks_are_counted_by_decision(instance: Instance, local: TestClient) -> None:
    """Each answered check adds one to the permit or deny series."""
    baseline(start=datetime.now(UTC).replace(microsecond=0) - timedelta(days=1), sink=ledger_sink(instance.ledger))
    org_a = bearer(instance, partner_principal("org_a", ["check"]))
    before = local.get("/metrics").text
    assert sample(before, "datatrust_checks_total", decision="permit") == 0
    assert sample(before, "datatrust_checks_total", decision="deny") == 0
    assert local.post("/v1/checks", json=CHECK, headers=org_a).json()["decision"] == "permit"
    assert local.post("/v1/checks", json=CHECK, headers=org_a, params={"dry_run": "true"}).status_code == 200
    denied = local.post("/v1/checks", json={**CHECK, "purpose": "marketing"}, headers=org_a)
    assert denied.json()["decision"] == "deny", denied.text
    after = local.get("/metrics").text
    assert sample(after, "datatrust_checks_total", decision="permit") == 2
    assert sample(after, "datatrust_checks_total", decision="deny") == 1


def test_request_latency_is_labelled_by_route_template_not_path(local: TestClient) -> None:
    """Requests are timed under their route template, method and status class; unknown paths share one label."""
    local.get("/v1/checks/123456")  # 401: no credentials
    local.get("/v1/ledger/checkpoint")
    local.get("/no/such/page/sub_secretsubject")
    text = local.get("/metrics").text
    name = "datatrust_http_request_duration_seconds_count"
    assert sample(text, name, route="/v1/checks/{decision_id}", method="GET", status="4xx") == 1
    assert sample(text, name, route="/v1/ledger/checkpoint", method="GET", status="2xx") == 1
    assert sample(text, name, route="unmatched", method="GET", status="4xx") == 1
    assert "123456" not in text
    assert "sub_secretsubject" not in text


def test_ledger_size_is_read_at_scrape_time(instance: Instance, local: TestClient) -> None:
    """The ledger gauge equals the ledger's size, and follows it as entries are added."""
    first = sample(local.get("/metrics").text, "datatrust_ledger_entries")
    assert first == instance.ledger.size()
    grant(instance)
    assert sample(local.get("/metrics").text, "datatrust_ledger_entries") == instance.ledger.size() > first


def test_webhook_backlog_counts_undelivered_messages(instance: Instance, local: TestClient) -> None:
    """A message waiting in the outbox shows in the backlog gauge."""
    assert sample(local.get("/metrics").text, "datatrust_webhook_backlog") == 0
    alpha = partner_bearer(instance, "org_alpha")
    hook = {"url": "https://partner.example/hooks", "event_types": ["consent.withdrawn"]}
    assert local.post("/v1/webhooks", json=hook, headers=alpha).status_code == 201
    consent = grant(instance, "org_alpha")
    withdraw_consent(
        instance.ledger, consent=consent.consent, by="subject", requester=consent.subject, actor="s", now=now()
    )
    assert sample(local.get("/metrics").text, "datatrust_webhook_backlog") == 1


def test_each_app_has_its_own_registry(instance: Instance, local: TestClient) -> None:
    """Requests to one app do not show in another app's metrics."""
    for _ in range(3):
        local.get("/healthz")
    with TestClient(create_app(instance), client=LOOPBACK) as other:
        text = other.get("/metrics").text
    assert (
        sample(text, "datatrust_http_request_duration_seconds_count", route="/healthz", method="GET", status="2xx")
        is None
    )
    mine = local.get("/metrics").text
    assert (
        sample(mine, "datatrust_http_request_duration_seconds_count", route="/healthz", method="GET", status="2xx") == 3
    )


# -- request ids and the request log --------------------------------------------------------------


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    """Each response has an X-Request-ID; two requests get different ones."""
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/no/such/path").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123_X.y", True),  # the safe alphabet is echoed
        ("a" * 64, True),  # the longest allowed
        ("a" * 65, False),  # too long: replaced
        ("abc def", False),  # a space: replaced
        ("abc\u00e9", False),  # not ASCII: replaced
        ("", False),  # empty: replaced
    ],
)
def test_incoming_request_id_is_honoured_only_when_safe(client: TestClient, incoming: str, kept: bool) -> None:
    """A caller's X-Request-ID is echoed when it matches the safe pattern, and replaced otherwise."""
    answered = client.get("/healthz", headers={b"X-Request-ID": incoming.encode()})
    got = answered.headers["x-request-id"]
    assert (got == incoming) is kept
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", got)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON documents written so far (each line must parse on its own)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_log_line_per_request_without_query_string(client: TestClient, json_log: io.StringIO) -> None:
    """The request log has method, path without query, status, duration and the request id, as JSON."""
    response = client.get("/v1/ledger/checkpoint?access_token=hunter2secret", headers={"X-Request-ID": "trace-42"})
    [document] = [d for d in lines(json_log) if d["logger"] == ACCESS_LOGGER]
    assert document["request_id"] == response.headers["x-request-id"] == "trace-42"
    assert (document["method"], document["path"], document["status"]) == ("GET", "/v1/ledger/checkpoint", 200)
    assert document["level"] == "INFO"
    assert isinstance(document["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["timestamp"])
    assert "hunter2secret" not in json_log.getvalue()
    assert "access_token" not in json_log.getvalue()


def test_secret_path_parameters_are_logged_as_the_route_template(client: TestClient, json_log: io.StringIO) -> None:
    """A one-time sign-in link's token never reaches the log: the path is logged as /auth/link/{token}."""
    client.get("/auth/link/tok_supersecretlinkvalue")
    [document] = [d for d in lines(json_log) if d["logger"] == ACCESS_LOGGER]
    assert document["path"] == "/auth/link/{token}"
    assert "supersecretlinkvalue" not in json_log.getvalue()


def test_other_records_during_a_request_carry_its_id(client: TestClient, json_log: io.StringIO) -> None:
    """A warning logged while handling a request (a failed sign-in) carries that request's id."""
    csrf = client.get("/auth/csrf").json()["csrf_token"]
    response = client.post(
        "/auth/sign-in",
        json={"username": "nobody", "password": "wrong-password-123"},
        headers={"X-CSRF-Token": csrf, "X-Request-ID": "signin-trace"},
    )
    assert response.status_code in {401, 403}
    failed = [d for d in lines(json_log) if d["message"].startswith("sign-in failed")]
    assert [d["request_id"] for d in failed] == ["signin-trace"]
    assert "wrong-password-123" not in json_log.getvalue()


def test_append_process_gauge_is_0_without_one(local: TestClient) -> None:
    """An app serving without an append process says so (the running case: tests/api/test_append_process.py)."""
    assert sample(local.get("/metrics").text, "datatrust_append_process_running") == 0
