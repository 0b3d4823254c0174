"""Known-answer tests on every vector in tests/data (copied from shared/vectors, unedited)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ProofError, SignatureInvalidError, ValidationError
from ledger.keys import Signer, Verifier
from ledger.merkle import leaf_hash, root_from_leaves, verify_consistency, verify_inclusion
from ledger.note import SignedNote, sign_note

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


def test_vector_counts() -> None:
    """All the RFC 9162 cases are present (a lost directory must not pass silently)."""
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    """Each inclusion case verifies or is rejected exactly as the vector says."""
    case = _load(path)
    proof = [_b64(p) for p in case.get("proof") or []]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path) -> None:
    """Each consistency case verifies or is rejected exactly as the vector says."""
    case = _load(path)
    proof = [_b64(p) for p in case.get("proof") or []]
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_root_hashes() -> None:
    """The RFC 6962 root of every prefix of the eight reference leaves matches."""
    roots = _load(DATA / "rfc9162" / "roots.json")
    leaves = [leaf_hash(bytes.fromhex(h)) for h in roots["leaf_inputs_hex"]]
    for size, expected in enumerate(roots["root_hashes_hex_by_tree_size"]):
        assert root_from_leaves(leaves[:size]).hex() == expected, f"tree size {size}"


NOTE = _load(DATA / "signed-note.json")


def test_signed_note_verifies() -> None:
    """Go's sumdb/note example verifies with its verifier key."""
    verifier = Verifier.from_text(NOTE["verifier_key"])
    assert SignedNote.from_text(NOTE["signed_note"]).verify([verifier]) == verifier


def test_signed_note_recreated_from_signer_key() -> None:
    """Signing the example text with the signer key gives the example note byte for byte."""
    signer = Signer.from_text(NOTE["signer_key"])
    assert signer.verifier.to_text() == NOTE["verifier_key"]
    assert sign_note(NOTE["text"], signer) == NOTE["signed_note"]


def test_signed_note_tampered_text_fails() -> None:
    """Changing the text of the example note breaks its signature."""
    verifier = Verifier.from_text(NOTE["verifier_key"])
    tampered = NOTE["signed_note"].replace("cryptography", "cryptograph ")
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        SignedNote.from_text(tampered).verify([verifier])


def test_signed_note_unknown_key_fails() -> None:
    """A note signed only by an unknown key is refused, naming the signer."""
    other = Signer.generate("PeterNeumann").verifier
    with pytest.raises(SignatureInvalidError, match="not signed by a known key"):
        SignedNote.from_text(NOTE["signed_note"]).verify([other])


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+c74f20a3",  # missing key data
        "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+c74f20a3+AhpcZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # wrong type byte
    ],
)
def test_bad_verifier_keys_rejected(text: str) -> None:
    """Malformed verifier keys are refused with a clear error."""
    with pytest.raises(ValidationError):
        Verifier.from_text(text)
