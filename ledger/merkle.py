"""RFC 9162 Merkle tree hashing, proofs and their verification.

Hashes follow RFC 9162 §2.1.1: ``leaf = SHA-256(0x00 || data)``,
``node = SHA-256(0x01 || left || right)``.

Proof *generation* works on ranges: every element of an RFC 9162 audit or
consistency path is the Merkle tree hash of a range of leaves ``[start, end)``,
and each such range splits into at most ``log2(n)`` perfect, aligned subtrees
(:func:`perfect_subtrees`). Those are exactly the nodes the storage keeps, so a
proof costs one indexed read of O(log n) nodes, never a recomputation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from ledger.errors import ProofError

LEAF_HASH_PREFIX = b"\x00"  # RFC 9162 §2.1.1
NODE_HASH_PREFIX = b"\x01"  # RFC 9162 §2.1.1
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = SHA-256()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash of *data*."""
    return hashlib.sha256(LEAF_HASH_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash of two children."""
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly smaller than *n* (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True, slots=True)
class Node:
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index << level``."""

    level: int
    index: int


def perfect_subtrees(start: int, end: int) -> list[Node]:
    """Split the RFC 9162 subtree over leaves ``[start, end)`` into stored nodes, left to right."""
    nodes: list[Node] = []
    while end - start > 0:
        size = end - start
        width = size if size & (size - 1) == 0 else largest_power_of_two_below(size)
        level = width.bit_length() - 1
        nodes.append(Node(level, start >> level))
        start += width
    return nodes


def hash_from_nodes(nodes: Sequence[bytes]) -> bytes:
    """Fold the hashes of :func:`perfect_subtrees` (left to right) into one subtree hash."""
    result = nodes[-1]
    for left in reversed(nodes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Ranges whose hashes form the RFC 9162 §2.1.3.1 audit path of leaf *index*, leaf to root."""
    if not 0 <= index < size:
        msg = f"leaf {index} is not in a tree of size {size}"
        raise ProofError(msg)
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index - start < k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Ranges whose hashes form the RFC 9162 §2.1.4.1 consistency proof, in RFC order."""
    if not 0 <= old_size <= new_size:
        msg = f"cannot prove consistency from size {old_size} to size {new_size}"
        raise ProofError(msg)
    if old_size in (0, new_size):
        return []
    out: list[tuple[int, int]] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        k = largest_power_of_two_below(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        out.append((start, end))
    out.reverse()
    return out


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Compute MTH over a list of leaf hashes (for tests and small trees)."""
    acc = CompactRange()
    for leaf in leaves:
        acc.append(leaf)
    return acc.root()


@dataclass(slots=True)
class CompactRange:
    """The right edge of a growing tree: one hash per set bit of the size.

    Appending is amortised O(1); :meth:`root` is O(log n). ``on_node`` is called
    with ``(level, index, hash)`` for every completed perfect subtree of level >= 1,
    which is how the store learns the nodes it must keep.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """Add one leaf hash on the right."""
        index = self.size
        value = leaf
        level = 0
        while index & 1:
            value = node_hash(self.hashes.pop(), value)
            level += 1
            index >>= 1
            if on_node is not None:
                on_node(level, index, value)
        self.hashes.append(value)
        self.size += 1

    def push(self, leaf: bytes, nodes: list[tuple[int, int, bytes]]) -> None:
        """Add one leaf hash on the right, as :meth:`append`, adding ``(level, index, hash)`` to *nodes*.

        The same nodes, in the same order, as ``append``'s ``on_node`` calls, without
        a call per node (the append path's hot loop).
        """
        index = self.size
        self.size = index + 1
        if not index & 1:
            self.hashes.append(leaf)
            return
        hashes = self.hashes
        value = leaf
        level = 0
        while index & 1:
            value = _sha256(NODE_HASH_PREFIX + hashes.pop() + value).digest()
            level += 1
            index >>= 1
            nodes.append((level, index, value))
        hashes.append(value)

    def extend(
        self,
        leaves: Sequence[bytes],
        on_node: Callable[[int, int, bytes], None] | None = None,
        *,
        on_layer: Callable[[int, int, list[bytes]], None] | None = None,
    ) -> None:
        """Add many leaf hashes on the right: the same tree, and the same ``on_node`` calls, as appending each.

        The leaves are split into aligned perfect subtrees, each hashed level by
        level in a tight loop, then merged into the right edge (verification's
        hot path: about half the cost of :meth:`append` per leaf). Instead of
        one ``on_node`` call per node, ``on_layer(level, first index, hashes)``
        may receive the completed nodes a run of consecutive indices at a time.
        """
        if on_layer is not None and on_node is None:
            on_node = partial(_one_node, on_layer)
        position, count = 0, len(leaves)
        while position < count:
            size = self.size
            align = (size & -size).bit_length() - 1 if size else 63
            level = min(align, (count - position).bit_length() - 1)
            width = 1 << level
            layer = list(leaves[position : position + width])
            first = size >> 1
            for depth in range(1, level + 1):
                pairs = iter(layer)
                layer = [
                    _sha256(NODE_HASH_PREFIX + left + right).digest() for left, right in zip(pairs, pairs, strict=False)
                ]
                if on_layer is not None:
                    on_layer(depth, first, layer)
                elif on_node is not None:
                    for offset, value in enumerate(layer):
                        on_node(depth, first + offset, value)
                first >>= 1
            self._push(layer[0], level, on_node)
            position += width

    def push_subtree(self, value: bytes, level: int) -> None:
        """Add the hash of a perfect subtree of ``2**level`` leaves (the size must be a multiple of its width)."""
        if self.size & ((1 << level) - 1):
            msg = f"a subtree of {1 << level} leaves cannot start at leaf {self.size}"
            raise ProofError(msg)
        self._push(value, level, None)

    def _push(self, value: bytes, level: int, on_node: Callable[[int, int, bytes], None] | None) -> None:
        """Merge the hash of an aligned perfect subtree of ``2**level`` leaves into the right edge."""
        index = self.size >> level
        self.size += 1 << level
        while index & 1:
            value = node_hash(self.hashes.pop(), value)
            level += 1
            index >>= 1
            if on_node is not None:
                on_node(level, index, value)
        self.hashes.append(value)

    def root(self) -> bytes:
        """Return the Merkle tree hash of the leaves appended so far."""
        if not self.hashes:
            return EMPTY_ROOT
        return hash_from_nodes(self.hashes)

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange(self.size, list(self.hashes))

    @classmethod
    def edge_nodes(cls, size: int) -> list[Node]:
        """The stored nodes that make up the right edge of a tree of *size* leaves."""
        return perfect_subtrees(0, size)


def _one_node(on_layer: Callable[[int, int, list[bytes]], None], level: int, index: int, value: bytes) -> None:
    on_layer(level, index, [value])


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        msg = f"{what} has wrong size: expected {HASH_SIZE} bytes, got {len(value)}"
        raise ProofError(msg)


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Run RFC 9162 §2.1.3.2 and return the root the proof implies (raises if malformed)."""
    if not 0 <= index < size:
        msg = f"leaf index {index} is out of range for tree size {size}"
        raise ProofError(msg)
    _check_hash(leaf, "leaf hash")
    expected = len(inclusion_ranges(index, size))
    if len(proof) != expected:
        msg = f"inclusion proof has wrong size: expected {expected}, got {len(proof)}"
        raise ProofError(msg)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        _check_hash(p, "proof element")
        if sn == 0:  # pragma: no cover - unreachable once the length is checked
            msg = "inclusion proof is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # pragma: no cover - unreachable once the length is checked
        msg = "inclusion proof is too short"
        raise ProofError(msg)
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Verify an RFC 9162 inclusion proof; return nothing or raise :class:`ProofError`."""
    _check_hash(root, "root hash")
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        msg = (
            f"inclusion proof for leaf {index} in tree size {size} does not lead to the root: "
            f"computed {computed.hex()}, expected {root.hex()}"
        )
        raise ProofError(msg, seq=index)


def verify_consistency(  # noqa: C901, PLR0912, PLR0915 - RFC 9162 §2.1.4.2, step by step
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify an RFC 9162 §2.1.4.2 consistency proof; return nothing or raise :class:`ProofError`."""
    if old_size > new_size:
        msg = f"old tree size {old_size} is larger than new tree size {new_size}"
        raise ProofError(msg)
    if old_size == 0:
        msg = "a consistency proof from an empty tree proves nothing: every tree extends it"
        raise ProofError(msg)
    if old_size == new_size:
        if proof:
            msg = "consistency proof between equal sizes must be empty"
            raise ProofError(msg)
        if old_root != new_root:
            msg = f"trees of equal size {old_size} have different roots"
            raise ProofError(msg)
        return
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    expected = len(consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        msg = f"consistency proof has wrong size: expected {expected}, got {len(proof)}"
        raise ProofError(msg)
    for p in proof:
        _check_hash(p, "proof element")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            msg = "consistency proof is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        msg = "consistency proof is too short"
        raise ProofError(msg)
    if fr != old_root:
        msg = f"consistency proof does not reproduce the old root of tree size {old_size}"
        raise ProofError(msg)
    if sr != new_root:
        msg = f"consistency proof does not reproduce the new root of tree size {new_size}"
        raise ProofError(msg)


def hashes_for_ranges(
    ranges: Iterable[tuple[int, int]], lookup: Callable[[list[Node]], dict[Node, bytes]]
) -> list[bytes]:
    """Resolve proof ranges to hashes, fetching every needed stored node in one *lookup* call."""
    ranges = list(ranges)
    per_range = [perfect_subtrees(a, b) for a, b in ranges]
    wanted = sorted({n for nodes in per_range for n in nodes}, key=lambda n: (n.level, n.index))
    found = lookup(wanted)
    missing = [n for n in wanted if n not in found]
    if missing:
        msg = f"stored tree is missing node level={missing[0].level} index={missing[0].index}"
        raise ProofError(msg)
    return [hash_from_nodes([found[n] for n in nodes]) for nodes in per_range]
