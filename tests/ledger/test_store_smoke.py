"""The append path, proofs and triggers work on each database engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from api.instance import Instance
from ledger.db import SQLITE_WAL_AUTOCHECKPOINT, Database, sqlite_url
from ledger.export import verify_live
from ledger.merkle import verify_consistency, verify_inclusion


def test_append_prove_verify(instance: Instance) -> None:
    """Appended entries get consecutive numbers and verify by proof and by full verification."""
    ledger = instance.ledger
    entries = [ledger.append("check.decided", {"n": n}, actor="org_a", now=datetime.now(UTC)) for n in range(20)]
    assert [e.seq for e in entries] == list(range(2, 22))
    checkpoint = ledger.open_checkpoint(ledger.sign_checkpoint())
    assert checkpoint.size == 22
    for seq in (0, 7, 21):
        proof = ledger.inclusion_proof(seq, checkpoint.size)
        verify_inclusion(seq, checkpoint.size, proof.leaf_hash, proof.proof, checkpoint.root)
    verify_consistency(5, 22, ledger.root(5), checkpoint.root, ledger.consistency_proof(5, 22))
    with instance.db.engine.connect() as conn:
        report = verify_live(conn, [ledger.signer.verifier], origin=instance.origin)
    assert report.entries == 22


@pytest.mark.parametrize(
    "statement", ["UPDATE ledger_entries SET kind = 'x' WHERE seq = 0", "DELETE FROM ledger_entries"]
)
def test_triggers_refuse_rewrites(instance: Instance, statement: str) -> None:
    """The database itself refuses UPDATE and DELETE on ledger entries."""
    with pytest.raises(DBAPIError, match="append-only"), instance.db.write_engine.begin() as conn:
        conn.execute(sa.text(statement))


# table -> (a row to insert, a column to "update")
APPEND_ONLY = {
    "ledger_entries": (
        "INSERT INTO ledger_entries (seq, kind, at, actor, leaf_hash, body) VALUES (0, 'k', 'a', 'x', :b, :b)",
        "kind",
    ),
    "ledger_tree_nodes": ("INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (1, 0, :b)", "hash"),
    "ledger_checkpoints": (
        "INSERT INTO ledger_checkpoints (size, root, note, signed_at) VALUES (1, :b, 'n', 's')",
        "note",
    ),
}


def test_every_ledger_table_is_append_only(db_url: str) -> None:
    """Entries, tree nodes and checkpoints all refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)."""
    db = Database.from_url(db_url)
    try:
        with db.write_engine.begin() as conn:
            for insert, _column in APPEND_ONLY.values():
                conn.execute(sa.text(insert), {"b": bytes(32)})
        for table, (_insert, column) in APPEND_ONLY.items():
            statements = [f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"]  # noqa: S608 - fixed names
            if db.is_postgresql:
                statements.append(f"TRUNCATE {table}")
            for statement in statements:
                with pytest.raises(DBAPIError, match="append-only"), db.write_engine.begin() as conn:
                    conn.execute(sa.text(statement))
    finally:
        db.dispose()


def test_sqlite_connections_are_durable_write_ahead_logs(tmp_path: Path) -> None:
    """Every SQLite connection: WAL, fsync at each commit, and the ledger's own checkpoint interval."""
    db = Database.from_url(sqlite_url(tmp_path))
    try:
        for engine in (db.engine, db.write_engine):
            with engine.connect() as conn:
                settings = [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in _SQLITE_SETTINGS]
            assert settings == ["wal", 2, SQLITE_WAL_AUTOCHECKPOINT]  # synchronous 2 is FULL
    finally:
        db.dispose()


_SQLITE_SETTINGS = ("journal_mode", "synchronous", "wal_autocheckpoint")
