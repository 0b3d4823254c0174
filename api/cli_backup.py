"""``datatrust backup FILE`` and ``datatrust restore FILE``: a snapshot while serving, and a restore that checks first.

* ``backup FILE [--include-keys]`` writes one file (mode 0600) holding a consistent snapshot
  of the trust while it keeps serving: the ledger, every table the ledger cannot rebuild,
  ``datatrust.toml`` and the public keys; the private keys only with ``--include-keys``.
* ``restore FILE [--force] [--checkpoint KEPT]`` verifies the backup's ledger with the trust's
  verifier keys, refuses a backup that would roll back a checkpoint the trust has published
  (``--force`` restores anyway, with a warning), then replaces the database all at once.
  Missing ``datatrust.toml`` and keys are taken from the backup; files already in the data
  directory are never overwritten.

The format, what a backup holds and why, and how a restore swaps the database in, are in
:mod:`trust.backup` and :mod:`trust.restore`; docs/operations.md is the operator's guide.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from api.cli_common import DEFAULT_DATA_DIR, DataDir, clean_errors, err, opened, out, progress_bar
from api.instance import CONFIG_NAME
from ledger.checkpoint import open_checkpoint
from ledger.db import Database
from ledger.errors import ValidationError
from ledger.keys import Verifier
from trust.backup import Backup, check_destination, verify_backup, write_backup
from trust.restore import Published, check_rollback, inspect_target, restore_backup

VERIFIERS_FILE = "keys/verifiers.txt"
PUBLIC_FILES = (CONFIG_NAME, VERIFIERS_FILE)
REQUIRED_KEYS = ("keys/log.key", "keys/vault.key")  # token.key and webhook.key are made again if missing


@clean_errors
def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (one file, mode 0600).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    include_keys: Annotated[
        bool,
        typer.Option("--include-keys", help="Also put the private keys in the backup (keep it as safe as the keys)."),
    ] = False,
) -> None:
    """Back up the trust to FILE while it keeps serving: a consistent snapshot, verifiable on its own."""
    check_destination(file)
    with opened(data_dir) as instance:
        instance.ledger.sign_checkpoint()  # cover the newest entries, as `ledger export` does
        files = {name: (data_dir / name).read_bytes() for name in PUBLIC_FILES if (data_dir / name).is_file()}
        secret = {f"keys/{p.name}": p.read_bytes() for p in sorted((data_dir / "keys").glob("*.key"))}
        with progress_bar("Backing up") as update:
            manifest = write_backup(
                instance.db,
                file,
                origin=instance.origin,
                derived_tables=instance.ledger.projectors.tables,
                files=files,
                secret_files=secret if include_keys else {},
                now=instance.clock(),
                progress=update,
            )
    rows = sum(manifest.tables.values())
    out.print(
        f"Backed up {manifest.entries} entries (root {manifest.root.hex()}) and {rows} rows "
        f"of {len(manifest.tables)} tables to {file}",
        highlight=False,
    )
    if include_keys:
        out.print("The backup holds the trust's private keys: keep it as safe as the keys themselves.")
    else:
        out.print(
            f"The private keys are not in the backup: keep {data_dir / 'keys'} safe on its own (a restore needs them).",
            highlight=False,
        )


@clean_errors
def restore(
    file: Annotated[Path, typer.Argument(help="A backup written by `datatrust backup`.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore even if the trust has published a newer checkpoint (a rollback)."),
    ] = False,
    kept: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            metavar="FILE",
            help="A signed checkpoint the trust handed out (e.g. from a receipt): the backup must extend it.",
        ),
    ] = None,
) -> None:
    """Restore the trust in the data directory from FILE; verifies it first and changes nothing if it fails."""
    with Backup.open(file) as archive:
        manifest = archive.manifest
        _check_data_dir(data_dir, archive)
        anchors = _anchors(data_dir, archive)
        db = Database.for_data_dir(data_dir)
        try:
            state = inspect_target(db)
        finally:
            db.dispose()
        published = [state.published] if state.published is not None else []
        for path in kept or []:
            checkpoint = open_checkpoint(path.read_text(), anchors, origin=manifest.origin)
            published.append(Published(checkpoint.size, checkpoint.root, f"the checkpoint in {path}"))
        with progress_bar("Verifying") as update:
            verified = verify_backup(archive, anchors, sizes=[p.size for p in published], progress=update)
        findings = check_rollback(verified, published, force=force)
        for finding in findings:
            err.print(
                f"[bold yellow]WARNING[/]: restoring anyway (--force): {finding}. Everyone holding a receipt or "
                "checkpoint from after this backup will see the ledger roll back: tell them why.",
                highlight=False,
            )
        if state.entries > verified.entries and not findings:
            err.print(
                f"[bold yellow]WARNING[/]: {state.entries - verified.entries} entries recorded after this backup "
                "(never published in a checkpoint) are discarded.",
                highlight=False,
            )
        created = _place_files(data_dir, archive)
        try:
            with opened(data_dir) as instance, progress_bar("Restoring") as update:
                report = restore_backup(
                    archive,
                    verified,
                    instance.db,
                    registry=instance.ledger.projectors,
                    vault=instance.vault,
                    erased=state.erased,
                    progress=update,
                )
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
    latest = max(verified.checkpoints, default=0)
    out.print(
        f"Restored {report.entries} entries (root {report.root.hex()}, latest checkpoint of {latest} entries) "
        f"and {sum(report.rows.values())} rows into {data_dir}; rebuilt {len(report.projections)} projection "
        "tables from the ledger. Sign-in sessions are not kept in backups: everyone signs in again.",
        highlight=False,
    )
    if report.erased_again:
        err.print(
            f"[bold yellow]WARNING[/]: {len(report.erased_again)} subjects erased after this backup stay erased "
            f"(their personal data was not restored), but the restored ledger does not record it: erase them "
            f"again: {', '.join(report.erased_again)}",
            highlight=False,
        )


def _check_data_dir(data_dir: Path, archive: Backup) -> None:
    """The data directory must hold this trust, or none; and the keys a restore needs must be somewhere."""
    manifest = archive.manifest
    config = data_dir / CONFIG_NAME
    if config.is_file():
        origin = tomllib.loads(config.read_text()).get("trust", {}).get("origin")
        if origin != manifest.origin:
            msg = (
                f"{data_dir} holds the trust with log origin {origin!r} but the backup is of {manifest.origin!r}: "
                "restore it into that trust's data directory or an empty one"
            )
            raise ValidationError(msg)
    missing = [name for name in REQUIRED_KEYS if not (data_dir / name).is_file() and name not in manifest.files]
    if missing:
        names = " and ".join(Path(name).name for name in missing)
        msg = (
            f"{data_dir / 'keys'} is missing {names} and the backup holds no private keys: put the trust's keys "
            "there from where you keep them, or restore a backup made with --include-keys"
        )
        raise ValidationError(msg)


def _anchors(data_dir: Path, archive: Backup) -> list[Verifier]:
    """The trust's verifier keys: the data directory's, or (restoring into an empty one) the backup's own."""
    path = data_dir / VERIFIERS_FILE
    if path.is_file():
        text = path.read_text()
    elif VERIFIERS_FILE in archive.manifest.files:
        text = archive.file(VERIFIERS_FILE).decode()
        err.print(
            f"note: {path} does not exist: verifying the backup with the public keys it holds itself",
            highlight=False,
        )
    else:
        msg = f"there is no {path} and the backup holds no verifier keys: cannot verify it"
        raise ValidationError(msg)
    return [Verifier.from_text(line) for line in text.splitlines() if line.strip()]


def _place_files(data_dir: Path, archive: Backup) -> list[Path]:
    """Write the backup's data-directory files that are missing (never overwrite); return the files written."""
    created: list[Path] = []
    for name, is_secret in sorted(archive.manifest.files.items()):
        target = data_dir / name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if is_secret else 0o644)
        created.append(target)
        with os.fdopen(fd, "wb") as handle:
            handle.write(archive.file(name))
    return created


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the ``datatrust`` command."""
    app.command("backup")(backup)
    app.command("restore")(restore)
