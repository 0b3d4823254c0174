"""Checks served with an append process (``ledger/remote.py``), as ``datatrust serve`` runs them.

The server's event loop sends each decision to a child process that appends it to the same
ledger and answers through a pipe. Everything a partner relies on must hold as it does in
one process: the answer cites a durable entry, reads back and replays, a withdrawal binds
the next check, and a child that stops leaves the server answering. The checks API's own
tests are run here again through the child (imported below, so they use this module's
``client``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.instance import Instance
from ledger.entry import LedgerEntry
from ledger.errors import UnavailableError
from ledger.export import verify_live
from ledger.remote import AppendProcess, decode_reply, decode_request, encode_reply, encode_request
from ledger.sequencer import AppendSpec
from tests.api.test_checks_api import (  # noqa: F401 - tests run again here through the child
    BODY,
    _check,
    test_deny_has_the_same_shape_and_is_recorded,
    test_mixed_batch_permits_only_the_covered,
    test_permit_is_recorded_durably_and_cited_by_its_seq,
    test_recorded_decision_reads_back_and_replays,
)
from tests.api.test_checks_api import org_a as fixture_org_a
from tests.api.test_checks_api import story as fixture_story
from tests.factories import admin_principal, bearer
from tests.trust.rules_story import Story

story = fixture_story  # the checks API's fixtures, under their own names
org_a = fixture_org_a


@pytest.fixture
def in_process(instance: Instance) -> list[int]:
    """Counts the appends this process's own sequencer was asked to queue without waiting."""
    calls: list[int] = []
    sequencer = instance.ledger._sequencer
    real = sequencer.submit_nowait

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(*args, **kwargs)

    sequencer.submit_nowait = spy  # type: ignore[method-assign]
    return calls


@pytest.fixture
def client(instance: Instance, in_process: list[int]) -> Iterator[TestClient]:
    """The app with its append process running (the tests imported above use this client)."""
    with TestClient(create_app(instance, append_process=True)) as test_client:
        appender = instance.ledger.append_process
        assert appender is not None, "the append process did not start"
        assert appender.running
        yield test_client
    assert instance.ledger.append_process is None
    assert in_process == [], "a check was appended in the server's own process"


def _verifies(instance: Instance) -> None:
    with instance.db.engine.connect() as conn:
        verify_live(conn, instance.ledger.verifiers, origin=instance.origin)


def _child_pid(instance: Instance) -> int:
    appender = instance.ledger.append_process
    assert appender is not None
    transport = appender._transport
    assert transport is not None
    pid = transport.get_pid()
    assert pid != os.getpid()
    return pid


def test_concurrent_checks_are_appended_by_the_child_in_one_chain(
    instance: Instance, org_a: dict[str, str], in_process: list[int]
) -> None:
    """Sixty checks from eight threads: sixty distinct durable decisions, the index told of each, a last checkpoint."""
    with TestClient(create_app(instance, append_process=True)) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _check(client, org_a), range(60)))
        checks = instance.checks
        assert checks is not None
        head = checks.state.head  # before the server stops: the index was told by the server's loop
    # The server has stopped: the child answered what it was sent, signed a last checkpoint and exited.
    assert in_process == []
    assert [a.status_code for a in answers] == [200] * 60
    ids = sorted(a.json()["decision_id"] for a in answers)
    assert len(set(ids)) == 60
    for answer in answers:
        body = answer.json()
        entry = instance.ledger.get(body["decision_id"])
        assert entry.kind == "check.decided"
        assert entry.leaf_hash.hex() == body["entry"]["leaf_hash"]
        assert entry.payload["subjects"] == body["subjects"]
    assert head >= ids[-1]  # the server's index saw every entry the child appended
    size = instance.ledger.size()
    assert size == ids[-1] + 1
    assert f"\n{size}\n" in instance.ledger.latest_checkpoint()  # the child's last checkpoint covers them all
    _verifies(instance)


def test_a_withdrawal_binds_the_next_check(client: TestClient, story: Story, org_a: dict[str, str]) -> None:
    """A withdrawal recorded in the server binds the next check, which the child records."""
    assert _check(client, org_a).json()["subjects"]["excluded"] == []
    story.withdraw("con_1")
    answer = _check(client, org_a).json()
    assert [x["subject"] for x in answer["subjects"]["excluded"]] == [BODY["subjects"][0]]
    assert answer["subjects"]["excluded"][0]["rule"] == "consent"


def test_a_child_that_stops_leaves_the_server_answering(
    instance: Instance,
    client: TestClient,
    org_a: dict[str, str],
    in_process: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed, the child is noticed; later checks are recorded by the server itself, in the same chain."""
    before = _check(client, org_a).json()["decision_id"]
    assert (
        "datatrust_append_process_running 1.0"
        in client.get("/metrics", headers=bearer(instance, admin_principal())).text
    )
    appender = instance.ledger.append_process
    assert appender is not None
    with caplog.at_level(logging.WARNING, logger="ledger.remote"):
        os.kill(_child_pid(instance), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while appender.running and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not appender.running
    assert "append process stopped" in caplog.text
    assert (
        "datatrust_append_process_running 0.0"
        in client.get("/metrics", headers=bearer(instance, admin_principal())).text
    )  # for an operator's alert
    after = _check(client, org_a)
    assert after.status_code == 200, after.text
    assert after.json()["decision_id"] > before
    assert instance.ledger.get(after.json()["decision_id"]).kind == "check.decided"
    assert in_process == [1]
    in_process.clear()  # the fixture's own assertion is about the child's normal running
    _verifies(instance)


def test_a_child_that_cannot_start_leaves_appends_in_the_server(
    instance: Instance,
    org_a: dict[str, str],
    in_process: list[int],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child that exits at once is logged, and the server answers, appending in its own process."""
    broken = [sys.executable, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr("api.app.append_process_command", lambda _instance: (broken, dict(os.environ)))
    with (
        caplog.at_level(logging.WARNING, logger="ledger.remote"),
        TestClient(create_app(instance, append_process=True)) as client,
    ):
        assert instance.ledger.append_process is None
        answer = _check(client, org_a)
    assert answer.status_code == 200, answer.text
    assert "did not start" in caplog.text
    assert in_process == [1]


def test_errors_come_back_as_the_same_domain_errors() -> None:
    """The child's refusal reaches the awaiting caller as the same class and words (the API's 503/507)."""

    async def run() -> list[BaseException | None]:
        appender = AppendProcess(["unused"])
        appender._loop = asyncio.get_running_loop()
        spec = AppendSpec("check.decided", "client_a", datetime.now(UTC), payload={"x": 1})
        futures = [appender.append(spec) for _ in range(3)]
        appender._outbox.clear()
        appender.received(
            [
                (1, ("UnavailableError", "the ledger could not be written: database or disk is full")),
                (2, ("KeyError", "'x'")),
            ]
        )
        appender.exited()
        return [f.exception() for f in futures]

    full, bug, gone = asyncio.run(run())
    assert isinstance(full, UnavailableError)
    assert str(full) == "the ledger could not be written: database or disk is full"
    assert isinstance(bug, RuntimeError)
    assert "KeyError" in str(bug)
    assert isinstance(gone, UnavailableError)
    assert "stopped before confirming" in str(gone)


def test_frames_carry_requests_and_replies_whole() -> None:
    """What the server sends is what the child appends; what the child answers is what the server reads."""
    at = datetime(2026, 11, 27, 2, 30, 1, 123456, tzinfo=UTC)
    spec = AppendSpec("check.decided", "client_é", at, payload={"decision": "permit", "n": [1, 2]})
    data = encode_request(41, spec)
    assert int.from_bytes(data[:4], "little") == len(data) - 4
    uid, read = decode_request(data[4:])
    assert (uid, read.kind, read.actor, read.at, read.payload) == (41, spec.kind, spec.actor, at, spec.payload)
    assert read.payload_bytes == spec.payload_bytes
    entry = LedgerEntry(7, "check.decided", "2026-11-27T02:30:01.123456Z", "client_é", b"p" * 32, {}, b"{}", b"l" * 32)
    assert decode_reply(encode_reply(41, entry)[4:]) == (41, (7, entry.at, entry.prev, entry.leaf_hash, entry.body))
    refused = decode_reply(encode_reply(42, UnavailableError("disk is full: é"))[4:])
    assert refused == (42, ("UnavailableError", "disk is full: é"))
    assert decode_reply(encode_reply(0, None)[4:]) == (0, None)
