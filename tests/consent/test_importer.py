"""Bulk import: all valid rows or none, every bad row named by line, reruns skip what is recorded."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from api.instance import initialise
from consent import access_codes, repository
from consent.importer import Format, Importer
from tests.consent.support import ORG, OTHER_ORG, record
from tests.consent.test_fhir import resource
from tests.factories import make_organisation

HEADER = [
    "consent",
    "subject",
    "name",
    "contact",
    "purposes",
    "categories",
    "operations",
    "valid_from",
    "valid_until",
    "explicit",
    "wording_version",
    "wording_hash",
]


def row(n: int, **overrides) -> dict[str, str]:
    """One CSV row for a new person."""
    values = {
        "consent": f"con_row{n:05d}",
        "subject": "",
        "name": f"Person {n}",
        "contact": f"person{n}@example.org",
        "purposes": "research.health; statistics.aggregate",
        "categories": "housing demographics.age",
        "operations": "aggregate",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "",
        "explicit": "false",
        "wording_version": "v3",
        "wording_hash": "ab" * 32,
    }
    values.update(overrides)
    return values


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write *rows* under the standard header."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def import_trust(data_dir: Path) -> None:
    """Initialise a trust in *data_dir* with the importing organisation registered, and close it (for the CLI)."""
    trust = initialise(data_dir, name="Import Trust", mission="Testing.")
    try:
        make_organisation(trust, ORG)
    finally:
        trust.close()


def run(instance, path: Path, fmt: Format = "csv", organisation: str = ORG):
    """Import *path*; return the report and the codes written."""
    codes = io.StringIO()
    with Importer(
        instance.ledger, instance.vault, organisation=organisation, actor="trust", now=lambda: datetime.now(UTC)
    ) as importer:
        report = importer.run(path, fmt, codes=codes)
    return report, codes.getvalue().splitlines()


def _grants(instance) -> int:
    return sum(1 for e, _ in instance.ledger.entries(0, 1000) if e.kind == "consent.granted")


def test_a_valid_file_is_imported_whole(instance, tmp_path):
    """Every row becomes a consent with a new subject, readable vault details and a working access code."""
    path = write_csv(tmp_path / "in.csv", [row(n) for n in range(7)])
    report, codes = run(instance, path)
    assert (report.rows, report.imported, report.skipped, report.errors) == (7, 7, 0, [])
    assert _grants(instance) == 7
    line, consent, subject, code = codes[3].split(",")
    assert (line, consent) == ("5", "con_row00003")
    with instance.db.engine.connect() as conn:
        assert access_codes.redeem_access_code(conn, code, now=datetime.now(UTC)) == subject
        assert instance.vault.read(conn, subject) == {"name": "Person 3", "contact": "person3@example.org"}
        grant = repository.grant(conn, consent)
    assert grant is not None
    assert grant.subject == subject


def test_every_bad_row_is_reported_and_nothing_is_imported(instance, tmp_path):
    """A file with bad rows imports nothing and names each bad row by its line number."""
    known = record(instance)
    rows = [
        row(0),
        row(1, purposes="reserch"),  # line 3: unknown code
        row(2, categories="health"),  # line 4: special without explicit
        row(3, consent="con_row00000"),  # line 5: id repeated from line 2
        row(4, valid_from="2027-01-01T00:00:00Z", valid_until="2026-01-01T00:00:00Z"),  # line 6
        row(5, subject="sub_unknown0000000000", name="", contact=""),  # line 7: unknown subject
        row(6, subject=known.subject, name="", contact=""),  # line 8: fine
        row(7, explicit="maybe"),  # line 9
        row(8, consent=""),  # line 10: no id
    ]
    size = instance.ledger.size()
    report, codes = run(instance, write_csv(tmp_path / "bad.csv", rows))
    assert [e.line for e in report.errors] == [3, 4, 5, 6, 7, 9, 10]
    messages = {e.line: e.message for e in report.errors}
    assert "did you mean 'research'" in messages[3]
    assert "explicit" in messages[4]
    assert "line 2" in messages[5]
    assert "knows no subject" in messages[7]
    assert report.imported == 0
    assert codes == []
    assert instance.ledger.size() == size


def test_a_rerun_skips_what_is_already_recorded(instance, tmp_path):
    """Importing again after an interruption records only the missing rows (idempotent, resumable)."""
    rows = [row(n) for n in range(10)]
    first, _ = run(instance, write_csv(tmp_path / "part.csv", rows[:4]))  # "crashed" after four rows
    assert first.imported == 4
    again, codes = run(instance, write_csv(tmp_path / "all.csv", rows))
    assert (again.imported, again.skipped) == (6, 4)
    assert [c.split(",")[1] for c in codes] == [f"con_row{n:05d}" for n in range(4, 10)]
    third, _ = run(instance, tmp_path / "all.csv")
    assert (third.imported, third.skipped) == (0, 10)
    assert _grants(instance) == 10


def test_an_id_used_by_another_organisation_is_a_bad_row(instance, tmp_path):
    """A consent id already recorded by another organisation is not silently skipped."""
    record(instance, organisation=OTHER_ORG, consent="con_row00001")
    report, _ = run(instance, write_csv(tmp_path / "in.csv", [row(0), row(1)]))
    assert [(e.line, "different consent" in e.message) for e in report.errors] == [(3, True)]


def test_json_lines(instance, tmp_path):
    """JSON Lines rows use the API's fields (person nested, or name and contact flat)."""
    path = tmp_path / "in.jsonl"
    lines = [
        {
            "consent": "con_j1",
            "person": {"name": "A", "contact": "a@x"},
            "purposes": ["research"],
            "categories": ["housing"],
            "wording_version": "1",
            "wording_text": "text",
        },
        {
            "consent": "con_j2",
            "name": "B",
            "contact": "b@x",
            "purposes": ["research"],
            "categories": ["housing"],
            "wording_version": "1",
            "wording_text": "text",
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\nnot json\n")
    report, _ = run(instance, path, "jsonl")
    assert [(e.line, "not valid JSON" in e.message) for e in report.errors] == [(4, True)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    report, _ = run(instance, path, "jsonl")
    assert report.imported == 2


def test_fhir_bundle_and_ndjson(instance, tmp_path):
    """FHIR imports read a Bundle, or NDJSON with one Consent a line."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": resource(id="b1")}, {"resource": resource(id="b2")}],
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle, indent=2))
    report, _ = run(instance, tmp_path / "bundle.json", "fhir")
    assert (report.imported, report.errors) == (2, [])
    (tmp_path / "in.ndjson").write_text(
        json.dumps(resource(id="n1")) + "\n" + json.dumps(resource(id="n2", status="draft")) + "\n"
    )
    report, _ = run(instance, tmp_path / "in.ndjson", "fhir")
    assert [(e.line, "only active" in e.message) for e in report.errors] == [(2, True)]


def test_import_command(tmp_path):
    """`datatrust consents import` imports a file with a progress bar, or lists bad rows and exits 1."""
    data_dir = tmp_path / "trust"
    import_trust(data_dir)
    runner = CliRunner()
    bad = write_csv(tmp_path / "bad.csv", [row(0), row(1, categories="helth")])
    failed = runner.invoke(cli, ["consents", "import", str(bad), "--organisation", ORG, "--data-dir", str(data_dir)])
    assert failed.exit_code == 1
    assert "line 3: unknown data category 'helth'" in failed.output
    assert "nothing was imported" in failed.output
    good = write_csv(tmp_path / "good.csv", [row(n) for n in range(3)])
    done = runner.invoke(cli, ["consents", "import", str(good), "--organisation", ORG, "--data-dir", str(data_dir)])
    assert done.exit_code == 0, done.output
    assert "Imported 3 consents" in done.output
    codes = (tmp_path / "good.csv.access-codes.csv").read_text().splitlines()
    assert codes[0] == "line,consent,subject,access_code"
    assert len(codes) == 4
    assert (tmp_path / "good.csv.access-codes.csv").stat().st_mode & 0o777 == 0o600
    exported = runner.invoke(cli, ["consents", "export-fhir", "--data-dir", str(data_dir)])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.count('"resourceType":"Consent"') == 3
    unknown = runner.invoke(
        cli, ["consents", "import", str(good), "--organisation", "org_nobody", "--data-dir", str(data_dir)]
    )
    assert unknown.exit_code == 2


@pytest.mark.parametrize("fmt", ["csv"])
def test_memory_stays_flat(instance, tmp_path, fmt):
    """Rows are streamed: the importer keeps no list of rows (a smoke test; the benchmark measures it)."""
    path = write_csv(tmp_path / "in.csv", [row(n) for n in range(50)])
    report, _ = run(instance, path, fmt)
    assert report.imported == 50
