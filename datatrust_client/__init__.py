"""A small typed client for partner systems of a datatrust.

It stands alone: it depends on httpx, PyNaCl and rfc8785 only, and re-implements
(compactly) the verification it needs: C2SP signed notes and checkpoints, RFC 9162
inclusion and consistency proofs, consent receipts, Standard Webhooks signatures.
"""

from __future__ import annotations

from datatrust_client.client import CheckDecision, DatatrustClient
from datatrust_client.errors import (
    ApiError,
    DatatrustError,
    ProofError,
    SignatureError,
    TokenError,
    VerificationError,
    WebhookVerificationError,
)
from datatrust_client.notes import Checkpoint, VerifierKey
from datatrust_client.receipts import VerifiedEntry, verify_receipt
from datatrust_client.webhooks import SeenIds, WebhookEvent, WebhookVerifier

__all__ = [
    "ApiError",
    "CheckDecision",
    "Checkpoint",
    "DatatrustClient",
    "DatatrustError",
    "ProofError",
    "SeenIds",
    "SignatureError",
    "TokenError",
    "VerificationError",
    "VerifiedEntry",
    "VerifierKey",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
    "verify_receipt",
]
