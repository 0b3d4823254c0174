"""Standard Webhooks signatures: our signer, our client's verifier, and independent verifiers."""

from __future__ import annotations

import base64
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import standardwebhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.webhooks import signing
from api.webhooks.signing import WebhookSigner, sign_v1, webhook_signer
from datatrust_client import WebhookVerificationError, WebhookVerifier
from trust.webhooks import new_secret

BODY = b'{"data":{"subject":"sub_abc"},"timestamp":"2026-11-26T09:00:00.000000Z","type":"consent.withdrawn"}'
MSG_ID = "msg_42_0123456789abcdef0123"


@pytest.fixture
def signer(tmp_path: Path) -> WebhookSigner:
    """A fresh trust webhook key in a temporary data directory."""
    return webhook_signer(tmp_path)


def _headers(signer: WebhookSigner, *, timestamp: int | None = None, secret: str | None = None, body: bytes = BODY):
    return signer.headers(MSG_ID, int(time.time()) if timestamp is None else timestamp, body, secret=secret)


def test_v1a_signature_verifies_with_the_public_key(signer: WebhookSigner) -> None:
    """A v1a-signed request verifies with the trust's published whpk_ key and yields the event."""
    event = WebhookVerifier.from_public_key(signer.public_key).verify(BODY, _headers(signer))
    assert (event.id, event.type, event.data["subject"]) == (MSG_ID, "consent.withdrawn", "sub_abc")


def test_v1a_is_cross_checked_by_an_independent_ed25519_implementation(signer: WebhookSigner) -> None:
    """OpenSSL's Ed25519 (via cryptography) accepts our v1a signature over id.timestamp.body, and no other content."""
    headers = _headers(signer)
    version, signature = headers["webhook-signature"].split(",")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(signer.public_key.removeprefix("whpk_")))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + BODY
    assert version == "v1a"
    key.verify(base64.b64decode(signature), content)
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(signature), content + b" ")


def test_v1_signature_is_accepted_by_the_standardwebhooks_package(signer: WebhookSigner) -> None:
    """The reference Python verifier from PyPI accepts our v1 (HMAC) signature and parses the body."""
    secret = new_secret()
    headers = _headers(signer, secret=secret)
    assert standardwebhooks.Webhook(secret).verify(BODY, headers)["type"] == "consent.withdrawn"
    assert WebhookVerifier.from_secret(secret).verify(BODY, headers).id == MSG_ID


def test_v1_signature_equals_the_reference_implementation(signer: WebhookSigner) -> None:
    """Our HMAC signature is byte-for-byte what standardwebhooks computes for the same id, time and body."""
    secret = new_secret()
    moment = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    ours = sign_v1(secret, MSG_ID, int(moment.timestamp()), BODY)
    assert ours == standardwebhooks.Webhook(secret).sign(MSG_ID, moment, BODY.decode())


def test_v1_subscription_requests_carry_both_signatures(signer: WebhookSigner) -> None:
    """A v1 request is signed "v1,… v1a,…": the public-key verifier accepts it as well as the secret."""
    secret = new_secret()
    headers = _headers(signer, secret=secret)
    assert [part.split(",")[0] for part in headers["webhook-signature"].split(" ")] == ["v1", "v1a"]
    WebhookVerifier.from_public_key(signer.public_key).verify(BODY, headers)


@pytest.mark.parametrize(
    "scheme",
    [
        "v1a",  # Ed25519 with the trust's key
        "v1",  # HMAC with the subscription's secret
    ],
)
def test_tampered_body_is_refused(signer: WebhookSigner, scheme: str) -> None:
    """Changing one byte of the body makes verification fail, in both schemes."""
    secret = new_secret() if scheme == "v1" else None
    headers = _headers(signer, secret=secret)
    tampered = BODY.replace(b"sub_abc", b"sub_abd")
    verifier = WebhookVerifier.from_secret(secret) if secret else WebhookVerifier.from_public_key(signer.public_key)
    with pytest.raises(WebhookVerificationError, match="no valid"):
        verifier.verify(tampered, headers)
    if secret:
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(tampered, headers)


def test_changed_id_is_refused(signer: WebhookSigner) -> None:
    """The webhook-id is signed: a request re-labelled with another id fails."""
    headers = {**_headers(signer), "webhook-id": "msg_43_0123456789abcdef0123"}
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier.from_public_key(signer.public_key).verify(BODY, headers)


def test_wrong_key_is_refused(signer: WebhookSigner, tmp_path: Path) -> None:
    """A signature by another trust's key, or a wrong secret, does not verify."""
    other = webhook_signer(tmp_path / "other")
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier.from_public_key(other.public_key).verify(BODY, _headers(signer))
    headers = _headers(signer, secret=new_secret())
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier.from_secret(new_secret()).verify(BODY, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-299, True),  # just inside the five-minute tolerance
        (-301, False),  # stale: a captured request replayed later
        (301, False),  # from the future
    ],
)
def test_timestamps_outside_the_tolerance_are_refused(signer: WebhookSigner, offset: int, accepted: bool) -> None:
    """A validly signed request is refused when its signed timestamp is more than 5 minutes from now."""
    current = 1_800_000_000
    headers = _headers(signer, timestamp=current + offset)
    verifier = WebhookVerifier.from_public_key(signer.public_key)
    if accepted:
        verifier.verify(BODY, headers, now=current)
    else:
        with pytest.raises(WebhookVerificationError, match="timestamp"):
            verifier.verify(BODY, headers, now=current)


def test_stale_timestamp_is_refused_by_the_reference_verifier(signer: WebhookSigner) -> None:
    """The standardwebhooks package also refuses our correctly signed but ten-minute-old request."""
    secret = new_secret()
    headers = _headers(signer, secret=secret, timestamp=int(time.time()) - 600)
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        standardwebhooks.Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "drop",
    [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ],
)
def test_missing_headers_are_refused(signer: WebhookSigner, drop: str) -> None:
    """A request without one of the three headers is refused before any signature check."""
    headers = {k: v for k, v in _headers(signer).items() if k != drop}
    with pytest.raises(WebhookVerificationError, match="missing"):
        WebhookVerifier.from_public_key(signer.public_key).verify(BODY, headers)


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    """keys/webhook.key is created on first use with mode 0600 and read back unchanged afterwards."""
    first = webhook_signer(tmp_path)
    path = tmp_path / "keys" / "webhook.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signing._cache.clear()
    assert webhook_signer(tmp_path).public_key == first.public_key
    assert "whsk_" not in repr(first)


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    """Processes or threads racing to create the key all end up with the same one."""
    signing._cache.clear()

    def create(_: int) -> str:
        signing._create((tmp_path / "keys" / "webhook.key").resolve())
        return (tmp_path / "keys" / "webhook.key").read_text()

    with ThreadPoolExecutor(8) as pool:
        texts = set(pool.map(create, range(16)))
    assert len(texts) == 1
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")]


def test_public_key_format_is_checked() -> None:
    """The client refuses a key without the whpk_ prefix or of the wrong length."""
    with pytest.raises(ValueError, match="whpk_"):
        WebhookVerifier.from_public_key("AAAA")
    with pytest.raises(ValueError, match="32 bytes"):
        WebhookVerifier.from_public_key("whpk_" + base64.b64encode(b"short").decode())
