"""The subject vault: identifying data encrypted with one key per subject (crypto-shredding).

Each subject's 32-byte data key is sealed with the trust's vault master key (a
file in the data directory, mode 0600) before it is stored, so a copy of the
database alone reveals nothing. Erasure deletes the subject's sealed key row
(SQLite runs with ``secure_delete``, so the bytes are overwritten) and their
ciphertexts; any copy of those ciphertexts made earlier stays unreadable. The
ledger, which never held them, still verifies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils
from sqlalchemy import Connection, Engine, delete, insert, select

from ledger.errors import LedgerIntegrityError, NotFoundError
from ledger.models import vault_keys_table, vault_records_table


class Vault:
    """Encrypts and decrypts subjects' identifying fields."""

    def __init__(self, master_key: bytes) -> None:
        self._master = nacl.secret.SecretBox(master_key)

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
    def purge_deleted_keys(engine: Engine) -> None:
        """After an erasure commits, push deleted key bytes off the disk where the engine allows it.

        SQLite in WAL mode keeps the page that held the deleted key in the ``-wal``
        file until a checkpoint overwrites it; a truncating checkpoint copies the
        zeroed page (``secure_delete``) into the database and empties the log. It is
        best effort: readers still using old pages make it a partial checkpoint, and
        a later one finishes the job. PostgreSQL frees dead rows at VACUUM; its WAL
        archives and backups follow the operator's retention policy.
        """
        if engine.dialect.name != "sqlite":
            return
        raw = engine.raw_connection()  # outside SQLAlchemy's transaction: a checkpoint cannot run inside one
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    def _unseal(self, sealed: bytes, subject: str) -> bytes:
        try:
            return self._master.decrypt(sealed)
        except nacl.exceptions.CryptoError as exc:
            msg = f"vault key of {subject} cannot be opened with this master key"
            raise LedgerIntegrityError(msg) from exc
