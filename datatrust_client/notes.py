"""C2SP signed notes and tlog checkpoints, verified with the trust's verifier key (written for this client).

* verifier key: ``<name>+<8 hex key id>+<base64(0x01 || Ed25519 public key)>``, where the
  key id is the first 4 bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``;
* signed note: text ending in a newline, a blank line, then lines
  ``— <name> <base64(4-byte key id || Ed25519 signature of the text)>``;
* checkpoint (the note text): origin line, decimal tree size, base64 root hash, then
  optional extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from datatrust_client.errors import SignatureError
from datatrust_client.merkle import HASH_SIZE

_ED25519 = 0x01  # C2SP signed-note signature type
_SIG_PREFIX = "\u2014 "  # an em dash and a space start each signature line
_KEY_ID_SIZE = 4


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is not valid base64"
        raise SignatureError(msg) from exc


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A named Ed25519 public key that verifies signed notes."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id of the signed-note format."""
        return hashlib.sha256(self.name.encode() + b"\n" + bytes([_ED25519]) + self.public_key).digest()[:_KEY_ID_SIZE]

    @classmethod
    def from_text(cls, text: str) -> VerifierKey:
        """Parse ``name+keyid+base64``; raise :class:`SignatureError` if malformed or inconsistent."""
        parts = text.strip().split("+", 2)  # base64 may itself hold "+"
        if len(parts) != 3 or not parts[0] or any(ch.isspace() for ch in parts[0]):  # noqa: PLR2004
            msg = "verifier key must look like NAME+KEYID+BASE64"
            raise SignatureError(msg)
        name, hex_id, data = parts
        raw = _b64(data, "verifier key")
        if len(raw) != 1 + 32 or raw[0] != _ED25519:  # type byte and 32 key bytes
            msg = "verifier key is not an Ed25519 key"
            raise SignatureError(msg)
        key = cls(name, raw[1:])
        if key.key_id.hex() != hex_id.lower():
            msg = "verifier key id does not match its name and public key"
            raise SignatureError(msg)
        return key

    def to_text(self) -> str:
        """The key in its text form."""
        data = base64.b64encode(bytes([_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{data}"


def open_note(note: str, keys: VerifierKey | list[VerifierKey]) -> str:
    """Verify a signed note with one of *keys* and return its text (raises :class:`SignatureError`)."""
    known = {(k.name, k.key_id): k for k in ([keys] if isinstance(keys, VerifierKey) else keys)}
    if not note.endswith("\n") or "\n\n" not in note:
        msg = "a signed note is text, a blank line and signature lines, ending in a newline"
        raise SignatureError(msg)
    split = note.rfind("\n\n")
    text, block = note[: split + 1], note[split + 2 :]
    for line in block.splitlines():
        if not line.startswith(_SIG_PREFIX) or line.count(" ") != 2:  # noqa: PLR2004 - "— NAME SIG"
            msg = f"malformed signature line {line[:40]!r}"
            raise SignatureError(msg)
        name, sig_text = line[len(_SIG_PREFIX) :].split(" ")
        raw = _b64(sig_text, "note signature")
        key = known.get((name, raw[:_KEY_ID_SIZE]))
        if key is None:
            continue
        try:
            nacl.signing.VerifyKey(key.public_key).verify(text.encode(), raw[_KEY_ID_SIZE:])
        except (nacl.exceptions.BadSignatureError, ValueError) as exc:
            msg = f"the note's signature by {name} does not verify"
            raise SignatureError(msg) from exc
        return text
    msg = "the note is not signed by any of the given verifier keys"
    raise SignatureError(msg)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified tree head of the trust's ledger."""

    origin: str
    size: int
    root: bytes
    note: str

    @classmethod
    def open(cls, note: str, key: VerifierKey | list[VerifierKey], *, origin: str | None = None) -> Checkpoint:
        """Verify the signed checkpoint *note* and parse it (raises :class:`SignatureError`)."""
        text = open_note(note, key)
        lines = text.split("\n")[:-1]
        if len(lines) < 3:  # noqa: PLR2004 - origin, size, root
            msg = "a checkpoint needs an origin, a tree size and a root hash"
            raise SignatureError(msg)
        size_text = lines[1]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            msg = f"checkpoint tree size {size_text!r} is not a decimal number"
            raise SignatureError(msg)
        root = _b64(lines[2], "checkpoint root hash")
        if len(root) != HASH_SIZE:
            msg = f"checkpoint root hash has {len(root)} bytes, expected {HASH_SIZE}"
            raise SignatureError(msg)
        if origin is not None and lines[0] != origin:
            msg = f"checkpoint origin {lines[0]!r} is not the expected {origin!r}"
            raise SignatureError(msg)
        return cls(lines[0], int(size_text), root, note)
