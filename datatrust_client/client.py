"""``DatatrustClient``: a partner system's typed client of one trust.

::

    from datatrust_client import DatatrustClient

    with DatatrustClient(
        "https://trust.example.org",
        client_id="client_…",
        client_secret="…",
        verifier_key="trust.example.org/riverside+1a2b3c4d+AW…",  # pin it: from the trust, out of band
    ) as trust:
        answer = trust.check(purpose="research.health", data_categories=["health.mental"],
                             operation="aggregate", request="req_…", subjects=subjects, cohort_size=120)
        if answer.decision == "permit":
            proof = trust.verify_decision(answer.decision_id)   # on the ledger, under a signed checkpoint
            share(answer.permitted)

Tokens come from ``POST /oauth/token`` (OAuth 2.0 client credentials, ``client_secret_basic``)
and are reused until shortly before they expire; a 401 fetches a fresh one once.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Self

import httpx

from datatrust_client.errors import ApiError, ProofError, TokenError
from datatrust_client.merkle import verify_consistency
from datatrust_client.notes import Checkpoint, VerifierKey
from datatrust_client.receipts import VerifiedEntry, verify_entry
from datatrust_client.webhooks import WebhookVerifier

Operation = Literal["aggregate", "pseudonymised", "identifiable"]
TOKEN_MARGIN = 30.0  # seconds before expiry at which a token is renewed


@dataclass(frozen=True, slots=True)
class CheckDecision:
    """The trust's explained answer to a proposed share."""

    decision: Literal["permit", "deny"]
    decision_id: int | None
    permitted: list[str]
    excluded: list[dict[str, Any]]
    obligations: list[dict[str, Any]]
    reasons: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CheckDecision:
        """Read the answer of ``POST /v1/checks``."""
        subjects = body.get("subjects") or {}
        return cls(
            decision=body["decision"],
            decision_id=body.get("decision_id"),
            permitted=list(subjects.get("permitted", [])),
            excluded=list(subjects.get("excluded", [])),
            obligations=list(body.get("obligations", [])),
            reasons=list(body.get("reasons", [])),
            raw=body,
        )


def _basic(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: form-encode the id and secret, then HTTP Basic."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:  # noqa: PLR2004 - HTTP error statuses
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:200]}
    raise ApiError(response.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})


class DatatrustClient:
    """Calls one trust as one partner client. Not shared between threads while fetching a token."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        verifier_key: str | None = None,
        token_url: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.token_url = token_url or f"{self.base_url}/oauth/token"
        self._pinned = None if verifier_key is None else VerifierKey.from_text(verifier_key)
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"DatatrustClient({self.base_url!r}, client_id={self.client_id!r}, <secret hidden>)"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (if this client created it)."""
        if self._owns_http:
            self.http.close()

    # -- tokens and requests -----------------------------------------------------------------

    def token(self, *, refresh: bool = False) -> str:
        """An access token (OAuth 2.0 client credentials, ``client_secret_basic``), reused until near expiry."""
        if self._token is not None and not refresh and time.monotonic() < self._expires - TOKEN_MARGIN:
            return self._token
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        response = self.http.post(
            self.token_url,
            data=form,
            headers={"authorization": _basic(self.client_id, self._secret), "accept": "application/json"},
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:  # noqa: PLR2004
            detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise TokenError(response.status_code, {"detail": detail or "the token endpoint refused the request"})
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + float(body.get("expires_in", 300))
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API with a bearer token; return the JSON answer (raises :class:`ApiError`)."""
        url = f"{self.base_url}{path}"
        response = self.http.request(method, url, headers={"authorization": f"Bearer {self.token()}"}, **kwargs)
        if response.status_code == 401:  # noqa: PLR2004 - the token may have been revoked or expired early
            response = self.http.request(
                method, url, headers={"authorization": f"Bearer {self.token(refresh=True)}"}, **kwargs
            )
        _raise_for(response)
        return response.json() if response.content else None

    def _public(self, path: str, **params: Any) -> httpx.Response:
        response = self.http.get(f"{self.base_url}{path}", params=params or None)
        _raise_for(response)
        return response

    # -- the check -------------------------------------------------------------------------------

    def check(
        self,
        *,
        purpose: str,
        data_categories: list[str],
        operation: Operation,
        request: str,
        subjects: list[str],
        cohort_size: int | None = None,
        geography: str | None = None,
        dry_run: bool = False,
    ) -> CheckDecision:
        """Ask before sharing: ``POST /v1/checks``. Share only ``permitted`` subjects, and cite ``decision_id``."""
        body: dict[str, Any] = {
            "purpose": purpose,
            "data_categories": data_categories,
            "operation": operation,
            "request": request,
            "subjects": subjects,
        }
        if cohort_size is not None:
            body["cohort_size"] = cohort_size
        if geography is not None:
            body["geography"] = geography
        params = {"dry_run": "true"} if dry_run else None
        return CheckDecision.from_json(self.request("POST", "/v1/checks", json=body, params=params))

    def confirm_deletion(
        self,
        *,
        subject: str,
        deleted_at: datetime,
        consent: str | None = None,
        decision_id: int | None = None,
    ) -> dict[str, Any]:
        """Tell the trust this organisation deleted *subject*'s data (recorded on its ledger)."""
        body = {
            "subject": subject,
            "deleted_at": deleted_at.isoformat(),
            "consent": consent,
            "decision_id": decision_id,
        }
        answer: dict[str, Any] = self.request("POST", "/v1/deletions", json=body)
        return answer

    # -- verification ------------------------------------------------------------------------------

    def verifier_key(self) -> VerifierKey:
        """The pinned checkpoint key; without one, the key the trust serves (trust on first use)."""
        if self._pinned is None:
            self._pinned = VerifierKey.from_text(self._public("/v1/ledger/verifier-key").text)
        return self._pinned

    def checkpoint(self, *, previous: Checkpoint | None = None) -> Checkpoint:
        """The latest checkpoint, signature verified; with *previous*, proven to extend it (RFC 9162)."""
        latest = Checkpoint.open(self._public("/v1/ledger/checkpoint").text, self.verifier_key())
        if previous is None or previous.size == 0:
            return latest
        if latest.size < previous.size:
            msg = f"the ledger shrank from {previous.size} to {latest.size} entries since the checkpoint you kept"
            raise ProofError(msg)
        proof: list[str] = []
        if latest.size > previous.size:
            answer = self._public("/v1/ledger/proofs/consistency", **{"from": previous.size, "to": latest.size})
            proof = list(answer.json()["proof"])
        verify_consistency(previous.size, latest.size, previous.root, latest.root, [bytes.fromhex(p) for p in proof])
        return latest

    def verify_entry(self, seq: int, *, wait: float = 5.0) -> VerifiedEntry:
        """Fetch entry *seq* and prove it is in the latest signed checkpoint (waits up to *wait* s for one)."""
        deadline = time.monotonic() + wait
        checkpoint = self.checkpoint()
        while checkpoint.size <= seq and time.monotonic() < deadline:  # checkpoints are signed at least every second
            time.sleep(0.2)
            checkpoint = self.checkpoint()
        if checkpoint.size <= seq:
            msg = f"no signed checkpoint covers entry {seq} yet (latest has {checkpoint.size} entries)"
            raise ProofError(msg)
        page = self._public("/v1/ledger/entries", start=seq, end=seq + 1).json()["entries"]
        if not page:
            msg = f"the trust has no entry {seq}"
            raise ProofError(msg)
        proof = self._public("/v1/ledger/proofs/inclusion", seq=seq, size=checkpoint.size).json()
        return verify_entry(
            page[0]["entry"],
            leaf_hash_hex=page[0]["leaf_hash"],
            seq=seq,
            size=checkpoint.size,
            proof=list(proof["proof"]),
            checkpoint=checkpoint.note,
            key=self.verifier_key(),
        )

    def verify_decision(self, decision_id: int, *, wait: float = 5.0) -> VerifiedEntry:
        """Prove that check decision *decision_id* is recorded on the ledger, under a signed checkpoint."""
        verified = self.verify_entry(decision_id, wait=wait)
        if verified.entry.get("kind") != "check.decided":
            msg = f"entry {decision_id} is a {verified.entry.get('kind')}, not a check decision"
            raise ProofError(msg)
        return verified

    def webhook_verifier(self, *, secret: str | None = None) -> WebhookVerifier:
        """A verifier for this trust's webhooks: its v1a public key, or a v1 subscription's *secret*."""
        if secret is not None:
            return WebhookVerifier.from_secret(secret)
        return WebhookVerifier.from_public_key(self._public("/v1/webhooks/public-key").json()["public_key"])
