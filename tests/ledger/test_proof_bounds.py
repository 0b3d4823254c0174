"""Proofs never reach past the ledger: every tree size beyond it is refused with the same message.

Even on a tampered database that stores tree nodes past its last entry: the
size is read in the same statement as the nodes, and checked before any is used.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.instance import Instance
from ledger import repository
from ledger.errors import ProofError
from ledger.merkle import (
    Node,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    verify_consistency,
    verify_inclusion,
)


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


def _forge_tree_past_the_ledger(instance: Instance, forged_size: int) -> tuple[list[list[bytes]], int]:
    """Store, as a hostile administrator could, every tree node of a *forged_size* tree past the last entry.

    The forged leaves are made up; the real leaves keep their place. Only
    ``ledger_tree_nodes`` is written (an INSERT: the append-only triggers allow
    it), so the ledger itself still ends where it did. Returns the levels of the
    forged tree (level 0 first) and the ledger's real size.
    """
    ledger = instance.ledger
    size = ledger.size()
    leaves = [leaf for _entry, leaf in ledger.entries(0, size)]
    leaves += [leaf_hash(b"forged %d" % n) for n in range(size, forged_size)]
    levels, rows = [leaves], []
    while len(levels[-1]) > 1:
        below = levels[-1]
        level = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        rows += [
            {"level": len(levels), "idx": idx, "hash": value}
            for idx, value in enumerate(level)
            if (idx + 1) << len(levels) > size  # the nodes a real ledger of `size` entries has not stored
        ]
        levels.append(level)
    with ledger.db.write_engine.begin() as conn:
        repository.insert_nodes(conn, rows)
    return levels, size


def test_forged_nodes_past_the_last_entry_prove_nothing(instance: Instance) -> None:
    """With a whole forged tree stored past the head, every root and proof of a larger tree is still refused."""
    ledger = instance.ledger
    for n in range(9):
        ledger.append("trust.configured", {"n": n}, actor="test", now=datetime.now(UTC))
    forged_size = 16
    levels, size = _forge_tree_past_the_ledger(instance, forged_size)
    assert size < forged_size
    # The forgery is complete: without the size check, the stored nodes alone would yield an inclusion
    # proof of entry 0 in the forged tree, a consistency proof from 8 entries, and the forged root.
    forged_root = levels[-1][0]
    path = [n for a, b in inclusion_ranges(0, forged_size) for n in perfect_subtrees(a, b)]
    with ledger.db.engine.connect() as conn:
        stored = repository.fetch_nodes(conn, [*path, Node(3, 1), Node(4, 0)])
    verify_inclusion(0, forged_size, levels[0][0], [stored[n] for n in path], forged_root)
    verify_consistency(8, forged_size, levels[3][0], forged_root, [stored[Node(3, 1)]])
    assert stored[Node(4, 0)] == forged_root
    for tree in range(size + 1, forged_size + 1):
        with pytest.raises(ProofError, match="larger than the ledger"):
            ledger.root(tree)
        for seq in range(tree):
            with pytest.raises(ProofError, match="larger than the ledger"):
                ledger.inclusion_proof(seq, tree)
        for old in range(tree + 1):
            with pytest.raises(ProofError, match="larger than the ledger"):
                ledger.consistency_proof(old, tree)
    # Inside the ledger nothing changed: the real tree's proofs still verify.
    root = ledger.root(size)
    for seq in range(size):
        proof = ledger.inclusion_proof(seq, size)
        verify_inclusion(seq, size, proof.leaf_hash, proof.proof, root)
    for old in range(1, size + 1):  # from 0 a proof is empty and proves nothing
        verify_consistency(old, size, ledger.root(old), root, ledger.consistency_proof(old, size))
