"""Ed25519 keys in the C2SP signed-note key formats. The only PyNaCl importer for signing.

Formats (C2SP signed-note, as Go's ``golang.org/x/mod/sumdb/note`` reads them):

* verifier key: ``<name>+<8 hex key id>+<base64(0x01 || public key)>``
* signer key:   ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>``
* key id: the first 4 bytes (big-endian) of ``SHA-256(name || 0x0A || 0x01 || public key)``
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from ledger.errors import SignatureInvalidError, ValidationError

ALG_ED25519 = 0x01  # C2SP signed-note: signature type byte for Ed25519
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        msg = f"invalid key name {name!r}: it must be non-empty with no '+' or white space"
        raise ValidationError(msg)


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte key id the signed-note format assigns to an Ed25519 key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key that verifies signed-note signatures."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id."""
        return key_id(self.name, self.public_key)

    def to_text(self) -> str:
        """Return the verifier key string (``name+hexid+base64``)."""
        data = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{data}"

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse a verifier key string; raise :class:`ValidationError` if malformed."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:  # noqa: PLR2004 - name, id, data
            msg = "verifier key must look like NAME+KEYID+BASE64"
            raise ValidationError(msg)
        name, hex_id, data = parts
        _check_name(name)
        try:
            raw = base64.b64decode(data, validate=True)
            wanted_id = bytes.fromhex(hex_id)
        except ValueError as exc:
            msg = f"verifier key is not valid base64/hex: {exc}"
            raise ValidationError(msg) from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:  # noqa: PLR2004 - 1 type byte + 32 key bytes
            msg = "verifier key is not an Ed25519 key (type byte 0x01 and 32 bytes expected)"
            raise ValidationError(msg)
        verifier = cls(name, raw[1:])
        if len(hex_id) != 8 or verifier.key_id != wanted_id:  # noqa: PLR2004 - ids are 8 hex digits
            msg = "verifier key id does not match its name and public key"
            raise ValidationError(msg)
        return verifier

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify a raw Ed25519 signature; return nothing or raise :class:`SignatureInvalidError`."""
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError) as exc:
            msg = f"signature by {self.name}+{self.key_id.hex()} does not verify"
            raise SignatureInvalidError(msg) from exc


@dataclass(frozen=True, slots=True)
class Signer:
    """A named Ed25519 private key that signs notes. Never logged, never printed."""

    name: str
    seed: bytes

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.verifier.key_id.hex()})"

    @classmethod
    def generate(cls, name: str) -> Signer:
        """Create a new random key named *name*."""
        _check_name(name)
        return cls(name, os.urandom(32))

    @property
    def verifier(self) -> Verifier:
        """The matching public key."""
        return Verifier(self.name, bytes(nacl.signing.SigningKey(self.seed).verify_key))

    def sign(self, message: bytes) -> bytes:
        """Return the raw 64-byte Ed25519 signature of *message*."""
        return nacl.signing.SigningKey(self.seed).sign(message).signature

    def to_text(self) -> str:
        """Return the signer key string (secret: write it only to a 0600 file)."""
        data = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{data}"

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse a signer key string."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            msg = "signer key must start with PRIVATE+KEY+"
            raise ValidationError(msg)
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:  # noqa: PLR2004 - name, id, data
            msg = "signer key must look like PRIVATE+KEY+NAME+KEYID+BASE64"
            raise ValidationError(msg)
        name, hex_id, data = parts
        _check_name(name)
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError as exc:
            msg = "signer key is not valid base64"
            raise ValidationError(msg) from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:  # noqa: PLR2004 - 1 type byte + 32 seed bytes
            msg = "signer key is not an Ed25519 key"
            raise ValidationError(msg)
        signer = cls(name, raw[1:])
        if signer.verifier.key_id.hex() != hex_id.lower():
            msg = "signer key id does not match its key"
            raise ValidationError(msg)
        return signer

    def save(self, path: Path) -> None:
        """Write the key to *path* with mode 0600, refusing to overwrite."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.to_text() + "\n")

    @classmethod
    def load(cls, path: Path) -> Signer:
        """Read a key written by :meth:`save`."""
        return cls.from_text(path.read_text())
