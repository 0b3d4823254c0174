"""``/v1/webhooks`` (a partner's subscriptions, deliveries, replay, the trust's public key) and ``/v1/deletions``.

A partner sees and changes only its own organisation's subscriptions and deliveries:
another organisation's are "not found". Administrators see every organisation's.
Message format, signatures and retries are described in ``trust/webhooks.py``,
``api/webhooks/signing.py`` and ``trust/webhook_deliveries.py``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.authz import require
from api.deps import ClockDep, InstanceDep
from api.webhooks.signing import webhook_signer
from consent.principals import Principal, Role
from ledger.errors import ForbiddenError, ValidationError
from trust import webhooks
from trust.webhook_deliveries import get_delivery, list_deliveries

router = APIRouter(tags=["webhooks"])

ALLOW_LOCAL_ENV = "DATATRUST_WEBHOOKS_ALLOW_LOCAL"


def allow_local_endpoints() -> bool:
    """Whether partners may register http, loopback and private-network URLs (development and demos only)."""
    return os.environ.get(ALLOW_LOCAL_ENV) == "1"


EventType = Literal[
    "consent.withdrawn",
    "subject.erased",
    "request.decided",
    "request.revoked",
    "agreement.terminated",
    "organisation.suspended",
]
Scheme = Literal["v1a", "v1"]
OrgRef = Annotated[str, Field(min_length=5, max_length=64, pattern=r"^org_[a-z0-9_]+$")]
Url = Annotated[str, Field(min_length=8, max_length=2000)]
Manager = Annotated[Principal, Depends(require("webhooks.manage"))]
SubscriptionPath = Annotated[str, Path(max_length=64, description="The subscription id (whk_…).")]
DeliveryPath = Annotated[str, Path(max_length=64, description="The message id (the webhook-id header).")]


def _scope(principal: Principal) -> str | None:
    """The organisation whose webhooks *principal* manages; None for an administrator (all of them)."""
    if principal.has(Role.ADMIN):
        return None
    if principal.organisation is None:
        msg = "only a partner organisation's client or staff can manage its webhooks"
        raise ForbiddenError(msg)
    return principal.organisation


class SubscriptionIn(BaseModel):
    """A new endpoint. The organisation is the caller's own (an administrator names one)."""

    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="https URL of a public host (local URLs only where the operator allows them).")
    event_types: list[EventType] = Field(min_length=1, max_length=6)
    scheme: Scheme = Field(default="v1a", description="v1a: Ed25519 with the trust's key; v1: HMAC with a secret.")
    description: str = Field(default="", max_length=200)
    organisation: OrgRef | None = Field(default=None, description="Administrators only: whose endpoint this is.")


class SubscriptionPatch(BaseModel):
    """Changes to an endpoint; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=6)
    scheme: Scheme | None = None
    description: str | None = Field(default=None, max_length=200)
    is_active: bool | None = Field(default=None, description="false pauses delivery; messages wait.")
    rotate_secret: bool = Field(default=False, description="v1 only: issue a new secret (shown once).")


class SubscriptionOut(BaseModel):
    """An endpoint and what it receives."""

    id: str
    organisation: str
    url: str
    event_types: list[str]
    scheme: Scheme
    description: str
    is_active: bool
    created_at: str
    created_by: str
    updated_at: str
    secret: str | None = Field(default=None, description="The v1 secret: only in the answer that issued it.")


class SubscriptionsOut(BaseModel):
    """Every endpoint of the organisation."""

    subscriptions: list[SubscriptionOut]


class PublicKeyOut(BaseModel):
    """The key partners verify ``v1a`` signatures with."""

    scheme: Literal["v1a"] = "v1a"
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="whpk_ + base64 of the raw 32-byte Ed25519 public key.")
    key_id: str


class AttemptOut(BaseModel):
    """One delivery attempt; is_success null: the worker stopped before recording the answer."""

    attempt: int
    started_at: str
    finished_at: str | None
    response_status: int | None
    error: str | None
    is_success: bool | None


class DeliveryOut(BaseModel):
    """A message (its id is the webhook-id header) and where its delivery stands."""

    id: str
    subscription: str
    organisation: str
    seq: int
    event_type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    event_at: str
    queued_at: str
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: str | None


class DeliveriesOut(BaseModel):
    """A page of messages, newest first; pass ``before_seq`` = the last ``seq`` for the next page."""

    deliveries: list[DeliveryOut]


class DeliveryDetailOut(DeliveryOut):
    """A message with the exact body sent and every attempt."""

    payload: dict[str, Any]
    history: list[AttemptOut]


class ReplayOut(BaseModel):
    """What was queued again (same ids: receivers de-duplicate)."""

    requeued: int
    scanned: int
    next_since: int | None = Field(description="More events remain from here: call again with since=next_since.")


class DeletionIn(BaseModel):
    """The partner deleted a subject's data (after a withdrawal or erasure)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=5, max_length=64, pattern=r"^sub_[A-Za-z0-9_-]+$")
    consent: str | None = Field(default=None, min_length=5, max_length=80, pattern=r"^con_[A-Za-z0-9_-]+$")
    decision_id: int | None = Field(default=None, ge=0, le=2**62, description="The check decision the data came under.")
    deleted_at: AwareDatetime = Field(description="When the data was deleted (not in the future).")


class DeletionOut(BaseModel):
    """A confirmed deletion, as recorded on the ledger (``seq``)."""

    seq: int
    organisation: str
    organisation_name: str | None
    subject: str
    consent: str | None
    decision_id: int | None
    deleted_at: str
    recorded_at: str


@router.get("/v1/webhooks/public-key", response_model=PublicKeyOut, summary="Public key of v1a signatures")
def get_public_key(instance: InstanceDep, _: Annotated[Principal, Depends(require("public.read"))]) -> PublicKeyOut:
    """The Standard Webhooks public key (``whpk_…``) that verifies every ``v1a`` signature of this trust."""
    signer = webhook_signer(instance.data_dir)
    return PublicKeyOut(public_key=signer.public_key, key_id=signer.key_id)


@router.get("/v1/webhooks/deliveries", response_model=DeliveriesOut, summary="Deliveries and their outcomes")
def get_deliveries(
    instance: InstanceDep,
    principal: Manager,
    status: Annotated[Literal["pending", "delivered", "failed", "cancelled"] | None, Query()] = None,
    subscription: Annotated[str | None, Query(max_length=64)] = None,
    before_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Messages to the caller's organisation (every organisation's, for an administrator), newest first."""
    found = list_deliveries(
        instance.db,
        organisation=_scope(principal),
        status=status,
        subscription=subscription,
        before_seq=before_seq,
        limit=limit,
    )
    return {"deliveries": [d.to_json() for d in found]}


@router.get("/v1/webhooks/deliveries/{delivery_id}", response_model=DeliveryDetailOut, summary="One delivery")
def get_one_delivery(delivery_id: DeliveryPath, instance: InstanceDep, principal: Manager) -> dict[str, Any]:
    """The message body exactly as sent, and every attempt with its answer."""
    return get_delivery(instance.db, delivery_id, organisation=_scope(principal)).to_json()


@router.post("/v1/webhooks/replay", response_model=ReplayOut, summary="Queue events again since a sequence number")
def post_replay(
    instance: InstanceDep,
    principal: Manager,
    now: ClockDep,
    since: Annotated[int, Query(ge=0, le=2**62, description="Ledger sequence number to replay from.")],
    organisation: Annotated[str | None, Query(max_length=64, description="Administrators: whose events.")] = None,
) -> dict[str, Any]:
    """Re-send every event for the caller's organisation from entry *since* on, with their original ids."""
    org = _scope(principal) or organisation
    if org is None:
        msg = "name the organisation whose events to replay (organisation=org_…)"
        raise ValidationError(msg, field="organisation")
    return webhooks.replay_events(instance.db, organisation=org, since=since, now=now).to_json()


@router.post("/v1/webhooks", response_model=SubscriptionOut, status_code=201, summary="Register an endpoint")
def post_subscription(body: SubscriptionIn, instance: InstanceDep, principal: Manager, now: ClockDep) -> dict[str, Any]:
    """Register an endpoint; for ``v1`` the answer holds the secret, shown only this once."""
    org = _scope(principal)
    if org is not None and body.organisation not in {None, org}:
        msg = f"you can register endpoints only for your own organisation ({org})"
        raise ValidationError(msg, field="organisation")
    org = org or body.organisation
    if org is None:
        msg = "name the organisation this endpoint belongs to"
        raise ValidationError(msg, field="organisation")
    created = webhooks.create_subscription(
        instance.db,
        organisation=org,
        url=body.url,
        event_types=list(body.event_types),
        scheme=body.scheme,
        description=body.description,
        actor=principal.actor,
        now=now,
        allow_local=allow_local_endpoints(),
    )
    return created.to_json()


@router.get("/v1/webhooks", response_model=SubscriptionsOut, summary="The organisation's endpoints")
def get_subscriptions(instance: InstanceDep, principal: Manager) -> dict[str, Any]:
    """Every endpoint of the caller's organisation (every organisation's, for an administrator)."""
    found = webhooks.list_subscriptions(instance.db, organisation=_scope(principal))
    return {"subscriptions": [s.to_json() for s in found]}


@router.get("/v1/webhooks/{subscription_id}", response_model=SubscriptionOut, summary="One endpoint")
def get_subscription(subscription_id: SubscriptionPath, instance: InstanceDep, principal: Manager) -> dict[str, Any]:
    """One endpoint of the caller's organisation."""
    return webhooks.get_subscription(instance.db, subscription_id, organisation=_scope(principal)).to_json()


@router.patch("/v1/webhooks/{subscription_id}", response_model=SubscriptionOut, summary="Change an endpoint")
def patch_subscription(
    subscription_id: SubscriptionPath, body: SubscriptionPatch, instance: InstanceDep, principal: Manager, now: ClockDep
) -> dict[str, Any]:
    """Change the URL, event types, scheme or description, pause or resume, or rotate the v1 secret."""
    changed = webhooks.update_subscription(
        instance.db,
        subscription_id,
        organisation=_scope(principal),
        now=now,
        url=body.url,
        event_types=None if body.event_types is None else list(body.event_types),
        scheme=body.scheme,
        description=body.description,
        is_active=body.is_active,
        rotate_secret=body.rotate_secret,
        allow_local=allow_local_endpoints(),
    )
    return changed.to_json()


@router.delete("/v1/webhooks/{subscription_id}", status_code=204, summary="Remove an endpoint")
def delete_subscription(
    subscription_id: SubscriptionPath, instance: InstanceDep, principal: Manager, now: ClockDep
) -> Response:
    """Remove the endpoint; messages not yet delivered to it are cancelled."""
    webhooks.delete_subscription(instance.db, subscription_id, organisation=_scope(principal), now=now)
    return Response(status_code=204)


@router.post("/v1/deletions", response_model=DeletionOut, status_code=201, summary="Confirm a deletion")
def post_deletion(
    body: DeletionIn,
    instance: InstanceDep,
    now: ClockDep,
    response: Response,
    principal: Annotated[Principal, Depends(require("deletions.confirm"))],
) -> dict[str, Any]:
    """Record on the ledger that the caller's organisation deleted the subject's data (200 if already recorded)."""
    if principal.organisation is None:
        msg = "only a partner organisation can confirm that it deleted data"
        raise ForbiddenError(msg)
    confirmed = webhooks.confirm_deletion(
        instance.ledger,
        organisation=principal.organisation,
        subject=body.subject,
        consent=body.consent,
        decision_id=body.decision_id,
        deleted_at=body.deleted_at,
        actor=principal.actor,
        now=now,
    )
    if not confirmed.is_new:
        response.status_code = 200
    return confirmed.to_json()
