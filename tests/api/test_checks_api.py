"""``/v1/checks`` over HTTP: the answer partners cite, recorded durably, read back and replayed.

The trust is :func:`~tests.trust.rules_story.baseline` (org_a's approved mental-health research over
twelve consenting people), appended to the instance's real ledger a day in the past; the checks run
at the real clock. Partners present real bearer tokens (``tests/factories.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.instance import Instance
from api.routes.checks import CheckOut
from tests.factories import bearer, partner_principal, trustee_principal
from tests.trust.rules_story import BASELINE_CHECK, MICROSECOND, Story, baseline, ledger_sink
from trust.checks import MAX_SUBJECTS

PROBLEM = "application/problem+json"
# DESIGN.md, "The check": the answer's members, and the three the service adds (the prefix and
# instant a decision was evaluated on, which replay relies on, and whether it was a dry run).
ANSWER = {"decision", "decision_id", "entry", "subjects", "obligations", "reasons"}
ADDED = {"as_of", "evaluated_at", "dry_run"}
BODY = BASELINE_CHECK


@pytest.fixture
def story(instance: Instance) -> Story:
    """The baseline trust, recorded on the instance's ledger starting a day ago."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return baseline(start=start, sink=ledger_sink(instance.ledger), configure=False)


@pytest.fixture
def org_a(instance: Instance, story: Story) -> dict[str, str]:
    """A bearer header for org_a's partner client with the ``check`` scope."""
    return bearer(instance, partner_principal("org_a", ["check"]))


def _check(client: TestClient, headers: dict[str, str], body: dict[str, Any] | None = None, **params: str) -> Any:
    return client.post("/v1/checks", json=BODY if body is None else body, headers=headers, params=params)


def _assert_answer_shape(answer: dict[str, Any]) -> None:
    assert set(answer) == ANSWER | ADDED
    # The route encodes the recorded decision itself; it must be exactly what CheckOut documents.
    assert CheckOut.model_validate(answer).model_dump(mode="json") == answer
    assert set(answer["subjects"]) == {"permitted", "excluded"}
    for exclusion in answer["subjects"]["excluded"]:
        assert set(exclusion) == {"subject", "rule", "reason"}
    for obligation in answer["obligations"]:
        assert set(obligation) == {"type", "value"}
    for reason in answer["reasons"]:
        assert set(reason) == {"rule", "outcome", "message", "evidence"}
        assert reason["outcome"] in {"pass", "fail", "not_applicable", "indeterminate"}
        assert all(isinstance(seq, int) for seq in reason["evidence"])


def test_permit_is_recorded_durably_and_cited_by_its_seq(client: TestClient, org_a: dict[str, str]) -> None:
    """A permit has exactly the documented fields; its decision_id is the seq of a durable check.decided entry."""
    response = _check(client, org_a)
    assert response.status_code == 200, response.text
    answer = response.json()
    _assert_answer_shape(answer)
    assert answer["decision"] == "permit"
    assert answer["subjects"] == {"permitted": BODY["subjects"], "excluded": []}
    assert {"type": "min_cohort", "value": 10} in answer["obligations"]
    assert answer["dry_run"] is False
    seq = answer["decision_id"]
    assert answer["entry"]["seq"] == seq
    page = client.get("/v1/ledger/entries", params={"start": seq, "end": seq + 1}).json()["entries"]
    assert len(page) == 1
    assert page[0]["leaf_hash"] == answer["entry"]["leaf_hash"]
    recorded = page[0]["entry"]
    assert recorded["kind"] == "check.decided"
    assert recorded["actor"] == "client_a"
    assert recorded["payload"]["action"]["organisation"] == "org_a"
    assert recorded["payload"]["decision"] == "permit"
    assert recorded["payload"]["subjects"]["permitted"] == BODY["subjects"]


def test_deny_has_the_same_shape_and_is_recorded(
    instance: Instance, client: TestClient, story: Story, org_a: dict[str, str]
) -> None:
    """A deny (the request was revoked) has exactly the documented fields, excludes everyone, and is recorded too."""
    story.revoke("req_a")
    response = _check(client, org_a)
    assert response.status_code == 200, response.text
    answer = response.json()
    _assert_answer_shape(answer)
    assert answer["decision"] == "deny"
    assert answer["subjects"]["permitted"] == []
    assert {x["subject"] for x in answer["subjects"]["excluded"]} == set(BODY["subjects"])
    assert {x["rule"] for x in answer["subjects"]["excluded"]} == {"request"}
    assert answer["obligations"] == []
    request_reason = next(r for r in answer["reasons"] if r["rule"] == "request")
    assert request_reason["outcome"] == "fail"
    assert story["revoke:req_a"] in request_reason["evidence"]
    assert instance.ledger.get(answer["decision_id"]).kind == "check.decided"


def test_mixed_batch_permits_only_the_covered(client: TestClient, story: Story, org_a: dict[str, str]) -> None:
    """A withdrawn and an unknown subject are excluded with their reasons; the permit names only the others."""
    story.withdraw("con_3")
    body = {**BODY, "subjects": [*BODY["subjects"], "sub_unknown"], "cohort_size": 13}
    answer = _check(client, org_a, body).json()
    assert answer["decision"] == "permit"
    assert "sub_3" not in answer["subjects"]["permitted"]
    excluded = {x["subject"]: x for x in answer["subjects"]["excluded"]}
    assert set(excluded) == {"sub_3", "sub_unknown"}
    assert excluded["sub_3"]["rule"] == "consent"
    assert "withdrawn" in excluded["sub_3"]["reason"]


def test_dry_run_records_nothing_and_at_looks_back(
    instance: Instance, client: TestClient, story: Story, org_a: dict[str, str]
) -> None:
    """A dry run appends nothing; with at= it evaluates as of a past instant (before a withdrawal)."""
    withdrawn_at = story.now
    story.withdraw("con_1")
    size = instance.ledger.size()
    now = _check(client, org_a, dry_run="true").json()
    before = _check(client, org_a, dry_run="true", at=(withdrawn_at - MICROSECOND).isoformat()).json()
    assert instance.ledger.size() == size
    assert now["dry_run"] is True
    assert now["decision_id"] is None
    assert now["entry"] is None
    assert "sub_1" in {x["subject"] for x in now["subjects"]["excluded"]}
    assert "sub_1" in before["subjects"]["permitted"]
    assert before["evaluated_at"].startswith((withdrawn_at - MICROSECOND).strftime("%Y-%m-%dT%H:%M:%S.%f"))


def test_at_is_refused_without_dry_run(instance: Instance, client: TestClient, org_a: dict[str, str]) -> None:
    """Evaluating as of a past instant is only for dry runs: otherwise a 422 naming at, and nothing appended."""
    size = instance.ledger.size()
    response = _check(client, org_a, at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "at"
    assert instance.ledger.size() == size


def test_recorded_decision_reads_back_and_replays(
    instance: Instance, client: TestClient, story: Story, org_a: dict[str, str]
) -> None:
    """GET returns the decision as recorded, replay gives the identical answer, and another partner sees 404."""
    answer = _check(client, org_a).json()
    story.withdraw("con_1")  # a later withdrawal must not change the replay of an earlier decision
    decision_id = answer["decision_id"]
    recorded = client.get(f"/v1/checks/{decision_id}", headers=org_a)
    assert recorded.status_code == 200, recorded.text
    body = recorded.json()
    for key in ANSWER | ADDED:
        assert body[key] == answer[key], key
    assert body["action"]["organisation"] == "org_a"
    replay = client.get(f"/v1/checks/{decision_id}/replay", headers=org_a)
    assert replay.status_code == 200, replay.text
    assert replay.json()["identical"] is True
    assert replay.json()["replayed"]["subjects"]["permitted"] == BODY["subjects"]
    other = bearer(instance, partner_principal("org_b", ["check"]))
    for path in (f"/v1/checks/{decision_id}", f"/v1/checks/{decision_id}/replay"):
        refused = client.get(path, headers=other)
        assert refused.status_code == 404
        assert refused.headers["content-type"] == PROBLEM
    assert client.get(f"/v1/checks/{decision_id - 1}", headers=org_a).status_code == 404  # not a check entry


def test_more_than_ten_thousand_subjects_is_413(instance: Instance, client: TestClient, org_a: dict[str, str]) -> None:
    """One subject over the limit is a 413 problem saying how to split the call; nothing is appended."""
    size = instance.ledger.size()
    subjects = [f"sub_{n}" for n in range(MAX_SUBJECTS + 1)]
    response = _check(client, org_a, {**BODY, "subjects": subjects, "cohort_size": len(subjects)})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert "split the call" in response.json()["detail"]
    assert instance.ledger.size() == size


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"operation": "share"}, "operation"),  # not one of aggregate / pseudonymised / identifiable
    ({"purpose": "Research!"}, "purpose"),  # not a vocabulary code
    ({"subjects": ["alice@example.org"]}, "subjects.0"),  # personal data instead of a subject reference
    ({"subjects": []}, "subjects"),  # nobody named
    ({"data_categories": []}, "data_categories"),  # no category
    ({"cohort_size": -1}, "cohort_size"),  # negative cohort
    ({"request": None}, "request"),  # no request cited
    ({"organisation": "org_b"}, "organisation"),  # the partner is the token's organisation, never the body's
]


def test_malformed_body_is_422_naming_the_field(instance: Instance, client: TestClient, org_a: dict[str, str]) -> None:
    """Each malformed body is a 422 problem whose errors and detail name the field; nothing is appended."""
    size = instance.ledger.size()
    for change, field in MALFORMED:  # one trust for every case: setting one up is the slow part
        body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
        response = _check(client, org_a, body)
        assert response.status_code == 422, change
        assert response.headers["content-type"] == PROBLEM
        assert field in [e["field"] for e in response.json()["errors"]], response.json()
        assert field in response.json()["detail"]
    assert instance.ledger.size() == size


def test_recipient_must_be_the_callers_own_organisation(
    instance: Instance, client: TestClient, org_a: dict[str, str]
) -> None:
    """Naming another organisation as recipient is refused (422, nothing appended); naming one's own is fine."""
    size = instance.ledger.size()
    refused = _check(client, org_a, {**BODY, "recipient": "org_b"})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["field"] == "recipient"
    assert instance.ledger.size() == size
    assert _check(client, org_a, {**BODY, "recipient": "org_a"}).json()["decision"] == "permit"


def test_token_without_check_scope_is_403_and_the_public_401(
    instance: Instance, client: TestClient, story: Story
) -> None:
    """A partner token lacking the check scope is refused 403; no credentials at all is 401; nothing is appended."""
    size = instance.ledger.size()
    no_scope = bearer(instance, partner_principal("org_a", ["consents:write", "requests:write"]))
    forbidden = _check(client, no_scope)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == PROBLEM
    assert "check" in forbidden.json()["detail"]
    public = client.post("/v1/checks", json=BODY)
    assert public.status_code == 401
    assert public.headers["content-type"] == PROBLEM
    assert client.get("/v1/checks/0").status_code == 401
    assert instance.ledger.size() == size


def test_trustee_dry_run_for_a_named_partner_records_nothing(
    client: TestClient, instance: Instance, story: Story
) -> None:
    """Trustees pre-assess a partner's share at /v1/checks/dry-run; the answer is the engine's and nothing is appended."""
    del story
    trustee = bearer(instance, trustee_principal("person_t1"))
    size = instance.ledger.size()
    response = client.post("/v1/checks/dry-run", json=BODY, headers=trustee, params={"organisation": "org_a"})
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "permit"
    assert response.json()["dry_run"] is True
    assert instance.ledger.size() == size
    missing = client.post("/v1/checks/dry-run", json=BODY, headers=trustee)
    assert missing.status_code == 422
    assert "organisation" in missing.json()["detail"]


def test_partner_dry_run_cannot_assess_another_organisation(client: TestClient, org_a: dict[str, str]) -> None:
    """A partner's dry run is for its own organisation only."""
    response = client.post("/v1/checks/dry-run", json=BODY, headers=org_a, params={"organisation": "org_b"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_at_in_the_future_is_refused(client: TestClient, org_a: dict[str, str]) -> None:
    """A dry run looks at the past, never at an instant that has not happened."""
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = _check(client, org_a, dry_run="true", at=later)
    assert response.status_code == 422
    assert "future" in response.json()["detail"]
