"""The subject vault: identifying fields encrypted per subject, and erasure by destroying the subject's key."""

from __future__ import annotations

import sqlite3
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
import pytest
from sqlalchemy import Connection, insert, select

from api.instance import Instance
from ledger.db import Database
from ledger.errors import LedgerIntegrityError, NotFoundError
from ledger.export import verify_live
from ledger.models import vault_keys_table, vault_records_table
from ledger.service import Ledger
from ledger.vault import Vault

NOW = "2026-11-26T09:00:00.000000Z"
ALICE = {"name": "Alice Example", "email": "alice@example.org", "note": "prefers letters \u2709"}
BOB = {"name": "Bob Example", "phone": "+44 20 7946 0000"}


@pytest.fixture
def vault(instance: Instance) -> Vault:
    """The trust's vault, with two subjects stored."""
    with instance.db.write_engine.begin() as conn:
        instance.vault.store(conn, "sub_alice", ALICE, now=NOW)
        instance.vault.store(conn, "sub_bob", BOB, now=NOW)
    return instance.vault


def _read(instance: Instance, subject: str) -> dict[str, str]:
    with instance.db.engine.connect() as conn:
        return instance.vault.read(conn, subject)


def _ciphertexts(conn: Connection, subject: str) -> list[bytes]:
    rows = conn.execute(select(vault_records_table.c.ciphertext).where(vault_records_table.c.subject == subject))
    return [bytes(c) for (c,) in rows]


def test_store_and_read(instance: Instance, vault: Vault) -> None:
    """Stored fields read back per subject; the database holds only ciphertext."""
    assert _read(instance, "sub_alice") == ALICE
    assert _read(instance, "sub_bob") == BOB
    with instance.db.engine.connect() as conn:
        stored = b"".join(_ciphertexts(conn, "sub_alice"))
        sealed = conn.execute(select(vault_keys_table.c.sealed_key)).all()
    assert b"Alice" not in stored
    assert b"alice@example.org" not in stored
    assert len(sealed) == 2


def test_store_updates_fields(instance: Instance, vault: Vault) -> None:
    """Storing a field again replaces it and keeps the subject's other fields and key."""
    with instance.db.write_engine.begin() as conn:
        vault.store(conn, "sub_alice", {"email": "alice@new.example"}, now=NOW)
    assert _read(instance, "sub_alice") == {**ALICE, "email": "alice@new.example"}


def test_unknown_subject_is_not_found(instance: Instance, vault: Vault) -> None:
    """Reading a subject that never had data raises NotFoundError."""
    with pytest.raises(NotFoundError, match="sub_nobody"):
        _read(instance, "sub_nobody")


def test_destroyed_key_leaves_nothing_readable(instance: Instance, vault: Vault) -> None:
    """After destroy_key nothing of the subject is readable or decryptable; other subjects are unaffected."""
    with instance.db.engine.connect() as conn:
        copied = _ciphertexts(conn, "sub_alice")  # as a backup or an attacker might have kept them
    assert len(copied) == len(ALICE)
    with instance.db.write_engine.begin() as conn:
        vault.destroy_key(conn, "sub_alice")
    with instance.db.engine.connect() as conn:
        assert not vault.has_key(conn, "sub_alice")
        assert vault.has_key(conn, "sub_bob")
        assert _ciphertexts(conn, "sub_alice") == []
        with pytest.raises(NotFoundError, match="never stored, or erased"):
            vault.read(conn, "sub_alice")
        other_keys = [vault._unseal(bytes(k), "?") for (k,) in conn.execute(select(vault_keys_table.c.sealed_key))]
    assert _read(instance, "sub_bob") == BOB
    # No key the trust still holds (the master key, any other subject's key) opens the copied ciphertexts.
    master = (instance.data_dir / "keys" / "vault.key").read_bytes()
    for ciphertext in copied:
        for key in [master, *other_keys]:
            with pytest.raises(nacl.exceptions.CryptoError):
                nacl.secret.SecretBox(key).decrypt(ciphertext)
    with instance.db.write_engine.begin() as conn:  # storing again starts afresh with a new key
        vault.store(conn, "sub_alice", {"name": "A. Example"}, now=NOW)
    assert _read(instance, "sub_alice") == {"name": "A. Example"}


def test_undecryptable_field_is_an_integrity_error(instance: Instance, vault: Vault) -> None:
    """A ciphertext that does not open with the subject's key is reported, naming the field, not a crypto crash."""
    with instance.db.engine.connect() as conn:
        bob = _ciphertexts(conn, "sub_bob")[0]
    with instance.db.write_engine.begin() as conn:
        conn.execute(insert(vault_records_table).values(subject="sub_alice", name="stray", ciphertext=bob))
    with pytest.raises(LedgerIntegrityError, match="'stray' of sub_alice cannot be decrypted"):
        _read(instance, "sub_alice")


def test_erasure_entry_keeps_the_ledger_verifiable(instance: Instance, vault: Vault) -> None:
    """Destroying the key in the same transaction as a subject.erased entry leaves a ledger that verifies."""
    ledger = Ledger(instance.db, signer=instance.ledger.signer, origin=instance.origin)  # no projections
    try:

        def erase(conn: Connection) -> dict[str, Any]:
            vault.destroy_key(conn, "sub_alice")
            return {"subject": "sub_alice", "by": "subject"}

        entry = ledger.append(
            "subject.erased", actor="sub_alice", now=datetime.now(UTC), prepare=erase, checkpoint=True
        )
        assert entry.payload == {"subject": "sub_alice", "by": "subject"}
        with instance.db.engine.connect() as conn:
            assert not vault.has_key(conn, "sub_alice")
            report = verify_live(conn, [ledger.signer.verifier], origin=instance.origin)
        assert report.entries == entry.seq + 1
        assert b"Alice" not in b"".join(e.body for e, _leaf in ledger.entries(0, entry.seq + 1))
    finally:
        ledger.close()
    with pytest.raises(NotFoundError):
        _read(instance, "sub_alice")
    assert _read(instance, "sub_bob") == BOB


def test_wrong_master_key_cannot_open(instance: Instance, vault: Vault, tmp_path: Path) -> None:
    """A vault opened with another master key refuses to decrypt, naming the subject."""
    path = tmp_path / "other.key"
    Vault.create_master_key(path)
    other = Vault.from_file(path)
    with instance.db.engine.connect() as conn, pytest.raises(LedgerIntegrityError, match="sub_bob"):
        other.read(conn, "sub_bob")


def test_master_key_file(tmp_path: Path) -> None:
    """The master key file is 32 random bytes, mode 0600, never overwritten, and hidden from repr."""
    path = tmp_path / "keys" / "vault.key"
    Vault.create_master_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == nacl.secret.SecretBox.KEY_SIZE
    with pytest.raises(FileExistsError):
        Vault.create_master_key(path)
    assert path.read_bytes().hex() not in repr(Vault.from_file(path))


def test_sqlite_erasure_leaves_no_key_bytes_on_disk(sqlite_only_url: str, tmp_path: Path) -> None:
    """On SQLite, after the erasure commits and the vault purges, the deleted key's bytes are in no file."""
    db = Database.from_url(sqlite_only_url)
    Vault.create_master_key(tmp_path / "vault.key")
    vault = Vault.from_file(tmp_path / "vault.key")
    try:
        with db.write_engine.begin() as conn:
            for n in range(20):
                vault.store(conn, f"sub_{n}", ALICE, now=NOW)
        with db.engine.connect() as conn:
            sealed = conn.execute(select(vault_keys_table.c.sealed_key).where(vault_keys_table.c.subject == "sub_3"))
            key_bytes = bytes(sealed.scalar_one())
        with db.write_engine.begin() as conn:
            vault.destroy_key(conn, "sub_3")
        files = sorted(Path(db.engine.url.database or "").parent.glob("datatrust.db*"))
        assert any(key_bytes in f.read_bytes() for f in files)  # still in the write-ahead log ...
        vault.purge_deleted_keys(db.write_engine)
        assert not any(key_bytes in f.read_bytes() for f in files if f.exists())  # ... and now nowhere
        with db.engine.connect() as conn:
            assert vault.read(conn, "sub_4") == ALICE
    finally:
        db.dispose()


def test_purge_finishes_while_another_connection_copies_the_log_back(sqlite_only_url: str, tmp_path: Path) -> None:
    """The server's checkpointer thread copies the log back meanwhile: the purge tries again and completes.

    SQLite answers a second checkpoint busy at once (no busy timeout for that lock), which left
    an erased key's page in the log when the two met (seen once in CI).
    """
    db = Database.from_url(sqlite_only_url)
    Vault.create_master_key(tmp_path / "vault.key")
    vault = Vault.from_file(tmp_path / "vault.key")
    stop = threading.Event()
    path = db.engine.url.database or ""

    def copy_back() -> None:  # as ledger/db.py's checkpointer does, without its pauses
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not stop.is_set():
                other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()

    try:
        with db.write_engine.begin() as conn:
            for n in range(40):
                vault.store(conn, f"sub_{n}", ALICE, now=NOW)
        files = sorted(Path(path).parent.glob("datatrust.db*"))
        thread = threading.Thread(target=copy_back, daemon=True)
        thread.start()
        try:
            for n in range(20):
                with db.engine.connect() as conn:
                    query = select(vault_keys_table.c.sealed_key).where(vault_keys_table.c.subject == f"sub_{n}")
                    key_bytes = bytes(conn.execute(query).scalar_one())
                with db.write_engine.begin() as conn:
                    vault.destroy_key(conn, f"sub_{n}")
                assert vault.purge_deleted_keys(db.write_engine), f"purge {n} stayed partial"
                assert not any(key_bytes in f.read_bytes() for f in files if f.exists()), f"key {n} left on disk"
        finally:
            stop.set()
            thread.join()
    finally:
        db.dispose()
