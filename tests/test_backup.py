"""``datatrust backup`` and ``datatrust restore``, driven through the command line as an operator would.

Each storage test runs on SQLite and PostgreSQL (the ``db_url`` fixture). The trust's
database is named by ``DATATRUST_DATABASE_URL`` exactly as in production; commands run
in process through typer's runner (the executable's start-up is slow), except the error
cases, which also run once through the real ``datatrust`` executable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from typer.testing import CliRunner

from api.cli import app
from api.instance import Instance, initialise
from consent import service as consent_service
from tests.conftest import drop_pg_database, fresh_pg_database
from tests.consent.support import ORG, record
from tests.factories import make_person
from trust.webhooks import create_subscription

DATATRUST = str(Path(sys.executable).parent / "datatrust")
NOT_RESTORED = {"auth_sessions", "auth_sign_in_links"}  # see trust/backup.py: never in a backup


def clock() -> datetime:
    """The real clock (restores compare what the database published, not times)."""
    return datetime.now(UTC)


def run(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    """Run ``datatrust ARGS`` in process with the trust's database named in the environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DATATRUST_")}
    env["DATATRUST_DATABASE_URL"] = db_url
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["datatrust", *args], result.exit_code, result.stdout, result.stderr)


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Assert the command failed with *code* and one line on standard error; return that line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def other_db_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same engine as ``db_url`` (a new machine to restore onto)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other' / 'datatrust.db'}"
        return
    name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    yield url
    drop_pg_database(name)


def wipe(db_url: str) -> None:
    """Lose the database entirely: the SQLite file, or every table of the PostgreSQL database."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def dump(db_url: str) -> dict[str, set[tuple[object, ...]]]:
    """Every row of every table (bytes normalised), to compare two databases or one before and after."""
    engine = create_engine(db_url)
    tables: dict[str, set[tuple[object, ...]]] = {}
    with engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            table = Table(name, MetaData(), autoload_with=conn)
            tables[name] = {
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in conn.execute(select(table))
            }
    engine.dispose()
    return tables


def open_trust(data_dir: Path, db_url: str) -> Instance:
    """Open the trust as a server would."""
    return Instance.open(data_dir, clock=clock, database_url=db_url)


def populate(instance: Instance) -> dict[str, list[str]]:
    """People, consents (with personal data in the vault), a withdrawal with its webhook, an erasure."""
    make_person(instance, username="trustee_one")
    create_subscription(
        instance.db,
        organisation=ORG,
        url="https://partner.example/hooks",
        event_types=["consent.withdrawn"],
        scheme="v1",
        actor="trust",
        now=clock(),
    )
    kept = [record(instance, person={"name": f"Person {i}", "contact": f"p{i}@example.org"}) for i in range(3)]
    erased = record(instance, person={"name": "Gone Person", "contact": "gone@example.org"})
    consent_service.withdraw_consent(
        instance.ledger,
        consent=kept[0].consent,
        by="subject",
        requester=kept[0].subject,
        actor=kept[0].subject,
        reason="Changed my mind.",
        now=clock(),
    )
    consent_service.erase_subject(
        instance.ledger, instance.vault, subject=erased.subject, by="subject", actor=erased.subject, now=clock()
    )
    instance.ledger.sign_checkpoint()
    return {"kept": [c.subject for c in kept], "erased": [erased.subject]}


def make_trust(data_dir: Path, db_url: str) -> dict[str, list[str]]:
    """Create and :func:`populate` a trust; return its subjects."""
    instance = initialise(data_dir, name="Backup Trust", mission="Testing.", clock=clock, database_url=db_url)
    try:
        return populate(instance)
    finally:
        instance.close()


def read_vault(data_dir: Path, db_url: str, subject: str) -> dict[str, str] | None:
    """A subject's personal data as the trust decrypts it, or None once erased."""
    instance = open_trust(data_dir, db_url)
    try:
        with instance.db.engine.connect() as conn:
            if not instance.vault.has_key(conn, subject):
                return None
            return instance.vault.read(conn, subject)
    finally:
        instance.close()


def assert_verifies(data_dir: Path, db_url: str) -> str:
    """``ledger verify`` and ``ledger replay`` both pass; return the verify line."""
    verified = run("ledger", "verify", "--data-dir", str(data_dir), db_url=db_url)
    assert verified.returncode == 0, verified.stderr
    replayed = run("ledger", "replay", "--data-dir", str(data_dir), db_url=db_url)
    assert replayed.returncode == 0, replayed.stderr
    assert "projection tables match" in replayed.stdout
    return verified.stdout


def rewrite(source: Path, target: Path, edit: Callable[[str, bytes], bytes], *, fix_manifest: bool) -> None:
    """Copy a backup, changing members with *edit*; with *fix_manifest*, recompute their hashes as a forger would."""
    with tarfile.open(source, "r:gz") as tar:
        members = {info.name: tar.extractfile(info).read() for info in tar}  # type: ignore[union-attr]
    members = {name: edit(name, content) for name, content in members.items()}
    if fix_manifest:
        manifest = json.loads(members["manifest.json"])
        for name in manifest["members"]:
            manifest["members"][name] = hashlib.sha256(members[name]).hexdigest()
        members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(target, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_backup_wipe_restore_round_trip(data_dir: Path, db_url: str, tmp_path: Path) -> None:
    """After backup and the loss of the database, restore brings back every row; the ledger verifies and replays."""
    subjects = make_trust(data_dir, db_url)
    before = dump(db_url)
    file = tmp_path / "trust.backup"

    made = run("backup", str(file), "--data-dir", str(data_dir), db_url=db_url)

    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Backed up ")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    with tarfile.open(file) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert not any(name.endswith(".key") for name in names), names  # no private key without --include-keys
    assert not {f"tables/{t}.jsonl" for t in NOT_RESTORED} & set(names)

    wipe(db_url)
    restored = run("restore", str(file), "--data-dir", str(data_dir), db_url=db_url)

    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("Restored ")
    after = dump(db_url)
    for name in NOT_RESTORED:
        before.pop(name)
        assert after.pop(name) == set()
    assert after == before  # entries, Merkle nodes, checkpoints, projections, vault, webhooks: all as they were
    assert "OK: " in assert_verifies(data_dir, db_url)
    for i, subject in enumerate(subjects["kept"]):
        assert read_vault(data_dir, db_url, subject) == {"name": f"Person {i}", "contact": f"p{i}@example.org"}
    assert read_vault(data_dir, db_url, subjects["erased"][0]) is None


def test_backup_while_the_trust_keeps_appending_is_a_consistent_snapshot(
    data_dir: Path, db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """A backup taken while another thread records consents restores to a ledger that verifies, vault and all."""
    instance = initialise(data_dir, name="Busy Trust", mission="Testing.", clock=clock, database_url=db_url)
    record(instance)  # the vocabulary is adopted once, before the busy part
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_recording() -> None:
        try:
            while not stop.is_set():
                record(instance, person={"name": "Busy Person", "contact": "busy@example.org"})
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    writer = threading.Thread(target=keep_recording)
    writer.start()
    file = tmp_path / "busy.backup"
    try:
        made = run("backup", str(file), "--data-dir", str(data_dir), db_url=db_url)
        assert made.returncode == 0, made.stderr
        with tarfile.open(file) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        entries = manifest["ledger"]["entries"]
        for _ in range(10_000):  # wait (not a timing assertion) until the writer has gone on past the snapshot
            if instance.ledger.size() > entries + 2 or failures:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    try:
        assert not failures, failures
        assert instance.ledger.size() > entries + 2
        live_root = instance.ledger.root(entries)
    finally:
        instance.close()

    target = tmp_path / "new-machine"
    shutil.copytree(data_dir / "keys", target / "keys")  # the operator brings the keys
    restored = run("restore", str(file), "--data-dir", str(target), db_url=other_db_url)

    assert restored.returncode == 0, restored.stderr
    assert f"OK: {entries} entries" in assert_verifies(target, other_db_url)
    assert bytes.fromhex(manifest["ledger"]["root"]) == live_root  # a prefix of the live ledger
    granted = open_trust(target, other_db_url)
    try:
        with granted.db.engine.connect() as conn:
            grants = conn.exec_driver_sql("SELECT DISTINCT subject FROM consent_grants").scalars().all()
            assert len(grants) >= 1
            for subject in grants:  # each entry's vault rows are in the same snapshot as the entry
                assert granted.vault.read(conn, str(subject))["name"] in {"Amira Khan", "Busy Person"}
    finally:
        granted.close()


def _tamper_entry(name: str, content: bytes) -> bytes:
    if name != "ledger.jsonl":
        return content
    assert b"Testing." in content
    return content.replace(b"Testing.", b"Tasting.", 1)


def _tamper_checkpoint_row(name: str, content: bytes) -> bytes:
    if name != "tables/ledger_checkpoints.jsonl":
        return content
    header, first, *rest = content.split(b"\n")
    row = json.loads(first)  # size, root, note, signed_at
    row[2] = row[2].replace("\n", "\n\n", 1)  # an altered note no longer matches the verified checkpoint
    return b"\n".join([header, json.dumps(row).encode(), *rest])


def _tamper_manifest_size(name: str, content: bytes) -> bytes:
    if name != "manifest.json":
        return content
    manifest = json.loads(content)
    manifest["ledger"]["entries"] += 5
    return json.dumps(manifest).encode()


def _tamper_revision(name: str, content: bytes) -> bytes:
    if name != "manifest.json":
        return content
    manifest = json.loads(content)
    manifest["schema_revision"] = ["0001_ledger"]
    return json.dumps(manifest).encode()


TAMPERED: list[tuple[str, Callable[[str, bytes], bytes], bool, int, str]] = [
    # name, edit, recompute the manifest's hashes (as a forger would), exit status, start of the one-line error
    # an entry altered, its hash in the manifest recomputed: only the ledger's own verification catches it
    ("entry", _tamper_entry, True, 1, "FAILED: the backup's ledger does not verify: entry 1 does not chain to entry 0"),
    # the same change without touching the manifest: the member's SHA-256 no longer matches
    ("checksum", _tamper_entry, False, 2, "error: the backup is damaged or was altered: ledger.jsonl does not match"),
    # a checkpoint row altered: found while loading, inside the transaction that is then rolled back
    ("checkpoint row", _tamper_checkpoint_row, True, 1, "FAILED: the backup's checkpoint table does not match the"),
    # the manifest claims more entries than the ledger holds
    ("manifest", _tamper_manifest_size, False, 1, "FAILED: the backup's manifest says"),
    # a backup of another schema revision
    ("revision", _tamper_revision, False, 2, "error: the backup was written at database schema revision 0001_ledger"),
]


def test_a_tampered_backup_is_refused_and_changes_nothing(data_dir: Path, db_url: str, tmp_path: Path) -> None:
    """A backup that does not verify is refused in one line, even with --force; the trust is left exactly as it was.

    One trust and one good backup serve every case of :data:`TAMPERED` (setting up a trust is the slow part).
    """
    make_trust(data_dir, db_url)
    good = tmp_path / "good.backup"
    assert run("backup", str(good), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    instance = open_trust(data_dir, db_url)  # the trust changes after the backup (off the ledger: nothing published)
    create_subscription(
        instance.db, organisation=ORG, url="https://later.example/hooks", event_types=["subject.erased"],
        actor="trust", now=clock(),
    )  # fmt: skip
    instance.close()
    before = dump(db_url)

    for name, edit, fix_manifest, code, message in TAMPERED:
        bad = tmp_path / f"{name}.backup"
        rewrite(good, bad, edit, fix_manifest=fix_manifest)

        refused = run("restore", str(bad), "--data-dir", str(data_dir), db_url=db_url)

        assert one_line_error(refused, code).startswith(message), name
        assert dump(db_url) == before, name
        forced = run("restore", str(bad), "--data-dir", str(data_dir), "--force", db_url=db_url)
        assert forced.returncode == code, name  # --force overrides a rollback, never a backup that does not verify
        assert dump(db_url) == before, name


def test_an_older_backup_is_refused_then_restored_with_force_and_a_warning(
    data_dir: Path, db_url: str, tmp_path: Path
) -> None:
    """A backup behind a published checkpoint is refused; --force restores it, warns of the rollback, keeps erasures."""
    subjects = make_trust(data_dir, db_url)
    file = tmp_path / "old.backup"
    assert run("backup", str(file), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    instance = open_trust(data_dir, db_url)
    record(instance)
    later = subjects["kept"][1]
    consent_service.erase_subject(
        instance.ledger, instance.vault, subject=later, by="subject", actor=later, now=clock()
    )
    published = instance.ledger.open_checkpoint(instance.ledger.sign_checkpoint())
    instance.close()
    before = dump(db_url)

    refused = run("restore", str(file), "--data-dir", str(data_dir), db_url=db_url)

    line = one_line_error(refused)
    assert line.startswith("error: refusing to restore: the trust's database (signed ")
    assert f"published a checkpoint of {published.size} entries but the backup holds only" in line
    assert line.endswith("pass --force to restore anyway")
    assert dump(db_url) == before

    forced = run("restore", str(file), "--data-dir", str(data_dir), "--force", db_url=db_url)

    assert forced.returncode == 0, forced.stderr
    assert "WARNING: restoring anyway (--force)" in forced.stderr
    assert "will see the ledger roll back" in forced.stderr
    assert "subjects erased after this backup stay erased (their personal data was not restored)" in forced.stderr
    assert later in forced.stderr
    assert f"OK: {published.size - 2} entries" in assert_verifies(data_dir, db_url)
    assert read_vault(data_dir, db_url, later) is None  # the erasure outlives the rollback
    assert read_vault(data_dir, db_url, subjects["kept"][2]) == {"name": "Person 2", "contact": "p2@example.org"}


def test_a_backup_that_forks_from_the_published_ledger_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """A backup as long as the ledger but with other entries below a published checkpoint is refused as a fork."""
    db_url = f"sqlite:///{tmp_path / 'db' / 'datatrust.db'}"
    make_trust(data_dir, db_url)
    first, second = tmp_path / "first.backup", tmp_path / "second.backup"
    assert run("backup", str(first), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    instance = open_trust(data_dir, db_url)
    for _ in range(3):
        record(instance)
    instance.close()
    assert run("backup", str(second), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    rolled_back = run("restore", str(first), "--data-dir", str(data_dir), "--force", db_url=db_url)
    assert rolled_back.returncode == 0, rolled_back.stderr
    instance = open_trust(data_dir, db_url)
    record(instance, person={"name": "Someone Else", "contact": "else@example.org"})  # a different history
    instance.ledger.sign_checkpoint()
    instance.close()

    refused = run("restore", str(second), "--data-dir", str(data_dir), db_url=db_url)

    line = one_line_error(refused)
    assert "the backup's ledger does not extend the checkpoint of" in line
    assert "(a fork)" in line


def test_a_kept_checkpoint_guards_a_restore_onto_an_empty_database(data_dir: Path, tmp_path: Path) -> None:
    """With the database lost, a checkpoint someone kept (--checkpoint) still stops a silent rollback."""
    db_url = f"sqlite:///{tmp_path / 'db' / 'datatrust.db'}"
    make_trust(data_dir, db_url)
    file = tmp_path / "old.backup"
    assert run("backup", str(file), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    instance = open_trust(data_dir, db_url)
    record(instance)
    instance.close()
    kept = tmp_path / "kept.txt"
    kept.write_text(run("ledger", "checkpoint", "--data-dir", str(data_dir), db_url=db_url).stdout)
    wipe(db_url)

    refused = run("restore", str(file), "--data-dir", str(data_dir), "--checkpoint", str(kept), db_url=db_url)

    assert f"the checkpoint in {kept} published a checkpoint of" in one_line_error(refused)
    accepted = run("restore", str(file), "--data-dir", str(data_dir), db_url=db_url)  # without it: nothing to go by
    assert accepted.returncode == 0, accepted.stderr


def test_keys_come_back_only_from_a_backup_made_with_include_keys(
    data_dir: Path, db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """Restoring onto a new machine needs the keys: refused without them; --include-keys brings them (mode 0600)."""
    subjects = make_trust(data_dir, db_url)
    plain, with_keys = tmp_path / "plain.backup", tmp_path / "keys.backup"
    assert run("backup", str(plain), "--data-dir", str(data_dir), db_url=db_url).returncode == 0
    made = run("backup", str(with_keys), "--data-dir", str(data_dir), "--include-keys", db_url=db_url)
    assert made.returncode == 0, made.stderr
    assert "holds the trust's private keys" in made.stdout
    target = tmp_path / "new-machine"

    refused = run("restore", str(plain), "--data-dir", str(target), db_url=other_db_url)

    line = one_line_error(refused)
    assert "is missing log.key and vault.key and the backup holds no private keys" in line
    assert not target.exists()

    restored = run("restore", str(with_keys), "--data-dir", str(target), db_url=other_db_url)

    assert restored.returncode == 0, restored.stderr
    for name in ("log.key", "vault.key", "token.key"):
        assert (target / "keys" / name).read_bytes() == (data_dir / "keys" / name).read_bytes()
        assert stat.S_IMODE((target / "keys" / name).stat().st_mode) == 0o600
    assert (target / "datatrust.toml").read_text() == (data_dir / "datatrust.toml").read_text()
    assert_verifies(target, other_db_url)
    assert read_vault(target, other_db_url, subjects["kept"][1]) == {"name": "Person 1", "contact": "p1@example.org"}


def test_a_backup_of_another_trust_is_refused(tmp_path: Path) -> None:
    """A backup is restored only into its own trust's data directory (or an empty one)."""
    url_a, url_b = (f"sqlite:///{tmp_path / name / 'datatrust.db'}" for name in ("db-a", "db-b"))
    initialise(tmp_path / "a", name="Trust A", mission="A.", clock=clock, database_url=url_a).close()
    initialise(tmp_path / "b", name="Trust B", mission="B.", clock=clock, database_url=url_b).close()
    file = tmp_path / "a.backup"
    assert run("backup", str(file), "--data-dir", str(tmp_path / "a"), db_url=url_a).returncode == 0
    before = dump(url_b)

    refused = run("restore", str(file), "--data-dir", str(tmp_path / "b"), db_url=url_b)

    assert "holds the trust with log origin 'datatrust.local/trust-b'" in one_line_error(refused)
    assert dump(url_b) == before


@pytest.mark.postgresql
def test_a_sqlite_backup_restores_into_postgresql(
    data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The format is the same for both engines: a trust moves from SQLite to PostgreSQL by backup and restore."""
    sqlite = f"sqlite:///{tmp_path / 'db' / 'datatrust.db'}"
    subjects = make_trust(data_dir, sqlite)
    file = tmp_path / "move.backup"
    assert run("backup", str(file), "--data-dir", str(data_dir), db_url=sqlite).returncode == 0
    name, postgres = fresh_pg_database(request.getfixturevalue("pg_template"))
    try:
        restored = run("restore", str(file), "--data-dir", str(data_dir), db_url=postgres)
        assert restored.returncode == 0, restored.stderr
        before, after = dump(sqlite), dump(postgres)
        for table in NOT_RESTORED:
            before.pop(table)
            after.pop(table)
        assert {t: len(rows) for t, rows in after.items()} == {t: len(rows) for t, rows in before.items()}
        assert after["ledger_entries"] == before["ledger_entries"]
        assert_verifies(data_dir, postgres)
        assert read_vault(data_dir, postgres, subjects["kept"][0]) == {"name": "Person 0", "contact": "p0@example.org"}
    finally:
        drop_pg_database(name)


def _not_a_tar(tmp: Path, _back_up: object) -> Path:
    (tmp / "notes.txt").write_text("not a backup\n")
    return tmp / "notes.txt"


def _tar_without_manifest(tmp: Path, _back_up: object) -> Path:
    with tarfile.open(tmp / "other.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return tmp / "other.tar.gz"


def _truncated(tmp: Path, back_up: Callable[[Path], None]) -> Path:
    back_up(tmp / "whole.backup")
    data = (tmp / "whole.backup").read_bytes()
    (tmp / "cut.backup").write_bytes(data[: len(data) * 2 // 3])
    return tmp / "cut.backup"


@pytest.mark.parametrize(
    ("command", "make", "message", "via_executable"),
    [
        # the executable's start-up costs seconds: two cases go through it, the rest run in process
        ("restore", lambda tmp, _: tmp / "missing.backup", "error: no backup at {path}", True),
        ("restore", lambda tmp, _: tmp, "error: no backup at {path} (it is a directory)", False),
        ("restore", _not_a_tar, "error: {path} is not a datatrust backup (not a tar archive)", True),
        ("restore", _tar_without_manifest, "error: {path} is not a datatrust backup (no manifest.json at its", False),
        ("restore", _truncated, "error: the backup {path} is damaged (", False),
        ("backup", lambda tmp, _: tmp / "no" / "dir.backup", "error: cannot write the backup to {path}: there", False),
        ("backup", lambda tmp, _: tmp, "error: cannot write the backup to {path}: it is a directory", False),
    ],
)
def test_bad_paths_and_files_that_are_not_backups_fail_in_one_line(
    tmp_path: Path,
    command: str,
    make: Callable[[Path, Callable[[Path], None]], Path],
    message: str,
    via_executable: bool,
) -> None:
    """A wrong path, or a file that is not a backup, is answered with one line and exit status 2."""
    data_dir = tmp_path / "trust"
    db_url = f"sqlite:///{tmp_path / 'db' / 'datatrust.db'}"
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def back_up(file: Path) -> None:
        initialise(data_dir, name="Error Trust", mission="Testing.", clock=clock, database_url=db_url).close()
        assert run("backup", str(file), "--data-dir", str(data_dir), db_url=db_url).returncode == 0

    path = make(scratch, back_up)
    args = [command, str(path), "--data-dir", str(data_dir)]
    if via_executable:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATATRUST_")}
        env["DATATRUST_DATABASE_URL"] = db_url
        result = subprocess.run([DATATRUST, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    else:
        result = run(*args, db_url=db_url)

    assert one_line_error(result).startswith(message.format(path=path))
    assert not data_dir.exists() or make is _truncated  # nothing was created for a command that failed
