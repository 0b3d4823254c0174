"""Bulk import of consents from CSV, JSON Lines or FHIR: every valid row, or none at all.

Two passes, streaming, so memory stays flat however long the file is:

1. **Validate** every row (schema, vocabulary codes, explicit consent for special
   categories, validity period, known subjects, consent ids unique in the file and
   not used by another organisation). Every bad row is reported with its line
   number; if there is one, nothing is imported. Each valid row not yet recorded
   is also made ready to append: its new subject id, its access code (and the
   code's hash), the person's details sealed in the vault's format, and the
   ledger payload's canonical bytes. All that is kept in a scratch SQLite file in
   a private temporary directory (deleted afterwards), so the file is parsed once
   and nothing identifying is kept there in clear. A large file is checked by
   two worker processes (the costly part is per row and independent), the
   reading, the database lookups and the sealing staying in this process.
2. **Append** the prepared rows in chunks, each chunk one atomic ``append_all``
   (its entries, projection rows, vault records and access codes commit together,
   or none do). The next chunk is read while the previous one is being written.

**Idempotent and resumable.** Every row carries the client's own consent id. A
row whose id is already recorded by the same organisation (for the same subject)
is skipped, so rerunning an import after a crash or a Ctrl-C records exactly the
rows that were missing. A row that names a new person creates a new subject; a
further consent for someone already known names their ``subject`` instead.

Rows (CSV header or JSON keys): ``consent`` (required), ``subject`` or ``name`` +
``contact``, ``purposes``, ``categories``, ``recipients``, ``operations`` (CSV:
separated by ``;`` or spaces; empty means null), ``valid_from``, ``valid_until``
(ISO 8601 with a time zone), ``explicit``, ``on_behalf`` (true/false),
``wording_version``, and ``wording_hash`` or ``wording_text``.

Each recorded row gets an access code for the person, written (and flushed to
disk) to the codes file as ``line,consent,subject,access_code`` before its chunk
is appended. If a consent appears twice in that file after a rerun, its last
line is the valid one.
"""

from __future__ import annotations

import io
import marshal
import multiprocessing
import os
import secrets
import sqlite3
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, Self

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection

from consent import access_codes, projections, repository
from consent.import_rows import Format, Record, convert, message, read_records
from consent.schemas import ConsentIn
from consent.service import ensure_vocabulary, grant_payload, new_subject_id, vocabulary_in_force
from consent.vocabulary import Vocabulary
from ledger.entry import CanonicalPayload, canonical_payload, format_at
from ledger.errors import ConflictError, DomainError, InvalidStateError, ValidationError
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from ledger.vault import SealedSubjects, Vault

__all__ = ["Format", "ImportReport", "Importer", "RowError"]

Progress = Callable[[int, int], None]
CHUNK = 20_000  # rows per ledger transaction: fewer, larger commits write each index page fewer times per row
CHUNK_BYTES = 16_000_000  # and at most this much payload per transaction (bounds memory for large rows)
BATCH = 500  # rows per validation task (and per database lookup of existing consents and subjects)
AHEAD = 6  # validation tasks in flight at once: bounds memory, keeps both workers busy
PARALLEL_BYTES = 2_000_000  # files at least this large are checked by worker processes (about 15,000 rows)
WORKERS = 2  # and only when that many cores are free (see Importer)
_FIELDS = "consent, line, done, subject, named, code, code_hash, vault, payload, canonical"
_STASH = """CREATE TABLE rows (n INTEGER PRIMARY KEY, consent TEXT NOT NULL UNIQUE, line INTEGER NOT NULL,
    done INTEGER NOT NULL, subject TEXT, named INTEGER, code TEXT, code_hash TEXT, vault BLOB, payload BLOB,
    canonical BLOB)"""  # {_FIELDS}; done: recorded before this import (skipped); vault: sealed key and fields
_INSERT = f"INSERT OR IGNORE INTO rows ({_FIELDS}) VALUES ({', '.join('?' * 10)})"  # noqa: S608 - constants


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be imported, and why."""

    line: int
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, when ``errors`` is not empty, why it did nothing)."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)


class _Checked(NamedTuple):
    """A valid row, ready to append (made by :class:`_Checker`, possibly in a worker process)."""

    line: int
    consent: str
    subject: str  # the row's own (named) subject, or a new one for a new person
    named: bool  # the row named an existing subject
    vault: bytes | None  # a new person's details, sealed: marshal of (sealed key, [(field, ciphertext), ...])
    code: str
    code_hash: str
    payload: bytes  # marshal of the payload dict
    canonical: bytes  # its RFC 8785 bytes


@dataclass(frozen=True, slots=True)
class _Context:
    """What checking a row needs besides the row: the same in this process and in every worker."""

    fmt: Format
    header: list[str] | None
    organisation: str
    vocabulary: dict[str, Any]  # the document of the vocabulary in force
    vocabulary_hash: str
    now: datetime  # the default start of a consent


class _Checker:
    """Turns records into checked rows or row errors: pure computation, no database."""

    def __init__(self, context: _Context, vault: Vault) -> None:
        self.context, self.vault = context, vault
        self.vocabulary = Vocabulary.from_document(context.vocabulary)
        if self.vocabulary.hash != context.vocabulary_hash:  # pragma: no cover - a bug, not an input
            msg = "the vocabulary did not survive the trip to the worker unchanged"
            raise InvalidStateError(msg)

    def check(self, batch: list[Record]) -> list[_Checked | RowError]:
        """Check every record of *batch*, in order."""
        ctx = self.context
        out: list[_Checked | RowError] = []
        people: list[tuple[str, dict[str, str]]] = []
        random = secrets.token_bytes(32 * len(batch))  # one call: 15 bytes for a subject, 17 for a code, a row
        for index, (line, record) in enumerate(batch):
            raw = convert(ctx.fmt, ctx.header, record)
            if isinstance(raw, DomainError):
                out.append(RowError(line, raw.detail))
                continue
            mine = random[32 * index : 32 * index + 32]
            try:
                draft = ConsentIn.model_validate(raw)
                if draft.consent is None:
                    msg = "consent: give every row its own consent id (con_…) so that a rerun can skip it"
                    raise ValidationError(msg)
                subject = draft.subject or new_subject_id(mine[:15])
                payload = grant_payload(
                    draft,
                    consent=draft.consent,
                    subject=subject,
                    organisation=ctx.organisation,
                    vocabulary=self.vocabulary,
                    now=ctx.now,
                )
                canonical = canonical_payload(payload)
            except (PydanticValidationError, DomainError) as exc:
                out.append(RowError(line, message(exc)))
                continue
            code, digest = access_codes.new_code_and_hash(mine[15:])
            if draft.person is not None:
                people.append((subject, {"name": draft.person.name, "contact": draft.person.contact}))
            out.append(
                _Checked(line, draft.consent, subject, draft.subject is not None, None, code, digest,
                         marshal.dumps(payload), canonical)
            )  # fmt: skip
        if not people:
            return out
        sealed = self.vault.seal_new(people)  # the whole batch at once (also rows a rerun will skip: cheap)
        vaults: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = {subject: (key, []) for subject, key in sealed.keys}
        for subject, name, ciphertext in sealed.records:
            vaults[subject][1].append((name, ciphertext))
        return [
            r._replace(vault=marshal.dumps(vaults[r.subject])) if isinstance(r, _Checked) and not r.named else r
            for r in out
        ]


_WORKER: _Checker | None = None  # the checker of a worker process


def _start_worker(context: _Context, vault: Vault) -> None:
    global _WORKER  # noqa: PLW0603 - one checker per worker process, made once
    _WORKER = _Checker(context, vault)


def _check_in_worker(batch: list[Record]) -> list[tuple[Any, ...] | RowError]:
    if _WORKER is None:  # pragma: no cover - the pool's initializer always runs first
        msg = "the worker was not started"
        raise InvalidStateError(msg)
    # Plain tuples: a named tuple costs twice as much to send back.
    return [tuple(r) if isinstance(r, _Checked) else r for r in _WORKER.check(batch)]


def _received(batch: list[tuple[Any, ...] | RowError]) -> list[_Checked | RowError]:
    return [r if isinstance(r, RowError) else _Checked._make(r) for r in batch]


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _start_method() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux: a worker starts at once, with every module already imported.

    The workers only run :meth:`_Checker.check` (pure Python, no database, no
    locks, no logging) and leave with ``os._exit``, so the threads and database
    connections of this process, which a forked child inherits but never uses,
    are neither needed nor touched there. Elsewhere ``spawn``, which re-imports
    the program in each worker.
    """
    method = "fork" if sys.platform == "linux" else "spawn"
    return multiprocessing.get_context(method)


@contextmanager
def _checking(
    context: _Context, vault: Vault, workers: int
) -> Iterator[Callable[[Iterable[list[Record]]], Iterator[list[Any]]]]:
    """A function from batches of records to their checked rows, in order: here, or in *workers* processes.

    The workers seal new people's details too, so they hold the vault: a forked
    worker shares this process's memory anyway; a spawned one is handed the
    vault over its private pipe from this process.
    """
    if workers <= 0:
        checker = _Checker(context, vault)
        yield lambda batches: (checker.check(batch) for batch in batches)
        return
    start = (context, vault)
    with ProcessPoolExecutor(workers, mp_context=_start_method(), initializer=_start_worker, initargs=start) as pool:

        def run(batches: Iterable[list[Record]]) -> Iterator[list[Any]]:
            pending: deque[Future[list[tuple[Any, ...] | RowError]]] = deque()
            for batch in batches:
                pending.append(pool.submit(_check_in_worker, batch))
                if len(pending) >= AHEAD:
                    yield _received(pending.popleft().result())
            while pending:
                yield _received(pending.popleft().result())

        yield run


def _noop(_done: int, _total: int) -> None:
    return None


def _sync(handle: IO[str]) -> None:
    """Flush *handle* and, when it is a file, make it durable."""
    handle.flush()
    try:
        os.fsync(handle.fileno())
    except (OSError, io.UnsupportedOperation, AttributeError):  # not a file (a StringIO in tests)
        return


class Importer:
    """Imports one file of consents collected by *organisation*. Use it as a context manager.

    *workers*: processes that check rows in pass 1. None: two for a file of
    :data:`PARALLEL_BYTES` or more when the machine is otherwise idle (a load
    average under the number of cores less a half), else none. On a busy machine they would only add work (sending rows
    there and back costs about a fifth more CPU time) for no gain in time.
    """

    def __init__(
        self,
        ledger: Ledger,
        vault: Vault,
        *,
        organisation: str,
        actor: str,
        now: Callable[[], datetime],
        workers: int | None = None,
    ) -> None:
        self.ledger, self.vault = ledger, vault
        self.organisation, self.actor, self.now = organisation, actor, now
        self.workers = workers
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._stash: sqlite3.Connection | None = None
        self._validated: ImportReport | None = None
        self._vocabulary: Vocabulary | None = None

    def __enter__(self) -> Self:
        self._scratch = tempfile.TemporaryDirectory(prefix="datatrust-import-")  # mode 0700
        self._stash = sqlite3.connect(Path(self._scratch.name) / "rows.db", isolation_level=None)
        self._stash.execute("PRAGMA journal_mode=OFF")
        self._stash.execute("PRAGMA synchronous=OFF")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stash is not None:
            self._stash.close()
        if self._scratch is not None:
            self._scratch.cleanup()
        self._stash = self._scratch = None

    @property
    def stash(self) -> sqlite3.Connection:
        """The scratch database of validated rows (open only inside ``with``)."""
        if self._stash is None:
            msg = "use the importer as a context manager: with Importer(...) as importer: ..."
            raise InvalidStateError(msg)
        return self._stash

    # -- pass 1 --------------------------------------------------------------------------------

    def _workers_for(self, path: Path) -> int:
        if self.workers is not None:
            return self.workers
        if path.stat().st_size < PARALLEL_BYTES:
            return 0
        cores = os.cpu_count() or 1
        free = cores >= WORKERS and os.getloadavg()[0] < cores - 0.5  # at most this process is busy
        return WORKERS if free else 0

    def _problem(
        self, row: _Checked, existing: dict[str, tuple[str, str, int]], subjects: dict[str, bool]
    ) -> str | None:
        found = existing.get(row.consent)
        if found is not None:
            org, subject, _seq = found
            if org != self.organisation or (row.named and row.subject != subject):
                return f"consent id {row.consent} is already used for a different consent"
            return None
        if row.named:
            state = subjects.get(row.subject)
            if state is None:
                return f"the trust knows no subject {row.subject}"
            if state:
                return f"subject {row.subject} was erased at their request"
        return None

    def _keep(self, rows: list[_Checked], existing: dict[str, tuple[str, str, int]]) -> list[RowError]:
        """Stash *rows*; return an error for each consent id seen before (in the file)."""
        values = [
            (r.consent, r.line, 1, None, None, None, None, None, None, None)
            if r.consent in existing
            else (r.consent, r.line, 0, r.subject, int(r.named), r.code, r.code_hash, r.vault, r.payload, r.canonical)
            for r in rows
        ]
        before = self.stash.total_changes
        self.stash.executemany(_INSERT, values)
        if self.stash.total_changes - before == len(values):
            return []
        ids = [r.consent for r in rows]
        marks = ",".join("?" * len(ids))
        first = dict(self.stash.execute(f"SELECT consent, line FROM rows WHERE consent IN ({marks})", ids))  # noqa: S608
        return [
            RowError(r.line, f"consent id {r.consent} is also used on line {first[r.consent]}")
            for r in rows
            if first[r.consent] != r.line
        ]

    def validate(self, path: Path, fmt: Format, *, progress: Progress = _noop) -> ImportReport:
        """Pass 1: check every row and keep the valid ones; the report lists every bad row."""
        report = ImportReport()
        self.stash.execute("DROP TABLE IF EXISTS rows")
        self.stash.execute(_STASH)
        with self.ledger.db.engine.connect() as conn:
            _seq, vocabulary = vocabulary_in_force(conn)
        self._vocabulary = vocabulary
        self.stash.execute("BEGIN")
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header, records = read_records(handle, fmt, organisation=self.organisation)
            context = _Context(fmt, header, self.organisation, vocabulary.to_document(), vocabulary.hash, self.now())
            with _checking(context, self.vault, self._workers_for(path)) as check:
                for checked in check(_batches(records, BATCH)):
                    self._take(checked, report)
                    progress(report.rows, 0)
        self.stash.execute("COMMIT")
        report.errors.sort(key=lambda e: e.line)
        self._validated = report
        return report

    def _take(self, checked: list[_Checked | RowError], report: ImportReport) -> None:
        """Record one batch of checked rows: its errors in *report*, its good rows in the stash."""
        rows = [r for r in checked if isinstance(r, _Checked)]
        report.errors.extend(r for r in checked if isinstance(r, RowError))
        report.rows += len(checked)
        with self.ledger.db.engine.connect() as conn:
            existing = repository.existing_consents(conn, [r.consent for r in rows])
            subjects = repository.subject_states(conn, sorted({r.subject for r in rows if r.named}))
        good: list[_Checked] = []
        for row in rows:
            problem = self._problem(row, existing, subjects)
            if problem is not None:
                report.errors.append(RowError(row.line, problem))
            else:
                good.append(row)
        report.errors.extend(self._keep(good, existing))
        report.skipped += sum(1 for r in good if r.consent in existing)

    # -- pass 2 --------------------------------------------------------------------------------

    def run(self, path: Path, fmt: Format, *, codes: IO[str], progress: Progress = _noop) -> ImportReport:
        """Validate, then (only if every row is valid) append every row not yet recorded."""
        report = self.validate(path, fmt, progress=progress)
        return report if report.errors else self.import_rows(codes=codes, progress=progress)

    def _stashed(self) -> Iterator[list[tuple[Any, ...]]]:
        after = 0
        while True:
            page = self.stash.execute(
                "SELECT n, line, consent, subject, named, code, code_hash, vault, payload, canonical FROM rows "
                "WHERE n > ? AND done = 0 ORDER BY n LIMIT ?",
                (after, CHUNK),
            ).fetchall()
            if not page:
                return
            size = 0
            for index, found in enumerate(page):
                size += len(found[-1])
                if size > CHUNK_BYTES and index > 0:
                    page = page[:index]
                    break
            after = page[-1][0]
            yield page

    def import_rows(self, *, codes: IO[str], progress: Progress = _noop) -> ImportReport:
        """Pass 2, after :meth:`validate` found no bad row: append every row not yet recorded."""
        validated, vocabulary = self._validated, self._vocabulary
        if validated is None or validated.errors or vocabulary is None:
            msg = "validate the file first; nothing is imported while any row is bad"
            raise InvalidStateError(msg)
        ensure_vocabulary(self.ledger, now=self.now())
        with self.ledger.db.engine.connect() as conn:
            if vocabulary_in_force(conn)[1].hash != vocabulary.hash:
                msg = "the trust adopted a new vocabulary after the file was checked; run the import again"
                raise ConflictError(msg)
        report = ImportReport(rows=validated.rows)
        todo, done = validated.rows - validated.skipped, 0
        # One chunk is appended (on a helper thread) while the next one is read and its codes written here.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-import") as pool:
            pending: Future[object] | None = None
            for rows in self._stashed():
                with self.ledger.db.engine.connect() as conn:
                    existing = repository.existing_consents(conn, [r[2] for r in rows])
                fresh = [r for r in rows if r[2] not in existing]  # recorded meanwhile (by another import)
                specs = self._specs(fresh, vocabulary, codes) if fresh else []
                if pending is not None:
                    pending.result()
                    progress(done, todo)
                pending = pool.submit(self.ledger.append_all, specs) if specs else None
                report.imported += len(fresh)
                done += len(rows)
            if pending is not None:
                pending.result()
        progress(todo, todo)
        report.skipped = report.rows - report.imported
        return report

    def _specs(self, rows: list[tuple[Any, ...]], vocabulary: Vocabulary, codes: IO[str]) -> list[AppendSpec]:
        now = self.now()
        hashes: list[tuple[str, str, str]] = []
        payloads: list[CanonicalPayload] = []
        sealed = SealedSubjects()
        named: set[str] = set()
        lines: list[str] = []
        for _n, line, consent, subject, is_named, code, code_hash, vault, payload, canonical in rows:
            lines.append(f"{line},{consent},{subject},{code}\n")
            hashes.append((code_hash, subject, consent))
            if is_named:
                named.add(subject)
            else:
                key, fields = marshal.loads(vault)  # noqa: S302 - written by this process to its private scratch
                sealed.keys.append((subject, key))
                sealed.records.extend((subject, name, ciphertext) for name, ciphertext in fields)
            payloads.append(CanonicalPayload.restore(marshal.loads(payload), canonical))  # noqa: S302 - as above
        hashes.sort()  # inserted in key order: each index page is visited once per chunk
        codes.write("".join(lines))
        _sync(codes)  # every code is on disk before its consent can be
        ids = [p["consent"] for p in payloads]
        subjects = sorted(named)
        created = format_at(now)

        def prepare(conn: Connection) -> dict[str, Any]:
            if repository.existing_consents(conn, ids):
                msg = "another import recorded some of these consents at the same time; run the import again"
                raise ConflictError(msg)
            if vocabulary_in_force(conn)[1].hash != vocabulary.hash:
                msg = "the trust adopted a new vocabulary during the import; run the import again"
                raise ConflictError(msg)
            if any(repository.subject_states(conn, subjects).values()):
                msg = "a subject named in this import was erased during it; run the import again"
                raise ConflictError(msg)
            self.vault.insert_sealed(conn, sealed, now=created)
            access_codes.store_hashes(conn, hashes, now=now)
            projections.defer_grants(conn)  # the chunk's consent_grants rows go in with one executemany
            return payloads[0]

        specs = [AppendSpec("consent.granted", self.actor, now, prepare=prepare)]
        specs.extend(AppendSpec("consent.granted", self.actor, now, payload=p) for p in payloads[1:])
        specs[-1].project = projections.flush_grants
        return specs
