"""Proofs never reach past the ledger: every tree size beyond it is refused with the same message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.instance import Instance
from ledger.errors import ProofError
from ledger.merkle import verify_inclusion


def test_inclusion_proofs_inside_the_ledger_verify_and_beyond_it_are_refused(instance: Instance) -> None:
    """Each entry's proof at each size up to the head verifies; one past the head is refused."""
    ledger = instance.ledger
    for n in range(9):
        ledger.append("trust.configured", {"n": n}, actor="test", now=datetime.now(UTC))
    size = ledger.size()
    for tree in range(1, size + 1):
        root = ledger.root(tree)
        for seq in range(tree):
            proof = ledger.inclusion_proof(seq, tree)
            verify_inclusion(seq, tree, proof.leaf_hash, proof.proof, root)  # raises if it does not lead to the root
    for seq in (0, size - 1, size):  # the last seq in a too-large tree, and the missing leaf itself
        with pytest.raises(ProofError, match="larger than the ledger"):
            ledger.inclusion_proof(seq, size + 1)
    with pytest.raises(ProofError, match="larger than the ledger"):
        ledger.consistency_proof(size + 1, size + 1)
