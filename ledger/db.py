"""Engines for SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with ``synchronous=FULL`` so a commit is durable when it
returns. Two engines share one file: reads begin DEFERRED transactions, writes
begin IMMEDIATE ones (taking the write lock up front, so concurrent writers queue
on ``busy_timeout`` rather than failing on lock upgrade). The ledger writers of
several processes first queue on a file lock of their own (:meth:`Database.writer_lock`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "DATATRUST_DATABASE_URL"
LEDGER_LOCK_ID = 0x64617461  # PostgreSQL advisory lock key: "data" in ASCII
# libpq parameters applied unless the URL sets them: give up connecting after 10 s, and notice a
# server that vanished without closing the connection (a crash of its machine, a cut network) within
# about a minute, idle (keepalives) or sending (tcp_user_timeout, ms), instead of waiting on the
# socket for ever. Callers then get an error (HTTP 503), not a hang. A slow query is not cut short.
POSTGRES_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def sqlite_url(data_dir: Path) -> str:
    """Return the URL of the SQLite file inside *data_dir*."""
    return f"sqlite:///{(data_dir / 'datatrust.db').resolve()}"


# Pages the write-ahead log may hold before a commit copies them back into the database file itself
# (SQLite's default is 1,000, about 4 MB). In a process that appends to the ledger the copy is the
# checkpointer's (``_WalCheckpointer``, below), off the writer's path, and the log seldom grows this
# far; this bound holds for other writers, and if the checkpointer falls behind. Such a copy runs
# inside the committing writer's COMMIT, and a page written many times between two copies is copied
# once: with 8,000 pages (up to about 32 MB of log) a busy writer copies far fewer pages per entry.
SQLITE_WAL_AUTOCHECKPOINT = 8000

# The checkpointer copies the log back at most this often (seconds) while commits keep coming, and
# holds the writers back for a last short copy only once the log holds this many pages: so that the
# next commit can start the log afresh (see ``_WalCheckpointer``). Small copies often, not large ones
# seldom: a copy's writes and its sync of the database file slow the writer's own syncs while they
# last, and a large copy makes every commit during it slow at once. Against a busy trust
# (bench/check_http.py, 7,000-8,000 checks/s, four 15-second rounds on one growing trust) the check's
# p99 was 6.7-7.4 ms copying every 10 ms, 7.4-9.1 ms every 20 ms, 8.5-11.1 ms every 50 ms,
# 10-15 ms every 100 ms and 16-51 ms every 300 ms; 7-8 ms with no copying at all.
SQLITE_CHECKPOINT_SPACING = 0.01
SQLITE_CHECKPOINT_RESTART_PAGES = 1000

# Before it holds the writers back, the checkpointer copies again, without the lock, what was committed
# while it copied: up to this many more times, until a copy takes no longer than
# SQLITE_CHECKPOINT_SHORT_COPY seconds. The copy under the lock is then short, whatever the size of the
# trust: without these passes it had to copy everything committed during one long pass, and writers
# waited 4 ms (a fresh trust) to 12 ms (a few hundred thousand entries) nine times a second, the
# greater part of the check's p99 (bench/check_http.py; see BENCHMARKS.md).
SQLITE_CHECKPOINT_CATCH_UP_PASSES = 4
SQLITE_CHECKPOINT_SHORT_COPY = 0.002

# Readers: as many pooled connections as the server has request threads (AnyIO's 40) plus its
# background threads, so that connections are reused, not opened (with their PRAGMAs) per request.
SQLITE_READ_POOL = 48


def _sqlite_engine(url: str, *, begin: str, pool_size: int = 5) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=pool_size, max_overflow=16
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class _WriterLock:
    """An advisory file lock (``flock``) beside a SQLite file, taken by each process's ledger writer.

    Ledger writers in several processes (``datatrust serve --workers N``) queue on it in the
    kernel, which wakes the next one the moment the holder lets go. Without it they queue on
    SQLite's busy handler, which sleeps and retries (1, 2, 5, 10 … ms), so that a writer
    could sleep for milliseconds after the lock came free, every batch.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._open = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if sys.platform == "win32":  # no flock: writers of several processes wait in SQLite's busy handler
            yield
            return
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        with self._open:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            return self._fd

    def close(self) -> None:
        with self._open:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _WalCheckpointer:
    """Copies a SQLite file's write-ahead log back into the database on a thread of its own.

    Left to itself, SQLite copies the log back inside the COMMIT of whichever write fills it
    (``SQLITE_WAL_AUTOCHECKPOINT``): that commit, and every answer waiting on it, then takes
    as long as copying thousands of pages (15-20 ms on a busy trust, every ~0.4 s: most of
    the check's p99). Here the ledger's writer calls :meth:`committed` after each commit, and
    a thread copies what has been committed, at most every ``spacing`` seconds, while the
    writer goes on committing (SQLite's PASSIVE checkpoint: it waits for no reader or writer).

    Copying alone would let the log grow for ever under constant load: SQLite starts the log
    afresh only when a write begins after *everything* in it was copied, and there is always
    a newer commit. So once the log holds ``restart_pages`` pages, the thread copies again
    what was committed during its copy, until a copy is short (``catch_up_passes``,
    ``short_copy``); then it takes the writers' file lock (its own descriptor of the lock
    beside the database, so it excludes this process's writer as well as other processes')
    and copies the few pages committed meanwhile: a stall of about a millisecond, after which
    the next commit restarts the log.

    A failed copy (a full disk, say) is logged and tried again on the next commit.
    """

    def __init__(
        self,
        path: str,
        *,
        lock: _WriterLock,
        spacing: float,
        restart_pages: int,
        catch_up_passes: int,
        short_copy: float,
    ) -> None:
        self._path = path
        self._spacing = spacing
        self._restart_pages = restart_pages
        self._catch_up_passes = catch_up_passes
        self._short_copy = short_copy
        self._lock = lock  # a _WriterLock of its own on the writers' lock file (not the writer's descriptor)
        self._wake = threading.Event()
        self._guard = threading.Lock()  # guards _thread and _stopping
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failing = False
        self.copies = 0  # checkpoints run (for tests and diagnostics)
        self.catch_up_copies = 0  # copies run again before taking the lock (for tests and diagnostics)

    def committed(self) -> None:
        """Note a commit: the thread (started on the first call) copies the log back soon after."""
        if self._thread is None:
            with self._guard:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
                    self._thread.start()
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self) -> None:
        """Stop the thread (after the copy in progress, if any)."""
        with self._guard:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        self._lock.close()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            log.warning("the SQLite write-ahead log will be copied back by the committing writers only: %s", exc)
            if conn is not None:
                conn.close()
            return
        try:
            while True:
                self._wake.wait()
                time.sleep(self._spacing)  # let commits accumulate: a page rewritten meanwhile is copied once
                self._wake.clear()
                if self._stopping:
                    return
                self._copy(conn)
        finally:
            conn.close()

    def _copy(self, conn: sqlite3.Connection) -> None:
        try:
            pages, took = self._timed_checkpoint(conn)
            if pages >= self._restart_pages:
                for _ in range(self._catch_up_passes):
                    if took <= self._short_copy:
                        break
                    _, took = self._timed_checkpoint(conn)  # what was committed during the last copy
                    self.catch_up_copies += 1
                with self._lock.held():
                    self._checkpoint(conn)
        except (sqlite3.Error, OSError) as exc:
            if not self._failing:
                log.warning("copying the SQLite write-ahead log back failed (retried on the next commit): %s", exc)
            self._failing = True
            return
        self._failing = False
        self.copies += 1

    def _timed_checkpoint(self, conn: sqlite3.Connection) -> tuple[int, float]:
        """Copy what no reader still needs; return the pages in the log and the seconds the copy took."""
        started = time.perf_counter()
        pages = self._checkpoint(conn)
        return pages, time.perf_counter() - started

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> int:
        """Copy what no reader still needs; return the pages in the log."""
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]) if row is not None else 0


@dataclass(frozen=True)
class Database:
    """The engines of one trust's database."""

    url: str
    engine: Engine
    write_engine: Engine
    _writer_lock: _WriterLock | None = field(default=None, repr=False, compare=False)
    checkpointer: _WalCheckpointer | None = field(default=None, repr=False, compare=False)

    def committed(self) -> None:
        """Called by the ledger's writer after each commit: on SQLite, the log is copied back soon after."""
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by the ledger writer around each transaction: the cross-process queue on SQLite (see ``_WriterLock``).

        On PostgreSQL the transaction's advisory lock queues writers the same way, so this holds nothing.
        """
        return contextlib.nullcontext() if self._writer_lock is None else self._writer_lock.held()

    @property
    def is_postgresql(self) -> bool:
        """Whether this is the PostgreSQL engine."""
        return self.engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> Database:
        """Create engines for *url* (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            lock = checkpointer = None
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                lock_path = Path(parsed.database + ".writer-lock")
                lock = _WriterLock(lock_path)
                checkpointer = _WalCheckpointer(
                    parsed.database,
                    lock=_WriterLock(lock_path),
                    spacing=SQLITE_CHECKPOINT_SPACING,
                    restart_pages=SQLITE_CHECKPOINT_RESTART_PAGES,
                    catch_up_passes=SQLITE_CHECKPOINT_CATCH_UP_PASSES,
                    short_copy=SQLITE_CHECKPOINT_SHORT_COPY,
                )
            return cls(
                url,
                _sqlite_engine(url, begin="BEGIN", pool_size=SQLITE_READ_POOL),
                _sqlite_engine(url, begin="BEGIN IMMEDIATE"),
                lock,
                checkpointer,
            )
        if parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":
                url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
            connect_args = {k: v for k, v in POSTGRES_CONNECT_DEFAULTS.items() if k not in parsed.query}
            engine = create_engine(
                url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
            )
            return cls(url, engine, engine)
        msg = f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql"
        raise ValueError(msg)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Database:
        """The database named by ``DATATRUST_DATABASE_URL``, else SQLite in *data_dir*."""
        return cls.from_url(os.environ.get(DATABASE_URL_ENV) or sqlite_url(data_dir))

    def dispose(self) -> None:
        """Stop the checkpointer and close every pooled connection."""
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
        if self._writer_lock is not None:
            self._writer_lock.close()
