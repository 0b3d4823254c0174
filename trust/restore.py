"""Restoring a backup (:mod:`trust.backup`) into a trust's database: verify first, refuse a rollback, swap atomically.

**Order.** Nothing is written until every check has passed:

1. :meth:`trust.backup.Backup.open` reads the manifest and checks every member's SHA-256.
2. :func:`trust.backup.verify_backup` verifies the whole ledger (hashes, chain, checkpoint
   signatures) with the trust's verifier keys.
3. :func:`inspect_target` reads what the trust's current database holds: its ledger size,
   the latest checkpoint it has published, and the subjects it has erased.
4. :func:`rollback_findings` compares them. A backup MUST NOT silently replace a ledger that
   the trust has published further: if a published checkpoint covers more entries than the
   backup holds, or the backup's tree at that size has another root (a fork), the restore is
   refused. The operator may force it; everyone holding a receipt or a checkpoint from after
   the backup will see the rollback, which is why the command says so loudly.
5. :func:`restore_backup` loads the backup into a fresh database and swaps it in:

   * SQLite: load into a scratch file beside the database in one transaction, then copy it
     over the live database with SQLite's backup API in one step — one write transaction, so
     readers see the old database or the new one, and a crash leaves the old one.
   * PostgreSQL: one transaction empties every table (the append-only triggers are disabled
     for the ``TRUNCATE`` and enabled again straight after, inside the transaction), loads the
     backup and commits. Any failure rolls all of it back.

**Loading.** Entries are verified again as they are inserted (the Merkle nodes are recomputed
from them, not read from the file), and every projector runs on them in order, as
``datatrust ledger replay`` does, so projections always agree with the ledger. Projections
are rebuilt before webhook subscriptions are loaded, so no webhook is queued twice. The
checkpoint rows must match the verified checkpoints. Then the other tables are loaded, and
erasures are re-applied: a subject erased in the backup's ledger *or in the trust's current
ledger* has their vault key, encrypted fields and access codes removed, so a restore never
brings back personal data that was erased after the backup was made. Last, the vault master
key must open the restored vault (a backup restored next to another trust's keys is refused).

Servers using the database should be stopped during a restore: they keep their view of the
ledger in memory.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, MetaData, insert, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from consent import access_codes
from ledger import repository
from ledger.db import Database
from ledger.entry import LedgerEntry
from ledger.errors import ConflictError, LedgerIntegrityError, UnavailableError, ValidationError
from ledger.merkle import EMPTY_ROOT
from ledger.models import checkpoints_table, vault_keys_table
from ledger.projection import ProjectorRegistry
from ledger.vault import Vault
from ledger.verify import StreamVerifier
from migrations import upgrade
from trust.backup import (
    CHECKPOINTS_TABLE,
    NEVER_BACKED_UP,
    Backup,
    LedgerFeed,
    Progress,
    VerifiedLedger,
    read_ledger_lines,
    schema_revision,
    sqlite_path,
)

VAULT_SAMPLE = 20  # subjects whose vault entries are opened to prove the master key fits


def _noop(_done: int, _total: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Published:
    """A checkpoint the trust has handed out: a restore must not go behind it."""

    size: int
    root: bytes
    where: str  # for messages: "the trust's database (signed 2026-…)", "the checkpoint in kept.txt"


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the trust's current database holds, read before a restore replaces it."""

    entries: int = 0
    published: Published | None = None
    erased: frozenset[str] = frozenset()


@dataclass
class RestoreReport:
    """What a restore loaded."""

    entries: int
    root: bytes
    checkpoints: int
    rows: dict[str, int] = field(default_factory=dict)
    projections: list[str] = field(default_factory=list)
    erased_again: list[str] = field(default_factory=list)  # erased after the backup: their vault rows were dropped


def inspect_target(db: Database) -> TargetState:
    """Read the ledger size, latest published checkpoint and erased subjects of the database a restore replaces."""
    if not db.is_postgresql and not sqlite_path(db).exists():
        return TargetState()
    try:
        with db.engine.connect() as conn:
            if not inspect(conn).has_table("ledger_entries"):
                return TargetState()
            entries = repository.size(conn)
            c = checkpoints_table.c
            row = conn.execute(select(c.size, c.root, c.signed_at).order_by(c.size.desc()).limit(1)).first()
            published = None
            if row is not None:
                where = f"the trust's database (signed {row.signed_at})"
                published = Published(int(row.size), bytes(row.root), where)
            erased: set[str] = set()
            after = -1
            while batch := repository.entries_of_kind(conn, ["subject.erased"], after=after):
                erased.update(str(e.payload["subject"]) for e in batch)
                after = batch[-1].seq
    except SQLAlchemyError as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["unknown error"])[0]
        msg = (
            f"cannot read the trust's current database to check what it has published ({reason}); "
            "repair it, or move it aside if it is lost, then restore again"
        )
        raise UnavailableError(msg) from exc
    return TargetState(entries, published, frozenset(erased))


class RollbackRefusedError(ConflictError):
    """Restoring the backup would roll back a ledger the trust has published."""

    slug = "rollback-refused"
    title = "Restoring this backup would roll back a published ledger"


def check_rollback(verified: VerifiedLedger, published: Iterable[Published], *, force: bool) -> list[str]:
    """Raise :class:`RollbackRefusedError` if restoring *verified* would roll back *published*, unless *force*.

    Returns the findings that *force* overrode, for the caller to warn about.
    """
    findings = rollback_findings(verified, published)
    if findings and not force:
        msg = (
            f"refusing to restore: {'; '.join(findings)}; restoring it would roll back a ledger this trust has "
            "published, visible to everyone holding a receipt or checkpoint; pass --force to restore anyway"
        )
        raise RollbackRefusedError(msg)
    return findings


def rollback_findings(verified: VerifiedLedger, published: Iterable[Published]) -> list[str]:
    """Why restoring *verified* would roll back a published ledger (empty: it would not)."""
    findings: list[str] = []
    for checkpoint in published:
        if checkpoint.size > verified.entries:
            findings.append(
                f"{checkpoint.where} published a checkpoint of {checkpoint.size} entries "
                f"but the backup holds only {verified.entries}"
            )
        elif verified.roots.get(checkpoint.size) != checkpoint.root:
            findings.append(
                f"the backup's ledger does not extend the checkpoint of {checkpoint.size} entries in "
                f"{checkpoint.where}: its first {checkpoint.size} entries differ (a fork)"
            )
    return findings


def restore_backup(
    backup: Backup,
    verified: VerifiedLedger,
    target: Database,
    *,
    registry: ProjectorRegistry,
    vault: Vault,
    erased: Iterable[str] = (),
    progress: Progress = _noop,
) -> RestoreReport:
    """Replace everything in *target* with the backup, all at once or not at all (see the module docstring).

    *target* must be migrated to the backup's schema revision; *registry* holds every
    projector of the trust; *erased* are subjects the trust's current ledger erased.
    """
    with target.engine.connect() as conn:
        revision = schema_revision(conn)
    if revision != backup.manifest.schema_revision:
        msg = (
            f"the backup was written at database schema revision {', '.join(backup.manifest.schema_revision)} "
            f"but this datatrust is at {', '.join(revision) or 'none'}: restore it with the datatrust version "
            "that wrote it, then upgrade"
        )
        raise ValidationError(msg)

    def work(conn: Connection) -> RestoreReport:
        return _load(conn, backup, verified, registry=registry, vault=vault, erased=erased, progress=progress)

    report = _restore_postgresql(target, work) if target.is_postgresql else _restore_sqlite(target, work)
    Vault.purge_deleted_keys(target.write_engine)  # fold SQLite's log into the file; no old page outlives the swap
    return report


def _restore_sqlite(target: Database, work: Callable[[Connection], RestoreReport]) -> RestoreReport:
    path = sqlite_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".datatrust-restore-", dir=path.parent))  # 0700, same disk
    try:
        staging_path = scratch / "datatrust.db"
        url = f"sqlite:///{staging_path}"
        upgrade(url)
        staging = Database.from_url(url)
        try:
            with staging.write_engine.begin() as conn:
                report = work(conn)
        finally:
            staging.dispose()
        source = sqlite3.connect(staging_path)
        try:
            live = sqlite3.connect(path, timeout=60)
            try:
                source.backup(live)  # pages=-1: one step, one write transaction on the live database
            finally:
                live.close()
        finally:
            source.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _restore_postgresql(target: Database, work: Callable[[Connection], RestoreReport]) -> RestoreReport:
    with target.write_engine.connect() as conn, conn.begin():
        quote = conn.dialect.identifier_preparer.quote
        names = [quote(n) for n in sorted(inspect(conn).get_table_names()) if n != "alembic_version"]
        for name in names:  # the append-only triggers refuse TRUNCATE: off for it, and on again, in this transaction
            conn.exec_driver_sql(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"TRUNCATE TABLE {', '.join(names)} RESTART IDENTITY")
        for name in names:
            conn.exec_driver_sql(f"ALTER TABLE {name} ENABLE TRIGGER USER")
        report = work(conn)
        _reset_sequences(conn)
    return report


def _reset_sequences(conn: Connection) -> None:
    """Move each serial column's sequence past the restored rows (PostgreSQL)."""
    quote = conn.dialect.identifier_preparer.quote
    metadata = MetaData()
    metadata.reflect(bind=conn)
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = conn.exec_driver_sql(
                "SELECT pg_get_serial_sequence(%s, %s)", (quote(table.name), column.name)
            ).scalar()
            if sequence is not None:
                highest = f"SELECT MAX({quote(column.name)}) FROM {quote(table.name)}"  # noqa: S608 - quoted names
                conn.exec_driver_sql(f"SELECT setval(%s, COALESCE(({highest}), 0) + 1, false)", (sequence,))


def _load(
    conn: Connection,
    backup: Backup,
    verified: VerifiedLedger,
    *,
    registry: ProjectorRegistry,
    vault: Vault,
    erased: Iterable[str],
    progress: Progress,
) -> RestoreReport:
    """Load the backup into the empty database behind *conn*, inside its transaction."""
    metadata = MetaData()
    metadata.reflect(bind=conn)
    unknown = sorted(set(backup.manifest.tables) - set(metadata.tables))
    if unknown:
        msg = f"the backup holds tables this database does not have: {', '.join(unknown)}"
        raise ValidationError(msg)
    erased_in_backup = _load_ledger(conn, backup, verified, registry=registry, progress=progress)
    report = RestoreReport(verified.entries, verified.root, len(verified.checkpoints))
    report.projections = list(registry.tables)
    report.rows[CHECKPOINTS_TABLE] = _load_checkpoints(conn, backup, verified)
    skip = NEVER_BACKED_UP | {CHECKPOINTS_TABLE} | set(registry.tables)  # projections come from the ledger only
    for table in metadata.sorted_tables:
        if table.name in skip or table.name not in backup.manifest.tables:
            continue
        count = 0
        for columns, rows in backup.table_rows(table.name):
            missing = sorted(set(columns) - set(table.columns.keys()))
            if missing:
                msg = f"the backup's table {table.name} has columns this database does not: {', '.join(missing)}"
                raise ValidationError(msg)
            if rows:
                conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
                count += len(rows)
        report.rows[table.name] = count
    report.erased_again = _reapply_erasures(conn, vault, erased_in_backup, set(erased) - erased_in_backup)
    _check_vault(conn, vault)
    return report


def _load_ledger(
    conn: Connection, backup: Backup, verified: VerifiedLedger, *, registry: ProjectorRegistry, progress: Progress
) -> set[str]:
    """Insert every entry (verified again, with the nodes it completes) and project it; return erased subjects."""
    nodes: list[tuple[int, int, bytes]] = []

    def on_layer(level: int, first: int, hashes: list[bytes]) -> None:
        nodes.extend((level, first + offset, value) for offset, value in enumerate(hashes))

    writer = repository.BatchWriter(conn)
    erased: set[str] = set()
    total = backup.manifest.entries

    def load(run: list[bytes]) -> None:
        entries = [LedgerEntry.from_body(body) for body in run]
        for entry in entries:  # as the sequencer does: projectors see the entries before this batch
            registry.apply(conn, entry)
            if entry.kind == "subject.erased":
                erased.add(str(entry.payload["subject"]))
        writer.insert([(e.seq, e.kind, e.at, e.actor, e.leaf_hash, e.body) for e in entries], nodes)
        nodes.clear()
        progress(entries[-1].seq + 1, total)

    feed = LedgerFeed(
        StreamVerifier(verified.anchors, origin=backup.manifest.origin, on_layer=on_layer), on_entries=load
    )
    for lines in read_ledger_lines(backup.ledger_path):
        feed.lines(lines)
    report = feed.verifier.finish()
    if report.root != verified.root or feed.checkpoints != verified.checkpoints:
        msg = "the backup's ledger changed between its verification and its restore"
        raise LedgerIntegrityError(msg)
    return erased


def _load_checkpoints(conn: Connection, backup: Backup, verified: VerifiedLedger) -> int:
    """Insert the checkpoint rows, which must be exactly the verified checkpoints (plus an empty tree's)."""
    rows: list[dict[str, object]] = []
    if CHECKPOINTS_TABLE in backup.manifest.tables:
        for columns, batch in backup.table_rows(CHECKPOINTS_TABLE):
            rows.extend(dict(zip(columns, row, strict=True)) for row in batch)
    stored = {int(str(r["size"])): (str(r["note"]), r["root"]) for r in rows if r["size"] != 0}
    empty_ok = all(r["root"] == EMPTY_ROOT for r in rows if r["size"] == 0)
    if stored != verified.checkpoints or not empty_ok:
        msg = "the backup's checkpoint table does not match the signed checkpoints in its ledger"
        raise LedgerIntegrityError(msg)
    if rows:
        conn.execute(insert(checkpoints_table), rows)
    return len(rows)


def _reapply_erasures(conn: Connection, vault: Vault, in_backup: set[str], after_backup: set[str]) -> list[str]:
    """Remove the vault rows and access codes of erased subjects; return those erased only after the backup."""
    again: list[str] = []
    for subject in sorted(in_backup | after_backup):
        if subject in after_backup and vault.has_key(conn, subject):
            again.append(subject)
        Vault.destroy_key(conn, subject)
        access_codes.revoke_codes(conn, subject)
    return again


def _check_vault(conn: Connection, vault: Vault) -> None:
    """Open a few subjects' vault entries: the data directory's master key must be the backup's."""
    subjects = conn.execute(
        select(vault_keys_table.c.subject).order_by(vault_keys_table.c.subject).limit(VAULT_SAMPLE)
    ).scalars()
    for subject in list(subjects):
        try:
            vault.read(conn, str(subject))
        except LedgerIntegrityError as exc:
            msg = (
                f"the vault master key does not open the backup's vault ({exc.detail}): "
                "restore it with the keys of the trust it came from"
            )
            raise ValidationError(msg) from exc
