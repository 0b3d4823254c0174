"""The ``datatrust`` command: a thin front like the HTTP routes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from api.cli_auth import bootstrap_admin
from api.cli_auth import register as register_auth_commands
from api.cli_backup import register as register_backup_commands
from api.cli_common import DEFAULT_DATA_DIR, DataDir, clean_errors, err, opened, out, progress_bar
from api.cli_consent import register as register_consent_commands
from api.cli_governance import read_template
from api.cli_governance import register as register_governance_commands
from api.cli_webhooks import webhooks_app
from api.instance import Instance, initialise, rotate_log_key
from ledger.checkpoint import verify_extends
from ledger.db import Database, sqlite_url
from ledger.export import export_ledger, verify_export, verify_live
from ledger.keys import Verifier
from ledger.merkle import verify_inclusion
from ledger.projection import diff_tables, rebuild
from migrations import upgrade

app = typer.Typer(
    help="datatrust: a data trust's governance and consent ledger.", no_args_is_help=True, add_completion=False
)
ledger_app = typer.Typer(help="Inspect, export and verify the ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the trust's signing keys.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
register_auth_commands(app)
register_backup_commands(app)
register_consent_commands(app)
register_governance_commands(app)


DEFAULT_MISSION = "Share insight, not people."


@app.command()
@clean_errors
def init(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    name: Annotated[str, typer.Option(help="The trust's name.")] = "My Data Trust",
    mission: Annotated[str, typer.Option(help="One sentence: why this trust exists.")] = DEFAULT_MISSION,
    template: Annotated[
        Path | None,
        typer.Option(help="Start from another trust's exported governance config.", exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Create a new trust: keys, database and the first ledger entries."""
    governance, mission = read_template(template, mission, default_mission=DEFAULT_MISSION)
    instance = initialise(data_dir, name=name, mission=mission, governance=governance)
    try:
        out.print(f"Created trust [bold]{instance.name}[/] in {data_dir} (log origin {instance.origin}).")
        out.print(f"Checkpoint verifier key: {instance.ledger.signer.verifier.to_text()}")
        for line in bootstrap_admin(instance):
            out.print(line, highlight=False)
    finally:
        instance.close()


@app.command()
@clean_errors
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port and the trust (e.g. one per CPU core).",
        ),
    ] = 1,
) -> None:
    """Serve the API and pages of an initialised trust."""
    instance = Instance.open(data_dir)  # refuses a directory that is not a trust; runs pending migrations once
    if workers == 1:
        _serve(instance, host, port)
        return
    _serve_workers(instance, host, port, workers)


def _serve_workers(instance: Instance, host: str, port: int, workers: int) -> None:
    import uvicorn  # noqa: PLC0415 - only the serving commands need it

    from api.logs import configure_logging  # noqa: PLC0415
    from api.workers import DATA_DIR_ENV  # noqa: PLC0415

    name, data_dir = instance.name, instance.data_dir.resolve()
    instance.close()  # each worker opens the trust itself
    configure_logging()
    os.environ[DATA_DIR_ENV] = str(data_dir)
    out.print(f"Serving [bold]{name}[/] on http://{host}:{port}/ with {workers} worker processes (Ctrl-C to stop)")
    uvicorn.run(
        "api.workers:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        access_log=False,
    )


def _serve(instance: Instance, host: str, port: int) -> None:
    import uvicorn  # noqa: PLC0415 - only the serving commands need it

    from api.app import create_app  # noqa: PLC0415
    from api.logs import configure_logging  # noqa: PLC0415
    from api.serving_gc import prepare_gc_for_serving  # noqa: PLC0415

    configure_logging()  # JSON lines on standard error; our request log replaces uvicorn's access log
    out.print(f"Serving [bold]{instance.name}[/] on http://{host}:{port}/ (Ctrl-C to stop)")
    # The checks' decisions are appended by a child process, so the event loop never waits on the writer.
    app_ = create_app(instance, close_on_shutdown=True, background=True, append_process=True)
    prepare_gc_for_serving()
    uvicorn.run(app_, host=host, port=port, log_level="warning", log_config=None, access_log=False)


@app.command()
@clean_errors
def demo(
    data_dir: DataDir = Path("datatrust-demo"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    seed_only: Annotated[bool, typer.Option("--seed-only", help="Create and seed the demo trust, then exit.")] = False,
) -> None:
    """Create (if needed) and seed a demo trust, then serve it on 127.0.0.1."""
    from api.demo import seed  # noqa: PLC0415

    instance = seed(data_dir)
    for line in instance_summary(instance, host, port) + how_to_use(data_dir, host, port):
        out.print(line, highlight=False)
    if seed_only:
        instance.close()
        return
    _serve(instance, host, port)


def instance_summary(instance: Instance, host: str, port: int) -> list[str]:
    """What a newcomer should look at first."""
    base = f"http://{host}:{port}"
    return [
        f"Demo trust '{instance.name}' with {instance.ledger.size()} ledger entries in {instance.data_dir}",
        f"  Public register:     {base}/register",
        f"  Your consents:       {base}/me/sign-in   (receipt access codes in the credentials file)",
        f"  Trustee desk:        {base}/desk         (trustee usernames and passwords in the credentials file)",
        f"  API documentation:   {base}/docs",
        f"  Latest checkpoint:   {base}/v1/ledger/checkpoint",
        f"  Verifier key:        {base}/v1/ledger/verifier-key",
        f"  Demo credentials:    {instance.data_dir / 'demo-credentials.json'}",
    ]


def how_to_use(data_dir: Path, host: str, port: int) -> list[str]:
    """How to use each demo account, read from the credentials file the seed wrote."""
    path = data_dir / "demo-credentials.json"
    if not path.exists():
        return []
    creds = json.loads(path.read_text())
    base = f"http://{host}:{port}"
    lines = ["", "Try it:"]
    lines.extend(
        f"  As an individual: sign in at {base}/me/sign-in with access code {person['access_code']}"
        for person in creds.get("individuals", [])[:1]
    )
    lines.extend(
        f"  As a trustee: sign in at {base}/desk as {trustee['username']} / {trustee['password']}"
        for trustee in creds.get("trustees", [])[:1]
    )
    partner = creds.get("partner")
    if partner:
        lines.append(
            f"  As the partner ({partner['organisation']}): get a token with\n"
            f"    curl -u {partner['client_id']}:{partner['client_secret']} "
            f"-d grant_type=client_credentials -d scope=check {base}/oauth/token\n"
            f"    then POST {base}/v1/checks with 'Authorization: Bearer TOKEN'"
        )
    lines.append(
        f"  As the operator: {base}/readyz and {base}/metrics (from this machine); "
        f"back up while it serves with\n    datatrust backup demo-backup.tar.gz --data-dir {data_dir}"
    )
    return lines


@ledger_app.command("verify")
@clean_errors
def ledger_verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    kept: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            metavar="FILE",
            help="A signed checkpoint kept earlier (e.g. from a consent receipt): the ledger must extend it.",
        ),
    ] = None,
) -> None:
    """Verify the live ledger: every hash, the chain, stored tree nodes and every checkpoint."""
    with opened(data_dir) as instance, progress_bar("Verifying") as update, instance.db.engine.connect() as conn:
        # Only the current key is trusted outright: older keys count only where the chain's
        # key.added / key.revoked entries allow them, so a revoked key cannot sign new checkpoints.
        anchors = [instance.ledger.signer.verifier]
        report = verify_live(conn, anchors, origin=instance.origin, progress=update)
        for path in kept or []:
            checkpoint = instance.ledger.open_checkpoint(path.read_text())
            verify_extends(checkpoint, size=report.entries, root=report.root, prove=instance.ledger.consistency_proof)
    out.print(
        f"OK: {report.entries} entries, {report.checkpoints} checkpoints verified; root {report.root.hex()}"
        + (f"; {report.uncovered} newest entries not yet under a checkpoint" if report.uncovered else "")
    )


@ledger_app.command("export")
@clean_errors
def ledger_export(
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines export.", dir_okay=False)],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export every entry and checkpoint as JSON Lines (verifiable without the database)."""
    with opened(data_dir) as instance:
        instance.ledger.sign_checkpoint()
        tmp = file.with_name(file.name + ".partial")
        with progress_bar("Exporting") as update, tmp.open("wb") as handle, instance.db.engine.connect() as conn:
            count = export_ledger(conn, handle, origin=instance.origin, progress=update)
        tmp.replace(file)
    out.print(f"Exported {count} entries to {file}")


@ledger_app.command("verify-export")
@clean_errors
def ledger_verify_export(
    file: Annotated[Path, typer.Argument(help="An export written by `datatrust ledger export`.")],
    public_key: Annotated[str, typer.Option("--public-key", help="Verifier key text, or a file holding it.")],
) -> None:
    """Verify an export with nothing but the trust's public key (no database needed)."""
    key_path = Path(public_key)
    text = key_path.read_text() if key_path.is_file() else public_key
    anchors = [Verifier.from_text(line) for line in text.splitlines() if line.strip()]
    with progress_bar("Verifying") as update:
        report = verify_export(file, anchors, progress=update)
    out.print(f"OK: {report.entries} entries, {report.checkpoints} checkpoints verified; root {report.root.hex()}")


@ledger_app.command("checkpoint")
@clean_errors
def ledger_checkpoint(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Sign a checkpoint of the current ledger now and print it."""
    with opened(data_dir) as instance:
        sys.stdout.write(instance.ledger.sign_checkpoint())


@ledger_app.command("prove")
@clean_errors
def ledger_prove(
    seq: Annotated[int, typer.Argument(help="Sequence number of the entry.", min=0)],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print an inclusion proof of entry SEQ against the latest checkpoint (JSON)."""
    with opened(data_dir) as instance:
        note = instance.ledger.checkpoint_covering(seq)
        checkpoint = instance.ledger.open_checkpoint(note)
        proof = instance.ledger.inclusion_proof(seq, checkpoint.size)
        verify_inclusion(seq, checkpoint.size, proof.leaf_hash, proof.proof, checkpoint.root)
        entry = instance.ledger.get(seq)
    document = {"entry": entry.to_json(), **proof.to_json(), "checkpoint": note}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@ledger_app.command("replay")
@clean_errors
def ledger_replay(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Rebuild every projection from the ledger alone and report any difference from the live tables."""
    with opened(data_dir) as instance, tempfile.TemporaryDirectory() as scratch:
        url = sqlite_url(Path(scratch))
        upgrade(url)
        target = Database.from_url(url)
        try:
            registry = instance.ledger.projectors
            with (
                progress_bar("Replaying") as update,
                instance.db.engine.connect() as live,
                target.write_engine.begin() as conn,
            ):
                count = rebuild(live, conn, registry, progress=update)
            with instance.db.engine.connect() as live, target.engine.connect() as conn:
                differences = diff_tables(live, conn, registry.tables)
        finally:
            target.dispose()
    if differences:
        for diff in differences:
            err.print(
                f"{diff.table}: {len(diff.only_live)} live rows not in the replay, "
                f"{len(diff.only_rebuilt)} replayed rows missing from the live table",
                highlight=False,
            )
        err.print(f"[bold red]FAILED[/]: projections differ from a replay of {count} entries", highlight=False)
        raise typer.Exit(1)
    out.print(f"OK: replayed {count} entries; {len(registry.tables)} projection tables match the live ones")


@keys_app.command("rotate")
@clean_errors
def keys_rotate(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Replace the checkpoint signing key (stop servers first); old checkpoints stay verifiable."""
    with opened(data_dir) as instance:
        old, new = rotate_log_key(instance)
    out.print(f"Rotated checkpoint key {old.key_id.hex()} -> {new.key_id.hex()}")
    out.print(f"New verifier key: {new.to_text()}")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
