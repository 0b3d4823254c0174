"""What callers send and get back: the consent to record, withdrawals, erasure, and the answers.

``ConsentIn`` is shared by the partner API (``POST /v1/consents``), the bulk import
(one row) and the FHIR import (one mapped resource), so every door checks the
same rules. The collecting organisation is never a field: it comes from the
caller's token (or, for the operator's import, from the command line).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Operation = Literal["aggregate", "pseudonymised", "identifiable"]
ConsentId = Annotated[str, StringConstraints(pattern=r"^con_[A-Za-z0-9._-]{1,64}$")]
SubjectId = Annotated[str, StringConstraints(pattern=r"^sub_[a-z0-9]{8,60}$")]
OrgId = Annotated[str, StringConstraints(pattern=r"^org_[a-z0-9_]{1,100}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PersonIn(BaseModel):
    """Identifying details of a new person. Stored only in the vault, encrypted with their own key."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    contact: Annotated[str, StringConstraints(min_length=1, max_length=320)] = Field(
        description="How to reach the person: an email address, telephone number or postal address."
    )


class ConsentIn(BaseModel):
    """A consent collected by a partner, to be recorded on the ledger."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    consent: ConsentId | None = Field(
        None,
        description="Your own id for this consent (con_…): recording it twice is refused, and a bulk import "
        "skips rows already recorded. Left out, the trust chooses one.",
    )
    subject: SubjectId | None = Field(None, description="An existing subject (sub_…) the trust issued earlier.")
    person: PersonIn | None = Field(None, description="Details of a new person; the trust issues a new subject.")
    purposes: Annotated[list[Code], Field(min_length=1, max_length=50)]
    categories: Annotated[list[Code], Field(min_length=1, max_length=100)]
    recipients: Annotated[list[OrgId], Field(max_length=200)] | None = Field(
        None, description="Organisations the data may go to; null means any recipient the trust approves."
    )
    operations: Annotated[list[Operation], Field(min_length=1, max_length=3)] | None = Field(
        None, description="Permitted operations; null means all of aggregate, pseudonymised and identifiable."
    )
    valid_from: AwareDatetime | None = Field(None, description="When the consent starts; defaults to now.")
    valid_until: AwareDatetime | None = Field(None, description="When it ends (exclusive); null means no end.")
    explicit: bool = Field(default=False, description="Explicit consent: required for special categories.")
    wording_version: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The version of the consent wording the person saw."
    )
    wording_hash: Hex64 | None = Field(None, description="SHA-256 (hex) of the exact text the person saw.")
    wording_text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] | None = Field(
        None, description="The exact text the person saw (the trust records only its SHA-256)."
    )
    on_behalf: bool = Field(
        default=False,
        description="Given on the person's behalf by someone with authority to do so (a parent, an attorney).",
    )

    @model_validator(mode="after")
    def _one_of_each(self) -> ConsentIn:
        if (self.subject is None) == (self.person is None):
            msg = "give either subject (an existing sub_… id) or person (details of someone new), not both"
            raise ValueError(msg)
        if (self.wording_hash is None) == (self.wording_text is None):
            msg = "give either wording_hash or wording_text, not both"
            raise ValueError(msg)
        if self.valid_from is not None and self.valid_until is not None and self.valid_until <= self.valid_from:
            msg = "valid_until must be after valid_from"
            raise ValueError(msg)
        return self


class WithdrawIn(BaseModel):
    """Why a consent is being withdrawn (optional; shown to the person and recorded on the ledger)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class ErasureIn(BaseModel):
    """Erasure must be confirmed: it cannot be undone."""

    model_config = ConfigDict(extra="forbid")

    confirm: bool = Field(description="Must be true: erasure destroys your personal details for good.")


class SignInIn(BaseModel):
    """The access code printed on a consent receipt."""

    model_config = ConfigDict(extra="forbid")

    access_code: Annotated[str, StringConstraints(min_length=1, max_length=80)]


class TermOut(BaseModel):
    """A code with its plain-language label."""

    code: str
    label: str
    description: str = ""
    special: bool = False


class WithdrawalOut(BaseModel):
    """The ledger entry that withdrew a consent."""

    seq: int
    at: str
    by: str
    reason: str


class ConsentOut(BaseModel):
    """A consent with its status now and a plain-language summary."""

    consent: str
    subject: str
    organisation: str
    status: str
    status_reason: str
    dpv_status: str = Field(description="The W3C Data Privacy Vocabulary consent-status term.")
    summary: str
    purposes: list[TermOut]
    categories: list[TermOut]
    recipients: list[str] | None
    operations: list[str] | None
    valid_from: str
    valid_until: str | None
    explicit: bool
    on_behalf: bool
    wording_version: str
    wording_hash: str
    seq: int
    granted_at: str
    withdrawal: WithdrawalOut | None = None
    superseded_by: str | None = None


class ConsentsOut(BaseModel):
    """Every consent of one person."""

    subject: str
    consents: list[ConsentOut]


class WithdrawOut(BaseModel):
    """The answer to a withdrawal: the consent's status now and the withdrawal entry."""

    consent: str
    status: str
    withdrawal: WithdrawalOut
    already_withdrawn: bool = Field(description="True when the consent had been withdrawn before this call.")


class ErasureOut(BaseModel):
    """The answer to an erasure."""

    subject: str
    seq: int
    at: str
    already_erased: bool


class ReceiptOut(BaseModel):
    """A consent receipt: verifiable offline with the trust's public key (see docs/consent-receipts.md)."""

    format: str
    entry: dict[str, Any]
    leaf_hash: str
    inclusion_proof: dict[str, Any]
    checkpoint: str
    verifier_key: str
    access_code: str | None = Field(None, description="Shown once, only when the consent is recorded.")


class RecordedOut(BaseModel):
    """The answer to recording a consent."""

    consent: str
    subject: str
    seq: int
    status: str
    receipt: ReceiptOut


class SignedInOut(BaseModel):
    """A signed-in individual: the session cookie is set; the bearer token is for API use."""

    subject: str
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class VocabularyOut(BaseModel):
    """The vocabulary in force."""

    version: str
    hash: str
    adopted_seq: int | None = Field(description="The trust.configured entry that adopted it; null for the default.")
    purposes: list[TermOut]
    categories: list[TermOut]
