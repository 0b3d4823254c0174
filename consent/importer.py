"""Bulk import of consents from CSV, JSON Lines or FHIR: every valid row, or none at all.

Two passes, streaming, so memory stays flat however long the file is:

1. **Validate** every row (schema, vocabulary codes, explicit consent for special
   categories, validity period, known subjects, consent ids unique in the file and
   not used by another organisation). Every bad row is reported with its line
   number; if there is one, nothing is imported. Valid rows are kept, already
   checked, in a scratch SQLite file in a private temporary directory (deleted
   afterwards), so the file is parsed once.
2. **Append** the rows in chunks, each chunk one atomic ``append_all`` (its entries,
   vault records and access codes commit together, or none do). The next chunk is
   prepared while the previous one is being written.

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

Each recorded row gets an access code for the person, written (before its chunk
is appended) to the codes file as ``line,consent,subject,access_code``. If a
consent appears twice in that file after a rerun, its last line is the valid one.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Self

import nacl.bindings
import nacl.secret
import nacl.utils
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection

from consent import access_codes, repository
from consent.import_rows import Format, message, read_rows
from consent.schemas import ConsentIn
from consent.service import ensure_vocabulary, grant_payload, new_subject_id, vocabulary_in_force
from consent.vocabulary import Vocabulary
from ledger.entry import format_at
from ledger.errors import ConflictError, DomainError, InvalidStateError, ValidationError
from ledger.models import vault_keys_table, vault_records_table
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from ledger.vault import Vault

__all__ = ["Format", "ImportReport", "Importer", "RowError"]

Progress = Callable[[int, int], None]
CHUNK = 2000
PLACEHOLDER_SUBJECT = "sub_placeholder0"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_STASH = """CREATE TABLE rows (n INTEGER PRIMARY KEY, consent TEXT NOT NULL UNIQUE, line INTEGER NOT NULL,
                                  name TEXT, contact TEXT, payload TEXT NOT NULL)"""


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


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    draft: ConsentIn
    payload: dict[str, Any]


def _noop(_done: int, _total: int) -> None:
    return None


class Importer:
    """Imports one file of consents collected by *organisation*. Use it as a context manager."""

    def __init__(
        self, ledger: Ledger, vault: Vault, *, organisation: str, actor: str, now: Callable[[], datetime]
    ) -> None:
        self.ledger, self.vault = ledger, vault
        self.organisation, self.actor, self.now = organisation, actor, now
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._stash: sqlite3.Connection | None = None
        self._validated: ImportReport | None = None

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

    def _parsed(self, path: Path, fmt: Format, vocabulary: Vocabulary) -> Iterator[_Row | RowError]:
        at = self.now()
        for line, raw in read_rows(path, fmt, organisation=self.organisation):
            if isinstance(raw, DomainError):
                yield RowError(line, raw.detail)
                continue
            try:
                draft = ConsentIn.model_validate(raw)
                if draft.consent is None:
                    msg = "consent: give every row its own consent id (con_…) so that a rerun can skip it"
                    raise ValidationError(msg)
                payload = grant_payload(
                    draft,
                    consent=draft.consent,
                    subject=draft.subject or PLACEHOLDER_SUBJECT,
                    organisation=self.organisation,
                    vocabulary=vocabulary,
                    now=at,
                )
            except (PydanticValidationError, DomainError) as exc:
                yield RowError(line, message(exc))
                continue
            yield _Row(line, draft, payload)

    def _chunks(self, path: Path, fmt: Format, vocabulary: Vocabulary) -> Iterator[list[_Row | RowError]]:
        chunk: list[_Row | RowError] = []
        for item in self._parsed(path, fmt, vocabulary):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _problem(self, row: _Row, existing: dict[str, tuple[str, str, int]], subjects: dict[str, bool]) -> str | None:
        found = existing.get(row.payload["consent"])
        if found is not None:
            org, subject, _seq = found
            if org != self.organisation or (row.draft.subject is not None and row.draft.subject != subject):
                return f"consent id {row.payload['consent']} is already used for a different consent"
            return None
        if row.draft.subject is not None:
            state = subjects.get(row.draft.subject)
            if state is None:
                return f"the trust knows no subject {row.draft.subject}"
            if state:
                return f"subject {row.draft.subject} was erased at their request"
        return None

    def _keep(self, row: _Row) -> str | None:
        person = row.draft.person
        cursor = self.stash.execute(
            "INSERT OR IGNORE INTO rows (consent, line, name, contact, payload) VALUES (?, ?, ?, ?, ?)",
            (
                row.payload["consent"],
                row.line,
                None if person is None else person.name,
                None if person is None else person.contact,
                _ENCODER.encode(row.payload),
            ),
        )
        if cursor.rowcount == 1:
            return None
        (earlier,) = self.stash.execute("SELECT line FROM rows WHERE consent = ?", (row.payload["consent"],)).fetchone()
        return f"consent id {row.payload['consent']} is also used on line {earlier}"

    def validate(self, path: Path, fmt: Format, *, progress: Progress = _noop) -> ImportReport:
        """Pass 1: check every row and keep the valid ones; the report lists every bad row."""
        report = ImportReport()
        self.stash.execute("DROP TABLE IF EXISTS rows")
        self.stash.execute(_STASH)
        with self.ledger.db.engine.connect() as conn:
            _seq, vocabulary = vocabulary_in_force(conn)
        self.stash.execute("BEGIN")
        for chunk in self._chunks(path, fmt, vocabulary):
            rows = [r for r in chunk if isinstance(r, _Row)]
            report.errors.extend(r for r in chunk if isinstance(r, RowError))
            with self.ledger.db.engine.connect() as conn:
                existing = repository.existing_consents(conn, [r.payload["consent"] for r in rows])
                subjects = repository.subject_states(conn, sorted({r.draft.subject for r in rows if r.draft.subject}))
            for row in rows:
                problem = self._problem(row, existing, subjects) or self._keep(row)
                if problem is not None:
                    report.errors.append(RowError(row.line, problem))
                elif row.payload["consent"] in existing:
                    report.skipped += 1
            report.rows += len(chunk)
            progress(report.rows, 0)
        self.stash.execute("COMMIT")
        report.errors.sort(key=lambda e: e.line)
        self._validated = report
        return report

    # -- pass 2 --------------------------------------------------------------------------------

    def run(self, path: Path, fmt: Format, *, codes: IO[str], progress: Progress = _noop) -> ImportReport:
        """Validate, then (only if every row is valid) append every row not yet recorded."""
        report = self.validate(path, fmt, progress=progress)
        return report if report.errors else self.import_rows(codes=codes, progress=progress)

    def _stashed(self) -> Iterator[list[tuple[int, str | None, str | None, dict[str, Any]]]]:
        after = 0
        while True:
            page = self.stash.execute(
                "SELECT n, line, name, contact, payload FROM rows WHERE n > ? ORDER BY n LIMIT ?", (after, CHUNK)
            ).fetchall()
            if not page:
                return
            after = page[-1][0]
            yield [(line, name, contact, json.loads(payload)) for _n, line, name, contact, payload in page]

    def import_rows(self, *, codes: IO[str], progress: Progress = _noop) -> ImportReport:
        """Pass 2, after :meth:`validate` found no bad row: append every row not yet recorded."""
        validated = self._validated
        if validated is None or validated.errors:
            msg = "validate the file first; nothing is imported while any row is bad"
            raise InvalidStateError(msg)
        ensure_vocabulary(self.ledger, now=self.now())
        with self.ledger.db.engine.connect() as conn:
            _seq, vocabulary = vocabulary_in_force(conn)
        report = ImportReport(rows=validated.rows)
        done = 0
        # One chunk is appended (on a helper thread) while the next one is prepared here.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-import") as pool:
            pending: Future[object] | None = None
            for rows in self._stashed():
                with self.ledger.db.engine.connect() as conn:
                    existing = repository.existing_consents(conn, [p["consent"] for *_x, p in rows])
                fresh = [r for r in rows if r[3]["consent"] not in existing]
                specs = self._specs(fresh, vocabulary, codes) if fresh else []
                if pending is not None:
                    pending.result()
                    progress(done, report.rows)
                pending = pool.submit(self.ledger.append_all, specs) if specs else None
                report.imported += len(fresh)
                done += len(rows)
            if pending is not None:
                pending.result()
        progress(report.rows, report.rows)
        report.skipped = report.rows - report.imported
        return report

    def _specs(
        self, rows: list[tuple[int, str | None, str | None, dict[str, Any]]], vocabulary: Vocabulary, codes: IO[str]
    ) -> list[AppendSpec]:
        now = self.now()
        people: list[tuple[str, dict[str, str]]] = []
        hashes: list[tuple[str, str, str]] = []
        payloads: list[dict[str, Any]] = []
        random = secrets.token_bytes(32 * len(rows))  # one call: 15 bytes for a subject, 17 for a code, a row
        for index, (line, name, contact, payload) in enumerate(rows):
            mine = random[32 * index : 32 * index + 32]
            if name is not None and contact is not None:
                payload["subject"] = new_subject_id(mine[:15])
                people.append((payload["subject"], {"name": name, "contact": contact}))
            code, digest = access_codes.new_code_and_hash(mine[15:])
            hashes.append((digest, payload["subject"], payload["consent"]))
            codes.write(f"{line},{payload['consent']},{payload['subject']},{code}\n")
            payloads.append(payload)
        codes.flush()
        ids = [p["consent"] for p in payloads]
        named = sorted({p["subject"] for p in payloads} - {s for s, _ in people})
        sealed = seal_new_people(self.vault, people, now=format_at(now))  # before, not inside, the write

        def prepare(conn: Connection) -> dict[str, Any]:
            if repository.existing_consents(conn, ids):
                msg = "another import recorded some of these consents at the same time; run the import again"
                raise ConflictError(msg)
            if vocabulary_in_force(conn)[1].hash != vocabulary.hash:
                msg = "the trust adopted a new vocabulary during the import; run the import again"
                raise ConflictError(msg)
            if any(repository.subject_states(conn, named).values()):
                msg = "a subject named in this import was erased during it; run the import again"
                raise ConflictError(msg)
            repository.fast_insert(conn, vault_keys_table, sealed[0])
            repository.fast_insert(conn, vault_records_table, sealed[1])
            access_codes.store_hashes(conn, hashes, now=now)
            return payloads[0]

        specs = [AppendSpec("consent.granted", self.actor, now, prepare=prepare)]
        specs.extend(AppendSpec("consent.granted", self.actor, now, payload=p) for p in payloads[1:])
        return specs


Rows = list[dict[str, Any]]


def seal_new_people(vault: Vault, people: list[tuple[str, dict[str, str]]], *, now: str) -> tuple[Rows, Rows]:
    """The vault rows (keys, records) that store brand-new subjects' details, ready to insert in bulk.

    Exactly what ``Vault.store`` writes for a subject without a key (a fresh random key
    sealed with the master key; each field encrypted with it, ``nonce || box``), made
    outside the write transaction: ``Vault`` has no bulk method, so this uses its master
    box (a test checks that ``Vault.read`` opens the result).
    """
    master = vault._master  # noqa: SLF001 - see the docstring
    key_size, nonce_size = nacl.secret.SecretBox.KEY_SIZE, nacl.secret.SecretBox.NONCE_SIZE
    keys: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    seal = nacl.bindings.crypto_secretbox_easy
    width = key_size + nonce_size * (1 + max((len(f) for _s, f in people), default=0))
    randomness = nacl.utils.random(width * len(people))  # one call: every key and nonce of the chunk
    for number, (subject, fields) in enumerate(people):
        key = randomness[width * number : width * number + key_size]
        nonces = randomness[width * number + key_size : width * (number + 1)]
        keys.append(
            {"subject": subject, "sealed_key": bytes(master.encrypt(key, nonces[:nonce_size])), "created_at": now}
        )
        for index, (name, value) in enumerate(fields.items(), start=1):
            nonce = nonces[nonce_size * index : nonce_size * (index + 1)]  # SecretBox.encrypt's output: nonce + box
            records.append({"subject": subject, "name": name, "ciphertext": nonce + seal(value.encode(), nonce, key)})
    return keys, records
