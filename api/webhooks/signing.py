"""Standard Webhooks signatures (https://www.standardwebhooks.com/, ``spec/standard-webhooks.md``).

Every request carries three headers::

    webhook-id:         msg_…            the message id: the same on every retry (idempotency key)
    webhook-timestamp:  1764147600       seconds since the epoch, when this attempt was signed
    webhook-signature:  v1a,<base64>     space-separated "version,signature" pairs

The signed content is ``f"{webhook-id}.{webhook-timestamp}.".encode() + body`` (the
exact body bytes sent). Two schemes:

* ``v1a`` (the default): Ed25519 with the trust's webhook key, ``keys/webhook.key`` in
  the data directory (created on first use, mode 0600; separate from the ledger and
  token keys). Partners verify with the public key ``whpk_<base64 of 32 bytes>``
  served at ``GET /v1/webhooks/public-key``; nobody but the trust can sign.
* ``v1``: HMAC-SHA256 keyed with the subscription's ``whsec_<base64>`` secret. A ``v1``
  subscription's requests carry both signatures (``v1,… v1a,…``); a verifier uses
  whichever it knows.

Receivers must reject timestamps outside their tolerance (five minutes, as the
specification suggests) to stop replays; ``datatrust_client.webhooks`` does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

WEBHOOK_KEY_FILE = Path("keys") / "webhook.key"
SECRET_KEY_PREFIX = "whsk_"  # noqa: S105 - a format prefix, not a secret
PUBLIC_KEY_PREFIX = "whpk_"
SYMMETRIC_PREFIX = "whsec_"

_lock = threading.Lock()
_cache: dict[Path, WebhookSigner] = {}


@dataclass(frozen=True, slots=True)
class WebhookSigner:
    """The trust's Ed25519 webhook key."""

    signing_key: nacl.signing.SigningKey

    def __repr__(self) -> str:
        return f"WebhookSigner(public_key={self.public_key!r}, <private key hidden>)"

    @property
    def public_key(self) -> str:
        """The Standard Webhooks public key: ``whpk_`` + base64 of the raw 32-byte Ed25519 key."""
        return PUBLIC_KEY_PREFIX + base64.b64encode(bytes(self.signing_key.verify_key)).decode()

    @property
    def key_id(self) -> str:
        """A short fingerprint of the public key (hex of the first 8 bytes of its SHA-256)."""
        return hashlib.sha256(bytes(self.signing_key.verify_key)).hexdigest()[:16]

    def sign_v1a(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``v1a,<base64>`` signature of one message."""
        signature = self.signing_key.sign(signed_content(msg_id, timestamp, body)).signature
        return "v1a," + base64.b64encode(signature).decode()

    def headers(self, msg_id: str, timestamp: int, body: bytes, *, secret: str | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers; with *secret* (a ``v1`` subscription) both signatures."""
        signatures = [self.sign_v1a(msg_id, timestamp, body)]
        if secret is not None:
            signatures.insert(0, sign_v1(secret, msg_id, timestamp, body))
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}

    @classmethod
    def from_text(cls, text: str) -> WebhookSigner:
        """Read ``whsk_<base64 of the 64-byte secret key (seed || public key)>``."""
        text = text.strip()
        if not text.startswith(SECRET_KEY_PREFIX):
            msg = f"webhook key must start with {SECRET_KEY_PREFIX}"
            raise ValueError(msg)
        raw = base64.b64decode(text.removeprefix(SECRET_KEY_PREFIX), validate=True)
        if len(raw) != 64:  # noqa: PLR2004 - libsodium secret key: 32-byte seed + 32-byte public key
            msg = "webhook key must hold 64 bytes (Ed25519 seed and public key)"
            raise ValueError(msg)
        key = nacl.signing.SigningKey(raw[:32])
        if bytes(key.verify_key) != raw[32:]:
            msg = "webhook key is corrupt: its public half does not match its seed"
            raise ValueError(msg)
        return cls(key)

    def to_text(self) -> str:
        """The key file's contents (secret: never log it)."""
        raw = bytes(self.signing_key) + bytes(self.signing_key.verify_key)
        return SECRET_KEY_PREFIX + base64.b64encode(raw).decode() + "\n"


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The bytes both schemes sign: ``{id}.{timestamp}.{body}``."""
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_v1(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` HMAC-SHA256 signature with a ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix(SYMMETRIC_PREFIX))
    digest = hmac.new(key, signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_signer(data_dir: Path) -> WebhookSigner:
    """The trust's webhook key from ``keys/webhook.key``, created (0600) on first use."""
    path = (data_dir / WEBHOOK_KEY_FILE).resolve()
    with _lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        if not path.exists():
            _create(path)
        signer = WebhookSigner.from_text(path.read_text())
        _cache[path] = signer
        return signer


def _create(path: Path) -> None:
    """Write a new key atomically; if another process won the race, keep its key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = WebhookSigner(nacl.signing.SigningKey.generate()).to_text()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".webhook-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # mkstemp made it 0600; link is atomic and never overwrites
            os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
