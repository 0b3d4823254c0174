"""The one writer of a ledger: serialises appends and commits them in groups.

Callers hand a *unit* (one or more entries, appended all together or not at all)
to the sequencer and wait. One caller at a time is the *leader* (group commit
with leader hand-off, as in LevelDB's write queue): it takes every unit that is
waiting, its own first, opens one transaction, takes the cross-process lock
(PostgreSQL advisory lock; SQLite ``BEGIN IMMEDIATE``), re-reads the head so
that several processes never fork the chain, assigns sequence numbers, runs
each unit's ``prepare`` and ``project`` callbacks inside a savepoint, inserts
the entries and the Merkle nodes they complete, optionally signs a checkpoint,
and commits once. A batch of plain entries (payload given; no callback,
checkpoint or projector to run but row projectors, which only insert rows) is
instead built before the lock, from the head this process last wrote, and written
by one guarded transaction (on PostgreSQL one round trip, two with row
projectors): lock, check that the head is still that one, insert the entries and
the projected rows, commit.
If another process appended meanwhile, nothing is written and the batch is
redone the first way. Only after the commit returns (durable) are the callers
released: "adding an entry returns a durably assigned sequence number, or an
error". The leader then passes the lead to the oldest caller still waiting, if
any. A lone caller therefore appends on its own thread with no hand-off at
all, and under load the batches grow while a commit is in flight.

When a leader finds fewer units waiting than the last batch held, the callers of
that batch are likely still on their way back (each must wake, return and build its
next entry): it waits ``GROUP_WAIT`` (100 µs) once for them, as PostgreSQL's
``commit_delay`` does with ``commit_siblings``. A lone caller, whose batches hold
one unit, never waits; 16 threads appending together commit in batches of ~14
instead of ~9, for 20-30 % more appends a second (BENCHMARKS.md).

The sequencer's own background thread leads instead of the main thread (the
only one Python interrupts with KeyboardInterrupt, which must never stop a
commit half-way): a main-thread caller only ever waits. When appends pause,
that thread signs a checkpoint (at least every ``checkpoint_interval`` while
entries arrive, as the busy path does) and gives the writer's pooled
connection back.
"""

from __future__ import annotations

import _thread
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

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
GROUP_WAIT = 0.0001  # seconds a leader waits for the last batch's callers to come back (see above)
_sleep = time.sleep  # a module attribute, so that tests can watch the waits
Prepare = Callable[[Connection], dict[str, Any]]
Done = Callable[["list[LedgerEntry] | BaseException"], None]
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


def _held_lock() -> _thread.LockType:
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


_NEVER_WAITED = _thread.allocate_lock()  # the wake of units nobody waits on (submit_nowait): never acquired


@dataclass(slots=True)
class _Unit:
    specs: list[AppendSpec]
    checkpoint: bool
    outcome: list[LedgerEntry] | BaseException | None = None  # set by the leader before it releases the caller
    wake: _thread.LockType = field(default_factory=_held_lock)  # released once: unit done, or its caller leads
    chain: _Unit | None = None  # the next caller of the batch this caller wakes when woken (spreads the wake-ups)
    promoted: bool = False  # the caller of this waiting unit was handed the lead
    closing: bool = False  # the marker close() queues behind all other work
    proxied: bool = False  # queued by the main thread or without waiting: the background thread leads for it
    done: Done | None = None  # submitted without waiting: called with the outcome instead of a wake-up


class _Waiting(deque[_Unit]):
    """Units waiting for a leader, oldest first."""

    def qsize(self) -> int:
        """How many units wait (the name ``queue.Queue`` uses)."""
        return len(self)


@dataclass(slots=True)
class _State:
    tree: CompactRange
    prev: bytes

    def copy(self) -> _State:
        return _State(self.tree.copy(), self.prev)


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
        self._mutex = threading.Lock()  # guards _queue, _leading and _closed
        self._queue = _Waiting()
        self._leading = False  # a caller (or the timer) holds the lead: only it touches the state below
        self._state: _State | None = None
        self._contended = False  # another process appended lately: build batches under the lock, not before
        self._last_cp_size = -1
        self._last_batch = 0  # units in the last batch (read by the next leader: see GROUP_WAIT)
        self._last_cp_time: datetime | None = None
        self._listeners: list[Callable[[list[LedgerEntry]], None]] = []
        self._conn: Connection | None = None  # the writer's connection, kept while appends keep coming
        self._writer: repository.BatchWriter | None = None  # statements on _conn's driver connection
        self._storage_errors: tuple[type[BaseException], ...] = (
            DBAPIError,
            PoolTimeoutError,  # no pooled connection came free in time
            OSError,
            db.write_engine.dialect.loaded_dbapi.Error,  # raised as is by the DB-API hot path
        )
        self._closed = False
        self._stopping = False
        self._standby = threading.Event()  # set: the background thread is handed the lead
        self._thread = threading.Thread(target=self._background, name="ledger-sequencer", daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        """Whether the writer's background thread is alive and the sequencer not closed."""
        return self._thread.is_alive() and not self._closed

    def add_listener(self, listener: Callable[[list[LedgerEntry]], None]) -> None:
        """Call *listener* with each committed batch's entries, after the commit and before callers return."""
        self._listeners.append(listener)

    def notify(self, entries: list[LedgerEntry]) -> None:
        """Call every listener with *entries* (a listener's failure is logged, never raised)."""
        for listener in self._listeners:
            try:
                listener(entries)
            except Exception:
                log.exception("ledger listener failed")

    def submit(self, specs: list[AppendSpec], *, checkpoint: bool = False) -> Future[list[LedgerEntry]]:
        """Append a unit of entries; return its future once resolved (the entries are durable, or it failed).

        The calling thread waits, or leads a group commit in which its unit is
        the first (see the module documentation).
        """
        if not specs and not checkpoint:
            msg = "nothing to append"
            raise ValidationError(msg)
        unit = _Unit(specs, checkpoint)
        self._enqueue(unit)
        future: Future[list[LedgerEntry]] = Future()  # resolved here, on the caller's thread, not by the leader
        if isinstance(unit.outcome, BaseException):
            future.set_exception(unit.outcome)
        else:
            future.set_result(unit.outcome or [])
        return future

    def submit_nowait(self, specs: list[AppendSpec], done: Done) -> None:
        """Queue a unit and return at once; *done* is called with its entries (durable) or its error.

        For callers that must not block, such as an event loop: the background thread
        leads the commit, and *done* runs on it after the commit, before the next batch
        is taken, so it must be quick and must not raise (hand the outcome to the
        caller's own loop, e.g. with ``call_soon_threadsafe``).
        """
        if not specs:
            msg = "nothing to append"
            raise ValidationError(msg)
        unit = _Unit(specs, checkpoint=False, wake=_NEVER_WAITED, proxied=True, done=done)
        with self._mutex:
            if self._closed:
                msg = "the ledger is closed"
                raise UnavailableError(msg)
            self._queue.append(unit)
            lead = not self._leading
            self._leading = True
        if lead:
            self._standby.set()

    def close(self) -> None:
        """Finish queued work, sign a last checkpoint if this process appended since the last one, and stop."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        self._enqueue(_Unit([], checkpoint=False, closing=True))  # behind everything already waiting
        self._stopping = True
        self._standby.set()
        self._thread.join()

    def _checkpoint_pending(self) -> bool:
        """Whether this process appended entries that no checkpoint covers yet (read under the lead)."""
        state = self._state
        return state is not None and state.tree.size > max(self._last_cp_size, 0)

    # -- the lead ------------------------------------------------------------------------

    def _enqueue(self, unit: _Unit) -> None:
        """Queue *unit*, then wait until it is done, leading the group commit when it is our turn."""
        unit.proxied = threading.current_thread() is threading.main_thread()
        with self._mutex:
            if self._closed and not unit.closing:
                msg = "the ledger is closed"
                raise UnavailableError(msg)
            self._queue.append(unit)
            lead = not self._leading
            self._leading = True
        if lead and unit.proxied:
            self._standby.set()  # the background thread leads on our behalf
            lead = False
        if not lead:
            try:
                unit.wake.acquire()
            except BaseException:  # interrupted while waiting (KeyboardInterrupt): never strand the lead
                self._withdraw(unit)
                raise
            if not unit.promoted:  # a leader committed our unit (or failed it)
                if unit.chain is not None:
                    unit.chain.wake.release()
                return
        self._lead(unit)

    def _withdraw(self, unit: _Unit) -> None:
        """Take back a unit whose caller stopped waiting; pass the lead on if it had just been handed over."""
        with self._mutex:
            promoted = unit.promoted
            if unit in self._queue:
                self._queue.remove(unit)
        if promoted:
            self._pass_lead()

    def _lead(self, own: _Unit | None) -> None:
        """Commit the waiting units (*own*, the leader's, is the oldest) as one batch, then pass the lead on."""
        try:
            if len(self._queue) < self._last_batch:  # the last batch's callers are on their way back
                _sleep(GROUP_WAIT)
            with self._mutex:
                count = min(len(self._queue), MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(count)]
            self._last_batch = count
            for unit in batch:
                if unit.closing:  # sign a last checkpoint of what this process appended
                    unit.checkpoint = self._checkpoint_pending()
            if any(u.specs or u.checkpoint for u in batch):
                self._process(batch, own=own)
            else:  # only the closing marker: nothing to write
                self._settle(batch, [[] for _ in batch], own=own)
            if self._closed:
                self._release_connection()
        finally:
            self._pass_lead()

    def _pass_lead(self) -> None:
        """Hand the lead to the oldest waiting caller (or to the background thread for the main thread's unit)."""
        with self._mutex:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leading = False
            elif not successor.proxied:
                successor.promoted = True
        if successor is None:
            return
        if successor.proxied:
            self._standby.set()
        else:
            successor.wake.release()

    def _background(self) -> None:
        """Lead when handed the lead; when appends pause, sign a pending checkpoint and return the connection."""
        while True:
            handed = self._standby.wait(self._interval)
            if handed:
                self._standby.clear()
                if self._stopping:
                    return
                self._lead(None)
                continue
            with self._mutex:
                if self._leading or self._closed:
                    continue  # a busy leader signs checkpoints itself when the interval has passed
                self._leading = True
            try:
                if self._checkpoint_pending():
                    self._process([_Unit([], checkpoint=True)], own=None)
                self._release_connection()
            except Exception:  # the writer must outlive a failed idle checkpoint (_process logs its own errors)
                log.exception("ledger idle checkpoint failed")
            finally:
                self._pass_lead()

    def _connection(self) -> Connection:
        """The writer's connection: checked out of the pool once, then reused batch after batch."""
        if self._conn is None:
            self._conn = self._db.write_engine.connect()
        return self._conn

    def _batch_writer(self, conn: Connection) -> repository.BatchWriter:
        """The hot path's statements on *conn* (the writer's connection), made once per connection."""
        if self._writer is None:
            self._writer = repository.BatchWriter(conn, writer_lock=self._db.writer_lock)
        return self._writer

    def _release_connection(self, *, broken: bool = False) -> None:
        """Give the connection back to the pool (when idle), or discard it after an error."""
        self._writer = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if broken:
                conn.invalidate()
            conn.close()
        except Exception:  # a dead connection may fail to close; the next batch opens another
            log.debug("ledger writer connection did not close cleanly", exc_info=True)

    def _sync(self, conn: Connection, writer: repository.BatchWriter) -> _State:
        current = writer.lock_and_head()
        size = 0 if current is None else current[0] + 1
        state = self._state
        moved = state is None or state.tree.size != size or (current is not None and state.prev != current[1])
        if state is not None:  # a head we wrote is still the head: we are likely the only writer again
            self._contended = moved
        if state is None or moved:
            tree = repository.load_compact_range(conn, size)
            state = _State(tree, bytes(32) if current is None else current[1])
            latest = repository.latest_checkpoint(conn)
            self._last_cp_size = -1 if latest is None else latest[0]
            if self._last_cp_size > size:  # never extend (and so fork) a ledger whose tail was removed
                msg = f"a checkpoint of {self._last_cp_size} entries was published but the ledger has {size}"
                raise LedgerIntegrityError(msg + ": entries were removed (rollback); refusing to append", seq=size)
        return state.copy()

    def _process(self, batch: list[_Unit], *, own: _Unit | None) -> None:
        """Write *batch* in one transaction and settle every unit (*own* is the leader's, nobody waits on it)."""
        outcomes: list[list[LedgerEntry] | BaseException] = []
        committed: list[LedgerEntry] = []
        signed: tuple[int, datetime] | None = None
        try:
            conn = self._connection()
            writer = self._batch_writer(conn)
            state = self._write_alone(writer, batch, outcomes, committed)
            if state is None:  # the batch needs the lock while it is built, or another process appended
                outcomes.clear()
                committed.clear()
                with self._db.writer_lock(), conn.begin():
                    state = self._sync(conn, writer)
                    entry_rows: list[repository.NewEntryRow] = []
                    node_rows: list[repository.NewNodeRow] = []
                    pending: list[LedgerEntry] = []  # entries whose batch projectors have not run yet
                    for unit in batch:
                        result = self._apply_unit(conn, unit, state, entry_rows, node_rows, pending=pending)
                        outcomes.append(result)
                        if isinstance(result, list):
                            committed.extend(result)
                    self.projectors.flush(conn, pending)
                    writer.insert(entry_rows, node_rows)
                    signed = self._sign_if_due(conn, batch, state, has_entries=bool(entry_rows))
        except self._storage_errors as exc:
            log.warning("ledger append failed: %s: %s", exc.__class__.__name__, _describe(exc))
            self._fail(batch, UnavailableError(f"the ledger could not be written: {_describe(exc)}"), own=own)
            return
        except BaseException as exc:  # a bug: fail every caller, keep the writer alive
            log.exception("ledger writer failed")
            self._fail(batch, exc, own=own)
            return
        self._state = state
        self._db.committed()  # SQLite: the write-ahead log is copied back off this thread
        if signed is not None:
            self._last_cp_size, self._last_cp_time = signed
        if committed:  # listeners (in-memory indexes) see the entries before any caller is released
            self.notify(committed)
        self._settle(batch, outcomes, own=own)

    def _write_alone(
        self,
        writer: repository.BatchWriter,
        batch: list[_Unit],
        outcomes: list[list[LedgerEntry] | BaseException],
        committed: list[LedgerEntry],
    ) -> _State | None:
        """Build a batch of plain entries from the cached head, then write it in a guarded transaction of its own.

        Returns the new state once the entries are committed; None if the batch
        is not eligible (a unit runs callbacks or projectors, a checkpoint is
        due, no head is cached, other processes appended lately) or if the head
        moved (another process appended, or entries were removed): then nothing
        was written, and the caller redoes the batch under the lock from the
        current head, discarding what this put in *outcomes* and *committed*.
        """
        cached = self._state
        if cached is None or self._contended or not self._plain(batch) or self._checkpoint_due(batch, self._clock()):
            return None
        state = cached.copy()
        entry_rows: list[repository.NewEntryRow] = []
        node_rows: list[repository.NewNodeRow] = []
        rows_kinds = self.projectors.rows
        for unit in batch:
            try:  # the only check left that may refuse a plain unit: refuse it whole, before building any of it
                ats = [format_at(spec.at) for spec in unit.specs]
            except DomainError as exc:
                outcomes.append(exc)
                continue
            entries = [
                _next_entry(spec, at, spec.payload_bytes, state, entry_rows=entry_rows, node_rows=node_rows)
                for spec, at in zip(unit.specs, ats, strict=True)
            ]
            committed.extend(entries)
            outcomes.append(entries)
        projected = [entry for entry in committed if entry.kind in rows_kinds]  # row projectors' entries
        project = partial(self.projectors.project_rows, entries=projected) if projected else None
        if entry_rows and not writer.append_if_head(
            entry_rows, node_rows, size=cached.tree.size, prev=cached.prev, project=project
        ):
            log.debug("ledger head moved (another writer appended): redoing the batch under the lock")
            self._state = None
            self._contended = True  # until a batch under the lock finds our head still current
            return None
        return state

    def _plain(self, batch: list[_Unit]) -> bool:
        """Whether every unit has entries, each with its payload, and nothing to run for them but row projectors."""
        needs_connection = self.projectors.needs_connection
        for unit in batch:
            if not unit.specs:
                return False
            for spec in unit.specs:
                if spec.payload_bytes is None or spec.prepare is not None or spec.project is not None:
                    return False
                if needs_connection(spec.kind):
                    return False
        return True

    def _checkpoint_due(self, batch: list[_Unit], now: datetime) -> bool:
        """Whether a unit asks for a checkpoint, or the interval since the last one passed."""
        return any(u.checkpoint for u in batch) or (
            self._last_cp_time is None or (now - self._last_cp_time).total_seconds() >= self._interval
        )

    @staticmethod
    def _settle(batch: list[_Unit], outcomes: list[list[LedgerEntry] | BaseException], *, own: _Unit | None) -> None:
        """Give each unit its outcome, then release the waiting callers.

        Callers on other threads are released as a chain (each wakes the next),
        so the leader makes one wake-up call instead of one per caller. The main
        thread's callers are released directly: an interrupt there must not
        break the chain.
        """
        chained: list[_Unit] = []
        for unit, outcome in zip(batch, outcomes, strict=True):
            unit.outcome = outcome
            if unit is own:
                continue
            if unit.done is not None:
                try:
                    unit.done(outcome)
                except Exception:  # a caller's hand-off must never stop the writer
                    log.exception("ledger append callback failed")
            elif unit.proxied:
                unit.wake.release()
            else:
                chained.append(unit)
        for waiting, following in pairwise(chained):
            waiting.chain = following
        if chained:
            chained[0].wake.release()

    def _sign_if_due(
        self, conn: Connection, batch: list[_Unit], state: _State, *, has_entries: bool
    ) -> tuple[int, datetime] | None:
        """Sign a checkpoint in this transaction if asked or if the interval passed; return (size, time)."""
        now = self._clock()
        want = self._checkpoint_due(batch, now)
        if want and not has_entries:  # another writer (process) may have signed this size already
            latest = repository.latest_checkpoint(conn)
            self._last_cp_size = max(self._last_cp_size, -1 if latest is None else latest[0])
        if want and state.tree.size > self._last_cp_size and state.tree.size > 0:
            root = state.tree.root()
            note = Checkpoint(self._origin, state.tree.size, root).sign(self._signer)
            repository.insert_checkpoint(conn, size=state.tree.size, root=root, note=note, signed_at=format_at(now))
            return state.tree.size, now
        return None

    def _fail(self, batch: list[_Unit], error: BaseException, *, own: _Unit | None) -> None:
        """Forget the cached head, drop the connection, and fail every caller of the batch."""
        self._state = None
        self._release_connection(broken=True)
        self._settle(batch, [error] * len(batch), own=own)

    def _apply_unit(
        self,
        conn: Connection,
        unit: _Unit,
        state: _State,
        entry_rows: list[repository.NewEntryRow],
        node_rows: list[repository.NewNodeRow],
        *,
        pending: list[LedgerEntry],
    ) -> list[LedgerEntry] | BaseException:
        if not unit.specs:  # a checkpoint request, or the closing marker
            return []
        if len(unit.specs) == 1:
            spec = unit.specs[0]
            payload_bytes = spec.payload_bytes
            if (
                payload_bytes is not None
                and spec.prepare is None
                and spec.project is None
                and not self.projectors.may_refuse(spec.kind)
            ):
                # The common case, kept short: one entry with its payload already canonical, and nothing
                # that could refuse it (so no savepoint): at most projectors that only write rows.
                try:
                    at = format_at(spec.at)
                except DomainError as exc:
                    return exc
                entry = _next_entry(spec, at, payload_bytes, state, entry_rows=entry_rows, node_rows=node_rows)
                # If a projector fails, the batch fails and this state is dropped; batch projectors run later.
                self.projectors.apply(conn, entry, pending=pending)
                return [entry]
        self.projectors.flush(conn, pending)  # what this unit's projectors or callbacks read is written first
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
        savepoint = conn.begin_nested()
        try:
            for spec in unit.specs:
                payload_bytes = spec.payload_bytes
                if spec.prepare is not None:
                    payload_bytes = canonical_payload(spec.prepare(conn))
                at = format_at(spec.at)
                entry = _next_entry(spec, at, payload_bytes, work, entry_rows=new_rows, node_rows=new_nodes)
                self.projectors.apply(conn, entry)  # a refusal rolls back the savepoint; work is dropped
                if spec.project is not None:
                    spec.project(conn, entry)
                entries.append(entry)
        except (DomainError, LedgerIntegrityError) as exc:
            savepoint.rollback()
            return exc
        savepoint.commit()
        state.tree, state.prev = work.tree, work.prev
        entry_rows.extend(new_rows)
        node_rows.extend(new_nodes)
        return entries


def _next_entry(
    spec: AppendSpec,
    at: str,
    payload_bytes: bytes | None,
    state: _State,
    *,
    entry_rows: list[repository.NewEntryRow],
    node_rows: list[repository.NewNodeRow],
) -> LedgerEntry:
    """Build *spec*'s entry at *state*'s head, advance *state* past it and add the rows to write."""
    assert payload_bytes is not None  # noqa: S101 - given, or computed by the unit's prepare callback
    seq, prev = state.tree.size, state.prev
    body, leaf = build_entry(seq=seq, kind=spec.kind, at=at, actor=spec.actor, prev=prev, payload_bytes=payload_bytes)
    state.tree.push(leaf, node_rows)
    state.prev = leaf
    entry_rows.append((seq, spec.kind, at, spec.actor, leaf, body))
    return LedgerEntry(seq, spec.kind, at, spec.actor, prev, _payload_of(spec, body), body, leaf)


def _payload_of(spec: AppendSpec, body: bytes) -> dict[str, Any]:
    if spec.payload is not None:
        return spec.payload
    return LedgerEntry.from_body(body).payload


def _describe(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", exc)).strip().splitlines()
    return text_[0] if text_ else exc.__class__.__name__
