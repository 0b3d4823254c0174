"""Streaming verification of a ledger: hashes, chain, Merkle roots, checkpoint signatures.

Verification needs only the entry bytes and the trust's public key. It never
re-serialises: it hashes the stored bytes, reads ``prev`` and ``seq`` from the
tail of each entry (in canonical form they are the last two members, so the
last ``,"prev":"`` in the bytes is the entry's own), and keeps only the right
edge of the tree in memory, so a million entries verify in constant memory.

Keys: checkpoints may be signed by a trusted (anchor) key or by a key that a
``key.added`` entry announced earlier in the verified chain and no
``key.revoked`` entry withdrew before that checkpoint. The last checkpoint must
be signed by an anchor key, which binds every announcement before it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerIntegrityError, SignatureInvalidError, ValidationError
from ledger.keys import Verifier
from ledger.merkle import CompactRange, Node, node_hash
from ledger.note import SignedNote

_PREV = b',"prev":"'
_KIND = b',"kind":"'
_KEY_KINDS = (b"key.added", b"key.revoked")
_TAIL = b',"prev":"%s","seq":%d,"v":1}'  # how a well-formed entry ends, given its prev and seq
_KEY_MARK = b'"kind":"key.'  # any entry holding this takes the careful path (key entries are rare)


@dataclass(slots=True)
class VerifyReport:
    """What a successful verification covered."""

    entries: int = 0
    checkpoints: int = 0
    root: bytes = b""
    last_checkpoint_size: int = 0
    uncovered: int = 0


@dataclass(slots=True)
class StreamVerifier:
    """Feed entries (and checkpoints at the size they cover) in order; raises at the first fault."""

    anchors: list[Verifier]
    origin: str | None = None
    on_node: Callable[[int, int, bytes], None] | None = None
    on_layer: Callable[[int, int, list[bytes]], None] | None = None  # instead of on_node: runs of nodes
    tree: CompactRange = field(default_factory=CompactRange)
    prev_hex: bytes = b"0" * 64
    announced: dict[tuple[str, bytes], tuple[Verifier, int | None]] = field(default_factory=dict)
    report: VerifyReport = field(default_factory=VerifyReport)
    last_signed_by_anchor: bool = False
    first_seq: int = 0  # the sequence number of the first entry fed (a range verified on its own)
    key_entries: list[tuple[int, bytes]] | None = None  # if a list: key entries are also recorded here

    def add_entry(self, body: bytes, stored_leaf: bytes | None = None) -> bytes:
        """Check one entry's hash, sequence number and chain link; return its leaf hash."""
        seq = self.first_seq + self.tree.size
        leaf = hashlib.sha256(b"\x00" + body).digest()
        if stored_leaf is not None and stored_leaf != leaf:
            msg = f"entry {seq}: its bytes do not match its stored leaf hash (the entry was altered)"
            raise LedgerIntegrityError(msg, seq=seq)
        at = body.rfind(_PREV)
        tail = body[at + len(_PREV) :] if at >= 0 else b""
        if len(tail) < 64 or tail[64:] != b'","seq":' + str(seq).encode() + b',"v":1}':  # noqa: PLR2004
            found = _seq_of(tail)
            msg = (
                f"entry at position {seq} is out of order or malformed (it says seq {found})"
                if found is not None
                else f"entry {seq} is malformed: it does not end with prev, seq and v"
            )
            raise LedgerIntegrityError(msg, seq=seq)
        if tail[:64] != self.prev_hex:
            bad = seq - 1 if seq else 0
            msg = (
                f"entry {seq} does not chain to entry {seq - 1}: entry {bad} was altered, removed or reordered"
                if seq
                else "entry 0 must have a prev of 64 zeros"
            )
            raise LedgerIntegrityError(msg, seq=bad)
        kind_at = body.find(_KIND)
        if kind_at >= 0 and body[kind_at + len(_KIND) : kind_at + len(_KIND) + 11].startswith(_KEY_KINDS):
            self._key_entry(seq, body)
        if self.on_layer is not None and self.on_node is None:
            self.tree.extend([leaf], on_layer=self.on_layer)
        else:
            self.tree.append(leaf, self.on_node)
        self.prev_hex = leaf.hex().encode()
        self.report.entries += 1
        return leaf

    def add_entries(self, bodies: Sequence[bytes], stored_leaves: Sequence[bytes] | None = None) -> None:
        """Check a run of entries in order, exactly as :meth:`add_entry` checks each, in a tighter loop.

        An entry passes the fast check when it ends with ``,"prev":"<previous
        leaf hash>","seq":<its position>,"v":1}``, which is what :meth:`add_entry`
        checks (the last ``,"prev":"`` is then that one); passing entries are
        hashed inline and their leaves added to the tree in one
        :meth:`CompactRange.extend`. Any other entry, and any key entry, goes
        through :meth:`add_entry`, which raises the precise error or records the key.
        """
        sha256, hexlify = hashlib.sha256, binascii.hexlify
        careful = _KEY_MARK in b"".join(bodies)  # key entries are rare: screen the whole run at once
        seq = self.first_seq + self.tree.size
        prev_hex = self.prev_hex
        leaves: list[bytes] = []
        for position, body in enumerate(bodies):
            leaf = sha256(b"\x00" + body).digest()
            if (
                not body.endswith(_TAIL % (prev_hex, seq))
                or (stored_leaves is not None and stored_leaves[position] != leaf)
                or (careful and _KEY_MARK in body)
            ):
                self._extend(leaves, prev_hex)
                self.add_entry(body, None if stored_leaves is None else stored_leaves[position])
                leaves, prev_hex = [], self.prev_hex
            else:
                leaves.append(leaf)
                prev_hex = hexlify(leaf)
            seq += 1
        self._extend(leaves, prev_hex)

    def _extend(self, leaves: list[bytes], prev_hex: bytes) -> None:
        if leaves:
            self.tree.extend(leaves, self.on_node, on_layer=self.on_layer)
            self.prev_hex = prev_hex
            self.report.entries += len(leaves)

    def join_range(self, result: dict[str, Any]) -> None:
        """Continue with a range checked by :func:`verify_range` (its first entry follows the last one fed here).

        Replays the range's key entries and verifies its checkpoints in order,
        as if its entries had been fed here; raises at the first fault.
        """
        if result["first_prev"].encode() != self.prev_hex:
            msg = "the checked range does not chain to the entries before it"
            raise LedgerIntegrityError(msg, seq=self.first_seq + self.tree.size)
        base = self.tree.copy()

        def tree_at(parts: list[list[Any]]) -> CompactRange:
            tree = base.copy()
            for level, value in parts:
                tree.push_subtree(bytes.fromhex(value), level)
            return tree

        keys = [(int(seq), base64.b64decode(body)) for seq, body in result["keys"]]
        position = 0
        for size, parts, note in result["checkpoints"]:
            while position < len(keys) and keys[position][0] < size:
                self._key_entry(*keys[position])
                position += 1
            self.tree = tree_at(parts)
            self.add_checkpoint(note)
        for seq, body in keys[position:]:
            self._key_entry(seq, body)
        self.tree = tree_at(result["parts"])
        self.prev_hex = result["last_prev"].encode()
        self.report.entries += result["size"] - base.size

    def _key_entry(self, seq: int, body: bytes) -> None:
        obj = json.loads(body)
        try:
            verifier = Verifier.from_text(obj["payload"]["verifier_key"])
        except (KeyError, TypeError, ValidationError) as exc:
            msg = f"entry {seq} ({obj.get('kind')}) does not hold a valid verifier_key"
            raise LedgerIntegrityError(msg, seq=seq) from exc
        ident = (verifier.name, verifier.key_id)
        if self.key_entries is not None:
            self.key_entries.append((seq, body))
        if obj["kind"] == "key.added":
            self.announced[ident] = (verifier, None)
        elif ident in self.announced:
            self.announced[ident] = (verifier, seq)

    def add_checkpoint(self, note: str) -> Checkpoint:
        """Verify a signed checkpoint against the entries fed so far (its size must equal their count)."""
        parsed = SignedNote.from_text(note)
        size = self.tree.size
        usable = list(self.anchors)
        for verifier, revoked_at in self.announced.values():
            if revoked_at is None or revoked_at >= size:
                usable.append(verifier)
        try:
            signer = parsed.verify(usable)
        except SignatureInvalidError as exc:
            msg = f"checkpoint at tree size {size}: {exc.detail}"
            raise SignatureInvalidError(msg, seq=size - 1 if size else None) from exc
        checkpoint = Checkpoint.from_text(parsed.text)
        if self.origin is not None and checkpoint.origin != self.origin:
            msg = f"checkpoint origin {checkpoint.origin!r} is not {self.origin!r}"
            raise LedgerIntegrityError(msg)
        if checkpoint.size != size:
            msg = f"checkpoint says tree size {checkpoint.size} but sits after {size} entries"
            raise LedgerIntegrityError(msg, seq=min(size, checkpoint.size))
        if checkpoint.root != self.tree.root():
            msg = (
                f"checkpoint of tree size {size} does not match the entries: some entry before {size} "
                "was altered, or the checkpoint is for another log"
            )
            raise LedgerIntegrityError(msg, seq=size - 1)
        self.last_signed_by_anchor = signer in self.anchors
        self.report.checkpoints += 1
        self.report.last_checkpoint_size = size
        return checkpoint

    def finish(self, *, require_checkpoint: bool = True) -> VerifyReport:
        """Close the stream: the last checkpoint must be signed by a trusted key."""
        if require_checkpoint and self.report.entries and not self.report.checkpoints:
            msg = "no signed checkpoint covers these entries"
            raise LedgerIntegrityError(msg)
        if self.report.checkpoints and not self.last_signed_by_anchor:
            msg = "the last checkpoint is not signed by the trusted key given"
            raise SignatureInvalidError(msg)
        self.report.root = self.tree.root()
        self.report.uncovered = self.report.entries - self.report.last_checkpoint_size
        return self.report


def _seq_of(tail: bytes) -> int | None:
    marker = b'"seq":'
    at = tail.find(marker)
    if at < 0:
        return None
    digits = tail[at + len(marker) :].split(b",")[0]
    return int(digits) if digits.isdigit() else None


def check_stored_nodes(computed: Iterable[tuple[int, int, bytes]], stored: dict[Node, bytes]) -> None:
    """Compare nodes recomputed from entries with the stored ones (raises on a difference)."""
    for level, idx, value in computed:
        got = stored.get(Node(level, idx))
        if got != value:
            first = idx << level
            last = first + (1 << level) - 1
            msg = f"stored Merkle node (level {level}, index {idx}) does not match entries {first}..{last}"
            raise LedgerIntegrityError(msg, seq=first)


def _levels(size: int) -> list[int]:
    """Levels of the perfect subtrees of a compact range of *size* leaves, left to right."""
    return [level for level in reversed(range(size.bit_length())) if size >> level & 1]


@dataclass
class _RangeChecker:
    """The worker side of a parallel verification: checks one range, keeps its hashes as aligned subtrees."""

    chunk_level: int
    verifier: StreamVerifier
    roots: list[bytes] = field(default_factory=list)
    checkpoints: list[list[Any]] = field(default_factory=list)
    first_prev: bytes | None = None

    def parts(self) -> list[list[Any]]:
        tree = self.verifier.tree
        tail = zip(_levels(tree.size), tree.hashes, strict=True)
        return [[self.chunk_level, root.hex()] for root in self.roots] + [[lv, value.hex()] for lv, value in tail]

    def feed(self, run: list[bytes]) -> None:
        chunk, verifier = 1 << self.chunk_level, self.verifier
        if run and self.first_prev is None:  # the caller checks the link to the entry before the range
            at = run[0].rfind(_PREV)
            self.first_prev = verifier.prev_hex = run[0][at + len(_PREV) : at + len(_PREV) + 64]
        done = 0
        while done < len(run):
            part = run[done : done + chunk - verifier.tree.size]
            verifier.add_entries(part)
            done += len(part)
            if verifier.tree.size == chunk:
                self.roots.append(verifier.tree.root())
                verifier.first_seq += chunk
                verifier.tree = CompactRange()

    def lines(self, lines: list[bytes]) -> None:
        run: list[bytes] = []
        for line in lines:
            if line.startswith(b'{"actor":'):
                run.append(line)
                continue
            self.feed(run)
            run = []
            if not line.startswith(b'{"note":'):
                msg = "a line is neither an entry nor a checkpoint"
                raise LedgerIntegrityError(msg)
            size = self.verifier.first_seq + self.verifier.tree.size
            self.checkpoints.append([size, self.parts(), json.loads(line)["note"]])
        self.feed(run)


def verify_range(path: Path, *, offset: int, first_seq: int, chunk_level: int) -> dict[str, Any]:
    """Check the entries of an export from byte *offset* (entry *first_seq*) to the end, for a parallel verify.

    Everything :meth:`StreamVerifier.add_entries` checks is checked here, except
    the link of the first entry to the one before it and the checkpoint
    signatures: the caller does those. Hashes are returned as the perfect
    subtrees (at most ``2**chunk_level`` leaves, so aligned in the whole tree
    when *first_seq* is a multiple of that) covering the range up to each
    checkpoint and to the end. Any fault raises; the caller then verifies
    serially, so that errors read exactly as they always do.
    """
    checker = _RangeChecker(chunk_level, StreamVerifier([], first_seq=first_seq, key_entries=[]))
    with path.open("rb") as handle:
        handle.seek(offset)
        rest = b""
        while block := handle.read(1 << 22):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            checker.lines(lines)
        if rest:
            checker.lines([rest])
    verifier = checker.verifier
    return {
        "first_prev": (checker.first_prev or b"").decode(),
        "last_prev": verifier.prev_hex.decode(),
        "size": verifier.first_seq + verifier.tree.size,
        "checkpoints": checker.checkpoints,
        "keys": [[seq, base64.b64encode(body).decode()] for seq, body in verifier.key_entries or []],
        "parts": checker.parts(),
    }


def range_worker(argv: list[str]) -> None:
    """Entry point of the worker process: ``PATH OFFSET FIRST_SEQ CHUNK_LEVEL`` in, JSON on stdout."""
    path, offset, first_seq, chunk_level = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    result = verify_range(path, offset=offset, first_seq=first_seq, chunk_level=chunk_level)
    sys.stdout.write(json.dumps(result))


__all__ = ["StreamVerifier", "VerifyReport", "check_stored_nodes", "node_hash", "range_worker", "verify_range"]
