"""Engines for SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with ``synchronous=FULL`` so a commit is durable when it
returns. Two engines share one file: reads begin DEFERRED transactions, writes
begin IMMEDIATE ones (taking the write lock up front, so concurrent writers queue
on ``busy_timeout`` rather than failing on lock upgrade). The ledger writers of
several processes first queue on a file lock of their own (:meth:`Database.writer_lock`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

if sys.platform != "win32":
    import fcntl

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


# Pages the write-ahead log may hold before a commit copies them back into the database file (SQLite's
# default is 1,000, about 4 MB). The copy runs inside the committing writer's COMMIT, and a page written
# many times between two copies (the ends of the ledger's and the projections' B-trees, the index pages
# that checks keep touching) is copied once: with 8,000 pages (up to about 32 MB of log) a busy trust's
# writer copies far fewer pages per entry and pays the copy's fsync an eighth as often. Measured over
# HTTP (bench/check_http.py's server, six paired runs): 5-22 % more recorded checks a second.
SQLITE_WAL_AUTOCHECKPOINT = 8000

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


@dataclass(frozen=True)
class Database:
    """The engines of one trust's database."""

    url: str
    engine: Engine
    write_engine: Engine
    _writer_lock: _WriterLock | None = field(default=None, repr=False, compare=False)

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
            lock = None
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                lock = _WriterLock(Path(parsed.database + ".writer-lock"))
            return cls(
                url,
                _sqlite_engine(url, begin="BEGIN", pool_size=SQLITE_READ_POOL),
                _sqlite_engine(url, begin="BEGIN IMMEDIATE"),
                lock,
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
        """Close every pooled connection."""
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
        if self._writer_lock is not None:
            self._writer_lock.close()
