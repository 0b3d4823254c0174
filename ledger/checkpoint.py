"""C2SP tlog-checkpoint bodies: origin, tree size, base64 root hash, optional extension lines."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import LedgerIntegrityError, ProofError, ValidationError
from ledger.keys import Signer, Verifier
from ledger.merkle import HASH_SIZE, verify_consistency
from ledger.note import SignedNote, sign_note


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size and its root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> str:
        """Return the checkpoint body (the note text)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body; raise :class:`ValidationError` if malformed."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":  # noqa: PLR2004 - 3 lines + trailing newline
            msg = "checkpoint must have an origin, a size and a root hash, each on a line"
            raise ValidationError(msg)
        origin, size_text, root_text, *ext = lines[:-1]
        if not origin:
            msg = "checkpoint origin is empty"
            raise ValidationError(msg)
        if not (size_text.isascii() and size_text.isdigit()) or (size_text != "0" and size_text.startswith("0")):
            msg = f"checkpoint tree size {size_text!r} is not a decimal number"
            raise ValidationError(msg)
        try:
            root = base64.b64decode(root_text, validate=True)
        except ValueError as exc:
            msg = "checkpoint root hash is not base64"
            raise ValidationError(msg) from exc
        if len(root) != HASH_SIZE:
            msg = f"checkpoint root hash has {len(root)} bytes, expected {HASH_SIZE}"
            raise ValidationError(msg)
        return cls(origin, int(size_text), root, tuple(ext))

    def sign(self, signer: Signer) -> str:
        """Return this checkpoint as a signed note."""
        return sign_note(self.to_text(), signer)


def open_checkpoint(note: str, verifiers: Iterable[Verifier], *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and return its checkpoint (raises on any failure)."""
    parsed = SignedNote.from_text(note)
    parsed.verify(verifiers)
    checkpoint = Checkpoint.from_text(parsed.text)
    if origin is not None and checkpoint.origin != origin:
        msg = f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}"
        raise ValidationError(msg)
    return checkpoint


def verify_extends(kept: Checkpoint, *, size: int, root: bytes, prove: Callable[[int, int], Sequence[bytes]]) -> None:
    """Check that the tree of *size* entries with *root* extends a checkpoint someone kept.

    This is how rollbacks and forks are caught (DESIGN.md, "Verification"): a
    checkpoint an outsider kept, for example the one inside a consent receipt,
    must be a prefix of today's tree. *prove* returns the RFC 9162 consistency
    proof between two sizes. Raises :class:`LedgerIntegrityError` otherwise.
    """
    if kept.size > size:
        msg = (
            f"the checkpoint you kept covers {kept.size} entries but the ledger now has {size}: "
            "entries were removed (rollback)"
        )
        raise LedgerIntegrityError(msg, seq=size)
    if kept.size == 0:
        return
    try:
        verify_consistency(kept.size, size, kept.root, root, prove(kept.size, size))
    except ProofError as exc:
        msg = (
            f"the ledger of {size} entries does not extend the checkpoint you kept of {kept.size} entries: "
            f"its history was rewritten (fork): {exc.detail}"
        )
        raise LedgerIntegrityError(msg) from exc
