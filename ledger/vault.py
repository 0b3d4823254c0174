"""The subject vault: identifying data encrypted with one key per subject (crypto-shredding).

Each subject's 32-byte data key is sealed with the trust's vault master key (a
file in the data directory, mode 0600) before it is stored, so a copy of the
database alone reveals nothing. Erasure deletes the subject's sealed key row
(SQLite runs with ``secure_delete``, so the bytes are overwritten) and their
ciphertexts; any copy of those ciphertexts made earlier stays unreadable. The
ledger, which never held them, still verifies.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils
from sqlalchemy import Connection, Engine, delete, insert, select

from ledger.errors import LedgerIntegrityError, NotFoundError
from ledger.models import vault_keys_table, vault_records_table

log = logging.getLogger(__name__)
PURGE_WAIT_MS = 2000  # how long the SQLite purge waits for the writer and readers before giving up (partial)
PURGE_RETRY_SECONDS = 0.005  # between tries while another connection's checkpoint runs
_KEY_SIZE, _NONCE_SIZE = nacl.secret.SecretBox.KEY_SIZE, nacl.secret.SecretBox.NONCE_SIZE


@dataclass(slots=True)
class SealedSubjects:
    """New subjects' vault rows, encrypted in advance (:meth:`Vault.seal_new`), to insert in one go.

    ``keys`` holds ``(subject, sealed key)`` and ``records`` ``(subject, field name,
    ciphertext)``: exactly the rows :meth:`Vault.store` writes for a subject without a key.
    """

    keys: list[tuple[str, bytes]] = field(default_factory=list)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)

    def extend(self, other: SealedSubjects) -> None:
        """Add *other*'s rows to these."""
        self.keys.extend(other.keys)
        self.records.extend(other.records)


class Vault:
    """Encrypts and decrypts subjects' identifying fields."""

    def __init__(self, master_key: bytes) -> None:
        self._master = nacl.secret.SecretBox(master_key)
        self._master_key = bytes(master_key)

    def __repr__(self) -> str:
        return "Vault(<master key hidden>)"

    @staticmethod
    def create_master_key(path: Path) -> None:
        """Write a new random master key to *path* (0600), refusing to overwrite."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))

    @classmethod
    def from_file(cls, path: Path) -> Vault:
        """Load the master key written by :meth:`create_master_key`."""
        return cls(path.read_bytes())

    def store(self, conn: Connection, subject: str, fields: Mapping[str, str], *, now: str) -> None:
        """Encrypt *fields* for *subject*, creating the subject's key if it has none."""
        row = conn.execute(select(vault_keys_table.c.sealed_key).where(vault_keys_table.c.subject == subject)).first()
        if row is None:
            key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
            conn.execute(
                insert(vault_keys_table).values(subject=subject, sealed_key=self._master.encrypt(key), created_at=now)
            )
        else:
            key = self._unseal(bytes(row[0]), subject)
        box = nacl.secret.SecretBox(key)
        for name, value in fields.items():
            conn.execute(
                delete(vault_records_table).where(
                    vault_records_table.c.subject == subject, vault_records_table.c.name == name
                )
            )
            conn.execute(
                insert(vault_records_table).values(subject=subject, name=name, ciphertext=box.encrypt(value.encode()))
            )

    def seal_new(self, people: Sequence[tuple[str, Mapping[str, str]]]) -> SealedSubjects:
        """Encrypt the fields of subjects that have no key yet, outside any transaction (the bulk import's path).

        Each subject gets a fresh random key sealed with the master key, and each
        field is encrypted with it (``nonce || box``, as ``SecretBox.encrypt`` writes
        it), as :meth:`store` does; the randomness of a whole batch is drawn at once.
        Write the rows with :meth:`insert_sealed`; a subject that already has a key
        makes that insert fail (primary key), never silently gets a second one.
        """
        sealed = SealedSubjects()
        seal = nacl.bindings.crypto_secretbox_easy
        width = _KEY_SIZE + _NONCE_SIZE * (1 + max((len(f) for _s, f in people), default=0))
        randomness = nacl.utils.random(width * len(people))  # one call: every key and nonce of the batch
        for number, (subject, fields) in enumerate(people):
            start = width * number
            key = randomness[start : start + _KEY_SIZE]
            nonce = randomness[start + _KEY_SIZE : start + _KEY_SIZE + _NONCE_SIZE]
            sealed.keys.append((subject, nonce + seal(key, nonce, self._master_key)))  # as SecretBox.encrypt
            for index, (name, value) in enumerate(fields.items(), start=1):
                at = start + _KEY_SIZE + _NONCE_SIZE * index
                nonce = randomness[at : at + _NONCE_SIZE]
                sealed.records.append((subject, name, nonce + seal(value.encode(), nonce, key)))
        return sealed

    @staticmethod
    def insert_sealed(conn: Connection, sealed: SealedSubjects, *, now: str) -> None:
        """Insert rows made by :meth:`seal_new` in this connection's transaction (two ``executemany``)."""
        if not sealed.keys and not sealed.records:
            return
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        driver: Any = conn.connection.dbapi_connection  # the transaction's own connection: commits with it
        cursor = driver.cursor()
        try:
            if sealed.keys:
                cursor.executemany(
                    f"INSERT INTO vault_keys (subject, sealed_key, created_at) VALUES ({mark}, {mark}, {mark})",  # noqa: S608
                    [(subject, key, now) for subject, key in sorted(sealed.keys)],  # key order: fewer page visits
                )
            if sealed.records:
                cursor.executemany(
                    f"INSERT INTO vault_records (subject, name, ciphertext) VALUES ({mark}, {mark}, {mark})",  # noqa: S608
                    sorted(sealed.records),
                )
        finally:
            cursor.close()

    def read(self, conn: Connection, subject: str) -> dict[str, str]:
        """Decrypt every field of *subject* (raises NotFoundError once erased)."""
        row = conn.execute(select(vault_keys_table.c.sealed_key).where(vault_keys_table.c.subject == subject)).first()
        if row is None:
            msg = f"no readable personal data for {subject} (never stored, or erased)"
            raise NotFoundError(msg)
        box = nacl.secret.SecretBox(self._unseal(bytes(row[0]), subject))
        out: dict[str, str] = {}
        for name, ciphertext in conn.execute(
            select(vault_records_table.c.name, vault_records_table.c.ciphertext).where(
                vault_records_table.c.subject == subject
            )
        ):
            try:
                out[str(name)] = box.decrypt(bytes(ciphertext)).decode()
            except nacl.exceptions.CryptoError as exc:
                msg = f"vault field {name!r} of {subject} cannot be decrypted with the subject's key"
                raise LedgerIntegrityError(msg) from exc
        return out

    def has_key(self, conn: Connection, subject: str) -> bool:
        """Whether *subject* still has a key (has not been erased)."""
        row = conn.execute(select(vault_keys_table.c.subject).where(vault_keys_table.c.subject == subject)).first()
        return row is not None

    @staticmethod
    def destroy_key(conn: Connection, subject: str) -> None:
        """Crypto-shred: delete the subject's key, and with it their ciphertexts, unreadable from now on.

        The ciphertexts go too, so that storing fields for the subject again (a new
        key) never meets records it cannot open. Call :meth:`purge_deleted_keys`
        once the transaction has committed.
        """
        conn.execute(delete(vault_keys_table).where(vault_keys_table.c.subject == subject))
        conn.execute(delete(vault_records_table).where(vault_records_table.c.subject == subject))

    @staticmethod
    def purge_deleted_keys(engine: Engine) -> bool:
        """After an erasure commits, push deleted key bytes off the disk where the engine allows it.

        SQLite in WAL mode keeps the page that held the deleted key in the ``-wal``
        file until a checkpoint overwrites it; a truncating checkpoint copies the
        zeroed page (``secure_delete``) into the database and empties the log.
        PostgreSQL keeps deleted rows in the table until VACUUM, which is run here on
        the two vault tables; its WAL archives and backups follow the operator's
        retention policy. Best effort, never raising: readers still using old pages
        make the SQLite checkpoint partial (the next erasure's, or SQLite's own,
        finishes the job). Returns whether it completed.
        """
        try:
            if engine.dialect.name == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM vault_keys, vault_records")
                return True
            if engine.dialect.name != "sqlite":
                return False
            raw = engine.raw_connection()  # outside SQLAlchemy's transaction: a checkpoint cannot run inside one
            try:
                cursor = raw.cursor()
                (patience,) = cursor.execute("PRAGMA busy_timeout").fetchone()
                cursor.execute(f"PRAGMA busy_timeout={PURGE_WAIT_MS}")  # never hold up the erasure for long
                try:
                    busy = _truncate_log(cursor)
                finally:
                    cursor.execute(f"PRAGMA busy_timeout={int(patience)}")
            finally:
                raw.close()
        except Exception as exc:  # noqa: BLE001 - the erasure has committed; purging is best effort
            log.warning("vault purge after erasure did not run: %s", exc.__class__.__name__)
            return False
        if busy:
            log.info("vault purge after erasure was partial: a reader still uses older pages")
        return not busy

    def _unseal(self, sealed: bytes, subject: str) -> bytes:
        try:
            return self._master.decrypt(sealed)
        except nacl.exceptions.CryptoError as exc:
            msg = f"vault key of {subject} cannot be opened with this master key"
            raise LedgerIntegrityError(msg) from exc


def _truncate_log(cursor: Any) -> bool:
    """Copy SQLite's whole log into the database and empty it; whether it stayed busy (partial).

    Readers and the writer are waited for by the busy timeout, but not another connection's
    checkpoint (the server's checkpointer thread, ``ledger/db.py``, copies the log back about
    ten times a second): SQLite answers busy at once then, so try again until ``PURGE_WAIT_MS``.
    """
    deadline = time.monotonic() + PURGE_WAIT_MS / 1000
    while True:
        busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() or (1, 0, 0)
        if not busy or time.monotonic() >= deadline:
            return bool(busy)
        time.sleep(PURGE_RETRY_SECONDS)
