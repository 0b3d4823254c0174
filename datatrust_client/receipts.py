"""Verify a consent receipt (``datatrust-consent-receipt/1``) offline, with the trust's verifier key.

A receipt holds the ``consent.granted`` entry (the object the ledger hashed), its leaf
hash, an RFC 9162 inclusion proof and the signed checkpoint of the tree it is in. It
verifies when the leaf hash is SHA-256(0x00 || RFC 8785 bytes of the entry), the
checkpoint is signed by the trust, and the proof leads from the leaf to the
checkpoint's root. Keep the checkpoint: a later checkpoint must extend it
(:meth:`datatrust_client.DatatrustClient.checkpoint` with ``previous=``), which exposes
a ledger rolled back or rewritten since.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

import rfc8785

from datatrust_client.errors import ProofError
from datatrust_client.merkle import leaf_hash, verify_inclusion
from datatrust_client.notes import Checkpoint, VerifierKey

RECEIPT_FORMAT = "datatrust-consent-receipt/1"


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """A ledger entry proven to be in a checkpoint signed by the trust."""

    entry: dict[str, Any]
    seq: int
    leaf_hash: bytes
    checkpoint: Checkpoint

    @property
    def payload(self) -> dict[str, Any]:
        """The entry's payload."""
        payload: dict[str, Any] = self.entry["payload"]
        return payload


def _hex(value: object, what: str) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except (ValueError, binascii.Error) as exc:
        msg = f"{what} is not hex"
        raise ProofError(msg) from exc


def verify_entry(
    entry: dict[str, Any],
    *,
    leaf_hash_hex: str | None,
    seq: int,
    size: int,
    proof: list[str],
    checkpoint: str,
    key: VerifierKey | list[VerifierKey],
) -> VerifiedEntry:
    """Verify that *entry* is entry *seq* of the checkpointed tree of *size* entries."""
    try:
        computed = leaf_hash(rfc8785.dumps(entry))
    except (TypeError, ValueError) as exc:  # rfc8785 raises ValueError subclasses
        msg = f"the entry cannot be canonicalised: {exc}"
        raise ProofError(msg) from exc
    if leaf_hash_hex is not None and _hex(leaf_hash_hex, "leaf_hash") != computed:
        msg = "the entry does not match its leaf hash"
        raise ProofError(msg)
    if entry.get("seq") != seq:
        msg = f"the entry's seq ({entry.get('seq')}) is not the proof's ({seq})"
        raise ProofError(msg)
    opened = Checkpoint.open(checkpoint, key)
    if opened.size != size:
        msg = f"inclusion proof is for tree size {size}, but the checkpoint is of size {opened.size}"
        raise ProofError(msg)
    verify_inclusion(seq, size, computed, [_hex(p, "proof element") for p in proof], opened.root)
    return VerifiedEntry(entry, seq, computed, opened)


def verify_receipt(receipt: dict[str, Any], key: VerifierKey | str) -> VerifiedEntry:
    """Verify a consent receipt with the trust's verifier key (pin it; do not take the receipt's own)."""
    if receipt.get("format") != RECEIPT_FORMAT:
        msg = f"not a consent receipt: format {receipt.get('format')!r}, expected {RECEIPT_FORMAT!r}"
        raise ProofError(msg)
    verifier = VerifierKey.from_text(key) if isinstance(key, str) else key
    entry, proof = receipt.get("entry"), receipt.get("inclusion_proof")
    if not isinstance(entry, dict) or not isinstance(proof, dict) or not isinstance(receipt.get("checkpoint"), str):
        msg = "a receipt needs an entry, an inclusion_proof and a checkpoint"
        raise ProofError(msg)
    if entry.get("kind") != "consent.granted":
        msg = f"a consent receipt's entry must be consent.granted, not {entry.get('kind')!r}"
        raise ProofError(msg)
    return verify_entry(
        entry,
        leaf_hash_hex=receipt.get("leaf_hash"),
        seq=int(proof.get("seq", -1)),
        size=int(proof.get("size", -1)),
        proof=list(proof.get("proof", [])),
        checkpoint=receipt["checkpoint"],
        key=verifier,
    )
