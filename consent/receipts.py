"""Consent receipts: proof, for the person, that the trust recorded their choice.

A receipt is one JSON object (``format`` ``datatrust-consent-receipt/1``)::

    {"format": "datatrust-consent-receipt/1",
     "entry": {…the consent.granted entry, exactly the object the ledger hashed…},
     "leaf_hash": "<hex SHA-256(0x00 || RFC 8785 bytes of entry)>",
     "inclusion_proof": {"seq": N, "size": S, "proof": ["<hex>", …]},   RFC 9162 audit path
     "checkpoint": "<C2SP signed note of a tree of S entries>",
     "verifier_key": "<origin>+<key id>+<base64 key> that signed the checkpoint",
     "access_code": "XXXX-…"}        only in the answer to the recording call, never stored

:func:`verify_receipt` needs nothing but the receipt and the trust's public key:
it recomputes the leaf hash from the entry, checks the checkpoint's signature and
the inclusion proof to the checkpoint's root, and the access code's check
characters, so changing any field makes it fail. :func:`check_against_ledger`
then asks the live ledger to prove (RFC 9162 consistency proof) that today's
tree still extends the tree the receipt saw: a ledger rolled back or rewritten
since the receipt was issued cannot produce that proof. The mapping to
ISO/IEC TS 27560 consent-record fields is in ``docs/consent-receipts.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from consent import access_codes
from ledger.checkpoint import Checkpoint, open_checkpoint, verify_extends
from ledger.entry import LedgerEntry
from ledger.errors import LedgerIntegrityError, ProofError, ValidationError
from ledger.keys import Verifier
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import SignedNote
from ledger.service import Ledger

FORMAT = "datatrust-consent-receipt/1"
FIELDS = frozenset({"format", "entry", "leaf_hash", "inclusion_proof", "checkpoint", "verifier_key"})
OPTIONAL = frozenset({"access_code"})


def build_receipt(ledger: Ledger, seq: int, *, access_code: str | None = None) -> dict[str, Any]:
    """The receipt of the consent recorded at entry *seq* (with the access code, when just issued)."""
    entry = ledger.get(seq)
    note = ledger.checkpoint_covering(seq)
    checkpoint = ledger.open_checkpoint(note)
    proof = ledger.inclusion_proof(seq, checkpoint.size)
    signer = SignedNote.from_text(note).verify(ledger.verifiers)
    receipt: dict[str, Any] = {
        "format": FORMAT,
        "entry": entry.to_json(),
        "leaf_hash": entry.leaf_hash.hex(),
        "inclusion_proof": {"seq": seq, "size": checkpoint.size, "proof": [p.hex() for p in proof.proof]},
        "checkpoint": note,
        "verifier_key": signer.to_text(),
    }
    if access_code is not None:
        receipt["access_code"] = access_code
    return receipt


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a verified receipt proves."""

    entry: LedgerEntry
    checkpoint: Checkpoint
    verifier: Verifier


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        msg = f"receipt {what} must be a hex string"
        raise ValidationError(msg)
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        msg = f"receipt {what} is not hex"
        raise ValidationError(msg) from exc


def verify_receipt(receipt: dict[str, Any], verifier: Verifier | Sequence[Verifier] | None = None) -> VerifiedReceipt:
    """Verify a receipt offline; raise on any changed field, return what it proves.

    *verifier* is the trust's public key as you obtained it independently (a key, or
    several after a rotation). Without it, the key inside the receipt is used, which
    shows only that the receipt is self-consistent.
    """
    if not isinstance(receipt, dict) or receipt.get("format") != FORMAT:
        msg = f"not a consent receipt (format must be {FORMAT!r})"
        raise ValidationError(msg)
    missing, extra = FIELDS - set(receipt), set(receipt) - FIELDS - OPTIONAL
    if missing or extra:
        msg = f"receipt fields are wrong: missing {sorted(missing)}, unexpected {sorted(extra)}"
        raise ValidationError(msg)
    named = Verifier.from_text(str(receipt["verifier_key"]))
    trusted = [named] if verifier is None else [verifier] if isinstance(verifier, Verifier) else list(verifier)
    if named not in trusted:
        msg = f"the receipt names the key {named.to_text()}, which is not the trust's key you gave"
        raise LedgerIntegrityError(msg)
    entry_obj = receipt["entry"]
    try:
        body = rfc8785.dumps(entry_obj)
    except (ValueError, TypeError) as exc:
        msg = f"receipt entry cannot be canonicalised: {exc}"
        raise ValidationError(msg) from exc
    entry = LedgerEntry.from_body(body)
    if entry.kind != "consent.granted":
        msg = f"the receipt's entry is a {entry.kind}, not a consent.granted"
        raise ValidationError(msg)
    if leaf_hash(body) != _hex(receipt["leaf_hash"], "leaf_hash"):
        msg = f"entry {entry.seq} does not match the receipt's leaf hash: the entry or the hash was changed"
        raise LedgerIntegrityError(msg, seq=entry.seq)
    checkpoint = open_checkpoint(str(receipt["checkpoint"]), [named])
    proof = receipt["inclusion_proof"]
    if not isinstance(proof, dict) or set(proof) != {"seq", "size", "proof"} or not isinstance(proof["proof"], list):
        msg = "receipt inclusion_proof must hold exactly seq, size and proof"
        raise ValidationError(msg)
    if proof["seq"] != entry.seq or proof["size"] != checkpoint.size:
        msg = (
            f"inclusion proof is for entry {proof['seq']} in a tree of {proof['size']}, "
            f"but the receipt holds entry {entry.seq} and a checkpoint of {checkpoint.size}"
        )
        raise ProofError(msg, seq=entry.seq)
    path = [_hex(p, "inclusion proof element") for p in proof["proof"]]
    verify_inclusion(entry.seq, checkpoint.size, entry.leaf_hash, path, checkpoint.root)
    code = receipt.get("access_code")
    if code is not None:
        access_codes.normalise(str(code))
    return VerifiedReceipt(entry, checkpoint, named)


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    """The live ledger extends the tree the receipt saw."""

    receipt_size: int
    ledger_size: int


def check_against_ledger(
    receipt: dict[str, Any],
    *,
    latest_checkpoint: str,
    consistency_proof: Callable[[int, int], list[bytes]],
    verifiers: Sequence[Verifier] | None = None,
) -> ConsistencyReport:
    """Prove the live ledger still contains the tree the receipt's checkpoint covers (no rollback, no fork).

    *latest_checkpoint* is the ledger's newest signed checkpoint and
    *consistency_proof(m, n)* fetches ``GET /v1/ledger/proofs/consistency?from=m&to=n``
    (or asks a local ledger). Raises LedgerIntegrityError when the ledger was
    truncated, rolled back or rewritten after the receipt was issued.
    """
    verified = verify_receipt(receipt, verifiers)
    trusted = [verified.verifier, *(verifiers or [])]
    live = open_checkpoint(latest_checkpoint, trusted, origin=verified.checkpoint.origin)
    old = verified.checkpoint
    verify_extends(old, size=live.size, root=live.root, prove=consistency_proof)
    return ConsistencyReport(old.size, live.size)
