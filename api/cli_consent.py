"""``datatrust consents …`` and ``datatrust receipt …``: bulk import, FHIR export, receipt checks.

* ``consents import FILE --organisation ORG [--format csv|jsonl|fhir]`` imports every
  valid row or none (each bad row is listed with its line number); rerunning it
  skips rows already recorded, so an interrupted import can simply be run again.
* ``consents export-fhir [--out FILE]`` writes every consent as FHIR R4 NDJSON.
* ``consents adopt-vocabulary FILE`` records a new vocabulary (TOML) on the ledger.
* ``receipt verify FILE [--public-key KEY]`` checks a receipt offline.
* ``receipt check FILE --url URL`` asks a running trust to prove that its ledger
  still extends the checkpoint in the receipt (catches a rollback or a rewrite).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import typer

from api.cli_common import DEFAULT_DATA_DIR, DataDir, clean_errors, err, opened, out, progress_bar
from consent import fhir, service
from consent.importer import Format, Importer
from consent.receipts import ConsistencyReport, check_against_ledger, verify_receipt
from consent.vocabulary import Vocabulary
from ledger.errors import NotFoundError, ValidationError
from ledger.keys import Verifier

consents_app = typer.Typer(help="Import, export and configure consents.", no_args_is_help=True)
receipt_app = typer.Typer(help="Check consent receipts.", no_args_is_help=True)
OPERATOR = "trust"


class HttpGetter(Protocol):
    """What :func:`check_online` needs of an HTTP client (an ``httpx.Client``, or a test client)."""

    def get(self, url: str, *, params: dict[str, int]) -> Any:
        """GET *url* relative to the client's base URL."""
        ...


FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "fhir", ".ndjson": "fhir"}

PublicKey = Annotated[
    str | None,
    typer.Option("--public-key", help="The trust's verifier key (text, or a file holding one key a line)."),
]


def _keys(public_key: str | None) -> list[Verifier] | None:
    if public_key is None:
        return None
    path = Path(public_key)
    text = path.read_text() if path.is_file() else public_key
    return [Verifier.from_text(line) for line in text.splitlines() if line.strip()]


def _load_receipt(file: Path) -> dict[str, Any]:
    try:
        receipt = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        msg = f"{file} is not JSON: {exc}"
        raise ValidationError(msg) from exc
    if isinstance(receipt, dict) and isinstance(receipt.get("receipt"), dict):
        receipt = receipt["receipt"]  # the whole answer of POST /v1/consents
    if not isinstance(receipt, dict):
        msg = f"{file} does not hold a receipt object"
        raise ValidationError(msg)
    return receipt


def _codes_file(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handle = os.fdopen(fd, "a", encoding="utf-8")
    if handle.tell() == 0:
        handle.write("line,consent,subject,access_code\n")
    return handle


@consents_app.command("import")
@clean_errors
def import_consents(
    file: Annotated[Path, typer.Argument(help="CSV, JSON Lines or FHIR file.", exists=True, dir_okay=False)],
    organisation: Annotated[str, typer.Option("--organisation", help="The organisation that collected them.")],
    format_: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or fhir (default: from the file name).")
    ] = None,
    codes_out: Annotated[
        Path | None,
        typer.Option("--codes-out", help="Where to append the access codes (default FILE.access-codes.csv)."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Import consents: all valid rows, or none (every bad row is reported with its line number)."""
    from trust.organisations import require_active  # noqa: PLC0415 - only this command needs governance

    fmt = format_ or FORMATS.get(file.suffix.lower())
    if fmt not in {"csv", "jsonl", "fhir"}:
        msg = f"cannot tell the format of {file.name}: give --format csv, jsonl or fhir"
        raise ValidationError(msg)
    chosen: Format = fmt  # type: ignore[assignment]
    codes_path = codes_out or file.with_name(file.name + ".access-codes.csv")
    with opened(data_dir) as instance:
        now = instance.clock()
        with instance.db.engine.connect() as conn:
            require_active(conn, organisation, now)
        importer = Importer(
            instance.ledger, instance.vault, organisation=organisation, actor=OPERATOR, now=instance.clock
        )
        with importer:
            with progress_bar("Checking rows") as update:
                report = importer.validate(file, chosen, progress=update)
            if report.errors:
                for error in report.errors:
                    err.print(f"line {error.line}: {error.message}", highlight=False, markup=False)
                err.print(
                    f"[bold red]FAILED[/]: {len(report.errors)} of {report.rows} rows are not valid; "
                    "nothing was imported",
                    highlight=False,
                )
                raise typer.Exit(1)
            started = time.monotonic()
            with progress_bar("Importing") as update, _codes_file(codes_path) as codes:
                report = importer.import_rows(codes=codes, progress=update)
            seconds = time.monotonic() - started
    rate = f" ({report.imported / seconds:,.0f} a second)" if report.imported and seconds > 0 else ""
    out.print(
        f"Imported {report.imported} consents from {file.name} in {seconds:.1f} s{rate}; "
        f"{report.skipped} were already recorded and skipped.",
        highlight=False,
    )
    if report.imported:
        out.print(f"Access codes: {codes_path} (give each person their code, then delete the file).", highlight=False)


@consents_app.command("export-fhir")
@clean_errors
def export_fhir(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output.")] = None,
    organisation: Annotated[str | None, typer.Option("--organisation", help="Only this organisation's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export consents as HL7 FHIR R4 Consent resources, one JSON object a line (NDJSON)."""
    with opened(data_dir) as instance, instance.db.engine.connect() as conn:
        now = instance.clock()
        if out_file is None:
            count = fhir.export_ndjson(conn, sys.stdout, at=now, organisation=organisation)
        else:
            partial = out_file.with_name(out_file.name + ".partial")
            with progress_bar("Exporting") as update, partial.open("w", encoding="utf-8") as handle:
                count = fhir.export_ndjson(conn, handle, at=now, organisation=organisation, progress=update)
            partial.replace(out_file)
    err.print(f"Exported {count} consents as FHIR R4 Consent resources.", highlight=False)


@consents_app.command("adopt-vocabulary")
@clean_errors
def adopt_vocabulary(
    file: Annotated[Path, typer.Argument(help="A vocabulary TOML file.", exists=True, dir_okay=False)],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Adopt a vocabulary of purposes and data categories (a trust.configured entry)."""
    vocabulary = Vocabulary.from_toml(file.read_text(encoding="utf-8"))
    with opened(data_dir) as instance:
        entry = service.adopt_vocabulary(instance.ledger, vocabulary, now=instance.clock())
    out.print(
        f"Adopted vocabulary {vocabulary.version} ({len(vocabulary.purposes)} purposes, "
        f"{len(vocabulary.categories)} data categories; hash {vocabulary.hash}) in entry {entry.seq}.",
        highlight=False,
    )


@receipt_app.command("verify")
@clean_errors
def receipt_verify(
    file: Annotated[Path, typer.Argument(help="A receipt (JSON).", exists=True, dir_okay=False)],
    public_key: PublicKey = None,
) -> None:
    """Verify a consent receipt offline: the entry, its inclusion proof and the signed checkpoint."""
    receipt = _load_receipt(file)
    keys = _keys(public_key)
    verified = verify_receipt(receipt, keys)
    payload = verified.entry.payload
    out.print(
        f"OK: consent {payload.get('consent')} is entry {verified.entry.seq} of a ledger of "
        f"{verified.checkpoint.size} entries, in a checkpoint signed by {verified.verifier.to_text()}",
        highlight=False,
    )
    if keys is None:
        err.print(
            "note: checked with the key inside the receipt; give --public-key (the trust's published key) "
            "to know that the trust, and not someone else, signed it",
            highlight=False,
        )


def check_online(receipt: dict[str, Any], client: HttpGetter, verifiers: list[Verifier] | None) -> ConsistencyReport:
    """Check a receipt against a running trust's public ledger API (``client`` has its base URL)."""

    def get(path: str, **params: int) -> Any:
        response = client.get(path, params=params)
        if response.status_code != httpx.codes.OK:
            msg = f"GET {path} answered {response.status_code}: {response.text[:200]}"
            raise NotFoundError(msg)
        return response

    def prove(old: int, new: int) -> list[bytes]:
        body = get("/v1/ledger/proofs/consistency", **{"from": old, "to": new}).json()
        return [bytes.fromhex(h) for h in body["proof"]]

    return check_against_ledger(
        receipt, latest_checkpoint=get("/v1/ledger/checkpoint").text, consistency_proof=prove, verifiers=verifiers
    )


@receipt_app.command("check")
@clean_errors
def receipt_check(
    file: Annotated[Path, typer.Argument(help="A receipt (JSON).", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option("--url", help="The trust's address, e.g. https://trust.example.org.")],
    public_key: PublicKey = None,
) -> None:
    """Ask the trust to prove its ledger still contains everything the receipt saw (no rollback, no rewrite)."""
    receipt = _load_receipt(file)
    with httpx.Client(base_url=url, timeout=30.0) as client:
        report = check_online(receipt, client, _keys(public_key))
    out.print(
        f"OK: the ledger now has {report.ledger_size} entries and provably extends the "
        f"{report.receipt_size} entries this receipt saw",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``consents`` and ``receipt`` to the ``datatrust`` command."""
    app.add_typer(consents_app, name="consents")
    app.add_typer(receipt_app, name="receipt")
