"""SQLite's write-ahead log is copied back by a thread of its own, and started afresh under constant writes."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger import db as db_module
from ledger.db import Database, _WalCheckpointer, _WriterLock, sqlite_url
from ledger.keys import Signer
from ledger.service import Ledger
from migrations import upgrade

PAGE = 4096


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpointer that copies every 10 ms and holds the writers back once the log has 50 pages."""
    monkeypatch.setattr(db_module, "SQLITE_CHECKPOINT_SPACING", 0.01)
    monkeypatch.setattr(db_module, "SQLITE_CHECKPOINT_RESTART_PAGES", 50)


@pytest.fixture
def database(tmp_path: Path, quick: None) -> Iterator[Database]:
    """A SQLite database with a table of page-sized rows."""
    db = Database.from_url(sqlite_url(tmp_path))
    with db.write_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE blobs (n INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    yield db
    db.dispose()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _wait_for_quiet(checkpointer: _WalCheckpointer) -> None:
    """Wait for the copy of the last commit: a copy ends, and none follows within 30 spacings."""
    copies = checkpointer.copies
    _wait_for(lambda: checkpointer.copies > copies, "a copy after the last commit")
    while True:
        copies = checkpointer.copies
        time.sleep(0.3)
        if checkpointer.copies == copies:
            return


def _log_pages(path: Path) -> int:
    """Pages in the write-ahead log since it was last started afresh (a PASSIVE checkpoint reports them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def _write(db: Database, first: int, rows: int = 10) -> None:
    """One commit of *rows* page-sized rows, as the ledger's writer commits: under its lock, then noted."""
    with db.writer_lock(), db.write_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO blobs (n, body) VALUES (:n, :body)"),
            [{"n": n, "body": bytes(PAGE - 100)} for n in range(first, first + rows)],
        )
    db.committed()


def test_the_log_is_copied_back_and_started_afresh_under_constant_writes(tmp_path: Path, database: Database) -> None:
    """300 commits of ~10 pages each, never pausing: without the checkpointer the log would hold ~3,000 pages."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    for commit in range(300):
        _write(database, commit * 10)
    _wait_for_quiet(checkpointer)
    _write(database, 3000)  # begins after everything was copied back: starts the log afresh
    assert _log_pages(tmp_path / "datatrust.db") < 50
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 3010


@contextlib.contextmanager
def _lock_held_by_another_writer(database: Database) -> Iterator[None]:
    """Hold the ledger writers' lock on another thread (as another process's writer would) until the block ends."""
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with database.writer_lock():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        holder.join()


def _write_past_the_restart_threshold(database: Database) -> None:
    """One commit of ~100 pages (past the 50-page threshold), not under the writers' lock (another writer holds it)."""
    with database.write_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO blobs (n, body) VALUES (:n, :body)"),
            [{"n": n, "body": bytes(PAGE - 100)} for n in range(100)],
        )
    database.committed()


def test_a_writer_holding_the_lock_holds_the_last_copy_back(database: Database) -> None:
    """The short copy that lets the log restart waits for the ledger's writers' lock (other processes' too)."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    with _lock_held_by_another_writer(database):
        _write_past_the_restart_threshold(database)
        time.sleep(0.3)  # ~30 spacings: the copy has long started, and waits on the lock
        assert checkpointer.copies == 0, "the copy finished while another writer held the lock"
    _wait_for(lambda: checkpointer.copies == 1, "the copy once the lock was let go")


def test_what_was_committed_during_a_long_copy_is_copied_again_before_the_lock_is_taken(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy that took long is followed by catch-up copies without the lock, so the copy under it is short."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    monkeypatch.setattr(checkpointer, "_short_copy", 0.0)  # every copy counts as long: all passes run
    monkeypatch.setattr(checkpointer, "_catch_up_passes", 3)
    with _lock_held_by_another_writer(database):
        _write_past_the_restart_threshold(database)
        # The catch-up copies need no lock: all three run while a writer holds it.
        _wait_for(lambda: checkpointer.catch_up_copies == 3, "three catch-up copies")
        time.sleep(0.1)
        assert checkpointer.catch_up_copies == 3
        assert checkpointer.copies == 0, "the copy under the lock finished while a writer held it"
    _wait_for(lambda: checkpointer.copies == 1, "the copy under the lock once it was let go")


def test_a_short_copy_goes_straight_to_the_lock(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """No catch-up copy when the first copy was quick: there is little left for the one under the lock."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    monkeypatch.setattr(checkpointer, "_short_copy", 60.0)  # every copy counts as short
    _write(database, 0, rows=100)
    _wait_for(lambda: checkpointer.copies == 1, "a copy")
    assert checkpointer.catch_up_copies == 0


def test_a_failed_copy_is_logged_once_and_tried_again(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy that fails (a full disk, say) is reported, and the next commit's copy goes ahead."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    real = _WalCheckpointer._checkpoint
    failures = iter([True, True])

    def flaky(conn: sqlite3.Connection) -> int:
        if next(failures, False):
            raise sqlite3.OperationalError("database or disk is full")
        return real(conn)

    monkeypatch.setattr(_WalCheckpointer, "_checkpoint", staticmethod(flaky))
    with caplog.at_level(logging.WARNING, logger="ledger.db"):
        for commit in range(200):  # until a copy has failed twice and then gone through
            _write(database, commit * 10)
            time.sleep(0.02)
            if checkpointer.copies:
                break
    assert checkpointer.copies >= 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "ledger.db"]
    assert warnings == [
        "copying the SQLite write-ahead log back failed (retried on the next commit): database or disk is full"
    ]


def test_a_checkpointer_that_cannot_open_the_database_says_so_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The committing writers' own copies remain; the server goes on."""
    missing = tmp_path / "missing" / "datatrust.db"
    checkpointer = _WalCheckpointer(
        str(missing),
        lock=_WriterLock(Path(f"{missing}.writer-lock")),
        spacing=0.01,
        restart_pages=50,
        catch_up_passes=4,
        short_copy=0.002,
    )
    with caplog.at_level(logging.WARNING, logger="ledger.db"):
        checkpointer.committed()
        _wait_for(lambda: not checkpointer.running, "the thread to give up")
    checkpointer.close()
    assert [r.getMessage() for r in caplog.records if r.name == "ledger.db"] == [
        "the SQLite write-ahead log will be copied back by the committing writers only: unable to open database file"
    ]
    assert checkpointer.copies == 0


def test_dispose_stops_the_thread_and_it_does_not_come_back(database: Database) -> None:
    """After dispose the thread is gone; a later commit (a closing writer's) does not start another."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    assert not checkpointer.running  # started by the first commit, not before
    _write(database, 0)
    assert checkpointer.running
    database.dispose()
    assert not checkpointer.running
    database.committed()
    assert not checkpointer.running


def test_the_ledger_writer_tells_the_checkpointer_of_its_commits(database: Database) -> None:
    """Appends through the ledger, on SQLite, are followed by copies of the log; PostgreSQL has none."""
    checkpointer = database.checkpointer
    assert checkpointer is not None
    upgrade(database.url)
    signer = Signer.generate("datatrust.test/wal")
    ledger = Ledger(database, signer=signer, origin=signer.name)
    try:
        ledger.append("check.decided", {"n": 1}, actor="org_a", now=datetime.now(UTC))
        _wait_for(lambda: checkpointer.copies > 0, "a copy after the ledger's commit")
    finally:
        ledger.close()
    postgresql = Database.from_url("postgresql://nobody@127.0.0.1:1/none")  # not connected to: no server needed
    assert postgresql.checkpointer is None
    postgresql.dispose()
