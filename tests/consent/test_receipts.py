"""Consent receipts: verify offline, fail on any change, and expose a later rollback of the ledger."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.cli_consent import check_online
from api.instance import initialise
from consent.receipts import build_receipt, check_against_ledger, verify_receipt
from ledger.errors import DomainError, LedgerIntegrityError
from ledger.keys import Signer
from ledger.merkle import leaf_hash
from ledger.note import sign_note
from ledger.service import Ledger
from tests.consent.support import record


@pytest.fixture
def issued(instance):
    """A freshly recorded consent and its receipt (with the access code)."""
    recorded = record(instance)
    return recorded, build_receipt(instance.ledger, recorded.entry.seq, access_code=recorded.access_code)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """One receipt and the trust's key, made once (tampering tests need no database)."""
    trust = initialise(tmp_path_factory.mktemp("receipt") / "trust", name="Receipt Trust", mission="Testing.")
    try:
        recorded = record(trust)
        receipt = build_receipt(trust.ledger, recorded.entry.seq, access_code=recorded.access_code)
        return receipt, trust.ledger.signer.verifier
    finally:
        trust.close()


def test_a_receipt_verifies_offline(instance, issued):
    """With only the trust's public key, the receipt proves the entry is in the signed ledger."""
    recorded, receipt = issued
    verified = verify_receipt(json.loads(json.dumps(receipt)), instance.ledger.signer.verifier)
    assert verified.entry.payload["consent"] == recorded.consent
    assert verified.checkpoint.size > recorded.entry.seq
    assert receipt["leaf_hash"] == leaf_hash(recorded.entry.body).hex()


def _flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


def _other_signature(receipt: dict[str, Any]) -> str:
    body, _, _signature = receipt["checkpoint"].rpartition("\n\u2014 ")
    forged = Signer.generate(receipt["verifier_key"].split("+")[0])
    return sign_note(body.rstrip("\n") + "\n", forged)


CHANGES = {
    # entry fields (any of them changes the leaf hash)
    "entry.payload.purposes": lambda r: r["entry"]["payload"].update(purposes=["research", "statistics"]),
    "entry.payload.subject": lambda r: r["entry"]["payload"].update(subject="sub_someoneelse000000000"),
    "entry.payload.valid_until": lambda r: r["entry"]["payload"].update(valid_until="2099-01-01T00:00:00.000000Z"),
    "entry.at": lambda r: r["entry"].update(at="2020-01-01T00:00:00.000000Z"),
    "entry.seq": lambda r: r["entry"].update(seq=r["entry"]["seq"] + 1),
    "entry.actor": lambda r: r["entry"].update(actor="client_other"),
    "leaf_hash": lambda r: r.update(leaf_hash=_flip_hex(r["leaf_hash"])),
    "inclusion_proof.proof": lambda r: r["inclusion_proof"].update(
        proof=[_flip_hex(r["inclusion_proof"]["proof"][0]), *r["inclusion_proof"]["proof"][1:]]
    ),
    "inclusion_proof.size": lambda r: r["inclusion_proof"].update(size=r["inclusion_proof"]["size"] + 1),
    "inclusion_proof.seq": lambda r: r["inclusion_proof"].update(seq=r["inclusion_proof"]["seq"] + 1),
    "checkpoint size": lambda r: r.update(
        checkpoint=r["checkpoint"].replace("\n" + str(r["inclusion_proof"]["size"]) + "\n", "\n999\n", 1)
    ),
    "checkpoint signature": lambda r: r.update(checkpoint=_other_signature(r)),
    "verifier_key": lambda r: r.update(verifier_key=Signer.generate("someone.else/log").verifier.to_text()),
    "access_code": lambda r: r.update(access_code=("X" if r["access_code"][0] != "X" else "Y") + r["access_code"][1:]),
    "format": lambda r: r.update(format="datatrust-consent-receipt/2"),
    "extra field": lambda r: r.update(note="trust me"),
    "missing field": lambda r: r.pop("checkpoint"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_receipt_with_any_field_changed_fails(sample, change):
    """Changing any field of a receipt makes verification fail."""
    receipt, verifier = sample
    verify_receipt(receipt, verifier)
    tampered = copy.deepcopy(receipt)
    CHANGES[change](tampered)
    assert tampered != receipt
    with pytest.raises(DomainError):
        verify_receipt(tampered, verifier)


def test_without_a_key_the_receipt_is_checked_against_its_own(sample):
    """Without the trust's key a receipt is only self-consistent; a key not in the receipt is refused."""
    receipt, _verifier = sample
    verify_receipt(receipt)
    with pytest.raises(LedgerIntegrityError, match="not the trust's key"):
        verify_receipt(receipt, Signer.generate("datatrust.local/test-trust").verifier)


def _local(instance):
    return {
        "latest_checkpoint": instance.ledger.sign_checkpoint(),
        "consistency_proof": instance.ledger.consistency_proof,
    }


def _roll_back(instance, keep: int) -> None:
    """What an attacker with the database would do: drop the triggers, cut the tail, forget its checkpoints."""
    tables = ("ledger_entries", "ledger_tree_nodes", "ledger_checkpoints")
    with instance.db.write_engine.begin() as conn:
        for table in tables:
            if instance.db.is_postgresql:
                conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"))
            else:
                conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= :k"), {"k": keep})
        conn.execute(sa.text("DELETE FROM ledger_checkpoints WHERE size > :k"), {"k": keep})
        rows = conn.execute(sa.text("SELECT level, idx FROM ledger_tree_nodes")).all()
        for level, idx in rows:
            if (idx + 1) << level > keep:
                conn.execute(
                    sa.text("DELETE FROM ledger_tree_nodes WHERE level = :l AND idx = :i"), {"l": level, "i": idx}
                )
        for name in ("consent_grants", "consent_withdrawals"):
            conn.execute(sa.text(f"DELETE FROM {name} WHERE seq >= :k"), {"k": keep})  # noqa: S608 - fixed names


def test_a_receipt_exposes_a_later_rollback(instance, issued):
    """A receipt taken before the ledger was cut back and rewritten proves the rollback."""
    recorded, receipt = issued
    report = check_against_ledger(receipt, verifiers=[instance.ledger.signer.verifier], **_local(instance))
    assert report.ledger_size >= report.receipt_size
    for _ in range(3):
        record(instance)
    check_against_ledger(receipt, verifiers=[instance.ledger.signer.verifier], **_local(instance))

    _roll_back(instance, keep=recorded.entry.seq)  # the consent's entry and everything after it are gone
    for _ in range(6):  # the ledger grows past the receipt's checkpoint again, with different entries
        record(instance)
    latest = instance.ledger.open_checkpoint(instance.ledger.sign_checkpoint())
    assert latest.size > receipt["inclusion_proof"]["size"]
    verify_receipt(receipt, instance.ledger.signer.verifier)  # offline the receipt still verifies...
    with pytest.raises(LedgerIntegrityError, match=r"does not extend|rolled back|rewritten"):
        check_against_ledger(receipt, verifiers=[instance.ledger.signer.verifier], **_local(instance))  # ...online not


def test_a_receipt_exposes_a_truncated_ledger_over_http(instance, issued):
    """Over the public API, a ledger shorter than the receipt's checkpoint is a rollback."""
    recorded, receipt = issued
    with TestClient(create_app(instance)) as client:
        assert (
            check_online(receipt, client, [instance.ledger.signer.verifier]).receipt_size
            == receipt["inclusion_proof"]["size"]
        )
        _roll_back(instance, keep=recorded.entry.seq)
        instance.ledger.close()
        instance.ledger = Ledger(instance.db, signer=instance.ledger.signer, origin=instance.origin)
        # the trust signs a checkpoint of the shorter tree: a receipt holder sees it is shorter than theirs
        instance.ledger.sign_checkpoint()
        with pytest.raises(LedgerIntegrityError, match=r"rollback|extend"):
            check_online(receipt, client, [instance.ledger.signer.verifier])


def test_receipt_verify_command(sample, tmp_path):
    """`datatrust receipt verify FILE --public-key KEY` says OK, and fails with exit 1 on a changed receipt."""
    receipt, verifier = sample
    good, bad = tmp_path / "receipt.json", tmp_path / "bad.json"
    good.write_text(json.dumps(receipt))
    tampered = copy.deepcopy(receipt)
    tampered["entry"]["payload"]["purposes"] = ["statistics"]
    bad.write_text(json.dumps(tampered))
    key = verifier.to_text()
    runner = CliRunner()
    ok = runner.invoke(cli, ["receipt", "verify", str(good), "--public-key", key])
    assert ok.exit_code == 0, ok.output
    assert "OK: consent" in ok.output
    failed = runner.invoke(cli, ["receipt", "verify", str(bad), "--public-key", key])
    assert failed.exit_code == 1
    assert "FAILED" in failed.output


def test_receipt_built_later_has_no_access_code(instance, issued):
    """A receipt fetched again carries the proof but never the access code (it was shown once)."""
    recorded, _receipt = issued
    again = build_receipt(instance.ledger, recorded.entry.seq)
    assert "access_code" not in again
    verify_receipt(again, instance.ledger.signer.verifier)
