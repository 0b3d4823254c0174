"""Hypothesis properties of the RFC 9162 Merkle tree: proofs verify, and any flipped bit breaks them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.db import Database
from ledger.errors import ProofError
from ledger.export import verify_live
from ledger.keys import Signer
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    consistency_ranges,
    hashes_for_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from ledger.sequencer import AppendSpec
from ledger.service import Ledger

ORIGIN = "datatrust.test/merkle"


class Tree:
    """Every stored node of a tree built leaf by leaf, and the root of each prefix."""

    def __init__(self, size: int) -> None:
        self.leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
        self.nodes: dict[Node, bytes] = {}
        self.roots = [EMPTY_ROOT]
        acc = CompactRange()
        for index, leaf in enumerate(self.leaves):
            self.nodes[Node(0, index)] = leaf
            acc.append(leaf, lambda level, idx, value: self.nodes.__setitem__(Node(level, idx), value))
            self.roots.append(acc.root())

    def lookup(self, wanted: list[Node]) -> dict[Node, bytes]:
        """The store's one-query lookup: only the nodes asked for."""
        return {n: self.nodes[n] for n in wanted if n in self.nodes}

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """Audit path of leaf *index* in the tree of *size* leaves, from stored nodes."""
        return hashes_for_ranges(inclusion_ranges(index, size), self.lookup)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """Consistency proof between two sizes, from stored nodes."""
        return hashes_for_ranges(consistency_ranges(old, new), self.lookup)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from the RFC 9162 §2.1.1 definition (recursive, no shortcuts)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def flip(value: bytes, bit: int) -> bytes:
    """*value* with one bit inverted (bit counts across the whole byte string)."""
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


_sizes = st.integers(min_value=1, max_value=300)
_bits = st.integers(min_value=0, max_value=255)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=130))
def test_compact_range_matches_the_definition(size: int) -> None:
    """The incremental root of every prefix equals MTH computed from the RFC definition."""
    tree = Tree(size)
    for prefix in range(size + 1):
        assert tree.roots[prefix] == reference_root(tree.leaves[:prefix])
    assert root_from_leaves(tree.leaves) == tree.roots[size]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=1, max_value=300), data=st.data())
def test_proof_ranges_split_into_aligned_stored_nodes(size: int, data: st.DataObject) -> None:
    """Every range a proof needs tiles exactly into aligned perfect subtrees, at most log2(n) of them."""
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(0, size))
    ranges = [(0, size), *inclusion_ranges(index, size), *consistency_ranges(old, size)]
    for start, end in ranges:
        nodes = perfect_subtrees(start, end)
        covered = [i for n in nodes for i in range(n.index << n.level, (n.index + 1) << n.level)]
        assert covered == list(range(start, end))
        assert len(nodes) <= max(1, (end - start).bit_length())


@settings(max_examples=40, deadline=None)
@given(size=_sizes, data=st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    """Every leaf of a random-size tree (and of a random earlier size) has a proof that verifies."""
    tree = Tree(size)
    for tree_size in {size, data.draw(st.integers(1, size))}:
        root = tree.roots[tree_size]
        for index in range(tree_size):
            proof = tree.inclusion(index, tree_size)
            assert len(proof) <= tree_size.bit_length()
            verify_inclusion(index, tree_size, tree.leaves[index], proof, root)


@settings(max_examples=15, deadline=None)
@given(size=st.integers(min_value=1, max_value=48))
def test_every_consistency_proof_verifies_exhaustively(size: int) -> None:
    """For a small tree, the consistency proof between every pair of sizes verifies."""
    tree = Tree(size)
    for old in range(1, size + 1):
        for new in range(old, size + 1):
            verify_consistency(old, new, tree.roots[old], tree.roots[new], tree.consistency(old, new))


@settings(max_examples=30, deadline=None)
@given(size=st.integers(min_value=1, max_value=3000), data=st.data())
def test_consistency_proofs_verify_in_large_trees(size: int, data: st.DataObject) -> None:
    """Random pairs of sizes in larger trees give consistency proofs that verify."""
    tree = Tree(size)
    for _ in range(10):
        old = data.draw(st.integers(1, size))
        new = data.draw(st.integers(old, size))
        verify_consistency(old, new, tree.roots[old], tree.roots[new], tree.consistency(old, new))


@settings(max_examples=150, deadline=None)
@given(size=_sizes, data=st.data(), bit=_bits)
def test_inclusion_bit_flips_fail(size: int, data: st.DataObject, bit: int) -> None:
    """Flipping any single bit of the leaf, of any proof element or of the root makes inclusion fail."""
    tree = Tree(size)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion(index, size)
    leaf, root = tree.leaves[index], tree.roots[size]
    with pytest.raises(ProofError):
        verify_inclusion(index, size, flip(leaf, bit), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, flip(root, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, bad, root)
    verify_inclusion(index, size, leaf, proof, root)  # and the untouched proof still verifies


@settings(max_examples=150, deadline=None)
@given(size=_sizes, data=st.data(), bit=_bits)
def test_consistency_bit_flips_fail(size: int, data: st.DataObject, bit: int) -> None:
    """Flipping any single bit of either root or of any proof element makes consistency fail."""
    tree = Tree(size)
    old = data.draw(st.integers(1, size))
    new = data.draw(st.integers(old, size))
    proof = tree.consistency(old, new)
    old_root, new_root = tree.roots[old], tree.roots[new]
    with pytest.raises(ProofError):
        verify_consistency(old, new, flip(old_root, bit), new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, flip(new_root, bit), proof)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, bad)
    verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=100, deadline=None)
@given(size=_sizes, data=st.data())
def test_proofs_for_the_wrong_position_fail(size: int, data: st.DataObject) -> None:
    """A valid proof presented for another index, or with an element dropped or added, fails."""
    tree = Tree(size)
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion(index, size)
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(other, size, tree.leaves[index], proof, tree.roots[size])
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, tree.leaves[index], proof[:-1], tree.roots[size])
    with pytest.raises(ProofError):
        verify_inclusion(index, size, tree.leaves[index], [*proof, tree.leaves[0]], tree.roots[size])


def test_consistency_from_empty_tree_is_refused() -> None:
    """A consistency proof from size 0 proves nothing and is refused rather than accepted."""
    tree = Tree(4)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 4, EMPTY_ROOT, tree.roots[4], [])


def test_missing_stored_node_is_reported() -> None:
    """If the store lacks a node a proof needs, the error names it instead of returning a short proof."""
    tree = Tree(8)
    del tree.nodes[Node(2, 1)]
    with pytest.raises(ProofError, match="missing node level=2 index=1"):
        tree.inclusion(0, 8)


# -- through the real ledger, on SQLite and PostgreSQL -----------------------------------------


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """A bare ledger (no projections) on each database engine."""
    db = Database.from_url(db_url)
    opened = Ledger(db, signer=Signer.generate(ORIGIN), origin=ORIGIN)
    yield opened
    opened.close()
    db.dispose()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    appends=st.integers(min_value=1, max_value=40),
    picks=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32), st.integers(0, 2**32)),
    bit=_bits,
)
def test_ledger_proofs_verify_and_bit_flips_fail(
    ledger: Ledger, appends: int, picks: tuple[int, int, int], bit: int
) -> None:
    """For random appends to a live ledger, stored-node proofs verify against a signed checkpoint and flips fail."""
    now = datetime.now(UTC)
    if appends:
        ledger.append_all(
            [AppendSpec("check.decided", "org_prop", now, payload={"n": n, "b": bit}) for n in range(appends)]
        )
    checkpoint = ledger.open_checkpoint(ledger.sign_checkpoint())
    size = ledger.size()
    assert checkpoint.size == size
    # The ledger grows across examples, so positions are drawn as numbers and reduced modulo its size.
    seq = picks[0] % size
    entry = ledger.get(seq)
    proof = ledger.inclusion_proof(seq, size)
    assert proof.leaf_hash == entry.leaf_hash == leaf_hash(entry.body)
    verify_inclusion(seq, size, entry.leaf_hash, proof.proof, checkpoint.root)
    with pytest.raises(ProofError):  # one bit of the entry's bytes
        verify_inclusion(seq, size, leaf_hash(flip(entry.body, bit)), proof.proof, checkpoint.root)
    if proof.proof:
        at = picks[1] % len(proof.proof)
        with pytest.raises(ProofError):
            verify_inclusion(
                seq,
                size,
                entry.leaf_hash,
                [*proof.proof[:at], flip(proof.proof[at], bit), *proof.proof[at + 1 :]],
                checkpoint.root,
            )
    old = 1 + picks[2] % size
    old_root = ledger.root(old)
    leaves = [leaf for _entry, leaf in ledger.entries(0, old)]
    assert old_root == reference_root(leaves)
    consistency = ledger.consistency_proof(old, size)
    verify_consistency(old, size, old_root, checkpoint.root, consistency)
    with pytest.raises(ProofError):
        verify_consistency(old, size, flip(old_root, bit), checkpoint.root, consistency)
    with ledger.db.engine.connect() as conn:
        assert verify_live(conn, [ledger.signer.verifier], origin=ORIGIN).entries == size
