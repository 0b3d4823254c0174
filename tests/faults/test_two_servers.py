"""Two ``datatrust serve`` processes on one PostgreSQL database: a withdrawal on one binds checks on both.

Each server keeps its own in-memory check index. Its own writes reach it at once; entries the
other server appended reach it through the follower, which polls the ledger head every
``follow_interval`` (0.2 s), so a withdrawal recorded on server A binds checks on server B within
one poll interval plus one query (``trust/checks.py``, docs/consent.md). Here org_a records a
consent through A, waits until B permits a check on that person, withdraws the consent through A,
and then asks B again and again: B must deny within a generous deadline, name the withdrawal's
entry as the consent rule's evidence, and never permit again. The delay measured is printed.

B is asked with ``dry_run=true`` until it denies: a recorded check makes B append, and appending
folds in whatever other servers appended first, which would hide a follower that does not follow.
Once B denies, recorded and dry-run checks alternate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import drop_pg_database, fresh_pg_database
from tests.faults.support import CHECK, CONSENT, Server, prepare_trust, running

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

DEADLINE = 10.0  # seconds for a change on A to reach B: generous (the promise is 0.2 s plus one query)
CHECKS_AFTER_DENY = 25  # checks asked of B after its first deny, PAUSE apart: several follow intervals
PAUSE = 0.05
# Someone new, consenting explicitly to health research (health is a special category).
HEALTH_CONSENT: dict[str, Any] = {**CONSENT, "categories": ["health"], "explicit": True}


@dataclass(frozen=True, slots=True)
class Answer:
    """A check's answer and the monotonic instant it arrived."""

    arrived: float
    body: dict[str, Any]

    @property
    def decision(self) -> str:
        """``permit`` or ``deny``."""
        decision: str = self.body["decision"]
        return decision

    @property
    def as_of(self) -> int:
        """The last ledger entry the decision was evaluated on."""
        as_of: int = self.body["as_of"]
        return as_of


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh migrated PostgreSQL database, dropped afterwards (skips when PostgreSQL is down)."""
    name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        drop_pg_database(name)


def check(client: httpx.Client, subject: str, *, dry_run: bool = False) -> Answer:
    """Ask org_a's pseudonymised health research check about *subject* alone (recorded unless *dry_run*)."""
    body = {**CHECK, "operation": "pseudonymised", "subjects": [subject], "cohort_size": None}
    response = client.post("/v1/checks", json=body, params={"dry_run": "true"} if dry_run else None)
    assert response.status_code == 200, response.text
    answer = Answer(time.monotonic(), response.json())
    assert answer.body["dry_run"] is dry_run, answer.body
    assert (answer.body["decision_id"] is None) is dry_run, answer.body
    return answer


def ask_until(
    client: httpx.Client, subject: str, done: Callable[[Answer], bool], servers: list[Server]
) -> list[Answer]:
    """Ask :func:`check` (dry runs) until an answer is *done* (the last one returned); fail after :data:`DEADLINE`."""
    answers: list[Answer] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        answers.append(check(client, subject, dry_run=True))
        if done(answers[-1]):
            return answers
        time.sleep(PAUSE)
    logs = "\n".join(f"--- {server.base_url}:\n{server.output()[-4000:]}" for server in servers)
    msg = f"no answer after {DEADLINE} s ({len(answers)} checks); the last: {answers[-1].body}\n{logs}"
    raise AssertionError(msg)


def assert_bound_by_withdrawal(answer: Answer, subject: str, consent: str, withdrawal: int) -> None:
    """*answer* denies, excluding *subject* by the consent rule on the evidence of entry *withdrawal*."""
    body = answer.body
    assert answer.decision == "deny", body
    assert answer.as_of >= withdrawal, body
    assert body["subjects"]["permitted"] == [], body
    [excluded] = body["subjects"]["excluded"]
    assert excluded["subject"] == subject, body
    assert excluded["rule"] == "consent", body
    assert excluded["reason"].startswith(f"consent {consent} was withdrawn on the person's behalf at "), body
    assert excluded["reason"].endswith(f"(entry {withdrawal})"), body
    [reason] = [r for r in body["reasons"] if r["rule"] == "consent"]
    assert reason["outcome"] == "fail", body
    assert withdrawal in reason["evidence"], body


def test_a_withdrawal_on_one_server_binds_checks_on_the_other(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, Any], None]
) -> None:
    """Consent through A reaches B; withdrawal through A binds A at once and B within the deadline, for good."""
    data_dir = tmp_path / "data"
    headers = prepare_trust(data_dir, database_url=database_url)
    with (
        running(Server(data_dir, tmp_path / "a.log", database_url=database_url)) as a,
        running(Server(data_dir, tmp_path / "b.log", database_url=database_url)) as b,
        httpx.Client(base_url=a.base_url, headers=headers, timeout=30) as on_a,
        httpx.Client(base_url=b.base_url, headers=headers, timeout=30) as on_b,
    ):
        assert a.port != b.port
        servers = [a, b]

        recorded = on_a.post("/v1/consents", json=HEALTH_CONSENT)
        assert recorded.status_code == 201, recorded.text
        consent, subject = recorded.json()["consent"], recorded.json()["subject"]
        assert check(on_a, subject).decision == "permit"  # A's own write binds A at once
        before = ask_until(on_b, subject, lambda answer: answer.decision == "permit", servers)[-1]
        assert before.body["subjects"]["permitted"] == [subject], before.body
        assert before.as_of >= recorded.json()["seq"], before.body

        withdrawn = on_a.post(f"/v1/consents/{consent}/withdraw", json={"reason": "asked us by phone"})
        acknowledged = time.monotonic()
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["already_withdrawn"] is False, withdrawn.text
        withdrawal: int = withdrawn.json()["withdrawal"]["seq"]

        assert_bound_by_withdrawal(check(on_a, subject), subject, consent, withdrawal)  # in-process: immediate

        until_deny = ask_until(on_b, subject, lambda answer: answer.decision == "deny", servers)
        first_deny = until_deny[-1]
        delay = first_deny.arrived - acknowledged
        for stale in until_deny[:-1]:  # a permit after the acknowledgement only on a prefix without the withdrawal
            assert stale.decision == "permit", stale.body
            assert stale.as_of < withdrawal, stale.body
        assert_bound_by_withdrawal(first_deny, subject, consent, withdrawal)
        assert delay <= DEADLINE

        after = []
        for n in range(CHECKS_AFTER_DENY):
            time.sleep(PAUSE)
            after.append(check(on_b, subject, dry_run=n % 2 == 1))
        for answer in after:  # no flapping: once B denies, it keeps denying
            assert_bound_by_withdrawal(answer, subject, consent, withdrawal)
        assert all(server.alive() for server in servers)

    record_property("propagation_seconds", round(delay, 3))
    with capsys.disabled():
        print(
            f"\ntwo servers: a withdrawal acknowledged by A bound checks on B after {delay:.3f} s "
            f"({len(until_deny)} checks on B, first deny as of entry {first_deny.as_of}, withdrawal entry {withdrawal})",
            file=sys.stderr,
        )
