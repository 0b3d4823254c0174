"""A hostile database administrator drops the append-only triggers and edits the ledger: verification notices.

Each test runs on SQLite and PostgreSQL. The trust is stopped before the edits
(an administrator works on the database, not through the trust), and the
checks run both through ``verify_live`` and through ``datatrust ledger verify``
/ ``verify-export`` exactly as an operator would type them (in process, with
typer's runner, to keep the suite fast; tests/test_cli_ledger.py runs the real
executable).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, MetaData, Row, Table, insert, select, text
from typer.testing import CliRunner, Result

from api.cli import app
from api.instance import Instance, initialise
from ledger import repository
from ledger.canonical import canonicalize
from ledger.checkpoint import Checkpoint, verify_extends
from ledger.db import Database
from ledger.entry import build_entry
from ledger.errors import LedgerIntegrityError, ProofError, SignatureInvalidError, ValidationError
from ledger.export import export_ledger, verify_export, verify_live
from ledger.keys import Signer
from ledger.merkle import CompactRange, leaf_hash, root_from_leaves
from ledger.sequencer import AppendSpec
from ledger.service import Ledger
from ledger.verify import VerifyReport
from tests.conftest import drop_pg_database, fresh_pg_database

PROTECTED = ("ledger_entries", "ledger_tree_nodes", "ledger_checkpoints")
SIZE = 42  # 2 entries from `init`, then 40; checkpoints at 2, 12, 22, 32 and 42


@dataclass
class Trust:
    """A stopped trust with a known ledger, and the checkpoints an outsider kept along the way."""

    instance: Instance
    db_url: str
    kept: dict[int, str]
    snapshot: dict[str, Sequence[Row[Any]]]

    @property
    def db(self) -> Database:
        """The trust's database."""
        return self.instance.db

    def verify(self) -> VerifyReport:
        """Full verification of the live database with the trust's public key."""
        with self.db.engine.connect() as conn:
            return verify_live(conn, [self.instance.ledger.signer.verifier], origin=self.instance.origin)

    def cli(self, *args: str) -> Result:
        """Run ``datatrust ARGS [--data-dir …]`` against this trust's database."""
        where = [] if "verify-export" in args else ["--data-dir", str(self.instance.data_dir)]
        return CliRunner().invoke(app, [*args, *where], env={"DATATRUST_DATABASE_URL": self.db_url})

    def reopen(self) -> Ledger:
        """A writer on the (possibly tampered) database with the trust's own key, as a restarted trust would be."""
        self.instance.ledger = Ledger(self.db, signer=self.instance.ledger.signer, origin=self.instance.origin)
        return self.instance.ledger


def _fill(ledger: Ledger, first: int, count: int, *, note: str = "entry") -> None:
    now = datetime.now(UTC)
    ledger.append_all(
        [
            AppendSpec("check.decided", "org_filler", now, payload={"n": n, "note": f"{note} {n}"})
            for n in range(first, first + count)
        ],
        checkpoint=True,
    )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trust]:
    """A trust with 42 entries and five checkpoints, built once per engine and stopped.

    Each test attacks it and the ``trust`` fixture puts every row back afterwards,
    which keeps the suite fast without sharing any tampering between tests.
    """
    root = tmp_path_factory.mktemp("tamper")
    pg_name = None
    if request.param == "sqlite":
        (root / "db").mkdir()
        shutil.copy(request.getfixturevalue("sqlite_template"), root / "db" / "datatrust.db")
        db_url = f"sqlite:///{root / 'db' / 'datatrust.db'}"
    else:
        pg_name, db_url = fresh_pg_database(request.getfixturevalue("pg_template"))
    instance = initialise(root / "trust", name="Test Trust", mission="Testing.", database_url=db_url)
    signer = instance.ledger.signer
    instance.ledger.close()
    # A bare ledger (no projections) with the trust's own key appends the filler entries.
    instance.ledger = Ledger(instance.db, signer=signer, origin=instance.origin)
    for first in range(2, SIZE, 10):
        _fill(instance.ledger, first, 10)
    instance.ledger.close()
    with instance.db.engine.connect() as conn:
        kept = dict(repository.iter_checkpoints(conn))
        snapshot = {t: conn.execute(select(Table(t, MetaData(), autoload_with=conn))).all() for t in PROTECTED}
    assert sorted(kept) == [2, 12, 22, 32, 42]
    yield Trust(instance, db_url, kept, snapshot)
    instance.close()
    if pg_name is not None:
        drop_pg_database(pg_name)


@pytest.fixture
def trust(pristine: Trust) -> Iterator[Trust]:
    """The pristine trust; whatever a test did to its database is undone afterwards."""
    yield pristine
    pristine.instance.ledger.close()
    with hostile_admin(pristine.db) as conn:
        for table, rows in pristine.snapshot.items():
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed table names
            conn.execute(insert(Table(table, MetaData(), autoload_with=conn)), [row._asdict() for row in rows])
    assert pristine.verify().entries == SIZE


@contextmanager
def hostile_admin(db: Database) -> Iterator[Connection]:
    """A transaction with the append-only triggers out of the way, put back at the end to cover the tracks."""
    with db.write_engine.begin() as conn:
        if db.is_postgresql:
            for table in PROTECTED:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            yield conn
            for table in PROTECTED:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            triggers = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN (:a, :b, :c)"),
                dict(zip("abc", PROTECTED, strict=True)),
            ).all()
            assert len(triggers) == 2 * len(PROTECTED)
            for name, _sql in triggers:
                conn.execute(text(f"DROP TRIGGER {name}"))
            yield conn
            for _name, sql in triggers:
                conn.execute(text(sql))


def _body(conn: Connection, seq: int) -> bytes:
    row = conn.execute(text("SELECT body FROM ledger_entries WHERE seq = :s"), {"s": seq}).one()
    return bytes(row[0])


def _set_entry(conn: Connection, seq: int, body: bytes, leaf: bytes | None = None) -> None:
    if leaf is None:
        conn.execute(text("UPDATE ledger_entries SET body = :b WHERE seq = :s"), {"b": body, "s": seq})
    else:
        conn.execute(
            text("UPDATE ledger_entries SET body = :b, leaf_hash = :h WHERE seq = :s"), {"b": body, "h": leaf, "s": seq}
        )


def _one_byte_changed(body: bytes) -> bytes:
    """The same entry with the last digit of its timestamp changed: a one-byte edit any entry allows."""
    at = body.index(b'Z","kind":') - 1
    digit = body[at] - ord("0")
    return body[:at] + str((digit + 1) % 10).encode() + body[at + 1 :]


def _assert_cli_names(result: Result, seq: int, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"first bad sequence number: {seq}" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def test_untouched_trust_verifies(trust: Trust) -> None:
    """The baseline: before any tampering the database and the CLI both report success."""
    report = trust.verify()
    assert (report.entries, report.checkpoints, report.uncovered) == (SIZE, 5, 0)
    result = trust.cli("ledger", "verify")
    assert result.exit_code == 0, result.output
    assert f"OK: {SIZE} entries, 5 checkpoints verified" in result.stdout


@pytest.mark.parametrize("seq", [0, 17, 41])  # the first entry, one in the middle, the last one
def test_changed_byte_names_the_entry(trust: Trust, seq: int) -> None:
    """One byte changed in one stored entry: verification fails and names exactly that sequence number."""
    with hostile_admin(trust.db) as conn:
        _set_entry(conn, seq, _one_byte_changed(_body(conn, seq)))
    with pytest.raises(LedgerIntegrityError, match=f"entry {seq}") as caught:
        trust.verify()
    assert caught.value.seq == seq
    _assert_cli_names(trust.cli("ledger", "verify"), seq, "FAILED")


def test_changed_byte_with_recomputed_leaf_hash_names_the_entry(trust: Trust) -> None:
    """An administrator who also rewrites the stored leaf hash is caught by the next entry's prev link."""
    with hostile_admin(trust.db) as conn:
        body = _one_byte_changed(_body(conn, 17))
        _set_entry(conn, 17, body, leaf_hash(body))
    with pytest.raises(LedgerIntegrityError, match="entry 18 does not chain to entry 17") as caught:
        trust.verify()
    assert caught.value.seq == 17
    _assert_cli_names(trust.cli("ledger", "verify"), 17)


def test_rechained_rewrite_is_caught_by_the_signed_checkpoint(trust: Trust) -> None:
    """Rewriting an entry and re-chaining every later entry and tree node still breaks the first signed root."""
    with hostile_admin(trust.db) as conn:
        rows = repository.entry_rows(conn, 0, SIZE)
        tree, prev, nodes = CompactRange(), b"", []
        for seq, leaf, body in rows:
            if seq >= 17:
                entry = json.loads(body)
                payload = entry["payload"]
                if seq == 17:
                    payload["note"] = "rewritten"
                body, leaf = build_entry(  # noqa: PLW2901 - the forger replaces the row
                    seq=seq,
                    kind=entry["kind"],
                    at=entry["at"],
                    actor=entry["actor"],
                    prev=prev,
                    payload_bytes=canonicalize(payload),
                )
                _set_entry(conn, seq, body, leaf)
            tree.append(leaf, lambda level, idx, value: nodes.append((level, idx, value)))
            prev = leaf
        conn.execute(text("DELETE FROM ledger_tree_nodes"))
        for level, idx, value in nodes:
            conn.execute(
                text("INSERT INTO ledger_tree_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                {"l": level, "i": idx, "h": value},
            )
    with pytest.raises(LedgerIntegrityError, match="checkpoint of tree size 22 does not match the entries") as caught:
        trust.verify()
    assert caught.value.seq == 21
    _assert_cli_names(trust.cli("ledger", "verify"), 21, "checkpoint of tree size 22")


def test_deleted_tail_is_reported_as_rollback(trust: Trust) -> None:
    """Deleting the newest entries while published checkpoints cover them is reported as a rollback."""
    with hostile_admin(trust.db) as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq >= 30"))
    with pytest.raises(
        LedgerIntegrityError, match=r"checkpoint of 42 entries but the ledger now has 30.*rollback"
    ) as caught:
        trust.verify()
    assert caught.value.seq == 30
    _assert_cli_names(trust.cli("ledger", "verify"), 30, "rollback")
    ledger = trust.reopen()  # a restarted trust refuses to build a fork on the truncated ledger ...
    with pytest.raises(LedgerIntegrityError, match="refusing to append"):
        ledger.append("check.decided", {"n": 30}, actor="org_filler", now=datetime.now(UTC))
    with pytest.raises(LedgerIntegrityError, match="rollback") as caught:  # ... so nothing was appended
        trust.verify()
    assert caught.value.seq == 30


def test_thorough_rollback_and_fork_are_caught_by_a_kept_checkpoint(trust: Trust, tmp_path: Path) -> None:
    """Removing the tail with its checkpoints and nodes fools a self-check, never a checkpoint an outsider kept."""
    kept42, kept22 = tmp_path / "kept-42.txt", tmp_path / "kept-22.txt"
    kept42.write_text(trust.kept[42])
    kept22.write_text(trust.kept[22])
    with hostile_admin(trust.db) as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq >= 30"))
        conn.execute(text("DELETE FROM ledger_checkpoints WHERE size > 30"))
        for level, idx in conn.execute(text("SELECT level, idx FROM ledger_tree_nodes")).all():
            if (idx + 1) << level > 30:  # nodes that cover removed entries
                conn.execute(
                    text("DELETE FROM ledger_tree_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx}
                )
    assert trust.verify().entries == 30  # internally consistent: only an outside witness can tell
    ledger = trust.reopen()
    checkpoint = Checkpoint.from_text(trust.kept[42].split("\n\n")[0] + "\n")
    with pytest.raises(ProofError, match="larger than the ledger"):
        ledger.consistency_proof(checkpoint.size, checkpoint.size)
    with pytest.raises(LedgerIntegrityError, match=r"kept covers 42 entries but the ledger now has 30.*rollback"):
        verify_extends(checkpoint, size=30, root=ledger.root(30), prove=ledger.consistency_proof)
    _assert_cli_names(trust.cli("ledger", "verify", "--checkpoint", str(kept42)), 30, "rollback")

    # The trust, restarted on the truncated database, appends different entries past the old size: a fork.
    _fill(ledger, 30, 20, note="forked")
    ledger.close()
    report = trust.verify()  # the fork is signed by the trust's own key, so it verifies on its own ...
    assert report.entries == 50
    with pytest.raises(LedgerIntegrityError, match=r"does not extend the checkpoint you kept of 42 entries.*fork"):
        verify_extends(checkpoint, size=report.entries, root=report.root, prove=ledger.consistency_proof)
    result = trust.cli("ledger", "verify", "--checkpoint", str(kept42))  # ... but not against the kept one
    assert result.exit_code == 1, result.output
    assert "fork" in result.stderr
    result = trust.cli("ledger", "verify", "--checkpoint", str(kept22))  # entries before the cut are intact
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("with_leaf_hashes", [False, True])
def test_swapped_entries_fail(trust: Trust, with_leaf_hashes: bool) -> None:
    """Swapping two stored entries (with or without their leaf hashes) fails at the first of them."""
    with hostile_admin(trust.db) as conn:
        ten, eleven = _body(conn, 10), _body(conn, 11)
        _set_entry(conn, 10, eleven, leaf_hash(eleven) if with_leaf_hashes else None)
        _set_entry(conn, 11, ten, leaf_hash(ten) if with_leaf_hashes else None)
    with pytest.raises(LedgerIntegrityError) as caught:
        trust.verify()
    assert caught.value.seq == 10
    _assert_cli_names(trust.cli("ledger", "verify"), 10)


def test_forged_checkpoint_row_fails(trust: Trust) -> None:
    """A checkpoint row with the right root but signed by another key (same name) is refused."""
    with trust.db.engine.connect() as conn:
        leaves = [leaf for _seq, leaf, _body in repository.entry_rows(conn, 0, 37)]
    root = root_from_leaves(leaves)
    forger = Signer.generate(trust.instance.origin)
    note = Checkpoint(trust.instance.origin, 37, root).sign(forger)
    with hostile_admin(trust.db) as conn:
        repository.insert_checkpoint(conn, size=37, root=root, note=note, signed_at="2026-11-26T09:00:00.000000Z")
    with pytest.raises(SignatureInvalidError, match=r"checkpoint at tree size 37.*not signed by a known key") as caught:
        trust.verify()
    assert caught.value.seq == 36
    _assert_cli_names(trust.cli("ledger", "verify"), 36, "not signed by a known key")


def test_replaced_checkpoint_signature_fails(trust: Trust) -> None:
    """Replacing the newest published checkpoint with one signed by another key is refused."""
    forged = Checkpoint.from_text(trust.kept[42].split("\n\n")[0] + "\n").sign(Signer.generate(trust.instance.origin))
    with hostile_admin(trust.db) as conn:
        conn.execute(text("UPDATE ledger_checkpoints SET note = :n WHERE size = 42"), {"n": forged})
    with pytest.raises(SignatureInvalidError) as caught:
        trust.verify()
    assert caught.value.seq == 41
    _assert_cli_names(trust.cli("ledger", "verify"), 41)


def test_deleted_middle_entry_fails(trust: Trust) -> None:
    """Deleting one entry from the middle names it as missing."""
    with hostile_admin(trust.db) as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 25"))
    with pytest.raises(LedgerIntegrityError, match="entry 25 is missing") as caught:
        trust.verify()
    assert caught.value.seq == 25


# -- exports ----------------------------------------------------------------------------------


@pytest.fixture
def export(trust: Trust, tmp_path: Path) -> Path:
    """The trust's ledger exported as JSON Lines."""
    path = tmp_path / "ledger.jsonl"
    with trust.db.engine.connect() as conn, path.open("wb") as handle:
        assert export_ledger(conn, handle, origin=trust.instance.origin) == SIZE
    return path


def _key(trust: Trust) -> str:
    return trust.instance.ledger.signer.verifier.to_text()


def _edit_line(path: Path, marker: str, edit: Callable[[bytes], bytes]) -> None:
    lines = path.read_bytes().split(b"\n")
    hits = [i for i, line in enumerate(lines) if marker.encode() in line]
    assert len(hits) == 1
    changed = edit(lines[hits[0]])
    assert changed != lines[hits[0]]
    lines[hits[0]] = changed
    path.write_bytes(b"\n".join(lines))


def test_intact_export_verifies(trust: Trust, export: Path) -> None:
    """An untouched export verifies with the trust's public key and nothing else."""
    result = trust.cli("ledger", "verify-export", str(export), "--public-key", _key(trust))
    assert result.exit_code == 0, result.output
    assert f"OK: {SIZE} entries, 5 checkpoints verified" in result.stdout


@pytest.mark.parametrize("seq", [0, 17, 41])
def test_edited_export_line_names_the_entry(trust: Trust, export: Path, seq: int) -> None:
    """Changing one byte of one entry line in an export names that sequence number."""
    _edit_line(export, f'"seq":{seq},', _one_byte_changed)
    with pytest.raises(LedgerIntegrityError) as caught:
        verify_export(export, [trust.instance.ledger.signer.verifier])
    assert caught.value.seq == seq
    _assert_cli_names(trust.cli("ledger", "verify-export", str(export), "--public-key", _key(trust)), seq)


def test_removed_export_line_names_the_gap(trust: Trust, export: Path) -> None:
    """Dropping an entry line from an export is reported at the position where it is missing."""
    lines = [line for line in export.read_bytes().split(b"\n") if b'"seq":20,' not in line]
    export.write_bytes(b"\n".join(lines))
    with pytest.raises(LedgerIntegrityError, match="position 20 is out of order") as caught:
        verify_export(export, [trust.instance.ledger.signer.verifier])
    assert caught.value.seq == 20


def test_edited_export_checkpoint_fails(trust: Trust, export: Path) -> None:
    """Changing the size written in a checkpoint line breaks its signature."""
    _edit_line(export, '"size": 22,', lambda line: line.replace(b"\\n22\\n", b"\\n23\\n"))
    result = trust.cli("ledger", "verify-export", str(export), "--public-key", _key(trust))
    assert result.exit_code == 1, result.output
    assert "does not verify" in result.stderr


def test_export_with_wrong_public_key_fails(trust: Trust, export: Path, tmp_path: Path) -> None:
    """An export checked against another key (even one with the trust's name) is refused."""
    other = Signer.generate(trust.instance.origin).verifier.to_text()
    key_file = tmp_path / "other.pub"
    key_file.write_text(other + "\n")
    for key in (other, str(key_file)):
        result = trust.cli("ledger", "verify-export", str(export), "--public-key", key)
        assert result.exit_code == 1, result.output
        assert "not signed by the trusted key" in result.stderr
    with pytest.raises(SignatureInvalidError):
        verify_export(export, [Signer.generate(trust.instance.origin).verifier])


def test_export_of_another_origin_is_refused(trust: Trust, export: Path) -> None:
    """Checkpoints must carry the origin the export's header names."""
    _edit_line(export, '"header"', lambda line: line.replace(trust.instance.origin.encode(), b"datatrust.local/other"))
    with pytest.raises(LedgerIntegrityError, match="origin"):
        verify_export(export, [trust.instance.ledger.signer.verifier])


def test_not_an_export_is_refused(tmp_path: Path) -> None:
    """A file that is not an export is refused as such, not half-verified."""
    path = tmp_path / "not-an-export.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(ValidationError, match="not a datatrust ledger export"):
        verify_export(path, [Signer.generate("x").verifier])
