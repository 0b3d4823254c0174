"""RFC 9162 §2.1 Merkle tree hashing and proof verification (written for this client; no server code).

``leaf_hash = SHA-256(0x00 || entry bytes)``; ``node = SHA-256(0x01 || left || right)``.
The two verification procedures follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
(consistency) step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from datatrust_client.errors import ProofError

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """The leaf hash of an entry's canonical bytes."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        msg = f"{what} has {len(value)} bytes, expected {HASH_SIZE}"
        raise ProofError(msg)


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while not fn & 1 and fn != 0:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that *leaf* is entry *index* of the tree of *size* entries with *root* (RFC 9162 §2.1.3.2)."""
    _check(root, "root hash")
    _check(leaf, "leaf hash")
    if not 0 <= index < size:
        msg = f"leaf {index} is not in a tree of size {size}"
        raise ProofError(msg)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check(p, "proof element")
        if sn == 0:
            msg = f"inclusion proof for leaf {index} in tree size {size} is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        msg = f"inclusion proof for leaf {index} in tree size {size} is too short"
        raise ProofError(msg)
    if r != root:
        msg = f"inclusion proof for leaf {index} in tree size {size} does not lead to the root"
        raise ProofError(msg)


def verify_consistency(  # noqa: C901 - RFC 9162 §2.1.4.2, step by step
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of *new_size* entries extends the tree of *old_size* (RFC 9162 §2.1.4.2)."""
    if not 0 < old_size <= new_size:
        msg = f"cannot prove consistency from tree size {old_size} to {new_size}"
        raise ProofError(msg)
    if old_size == new_size:
        if proof or old_root != new_root:
            msg = f"trees of equal size {old_size} must have the same root and an empty proof"
            raise ProofError(msg)
        return
    _check(old_root, "old root hash")
    _check(new_root, "new root hash")
    path = list(proof)
    for p in path:
        _check(p, "proof element")
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, old_root)
    if not path:
        msg = "consistency proof is empty"
        raise ProofError(msg)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            msg = "consistency proof is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        msg = f"consistency proof from tree size {old_size} to {new_size} does not verify"
        raise ProofError(msg)
