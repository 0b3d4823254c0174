"""Verify webhooks from the trust (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

The signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``. Verify the raw
body bytes exactly as received, before parsing them::

    verifier = WebhookVerifier.from_public_key("whpk_…")   # GET /v1/webhooks/public-key (v1a, default)
    verifier = WebhookVerifier.from_secret("whsec_…")      # a v1 subscription's secret
    event = verifier.verify(request_body, request_headers)  # raises WebhookVerificationError

Timestamps further than ``tolerance`` (5 minutes) from now are refused, so a captured
request cannot be replayed later; within that window, de-duplicate on ``webhook-id``
(:class:`SeenIds`), which is also how a retried or replayed delivery is recognised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from datatrust_client.errors import WebhookVerificationError

DEFAULT_TOLERANCE = 300  # seconds, as the Standard Webhooks specification suggests
_PUBLIC_PREFIX = "whpk_"
_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{what} is not valid base64"
        raise WebhookVerificationError(msg) from exc


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: its id, when it was signed, and the parsed body."""

    id: str
    timestamp: int
    type: str
    data: dict[str, Any]
    body: dict[str, Any]


class WebhookVerifier:
    """Verifies ``v1a`` (Ed25519 public key) or ``v1`` (HMAC secret) webhook signatures."""

    def __init__(
        self,
        *,
        public_key: bytes | None = None,
        secret: bytes | None = None,
        tolerance: int = DEFAULT_TOLERANCE,
    ) -> None:
        if (public_key is None) == (secret is None):
            msg = "give exactly one of public_key (v1a) and secret (v1)"
            raise ValueError(msg)
        if public_key is not None and len(public_key) != 32:  # noqa: PLR2004 - Ed25519 public key size
            msg = "an Ed25519 public key has 32 bytes"
            raise ValueError(msg)
        self._verify_key = None if public_key is None else nacl.signing.VerifyKey(public_key)
        self._secret = secret
        self.tolerance = tolerance

    @classmethod
    def from_public_key(cls, key: str, *, tolerance: int = DEFAULT_TOLERANCE) -> WebhookVerifier:
        """A ``v1a`` verifier from ``whpk_<base64>`` (the trust's ``GET /v1/webhooks/public-key``)."""
        if not key.startswith(_PUBLIC_PREFIX):
            msg = f"a webhook public key starts with {_PUBLIC_PREFIX}"
            raise ValueError(msg)
        return cls(public_key=_b64(key.removeprefix(_PUBLIC_PREFIX), "public key"), tolerance=tolerance)

    @classmethod
    def from_secret(cls, secret: str, *, tolerance: int = DEFAULT_TOLERANCE) -> WebhookVerifier:
        """A ``v1`` verifier from the subscription's ``whsec_<base64>`` secret."""
        raw = _b64(secret.removeprefix(_SECRET_PREFIX), "secret")
        if not raw:
            msg = "the webhook secret is empty"
            raise ValueError(msg)
        return cls(secret=raw, tolerance=tolerance)

    @property
    def version(self) -> str:
        """The signature version this verifier checks."""
        return "v1a" if self._verify_key is not None else "v1"

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> WebhookEvent:
        """Check the signature and timestamp of one request and return the parsed event (or raise)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        msg_id, stamp, signatures = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not msg_id or not stamp or not signatures:
            msg = "missing webhook-id, webhook-timestamp or webhook-signature header"
            raise WebhookVerificationError(msg)
        if not stamp.isdigit():
            msg = f"webhook-timestamp {stamp!r} is not a number of seconds"
            raise WebhookVerificationError(msg)
        timestamp = int(stamp)
        current = time.time() if now is None else now
        if timestamp < current - self.tolerance:
            msg = f"webhook timestamp is {int(current - timestamp)} s old; the limit is {self.tolerance} s"
            raise WebhookVerificationError(msg)
        if timestamp > current + self.tolerance:
            msg = f"webhook timestamp is {int(timestamp - current)} s in the future; the limit is {self.tolerance} s"
            raise WebhookVerificationError(msg)
        content = f"{msg_id}.{stamp}.".encode() + body
        if not any(self._matches(content, item) for item in signatures.split(" ")):
            msg = f"no valid {self.version} signature for webhook {msg_id}"
            raise WebhookVerificationError(msg)
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            msg = "the webhook body is not JSON"
            raise WebhookVerificationError(msg) from exc
        if not isinstance(parsed, dict):
            msg = "the webhook body is not a JSON object"
            raise WebhookVerificationError(msg)
        return WebhookEvent(msg_id, timestamp, str(parsed.get("type", "")), dict(parsed.get("data") or {}), parsed)

    def _matches(self, content: bytes, item: str) -> bool:
        version, _, value = item.partition(",")
        if version != self.version or not value:
            return False
        try:
            signature = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        if self._verify_key is not None:
            try:
                self._verify_key.verify(content, signature)
            except (nacl.exceptions.BadSignatureError, ValueError):
                return False
            return True
        assert self._secret is not None  # noqa: S101 - one of the two is set by __init__
        expected = hmac.new(self._secret, content, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)


class SeenIds:
    """Remembers recent ``webhook-id`` values so a retried or replayed delivery is processed once.

    Keep it at least as long as the timestamp tolerance (older requests are refused
    anyway); in a real receiver, record the id in the same transaction as the work.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def first_time(self, webhook_id: str) -> bool:
        """True the first time *webhook_id* is seen, False for a duplicate."""
        with self._lock:
            if webhook_id in self._ids:
                self._ids.move_to_end(webhook_id)
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > self._capacity:
                self._ids.popitem(last=False)
            return True
