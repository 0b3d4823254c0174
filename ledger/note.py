"""C2SP signed-note: text plus one or more Ed25519 signature lines.

<text, ending in a newline>
<blank line>
— <key name> <base64(4-byte key id || signature)>
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import SignatureInvalidError, ValidationError
from ledger.keys import Signer, Verifier

_SIG_PREFIX = "\u2014 "  # C2SP signed-note: an em dash and a space start each signature line
_MAX_SIGNATURES = 100  # Go's note.Open refuses more, to bound the work


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def from_text(cls, note: str) -> SignedNote:
        """Parse the bytes of a signed note (raises :class:`ValidationError` if malformed)."""
        if not note.endswith("\n"):
            msg = "signed note must end with a newline"
            raise ValidationError(msg)
        split = note.rfind("\n\n")
        if split < 0:
            msg = "signed note has no blank line before its signatures"
            raise ValidationError(msg)
        text, sig_block = note[: split + 1], note[split + 2 :]
        _check_text(note)  # as Go's note.Open: the whole note, signature lines included
        lines = sig_block.split("\n")[:-1]
        if len(lines) > _MAX_SIGNATURES:
            msg = f"signed note has more than {_MAX_SIGNATURES} signatures"
            raise ValidationError(msg)
        sigs: list[NoteSignature] = []
        for line in lines:
            if not line.startswith(_SIG_PREFIX):
                msg = f"malformed signature line: {line[:40]!r}"
                raise ValidationError(msg)
            parts = line[len(_SIG_PREFIX) :].split(" ")
            if len(parts) != 2 or not _is_valid_name(parts[0]):  # noqa: PLR2004 - name and signature
                msg = "signature line must be '— NAME BASE64' with a name free of '+' and white space"
                raise ValidationError(msg)
            try:
                raw = base64.b64decode(parts[1], validate=True)
            except ValueError as exc:
                msg = "signature is not valid base64"
                raise ValidationError(msg) from exc
            if len(raw) < 5:  # noqa: PLR2004 - 4-byte id and at least one byte
                msg = "signature too short"
                raise ValidationError(msg)
            sigs.append(NoteSignature(parts[0], raw[:4], raw[4:]))
        if not sigs:
            msg = "signed note has no signatures"
            raise ValidationError(msg)
        return cls(text, tuple(sigs))

    def verify(self, verifiers: Iterable[Verifier]) -> Verifier:
        """Return the first known verifier that signed the note, or raise.

        As Go's ``note.Open``: every signature by a known key must verify (one bad
        one fails the note); signatures by unknown keys are ignored.
        """
        known = {(v.name, v.key_id): v for v in verifiers}
        signed_by: list[Verifier] = []
        for sig in self.signatures:
            verifier = known.get((sig.name, sig.key_id))
            if verifier is not None and verifier not in signed_by:
                verifier.verify(self.text.encode(), sig.signature)
                signed_by.append(verifier)
        if signed_by:
            return signed_by[0]
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in self.signatures)
        msg = f"note is not signed by a known key (signed by {names})"
        raise SignatureInvalidError(msg)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        msg = "note text must end with a newline"
        raise ValidationError(msg)
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):  # noqa: PLR2004 - ASCII control range
        msg = "note text must not contain control characters other than newline"
        raise ValidationError(msg)
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        msg = "note text is not valid Unicode (a lone surrogate)"
        raise ValidationError(msg) from exc


def _is_valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def sign_note(text: str, *signers: Signer) -> str:
    """Return the signed note for *text* with one signature line per signer."""
    _check_text(text)
    lines = []
    for signer in signers:
        raw = signer.verifier.key_id + signer.sign(text.encode())
        lines.append(f"{_SIG_PREFIX}{signer.name} {base64.b64encode(raw).decode()}\n")
    return text + "\n" + "".join(lines)
