"""The project's one exception tree. No HTTP in it: ``api/problems.py`` maps it.

::

    DomainError
     ├── ValidationError          bad input that passed the schema (unknown code, bad range)
     ├── NotFoundError            the thing named does not exist
     ├── ConflictError            the request clashes with what is recorded (duplicate vote)
     ├── ForbiddenError           the principal may not do this
     ├── InvalidStateError        the thing exists but is in the wrong state (vote after close)
     ├── UnavailableError         storage is unreachable or full; try again later
     └── LedgerIntegrityError     the ledger or a proof does not verify
          ├── ProofError          an inclusion or consistency proof is wrong
          └── SignatureInvalidError  a signed note or signature does not verify
"""

from __future__ import annotations


class DomainError(Exception):
    """Root of every error the domain raises on purpose."""

    slug = "domain-error"
    title = "The request could not be completed"

    def __init__(self, detail: str, **extensions: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class ValidationError(DomainError):
    """Input that is well formed but not acceptable."""

    slug = "validation-error"
    title = "The request is not valid"


class NotFoundError(DomainError):
    """The named thing does not exist (or is not visible to the caller)."""

    slug = "not-found"
    title = "Not found"


class ConflictError(DomainError):
    """The request clashes with what is already recorded."""

    slug = "conflict"
    title = "Conflict with recorded state"


class ForbiddenError(DomainError):
    """The principal may not perform this action."""

    slug = "forbidden"
    title = "Not allowed"


class InvalidStateError(DomainError):
    """The thing exists but is not in a state that allows this action."""

    slug = "invalid-state"
    title = "Not allowed in the current state"


class UnavailableError(DomainError):
    """Storage is unreachable, full or busy; nothing was recorded."""

    slug = "unavailable"
    title = "Temporarily unavailable"


class LedgerIntegrityError(DomainError):
    """The ledger, an export or a proof does not verify."""

    slug = "ledger-integrity"
    title = "The ledger does not verify"

    def __init__(self, detail: str, *, seq: int | None = None, **extensions: object) -> None:
        super().__init__(detail, seq=seq, **extensions)
        self.seq = seq


class ProofError(LedgerIntegrityError):
    """An inclusion or consistency proof does not verify."""

    slug = "proof-invalid"
    title = "The proof does not verify"


class SignatureInvalidError(LedgerIntegrityError):
    """A signature (signed note, checkpoint, receipt) does not verify."""

    slug = "signature-invalid"
    title = "The signature does not verify"
