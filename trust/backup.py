"""Backups of a trust: one file holding a consistent snapshot, taken while the trust keeps serving.

**Format** (``datatrust-backup/1``): a gzip-compressed tar archive, written with mode 0600::

    manifest.json              format, created_at, origin, engine, schema revision, the ledger's
                               size, root hash and latest checkpoint, rows per table, and the
                               SHA-256 of every other member
    ledger.jsonl               the ledger as ``datatrust ledger export`` writes it (every entry
                               exactly as hashed, every signed checkpoint): ``datatrust ledger
                               verify-export`` checks it with nothing but the public key
    tables/NAME.jsonl          each table the ledger cannot rebuild: a header line naming the
                               columns, then one JSON array per row (binary values in base64)
    files/datatrust.toml       the trust's name and log origin
    files/keys/verifiers.txt   the public checkpoint keys
    files/keys/*.key           the private keys, only when asked for (``include_keys``)

**What a backup holds, and why.**

* Ledger entries and checkpoints: yes. Checkpoints are also in ``tables/ledger_checkpoints.jsonl``,
  which keeps their ``signed_at``; a restore insists that the two lists agree.
* Merkle tree nodes: no. A restore recomputes them from the entries (and so checks them).
* Projections (every table a projector registered, e.g. consent grants, votes, check
  decisions): no. A restore rebuilds them from the verified entries, as ``datatrust ledger
  replay`` does, so a backup can never carry projections that disagree with its ledger.
* Everything else the ledger cannot rebuild: yes — the vault (sealed per-subject keys and
  encrypted fields), people and password hashes, partner client secrets, consent access
  codes, off-ledger comment texts, webhook subscriptions (with their secrets), the webhook
  outbox and delivery attempts, used client assertions and sign-in throttling.
* Sign-in sessions and one-time sign-in links: no (:data:`NOT_BACKED_UP`). Restoring them
  would bring back sessions that were signed out and links already used; after a restore
  everyone signs in again.
* Private keys (checkpoint, vault master, token and webhook keys): only with
  ``include_keys``. A backup that held the vault master key beside the sealed vault would undo
  the vault's protection, so by default a backup holds public data and the encrypted vault,
  and the trust's ``keys/`` directory is kept separately (a password manager, a hardware
  token, an offline copy); a restore then needs those keys in place. Either way a backup is
  confidential: it holds password hashes and webhook secrets.

**Consistency while serving.** On SQLite the database is first copied with SQLite's online
backup API in a single step (one read transaction, so the copy is the database between two
commits; under WAL, writers carry on meanwhile) into a private temporary directory, and the
archive is written from that copy. On PostgreSQL everything is read in one ``REPEATABLE
READ, READ ONLY`` transaction, which sees one snapshot. An entry commits together with its
projections, vault rows and outbox messages, so a snapshot never holds one without the other.

Restoring is :mod:`trust.restore`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Self

from sqlalchemy import Connection, LargeBinary, MetaData, Table, inspect, select
from sqlalchemy.engine import make_url

from ledger import repository
from ledger.checkpoint import Checkpoint
from ledger.db import Database
from ledger.entry import format_at
from ledger.errors import LedgerIntegrityError, ValidationError
from ledger.export import export_ledger
from ledger.keys import Verifier
from ledger.merkle import EMPTY_ROOT, hash_from_nodes, perfect_subtrees
from ledger.verify import StreamVerifier

FORMAT = "datatrust-backup/1"
LEDGER_MEMBER = "ledger.jsonl"
MANIFEST_MEMBER = "manifest.json"
CHECKPOINTS_TABLE = "ledger_checkpoints"
NEVER_BACKED_UP = frozenset({"alembic_version", "ledger_entries", "ledger_tree_nodes"})  # in ledger.jsonl, or rebuilt
NOT_BACKED_UP: Mapping[str, str] = {
    "auth_sessions": "restoring them would bring back sessions that were signed out",
    "auth_sign_in_links": "restoring them would make used one-time links work again",
}
_MEMBER_NAME = re.compile(r"(ledger\.jsonl|tables/[a-z0-9_]+\.jsonl|files/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?)\Z")
_ENTRY_START = b'{"actor":'
_CHECKPOINT_START = b'{"note":'
_ROW_BATCH = 1000
Progress = Callable[[int, int], None]


def _noop(_done: int, _total: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``manifest.json`` says about a backup (checked against the members before anything trusts it)."""

    created_at: str
    origin: str
    engine: str
    schema_revision: tuple[str, ...]
    entries: int
    root: bytes
    checkpoint_size: int | None
    checkpoint_note: str | None
    tables: dict[str, int]
    members: dict[str, str]  # member name -> SHA-256 hex
    files: dict[str, bool]  # data-directory file -> is it secret (a private key)
    derived_tables: tuple[str, ...] = ()

    @property
    def includes_keys(self) -> bool:
        """Whether the backup holds private keys."""
        return any(self.files.values())

    def to_json(self) -> dict[str, Any]:
        """The manifest as stored."""
        checkpoint = None
        if self.checkpoint_size is not None:
            checkpoint = {"size": self.checkpoint_size, "note": self.checkpoint_note}
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "origin": self.origin,
            "engine": self.engine,
            "schema_revision": list(self.schema_revision),
            "ledger": {"entries": self.entries, "root": self.root.hex(), "checkpoint": checkpoint},
            "tables": self.tables,
            "derived_tables": list(self.derived_tables),
            "not_backed_up": sorted(NOT_BACKED_UP),
            "files": self.files,
            "members": self.members,
        }

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Read a stored manifest; raise :class:`ValidationError` naming what is wrong."""
        if not isinstance(data, dict) or not str(data.get("format", "")).startswith("datatrust-backup/"):
            msg = f"its manifest is not a {FORMAT} manifest"
            raise ValidationError(msg)
        if data["format"] != FORMAT:
            msg = f"it is in format {data['format']!r}, which this version of datatrust cannot read (it reads {FORMAT})"
            raise ValidationError(msg)
        try:
            ledger = data["ledger"]
            checkpoint = ledger["checkpoint"] or {}
            return cls(
                created_at=str(data["created_at"]),
                origin=str(data["origin"]),
                engine=str(data["engine"]),
                schema_revision=tuple(str(r) for r in data["schema_revision"]),
                entries=int(ledger["entries"]),
                root=bytes.fromhex(ledger["root"]),
                checkpoint_size=None if not checkpoint else int(checkpoint["size"]),
                checkpoint_note=None if not checkpoint else str(checkpoint["note"]),
                tables={str(k): int(v) for k, v in data["tables"].items()},
                members={str(k): str(v) for k, v in data["members"].items()},
                files={str(k): bool(v) for k, v in data["files"].items()},
                derived_tables=tuple(str(t) for t in data.get("derived_tables", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"its manifest is incomplete or malformed ({type(exc).__name__}: {exc})"
            raise ValidationError(msg) from exc


# -- writing ----------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A binary file that hashes what is written to it."""

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self._handle = handle
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self._handle.write(chunk)
        return len(chunk)


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """A read-only connection on one consistent snapshot of *db*, taken without stopping writers."""
    if db.is_postgresql:
        with db.engine.connect() as conn:
            snap = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with snap.begin():
                yield snap
        return
    source_path = sqlite_path(db)
    scratch = Path(tempfile.mkdtemp(prefix="datatrust-backup-"))  # 0700: the copy holds the vault
    try:
        copy_path = scratch / "snapshot.db"
        source = sqlite3.connect(source_path, timeout=60)
        try:
            target = sqlite3.connect(copy_path)
            try:
                source.backup(target)  # pages=-1: one step, one read transaction, one snapshot
            finally:
                target.close()
        finally:
            source.close()
        copy = Database.from_url(f"sqlite:///{copy_path}")
        try:
            with copy.engine.connect() as conn, conn.begin():
                yield conn
        finally:
            copy.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sqlite_path(db: Database) -> Path:
    """The file of a SQLite database (an in-memory one cannot be backed up or restored)."""
    name = make_url(db.url).database
    if not name or name == ":memory:":
        msg = "an in-memory SQLite database cannot be backed up or restored"
        raise ValidationError(msg)
    return Path(name)


def schema_revision(conn: Connection) -> tuple[str, ...]:
    """The database's Alembic revision(s)."""
    if not inspect(conn).has_table("alembic_version"):
        return ()
    return tuple(sorted(str(r) for (r,) in conn.exec_driver_sql("SELECT version_num FROM alembic_version")))


def ledger_root(conn: Connection, size: int) -> bytes:
    """The Merkle tree hash of the first *size* entries, from the stored nodes."""
    if size == 0:
        return EMPTY_ROOT
    nodes = perfect_subtrees(0, size)
    found = repository.fetch_nodes(conn, nodes)
    return hash_from_nodes([found[n] for n in nodes])


def _encode(value: object, *, binary: bool) -> object:
    if value is None:
        return None
    if binary and isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    if not binary and isinstance(value, str | int | float | bool):
        return value
    msg = f"cannot back up a value of type {type(value).__name__}"
    raise ValidationError(msg)


def _dump_table(conn: Connection, name: str, out: IO[bytes]) -> int:
    """Write one table as JSON Lines (header, then one array per row, in key order); return the row count."""
    table = Table(name, MetaData(), autoload_with=conn)
    columns = [c.name for c in table.columns]
    binary = {c.name for c in table.columns if isinstance(c.type, LargeBinary)}
    header = {"table": name, "columns": columns, "binary": sorted(binary)}
    out.write(json.dumps(header, sort_keys=True).encode() + b"\n")
    query = select(table).order_by(*table.primary_key.columns)
    count = 0
    for row in conn.execution_options(yield_per=_ROW_BATCH).execute(query):
        values = [_encode(v, binary=c in binary) for c, v in zip(columns, row, strict=True)]
        out.write(json.dumps(values, separators=(",", ":")).encode() + b"\n")
        count += 1
    return count


def check_destination(path: Path) -> None:
    """Raise :class:`ValidationError` unless a backup can be written at *path* (a file in an existing directory)."""
    if path.is_dir():
        msg = f"cannot write the backup to {path}: it is a directory"
        raise ValidationError(msg)
    if not path.parent.is_dir():
        msg = f"cannot write the backup to {path}: there is no directory {path.parent}"
        raise ValidationError(msg)


def write_backup(
    db: Database,
    path: Path,
    *,
    origin: str,
    derived_tables: Iterable[str],
    files: Mapping[str, bytes],
    secret_files: Mapping[str, bytes] | None = None,
    now: datetime,
    progress: Progress = _noop,
) -> Manifest:
    """Write a backup of the trust in *db* to *path* (atomically, mode 0600) and return its manifest.

    *files* are public data-directory files (``datatrust.toml``, ``keys/verifiers.txt``) and
    *secret_files* private keys, by their path in the data directory. *derived_tables* are
    the projection tables, left out because a restore rebuilds them from the ledger.
    """
    check_destination(path)
    derived = sorted(set(derived_tables))
    scratch = Path(tempfile.mkdtemp(prefix="datatrust-backup-"))
    try:
        members: dict[str, str] = {}

        @contextmanager
        def member(name: str) -> Iterator[IO[bytes]]:
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as raw:
                hashing = _HashingWriter(raw)
                with io.BufferedWriter(hashing, 1 << 20) as handle:
                    yield handle
                    handle.flush()
                members[name] = hashing.sha256.hexdigest()

        with snapshot(db) as conn:
            revision = schema_revision(conn)
            entries = repository.size(conn)
            root = ledger_root(conn, entries)
            latest = repository.latest_checkpoint(conn)
            with member(LEDGER_MEMBER) as handle:
                exported = export_ledger(conn, handle, origin=origin, progress=progress)
            if exported != entries:  # cannot happen in one snapshot; refuse rather than write a torn backup
                msg = f"the ledger changed during the backup ({entries} entries, then {exported})"
                raise LedgerIntegrityError(msg)
            skip = NEVER_BACKED_UP | set(derived) | set(NOT_BACKED_UP)
            tables: dict[str, int] = {}
            for name in sorted(set(inspect(conn).get_table_names()) - skip):
                with member(f"tables/{name}.jsonl") as handle:
                    tables[name] = _dump_table(conn, name, handle)
        kinds = {**dict.fromkeys(files, False), **dict.fromkeys(secret_files or {}, True)}
        for name, content in {**files, **(secret_files or {})}.items():
            with member(f"files/{name}") as handle:
                handle.write(content)
        manifest = Manifest(
            created_at=format_at(now),
            origin=origin,
            engine="postgresql" if db.is_postgresql else "sqlite",
            schema_revision=revision,
            entries=entries,
            root=root,
            checkpoint_size=None if latest is None else latest[0],
            checkpoint_note=None if latest is None else latest[1],
            tables=tables,
            members=members,
            files=kinds,
            derived_tables=tuple(derived),
        )
        _write_archive(path, scratch, manifest, mtime=now.timestamp())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _write_archive(path: Path, scratch: Path, manifest: Manifest, *, mtime: float) -> None:
    """Write manifest first, then every member, to ``PATH.partial``; then move it into place."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                document = json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode() + b"\n"
                tar.addfile(_info(MANIFEST_MEMBER, len(document), mtime), io.BytesIO(document))
                for name in manifest.members:
                    with (scratch / name).open("rb") as handle:
                        tar.addfile(_info(name, (scratch / name).stat().st_size, mtime), handle)
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(mtime)
    return info


# -- reading ----------------------------------------------------------------------------------


@dataclass
class Backup:
    """An opened backup: manifest read, every member unpacked into a private directory and its hash checked."""

    path: Path
    manifest: Manifest
    directory: Path

    @classmethod
    def open(cls, path: Path) -> Backup:
        """Open the backup at *path*; raise :class:`ValidationError` (one line) if it is not a sound backup."""
        if not path.is_file():
            msg = f"no backup at {path}" + (" (it is a directory)" if path.is_dir() else "")
            raise ValidationError(msg)
        directory = Path(tempfile.mkdtemp(prefix="datatrust-restore-"))  # 0700: the vault is unpacked here
        try:
            manifest = _unpack(path, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return cls(path, manifest, directory)

    def close(self) -> None:
        """Delete the unpacked members."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def ledger_path(self) -> Path:
        """The unpacked ledger export."""
        return self.directory / LEDGER_MEMBER

    def file(self, name: str) -> bytes:
        """A data-directory file held in the backup (see :attr:`Manifest.files`)."""
        return (self.directory / "files" / name).read_bytes()

    def table_rows(self, name: str) -> Iterator[tuple[list[str], list[list[Any]]]]:
        """The table's column names with its rows, a batch at a time (binary values decoded)."""
        with (self.directory / "tables" / f"{name}.jsonl").open("rb") as handle:
            header = json.loads(handle.readline())
            columns: list[str] = header["columns"]
            binary_names = set(header["binary"])
            binary = [i for i, c in enumerate(columns) if c in binary_names]
            batch: list[list[Any]] = []
            for line in handle:
                row = json.loads(line)
                for i in binary:
                    if row[i] is not None:
                        row[i] = base64.b64decode(row[i])
                batch.append(row)
                if len(batch) == _ROW_BATCH:
                    yield columns, batch
                    batch = []
            yield columns, batch


def _unpack(path: Path, directory: Path) -> Manifest:
    not_backup = f"{path} is not a datatrust backup"
    try:
        tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        msg = f"{not_backup} (not a tar archive)"
        raise ValidationError(msg) from exc
    try:
        with tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_MEMBER or not first.isfile():
                msg = f"{not_backup} (no {MANIFEST_MEMBER} at its start)"
                raise ValidationError(msg)
            manifest_file = tar.extractfile(first)
            assert manifest_file is not None  # noqa: S101 - a regular file always has content
            try:
                manifest = Manifest.from_json(json.loads(manifest_file.read()))
            except ValueError as exc:
                msg = f"{not_backup}: {exc}"
                raise ValidationError(msg) from exc
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                _unpack_member(tar, info, manifest, directory)
                seen.add(info.name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        msg = f"the backup {path} is damaged ({reason})"
        raise ValidationError(msg) from exc
    missing = sorted(set(manifest.members) - seen)
    if missing:
        msg = f"the backup {path} is incomplete: {', '.join(missing)} missing"
        raise ValidationError(msg)
    described = [f"files/{name}" for name in manifest.files] + [f"tables/{name}.jsonl" for name in manifest.tables]
    unheld = sorted({*described, LEDGER_MEMBER} - set(manifest.members))
    if unheld:  # every file and table the manifest names is a member checked above (names, hashes)
        msg = f"{not_backup}: its manifest names {', '.join(unheld)}, which it does not hold"
        raise ValidationError(msg)
    return manifest


def _unpack_member(tar: tarfile.TarFile, info: tarfile.TarInfo, manifest: Manifest, directory: Path) -> None:
    """Copy one member out by its manifest name only (no links, no paths outside *directory*)."""
    expected = manifest.members.get(info.name)
    if expected is None or not info.isfile() or not _MEMBER_NAME.match(info.name) or ".." in info.name:
        msg = f"the backup holds an unexpected member {info.name!r}"
        raise ValidationError(msg)
    source = tar.extractfile(info)
    assert source is not None  # noqa: S101 - isfile() above
    target = directory / info.name
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with target.open("wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected:
        msg = f"the backup is damaged or was altered: {info.name} does not match the SHA-256 in its manifest"
        raise ValidationError(msg)


# -- verifying --------------------------------------------------------------------------------


@dataclass
class VerifiedLedger:
    """A backup's ledger after full verification: size, root, checkpoints, and roots at sizes asked for."""

    entries: int
    root: bytes
    checkpoints: dict[int, tuple[str, bytes]]  # size -> (signed note, root)
    anchors: list[Verifier]
    roots: dict[int, bytes] = field(default_factory=dict)
    uncovered: int = 0


def read_ledger_lines(path: Path) -> Iterator[list[bytes]]:
    """The export's lines after the header, a few MiB at a time."""
    with path.open("rb") as handle:
        handle.readline()
        rest = b""
        while block := handle.read(1 << 22):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            yield lines
        if rest:
            yield [rest]


def check_ledger_header(path: Path, origin: str) -> None:
    """The export's header line must name the export format and the backup's origin."""
    with path.open("rb") as handle:
        line = handle.readline()
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != "datatrust-ledger-export/1":
        msg = "the backup's ledger does not start with a ledger export header"
        raise LedgerIntegrityError(msg)
    if header.get("origin") != origin:
        msg = f"the backup's ledger is of origin {header.get('origin')!r}, not {origin!r} as its manifest says"
        raise LedgerIntegrityError(msg)


class LedgerFeed:
    """Feeds a backup's ledger lines to a :class:`StreamVerifier`, cutting runs at the sizes whose root is wanted."""

    def __init__(
        self,
        verifier: StreamVerifier,
        wanted: Iterable[int] = (),
        *,
        on_entries: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.on_entries = on_entries  # called with each run of entries once it has verified
        self.wanted = sorted({s for s in wanted if s > 0})
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.checkpoints: dict[int, tuple[str, bytes]] = {}

    def entries(self, run: list[bytes]) -> None:
        """Check a run of entry lines, in order."""
        verifier, done = self.verifier, 0
        while done < len(run):
            count = verifier.report.entries
            while self.wanted and self.wanted[0] <= count:
                self.wanted.pop(0)
            take = len(run) - done if not self.wanted else min(len(run) - done, self.wanted[0] - count)
            part = run[done : done + take]
            verifier.add_entries(part)
            if self.on_entries is not None and part:
                self.on_entries(part)
            done += take
            if self.wanted and verifier.report.entries == self.wanted[0]:
                self.roots[self.wanted.pop(0)] = verifier.tree.root()

    def checkpoint(self, line: bytes) -> None:
        """Check a checkpoint line against the entries so far."""
        note = json.loads(line)["note"]
        checkpoint: Checkpoint = self.verifier.add_checkpoint(note)
        self.checkpoints[checkpoint.size] = (note, checkpoint.root)

    def lines(self, lines: list[bytes]) -> None:
        """Check a block of lines: runs of entries, and checkpoints after the entries they cover."""
        run: list[bytes] = []
        for line in lines:
            if line.startswith(_ENTRY_START):
                run.append(line)
                continue
            self.entries(run)
            run = []
            if not line.startswith(_CHECKPOINT_START):
                msg = "a line is neither an entry nor a checkpoint"
                raise LedgerIntegrityError(msg, seq=self.verifier.report.entries)
            self.checkpoint(line)
        self.entries(run)


def verify_backup(
    backup: Backup, anchors: list[Verifier], *, sizes: Iterable[int] = (), progress: Progress = _noop
) -> VerifiedLedger:
    """Verify the backup's ledger fully (hashes, chain, checkpoint signatures) with the trust's *anchors*.

    Also returns the tree's root at each of *sizes* (those the ledger reaches), so that a
    restore can compare it with checkpoints the trust has published. Raises
    :class:`LedgerIntegrityError`, naming the first bad entry, if anything does not verify.
    """
    manifest = backup.manifest
    try:
        check_ledger_header(backup.ledger_path, manifest.origin)
        feed = LedgerFeed(StreamVerifier(anchors, origin=manifest.origin), sizes)
        for lines in read_ledger_lines(backup.ledger_path):
            feed.lines(lines)
            progress(feed.verifier.report.entries, manifest.entries)
        report = feed.verifier.finish()
    except LedgerIntegrityError as exc:
        msg = f"the backup's ledger does not verify: {exc.detail}"
        raise LedgerIntegrityError(msg, seq=exc.seq) from exc
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
        msg = f"the backup's ledger does not verify: {detail}"
        raise LedgerIntegrityError(msg) from exc
    if report.entries != manifest.entries or report.root != manifest.root:
        msg = (
            f"the backup's manifest says {manifest.entries} entries with root {manifest.root.hex()}, "
            f"but its ledger holds {report.entries} entries with root {report.root.hex()}"
        )
        raise LedgerIntegrityError(msg)
    return VerifiedLedger(
        report.entries, report.root, feed.checkpoints, list(anchors), feed.roots, uncovered=report.uncovered
    )
