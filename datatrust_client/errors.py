"""The client's one exception tree.

::

    DatatrustError
     ├── ApiError                    the trust answered with an error (RFC 9457 problem details)
     │    └── TokenError             the token endpoint refused the client's credentials
     └── VerificationError           something the trust signed or proved does not verify
          ├── SignatureError         a signed note (checkpoint) signature or key
          ├── ProofError             an RFC 9162 inclusion or consistency proof, or a leaf hash
          └── WebhookVerificationError  a webhook's signature, headers or timestamp
"""

from __future__ import annotations

from typing import Any


class DatatrustError(Exception):
    """Root of every error this client raises on purpose."""


class ApiError(DatatrustError):
    """The API answered with a status of 400 or more."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        super().__init__(f"HTTP {status}: {self.detail or self.title or 'request failed'}")


class TokenError(ApiError):
    """The token endpoint refused the credentials (RFC 6749 §5.2 error response)."""


class VerificationError(DatatrustError):
    """Something the trust signed or proved does not verify."""


class SignatureError(VerificationError):
    """A signed note or its verifier key is malformed or does not verify."""


class ProofError(VerificationError):
    """An RFC 9162 proof, or an entry's leaf hash, does not verify."""


class WebhookVerificationError(VerificationError):
    """A webhook request is not signed by the trust, or is too old or too new to accept."""
