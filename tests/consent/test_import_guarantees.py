"""The fast bulk import keeps its guarantees: same answers in parallel, a ledger that verifies and replays."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from typer.testing import CliRunner

from api.cli import app as cli
from api.instance import Instance
from consent import access_codes, importer, projections, repository, service
from consent.importer import Importer
from consent.vocabulary import Vocabulary
from ledger.entry import CanonicalPayload, canonical_payload
from ledger.errors import ConflictError, ValidationError
from ledger.projection import diff_tables, rebuild
from ledger.sequencer import AppendSpec
from tests.consent.support import ORG, draft, record
from tests.consent.test_fhir import resource
from tests.consent.test_importer import import_trust, row, write_csv


def _run(instance: Instance, path, *, workers: int) -> tuple[importer.ImportReport, list[str]]:
    codes = io.StringIO()
    with Importer(
        instance.ledger, instance.vault, organisation=ORG, actor="trust", now=lambda: datetime.now(UTC), workers=workers
    ) as job:
        report = job.run(path, "csv", codes=codes)
    return report, codes.getvalue().splitlines()


def test_worker_processes_give_the_same_answers(instance, tmp_path, monkeypatch):
    """Rows checked by two worker processes: the same errors, then the same import, as checking them here."""
    bad = [row(n) for n in range(40)]
    bad[5] = row(5, purposes="reserch")
    bad[17] = row(17, consent="con_row00003")
    bad[33] = row(33, categories="health")
    path = write_csv(tmp_path / "bad.csv", bad)
    here, _ = _run(instance, path, workers=0)
    there, codes = _run(instance, path, workers=2)
    assert [(e.line, e.message) for e in there.errors] == [(e.line, e.message) for e in here.errors]
    assert [e.line for e in there.errors] == [7, 19, 35]
    assert codes == []
    good = write_csv(tmp_path / "good.csv", [row(n) for n in range(40)])
    monkeypatch.setattr(importer, "CHUNK_BYTES", 2000)  # a few rows per ledger transaction, by payload size
    report, codes = _run(instance, good, workers=2)
    assert (report.imported, report.skipped, report.errors) == (40, 0, [])
    _line, consent, subject, code = codes[39].split(",")
    with instance.db.engine.connect() as conn:
        assert access_codes.redeem_access_code(conn, code, now=datetime.now(UTC)) == subject
        assert instance.vault.read(conn, subject) == {"name": "Person 39", "contact": "person39@example.org"}
        assert repository.grant(conn, consent) is not None


def test_worker_processes_read_fhir_and_json_lines_too(instance, tmp_path):
    """FHIR NDJSON and JSON Lines rows checked by worker processes: bad lines named, good ones imported."""
    ndjson = tmp_path / "in.ndjson"
    ndjson.write_text(json.dumps(resource(id="w1")) + "\n" + json.dumps(resource(id="w2", status="draft")) + "\n{\n")
    codes = io.StringIO()
    with Importer(
        instance.ledger, instance.vault, organisation=ORG, actor="trust", now=lambda: datetime.now(UTC), workers=2
    ) as job:
        report = job.run(ndjson, "fhir", codes=codes)
        assert [(e.line, "only active" in e.message) for e in report.errors] == [(2, True), (3, False)]
        lines = tmp_path / "in.jsonl"
        lines.write_text(json.dumps({"consent": "con_w3", "name": "A", "contact": "a@x", "purposes": ["research"],
                                     "categories": ["housing"], "wording_version": "1", "wording_text": "t"}) + "\n")  # fmt: skip
        report = job.run(lines, "jsonl", codes=codes)
    assert (report.imported, report.errors) == (1, [])


def test_imported_consents_verify_replay_and_sign_in(tmp_path, monkeypatch):
    """Several chunks, checked by workers, through the CLI: the ledger verifies, a replay matches, codes work."""
    monkeypatch.setattr(importer, "CHUNK", 7)  # several ledger transactions
    monkeypatch.setattr(importer, "BATCH", 5)
    monkeypatch.setattr(importer, "PARALLEL_BYTES", 0)  # the CLI checks this small file with worker processes
    data_dir = tmp_path / "trust"
    import_trust(data_dir)
    runner = CliRunner()
    args = ["--organisation", ORG, "--data-dir", str(data_dir)]
    good = write_csv(tmp_path / "good.csv", [row(n) for n in range(30)])
    done = runner.invoke(cli, ["consents", "import", str(good), *args])
    assert done.exit_code == 0, done.output
    assert "Imported 30 consents" in done.output
    for command in (["ledger", "verify"], ["ledger", "replay"]):
        checked = runner.invoke(cli, [*command, "--data-dir", str(data_dir)])
        assert checked.exit_code == 0, checked.output
    again = runner.invoke(cli, ["consents", "import", str(good), *args])
    assert "Imported 0 consents" in again.output
    assert "30 were already recorded" in again.output
    codes = list(csv.DictReader((tmp_path / "good.csv.access-codes.csv").read_text().splitlines()))
    assert len(codes) == 30
    trust = Instance.open(data_dir, check_index=False)
    try:
        assert trust.checks is None
        with trust.db.engine.connect() as conn:
            for entry in codes:
                assert (
                    access_codes.redeem_access_code(conn, entry["access_code"], now=datetime.now(UTC))
                    == (entry["subject"])
                )
    finally:
        trust.close()


def test_a_unit_that_fails_after_deferring_grants_leaves_nothing_behind(instance):
    """Grant rows collected for a failed unit never capture a later entry's row: projections still match a replay."""
    with instance.db.engine.connect() as conn:
        _seq, vocabulary = service.vocabulary_in_force(conn)
    payload = service.grant_payload(
        draft(consent="con_failed1"),
        consent="con_failed1",
        subject="sub_failed00000000",
        organisation=ORG,
        vocabulary=vocabulary,
        now=datetime.now(UTC),
    )

    def first(conn):
        projections.defer_grants(conn)
        return payload

    def second(conn):
        msg = "refused half-way"
        raise ValidationError(msg)

    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        instance.ledger.append_all(
            [
                AppendSpec("consent.granted", "trust", now, prepare=first),
                AppendSpec("trust.configured", "trust", now, prepare=second),
            ]
        )
    later = record(instance)
    with instance.db.engine.connect() as conn:
        assert repository.grant(conn, later.consent) is not None
        assert repository.grant(conn, "con_failed1") is None
    target = initialise_empty(instance)
    try:
        with instance.db.engine.connect() as live, target.write_engine.begin() as conn:
            rebuild(live, conn, instance.ledger.projectors)
        with instance.db.engine.connect() as live, target.engine.connect() as conn:
            assert diff_tables(live, conn, instance.ledger.projectors.tables) == []
    finally:
        target.dispose()


def initialise_empty(instance: Instance):
    """An empty migrated SQLite database beside the instance's data directory."""
    from ledger.db import Database, sqlite_url  # noqa: PLC0415
    from migrations import upgrade  # noqa: PLC0415

    folder = instance.data_dir.parent / "replay"
    folder.mkdir()
    upgrade(sqlite_url(folder))
    return Database.from_url(sqlite_url(folder))


def test_a_vocabulary_adopted_between_the_passes_stops_the_import(instance, tmp_path):
    """Rows checked against one vocabulary are not recorded under another: run the import again."""
    path = write_csv(tmp_path / "in.csv", [row(n) for n in range(3)])
    size = instance.ledger.size()
    with Importer(
        instance.ledger, instance.vault, organisation=ORG, actor="trust", now=lambda: datetime.now(UTC)
    ) as job:
        assert job.validate(path, "csv").errors == []
        document = Vocabulary.default().to_document() | {"version": "changed-meanwhile"}
        service.adopt_vocabulary(instance.ledger, Vocabulary.from_document(document), now=datetime.now(UTC))
        with pytest.raises(ConflictError, match="new vocabulary"):
            job.import_rows(codes=io.StringIO())
    assert instance.ledger.size() == size + 1  # only the adoption


def test_csv_rows_with_missing_or_extra_fields_and_quoted_line_breaks(instance, tmp_path):
    """Line numbers count physical lines (a quoted field may span two); extra fields are an error."""
    path = tmp_path / "odd.csv"
    good = row(0)
    header = list(good)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow([*list(good.values())[:-1], "ab" * 32])  # line 2
        writer.writerow([*row(1, name="Two\nLines").values()])  # lines 3-4
        writer.writerow([*row(2).values(), "surplus"])  # line 5
        handle.write("\n")  # a blank line is skipped
        writer.writerow([*row(3).values()][:5])  # line 7: too few fields (the rest are empty)
    report, _ = _run(instance, path, workers=0)
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [
        (5, "the row has more fields than the header"),
        (7, "categories"),
    ]


def test_a_canonical_payload_keeps_exactly_the_bytes_of_rfc_8785():
    """A payload carrying its canonical bytes appends exactly what RFC 8785 gives for it."""
    payload: dict[str, Any] = {
        "consent": "con_1",
        "purposes": ["b", "a"],
        "explicit": True,
        "valid_until": None,
        "n": "é",
    }
    carried = CanonicalPayload.of(payload)
    assert carried == payload
    assert canonical_payload(carried) == rfc8785.dumps(payload)
    plain, canonical = carried.parts()
    assert canonical_payload(CanonicalPayload.restore(plain, canonical)) == rfc8785.dumps(payload)
    flat: dict[str, Any] = {"a": "x", "b": ["y", "z"], "c": False, "d": None}
    assert canonical_payload(flat) == rfc8785.dumps(flat)
    with pytest.raises(ValidationError):
        CanonicalPayload.of({"a": 1.5})
