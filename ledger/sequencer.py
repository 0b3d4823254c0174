"""The one writer of a ledger: serialises appends and commits them in groups.

Callers hand a *unit* (one or more entries, appended all together or not at all)
to the writer thread and wait. The writer takes every unit that is waiting,
opens one transaction, takes the cross-process lock (PostgreSQL advisory lock;
SQLite ``BEGIN IMMEDIATE``), re-reads the head so that several processes never
fork the chain, assigns sequence numbers, runs each unit's ``prepare`` and
``project`` callbacks inside a savepoint, inserts the entries and the Merkle
nodes they complete, optionally signs a checkpoint, and commits once. Only
after the commit returns (durable) are the callers released: "adding an entry
returns a durably assigned sequence number, or an error".
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from ledger import repository
from ledger.checkpoint import Checkpoint
from ledger.db import Database
from ledger.entry import KINDS, LedgerEntry, build_entry, canonical_payload, format_at
from ledger.errors import DomainError, LedgerIntegrityError, UnavailableError, ValidationError
from ledger.keys import Signer
from ledger.merkle import CompactRange
from ledger.projection import ProjectorRegistry

log = logging.getLogger(__name__)

MAX_BATCH = 2000
Prepare = Callable[[Connection], dict[str, Any]]
Project = Callable[[Connection, LedgerEntry], None]


@dataclass(slots=True)
class AppendSpec:
    """One entry to append. Give *payload*, or *prepare* to compute it inside the writer's transaction."""

    kind: str
    actor: str
    at: datetime
    payload: dict[str, Any] | None = None
    prepare: Prepare | None = None
    project: Project | None = None
    payload_bytes: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            msg = f"unknown entry kind {self.kind!r}"
            raise ValidationError(msg)
        if not isinstance(self.actor, str) or (not self.actor.isascii() and not _is_unicode(self.actor)):
            msg = f"actor {self.actor!r} is not a Unicode string"  # refused here, not in the writer's batch
            raise ValidationError(msg)
        if self.payload is not None:
            self.payload_bytes = canonical_payload(self.payload)
        elif self.prepare is None:
            msg = "an append needs a payload or a prepare callback"
            raise ValidationError(msg)


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


@dataclass(slots=True)
class _Unit:
    specs: list[AppendSpec]
    checkpoint: bool
    future: Future[list[LedgerEntry]] = field(default_factory=Future)


@dataclass(slots=True)
class _State:
    tree: CompactRange
    prev: bytes

    def copy(self) -> _State:
        return _State(self.tree.copy(), self.prev)


class _Stop:
    pass


class Sequencer:
    """Owns the append path of one ledger in this process."""

    def __init__(
        self,
        db: Database,
        *,
        signer: Signer,
        origin: str,
        clock: Callable[[], datetime],
        checkpoint_interval: float = 1.0,
        projectors: ProjectorRegistry | None = None,
    ) -> None:
        self._db = db
        self.projectors = projectors or ProjectorRegistry()
        self._signer = signer
        self._origin = origin
        self._clock = clock
        self._interval = checkpoint_interval
        self._queue: queue.Queue[_Unit | _Stop] = queue.Queue()
        self._state: _State | None = None
        self._last_cp_size = -1
        self._last_cp_time: datetime | None = None
        self._listeners: list[Callable[[list[LedgerEntry]], None]] = []
        self._conn: Connection | None = None  # the writer's connection, kept while appends keep coming
        self._storage_errors: tuple[type[BaseException], ...] = (
            DBAPIError,
            OSError,
            db.write_engine.dialect.loaded_dbapi.Error,  # raised as is by the DB-API hot path
        )
        self._thread = threading.Thread(target=self._run, name="ledger-sequencer", daemon=True)
        self._closed = False
        self._thread.start()

    def add_listener(self, listener: Callable[[list[LedgerEntry]], None]) -> None:
        """Call *listener* with each committed batch's entries, after the commit and before callers return."""
        self._listeners.append(listener)

    def submit(self, specs: list[AppendSpec], *, checkpoint: bool = False) -> Future[list[LedgerEntry]]:
        """Queue a unit of entries; the future resolves once they are durable."""
        if self._closed:
            msg = "the ledger is closed"
            raise UnavailableError(msg)
        if not specs and not checkpoint:
            msg = "nothing to append"
            raise ValidationError(msg)
        unit = _Unit(specs, checkpoint)
        self._queue.put(unit)
        return unit.future

    def close(self) -> None:
        """Finish queued work and stop the writer thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_Stop())
            self._thread.join()

    # -- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._interval)
            except queue.Empty:
                self._idle_checkpoint()
                self._release_connection()
                continue
            if isinstance(first, _Stop):
                self._idle_checkpoint()
                self._release_connection()
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = True
                    break
                batch.append(item)
            self._process(batch)
            if stop:
                self._idle_checkpoint()
                self._release_connection()
                return

    def _connection(self) -> Connection:
        """The writer's connection: checked out of the pool once, then reused batch after batch."""
        if self._conn is None:
            self._conn = self._db.write_engine.connect()
        return self._conn

    def _release_connection(self, *, broken: bool = False) -> None:
        """Give the connection back to the pool (when idle), or discard it after an error."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if broken:
                conn.invalidate()
            conn.close()
        except Exception:  # a dead connection may fail to close; the next batch opens another
            log.debug("ledger writer connection did not close cleanly", exc_info=True)

    def _idle_checkpoint(self) -> None:
        if self._state is not None and self._state.tree.size > max(self._last_cp_size, 0):
            self._process([_Unit([], checkpoint=True)])

    def _sync(self, conn: Connection, writer: repository.BatchWriter) -> _State:
        current = writer.lock_and_head()
        size = 0 if current is None else current[0] + 1
        state = self._state
        if state is None or state.tree.size != size or (current is not None and state.prev != current[1]):
            tree = repository.load_compact_range(conn, size)
            state = _State(tree, bytes(32) if current is None else current[1])
            latest = repository.latest_checkpoint(conn)
            self._last_cp_size = -1 if latest is None else latest[0]
            if self._last_cp_size > size:  # never extend (and so fork) a ledger whose tail was removed
                msg = f"a checkpoint of {self._last_cp_size} entries was published but the ledger has {size}"
                raise LedgerIntegrityError(msg + ": entries were removed (rollback); refusing to append", seq=size)
        return state.copy()

    def _process(self, batch: list[_Unit]) -> None:  # noqa: C901 - one transaction, in order
        outcomes: list[list[LedgerEntry] | BaseException] = []
        committed: list[LedgerEntry] = []
        try:
            conn = self._connection()
            with conn.begin():
                writer = repository.BatchWriter(conn)
                state = self._sync(conn, writer)
                entry_rows: list[repository.NewEntryRow] = []
                node_rows: list[repository.NewNodeRow] = []
                for unit in batch:
                    result = self._apply_unit(conn, unit, state, entry_rows, node_rows)
                    outcomes.append(result)
                    if isinstance(result, list):
                        committed.extend(result)
                writer.insert(entry_rows, node_rows)
                signed = self._sign_if_due(conn, batch, state, has_entries=bool(entry_rows))
        except self._storage_errors as exc:
            log.warning("ledger append failed: %s", exc.__class__.__name__)
            self._fail(batch, UnavailableError(f"the ledger could not be written: {_describe(exc)}"))
            return
        except BaseException as exc:  # a bug: fail every caller, keep the writer alive
            log.exception("ledger writer failed")
            self._fail(batch, exc)
            return
        self._state = state
        if signed is not None:
            self._last_cp_size, self._last_cp_time = signed
        if committed:  # listeners (in-memory indexes) see the entries before any caller is released
            for listener in self._listeners:
                try:
                    listener(committed)
                except Exception:
                    log.exception("ledger listener failed")
        for unit, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                unit.future.set_exception(outcome)
            else:
                unit.future.set_result(outcome)

    def _sign_if_due(
        self, conn: Connection, batch: list[_Unit], state: _State, *, has_entries: bool
    ) -> tuple[int, datetime] | None:
        """Sign a checkpoint in this transaction if asked or if the interval passed; return (size, time)."""
        now = self._clock()
        want = any(u.checkpoint for u in batch) or (
            self._last_cp_time is None or (now - self._last_cp_time).total_seconds() >= self._interval
        )
        if want and not has_entries:  # another writer (process) may have signed this size already
            latest = repository.latest_checkpoint(conn)
            self._last_cp_size = max(self._last_cp_size, -1 if latest is None else latest[0])
        if want and state.tree.size > self._last_cp_size and state.tree.size > 0:
            root = state.tree.root()
            note = Checkpoint(self._origin, state.tree.size, root).sign(self._signer)
            repository.insert_checkpoint(conn, size=state.tree.size, root=root, note=note, signed_at=format_at(now))
            return state.tree.size, now
        return None

    def _fail(self, batch: list[_Unit], error: BaseException) -> None:
        """Forget the cached head, drop the connection, and fail every caller of the batch."""
        self._state = None
        self._release_connection(broken=True)
        for unit in batch:
            if not unit.future.done():
                unit.future.set_exception(error)

    def _apply_unit(
        self,
        conn: Connection,
        unit: _Unit,
        state: _State,
        entry_rows: list[repository.NewEntryRow],
        node_rows: list[repository.NewNodeRow],
    ) -> list[LedgerEntry] | BaseException:
        def on_node(level: int, idx: int, value: bytes) -> None:
            node_rows.append((level, idx, value))

        if len(unit.specs) == 1:
            spec = unit.specs[0]
            payload_bytes = spec.payload_bytes
            if payload_bytes is not None and spec.project is None and not self.projectors.handles(spec.kind):
                # The common case, kept short: one entry with its payload already canonical, nothing to run.
                try:
                    at = format_at(spec.at)
                except DomainError as exc:
                    return exc
                seq, prev = state.tree.size, state.prev
                body, leaf = build_entry(
                    seq=seq, kind=spec.kind, at=at, actor=spec.actor, prev=prev, payload_bytes=payload_bytes
                )
                state.tree.append(leaf, on_node)
                state.prev = leaf
                entry_rows.append((seq, spec.kind, at, spec.actor, leaf, body))
                return [LedgerEntry(seq, spec.kind, at, spec.actor, prev, _payload_of(spec, body), body, leaf)]
        return self._apply_guarded(conn, unit, state, entry_rows, node_rows)

    def _apply_guarded(
        self,
        conn: Connection,
        unit: _Unit,
        state: _State,
        entry_rows: list[repository.NewEntryRow],
        node_rows: list[repository.NewNodeRow],
    ) -> list[LedgerEntry] | BaseException:
        """Apply a unit that runs callbacks or has several entries: all of it, in a savepoint, or nothing."""
        work = state.copy()
        new_nodes: list[repository.NewNodeRow] = []
        new_rows: list[repository.NewEntryRow] = []
        entries: list[LedgerEntry] = []

        def on_node(level: int, idx: int, value: bytes) -> None:
            new_nodes.append((level, idx, value))

        savepoint = conn.begin_nested()
        try:
            for spec in unit.specs:
                payload_bytes = spec.payload_bytes
                if spec.prepare is not None:
                    payload_bytes = canonical_payload(spec.prepare(conn))
                assert payload_bytes is not None  # noqa: S101 - guaranteed by AppendSpec
                seq = work.tree.size
                at = format_at(spec.at)
                body, leaf = build_entry(
                    seq=seq, kind=spec.kind, at=at, actor=spec.actor, prev=work.prev, payload_bytes=payload_bytes
                )
                entry = LedgerEntry(seq, spec.kind, at, spec.actor, work.prev, _payload_of(spec, body), body, leaf)
                self.projectors.apply(conn, entry)
                if spec.project is not None:
                    spec.project(conn, entry)
                work.tree.append(leaf, on_node)
                work.prev = leaf
                new_rows.append((seq, spec.kind, at, spec.actor, leaf, body))
                entries.append(entry)
        except (DomainError, LedgerIntegrityError) as exc:
            savepoint.rollback()
            return exc
        savepoint.commit()
        state.tree, state.prev = work.tree, work.prev
        entry_rows.extend(new_rows)
        node_rows.extend(new_nodes)
        return entries


def _payload_of(spec: AppendSpec, body: bytes) -> dict[str, Any]:
    if spec.payload is not None:
        return spec.payload
    return LedgerEntry.from_body(body).payload


def _describe(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", exc)).strip().splitlines()
    return text_[0] if text_ else exc.__class__.__name__
