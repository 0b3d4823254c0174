"""A leader that finds fewer units waiting than its last batch held waits once for the rest; a lone writer never."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from ledger import sequencer as sequencer_module
from ledger.db import Database, _WriterLock
from ledger.entry import LedgerEntry
from ledger.keys import Signer
from ledger.sequencer import GROUP_WAIT, AppendSpec, Sequencer


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The leaders' waits, as they happen (each still waits for real)."""
    seen: list[float] = []
    real = sequencer_module._sleep

    def watched(seconds: float) -> None:
        seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(sequencer_module, "_sleep", watched)
    return seen


@pytest.fixture
def database(sqlite_only_url: str) -> Iterator[Database]:
    """A migrated SQLite database: its writers' file lock lets a test hold a commit back."""
    db = Database.from_url(sqlite_only_url)
    yield db
    db.dispose()


@contextlib.contextmanager
def _writers_lock_held(database: Database) -> Iterator[None]:
    """The writers' file lock, through a descriptor of our own (a lock is shared by holders of one descriptor)."""
    path = make_url(database.url).database
    assert path is not None
    lock = _WriterLock(Path(path + ".writer-lock"))
    try:
        with lock.held():
            yield
    finally:
        lock.close()


def _spec(n: int) -> AppendSpec:
    return AppendSpec("check.decided", "org_a", datetime.now(UTC), payload={"n": n})


def test_a_lone_writer_never_waits(database: Database, waits: list[float]) -> None:
    """Appends one after the other: every batch holds one unit, and no leader waits."""
    signer = Signer.generate("datatrust.test/group-wait")
    writer = Sequencer(database, signer=signer, origin=signer.name, clock=lambda: datetime.now(UTC))
    try:
        seqs = [writer.submit([_spec(n)]).result()[0].seq for n in range(20)]
    finally:
        writer.close()
    assert seqs == list(range(20))
    assert waits == []


def test_a_leader_waits_once_for_the_last_batchs_callers(database: Database, waits: list[float]) -> None:
    """Three units queued behind a blocked commit form the next batch; one unit after them waits GROUP_WAIT."""
    signer = Signer.generate("datatrust.test/group-wait")
    writer = Sequencer(database, signer=signer, origin=signer.name, clock=lambda: datetime.now(UTC))
    outcomes: list[list[LedgerEntry] | BaseException] = []
    done = threading.Semaphore(0)

    def record(outcome: list[LedgerEntry] | BaseException) -> None:
        outcomes.append(outcome)
        done.release()

    try:
        with _writers_lock_held(database):  # the first batch's commit waits here
            writer.submit_nowait([_spec(0)], record)
            for n in (1, 2, 3):
                writer.submit_nowait([_spec(n)], record)
        for _ in range(4):
            assert done.acquire(timeout=10)
        assert waits == [], "the batch of three followed a batch of one: nobody to wait for"
        writer.submit_nowait([_spec(4)], record)  # alone, after a batch of three
        assert done.acquire(timeout=10)
    finally:
        writer.close()
    assert waits == [GROUP_WAIT]
    assert [o[0].seq for o in outcomes if isinstance(o, list)] == [0, 1, 2, 3, 4]
