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
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.append_process import command as append_process_command
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
from trust.checks import MAX_SUBJECTS

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


def test_the_largest_check_goes_through_the_pipes_whole(
    instance: Instance, client: TestClient, org_a: dict[str, str]
) -> None:
    """10,000 subjects (the most a call may name): a frame of hundreds of kilobytes each way, recorded whole."""
    subjects = [*BODY["subjects"], *(f"sub_x{n}" for n in range(MAX_SUBJECTS - len(BODY["subjects"])))]
    response = _check(client, org_a, {**BODY, "subjects": subjects, "cohort_size": len(subjects)})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["subjects"]["permitted"] == BODY["subjects"]
    assert len(answer["subjects"]["excluded"]) == MAX_SUBJECTS - len(BODY["subjects"])
    entry = instance.ledger.get(answer["decision_id"])
    assert len(entry.body) > 300_000
    assert entry.payload["action"]["subjects"] == subjects
    assert entry.leaf_hash.hex() == answer["entry"]["leaf_hash"]


def test_a_withdrawal_binds_the_next_check(client: TestClient, story: Story, org_a: dict[str, str]) -> None:
    """A withdrawal recorded in the server binds the next check, which the child records."""
    assert _check(client, org_a).json()["subjects"]["excluded"] == []
    story.withdraw("con_1")
    answer = _check(client, org_a).json()
    assert [x["subject"] for x in answer["subjects"]["excluded"]] == [BODY["subjects"][0]]
    assert answer["subjects"]["excluded"][0]["rule"] == "consent"


def test_a_child_that_stops_leaves_the_server_answering_and_is_started_again(
    instance: Instance,
    client: TestClient,
    org_a: dict[str, str],
    in_process: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed, the child is noticed; the server records checks itself meanwhile, then a new child takes over."""
    admin = bearer(instance, admin_principal())
    before = _check(client, org_a).json()["decision_id"]
    assert "datatrust_append_process_running 1.0" in client.get("/metrics", headers=admin).text
    appender = instance.ledger.append_process
    assert appender is not None
    first = _child_pid(instance)
    with caplog.at_level(logging.WARNING, logger="ledger.remote"):
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while appender.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not appender.running
        assert "append process stopped" in caplog.text
        # Until it is started again (after 1 s and its start-up): the gauge says so, the server appends.
        assert "datatrust_append_process_running 0.0" in client.get("/metrics", headers=admin).text
        meanwhile = _check(client, org_a)
        assert meanwhile.status_code == 200, meanwhile.text
        assert meanwhile.json()["decision_id"] > before
        assert instance.ledger.get(meanwhile.json()["decision_id"]).kind == "check.decided"
        assert in_process == [1]
        deadline = time.monotonic() + 60
        while not appender.running and time.monotonic() < deadline:
            time.sleep(0.05)
    assert appender.running, "the append process was not started again"
    assert "started again" in caplog.text
    assert _child_pid(instance) != first
    assert "datatrust_append_process_running 1.0" in client.get("/metrics", headers=admin).text
    again = _check(client, org_a)
    assert again.status_code == 200, again.text
    assert again.json()["decision_id"] > meanwhile.json()["decision_id"]
    assert in_process == [1], "after its restart the checks go to the child again"
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
        appender.exited(appender._generation)
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


NOISY_SITE = """
import ledger.remote

_serve = ledger.remote.serve_appends


def serve_appends(*args, **kwargs):
    print("a library's chatter on standard output", flush=True)
    return _serve(*args, **kwargs)


ledger.remote.serve_appends = serve_appends
"""


def test_chatter_on_the_childs_standard_output_never_reaches_the_pipe(
    instance: Instance,
    org_a: dict[str, str],
    in_process: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something in the child prints just before it starts answering: its frames still arrive whole."""
    (tmp_path / "sitecustomize.py").write_text(NOISY_SITE)
    real = append_process_command

    def noisy(target: Instance) -> tuple[list[str], dict[str, str]]:
        command, env = real(target)
        return command, {**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])}

    monkeypatch.setattr("api.app.append_process_command", noisy)
    with TestClient(create_app(instance, append_process=True)) as client:
        answers = [_check(client, org_a) for _ in range(3)]
        appender = instance.ledger.append_process
        assert appender is not None
        assert appender.running
    assert [a.status_code for a in answers] == [200] * 3
    assert in_process == []


GARBLING_CHILD = """
import sys
from ledger.remote import FRAME, encode_reply
out = sys.stdout.buffer
out.write(encode_reply(0, None)); out.flush()  # ready
sys.stdin.buffer.read(FRAME.size)  # a request arrives
out.write(%r); out.flush()  # not an answer
sys.stdin.buffer.read()  # wait to be stopped
"""


@pytest.mark.parametrize(
    "output",
    [b"\x05\x00\x00\x00hello", b"some text on standard output\n"],
    ids=["a frame that is not an answer", "text read as a length"],
)
def test_a_child_writing_something_else_is_stopped_and_its_appends_fail(
    output: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Output that is not an answer: the waiting append fails as unavailable and the child is killed."""

    async def run() -> tuple[BaseException | None, bool]:
        appender = AppendProcess([sys.executable, "-c", GARBLING_CHILD % output])
        assert await appender.start()
        spec = AppendSpec("check.decided", "client_a", datetime.now(UTC), payload={"x": 1})
        future = appender.append(spec)
        with contextlib.suppress(UnavailableError):
            await asyncio.wait_for(future, 30)
        await appender.aclose()  # already killed: returns at once
        return future.exception(), appender.running

    with caplog.at_level(logging.ERROR, logger="ledger.remote"):
        error, running = asyncio.run(run())
    assert isinstance(error, UnavailableError)
    assert not running
    assert "not an answer" in caplog.text


def test_an_answer_nobody_awaits_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An answer for a request never sent (it cannot happen) must not break the reading of the others."""

    async def run() -> LedgerEntry | None:
        appender = AppendProcess(["unused"])
        appender._loop = asyncio.get_running_loop()
        spec = AppendSpec("check.decided", "client_a", datetime.now(UTC), payload={"x": 1})
        future = appender.append(spec)
        appender._outbox.clear()
        entry = (5, "2026-11-27T03:00:00.000000Z", b"p" * 32, b"l" * 32, b"{}")
        appender.received([(99, entry), (1, entry)])
        return future.result()

    with caplog.at_level(logging.ERROR, logger="ledger.remote"):
        entry = asyncio.run(run())
    assert entry is not None
    assert entry.seq == 5
    assert "request 99, which nobody awaits" in caplog.text
