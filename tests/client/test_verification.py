"""The client's own verification code against known-answer vectors and the server's real output."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from api.instance import Instance
from consent.receipts import build_receipt
from datatrust_client import Checkpoint, ProofError, SignatureError, VerifierKey, verify_receipt
from datatrust_client.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from datatrust_client.notes import open_note
from tests.webhooks.helpers import grant

DATA = Path(__file__).resolve().parent.parent / "data"
INCLUSION = sorted((DATA / "rfc9162" / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((DATA / "rfc9162" / "consistency").rglob("*.json"))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _id(path: Path) -> str:
    return str(path.relative_to(DATA / "rfc9162"))


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    """Each transparency-dev inclusion case verifies, or is rejected, exactly as the vector says."""
    case = _load(path)
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), [_b64(p) for p in case.get("proof") or []])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, _b64(case["root"]))
    else:
        verify_inclusion(*args, _b64(case["root"]))


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path) -> None:
    """Each transparency-dev consistency case verifies, or is rejected, exactly as the vector says."""
    case = _load(path)
    proof = [_b64(p) for p in case.get("proof") or []]
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_leaf_and_node_hashes_give_the_reference_roots() -> None:
    """RFC 6962 roots of the eight reference leaves match for trees of one, two and four leaves."""
    roots = _load(DATA / "rfc9162" / "roots.json")
    leaves = [leaf_hash(bytes.fromhex(h)) for h in roots["leaf_inputs_hex"]]
    expected = roots["root_hashes_hex_by_tree_size"]
    assert leaves[0].hex() == expected[1]
    assert node_hash(leaves[0], leaves[1]).hex() == expected[2]
    assert node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3])).hex() == expected[4]


def test_signed_note_vector_verifies_and_tampering_fails() -> None:
    """Go's sumdb/note example verifies with its verifier key; a changed text or another key fails."""
    vector = _load(DATA / "signed-note.json")
    key = VerifierKey.from_text(vector["verifier_key"])
    assert open_note(vector["signed_note"], key) == vector["text"]
    assert key.to_text() == vector["verifier_key"]
    with pytest.raises(SignatureError):
        open_note(vector["signed_note"].replace("cryptography", "cryptographi"), key)
    other = VerifierKey(key.name, bytes(32))
    with pytest.raises(SignatureError, match="not signed by any"):
        open_note(vector["signed_note"], other)


@pytest.mark.parametrize(
    "text",
    [
        "name+deadbeef",  # too few parts
        "name+00000000+AQ==",  # not 32 key bytes
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # key id does not match
    ],
)
def test_bad_verifier_keys_are_rejected(text: str) -> None:
    """Malformed or inconsistent verifier keys are refused with SignatureError."""
    with pytest.raises(SignatureError):
        VerifierKey.from_text(text)


def test_server_checkpoint_opens_with_the_published_key(instance: Instance) -> None:
    """A checkpoint signed by the trust opens with its verifier key and gives the ledger's size and root."""
    note = instance.ledger.sign_checkpoint()
    checkpoint = Checkpoint.open(note, VerifierKey.from_text(instance.ledger.signer.verifier.to_text()))
    assert (checkpoint.origin, checkpoint.size) == (instance.origin, instance.ledger.size())
    assert checkpoint.root == instance.ledger.root(checkpoint.size)
    with pytest.raises(SignatureError, match="origin"):
        Checkpoint.open(note, VerifierKey.from_text(instance.ledger.signer.verifier.to_text()), origin="elsewhere")


def test_consent_receipt_verifies_offline_and_any_change_fails(instance: Instance) -> None:
    """A receipt from the trust verifies with the pinned key; a changed entry, proof or key does not."""
    recorded = grant(instance)
    receipt = build_receipt(instance.ledger, recorded.entry.seq)
    key = instance.ledger.signer.verifier.to_text()
    verified = verify_receipt(receipt, key)
    assert (verified.seq, verified.payload["consent"]) == (recorded.entry.seq, recorded.consent)

    changed_entry = copy.deepcopy(receipt)
    changed_entry["entry"]["payload"]["purposes"] = ["marketing"]
    changed_proof = copy.deepcopy(receipt)
    changed_proof["inclusion_proof"]["seq"] += 1
    for bad in (changed_entry, changed_proof):
        with pytest.raises(ProofError):
            verify_receipt(bad, key)
    other = VerifierKey.from_text(_load(DATA / "signed-note.json")["verifier_key"])
    with pytest.raises(SignatureError):
        verify_receipt(receipt, other)
