"""Webhooks, the domain side: subscriptions, the outbox, which events go to whom, deliveries, deletions.

**Which events go to whom.** An entry of a *causing kind* becomes one outbox message
per active subscription (of a receiving organisation) that asked for its event type:

* ``consent.withdrawn`` -> every organisation that a ``permit`` check decision, recorded
  before the withdrawal, gave the subject to; and the organisation that collected the consent;
* ``subject.erased`` -> the same, for every consent of the subject;
* ``request.decided``, ``request.revoked`` -> the organisation that submitted the request;
* ``agreement.terminated`` -> the organisation party to the agreement;
* ``org.suspended`` (event type ``organisation.suspended``) -> the organisation suspended.

**The outbox rule.** :func:`project_outbox` is a projector: the sequencer runs it in the
transaction that appends the causing entry, so the entry and its messages commit
together or not at all, and no event is lost if the process dies between the two. It is
registered with ``tables=[]``: the outbox depends on subscriptions, which are
configuration kept off the ledger, so ``datatrust ledger replay`` cannot rebuild it and
must not compare it (a replay into an empty database finds no subscriptions and queues
nothing).

**Messages.** The body is the Standard Webhooks envelope, canonical JSON (RFC 8785)::

    {"type": "consent.withdrawn", "timestamp": "<the entry's at>",
     "data": {"entry": {"seq": N, "leaf_hash": "<hex>", "kind": "consent.withdrawn"}, …event fields…}}

Its id (``msg_<seq>_<subscription>``) is the ``webhook-id`` header: the same on every
retry and every replay, so receivers de-duplicate on it. Delivery, retries and their
history are in :mod:`trust.webhook_deliveries`; deletion confirmations (the partner's
answer to a withdrawal) in :mod:`trust.deletions`, re-exported here.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, true, update

from consent.models import grants_table
from ledger.canonical import canonicalize
from ledger.db import Database
from ledger.entry import LedgerEntry, format_at
from ledger.errors import ConflictError, NotFoundError, ValidationError
from ledger.models import entries_table
from ledger.projection import ProjectorRegistry
from trust.check_models import check_decisions_table, check_subjects_table
from trust.deletions import confirm_deletion, deletions_for_subject, project_deletion
from trust.models import agreements_table, requests_table
from trust.webhook_deliveries import CANCELLED, PENDING
from trust.webhook_models import DELETION_TABLES, messages_table, subscriptions_table

__all__ = [  # deletions are re-exported: the individual's page reads trust.webhooks.deletions_for_subject
    "CAUSING_KINDS",
    "EVENT_TYPES",
    "Subscription",
    "confirm_deletion",
    "create_subscription",
    "delete_subscription",
    "deletions_for_subject",
    "get_subscription",
    "list_subscriptions",
    "project_outbox",
    "recipients",
    "register_projectors",
    "replay_events",
    "update_subscription",
]

EVENT_TYPES: dict[str, str] = {  # ledger kind -> the event type partners subscribe to
    "consent.withdrawn": "consent.withdrawn",
    "subject.erased": "subject.erased",
    "request.decided": "request.decided",
    "request.revoked": "request.revoked",
    "agreement.terminated": "agreement.terminated",
    "org.suspended": "organisation.suspended",
}
CAUSING_KINDS = frozenset(EVENT_TYPES)
SCHEMES = ("v1a", "v1")  # Standard Webhooks: v1a = Ed25519 (default), v1 = HMAC-SHA256
MAX_SUBSCRIPTIONS = 10  # per organisation
MAX_DECISIONS_LISTED = 100  # decision ids listed per message; the count is always given
MAX_REPLAY = 1000  # causing entries scanned per replay call
# -- subscriptions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """A partner's endpoint. ``secret`` is set only in the answer that created or rotated it."""

    id: str
    organisation: str
    url: str
    event_types: tuple[str, ...]
    scheme: str
    description: str
    is_active: bool
    created_at: str
    created_by: str
    updated_at: str
    secret: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As the API shows it."""
        body = {
            "id": self.id,
            "organisation": self.organisation,
            "url": self.url,
            "event_types": list(self.event_types),
            "scheme": self.scheme,
            "description": self.description,
            "is_active": self.is_active,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
        }
        if self.secret is not None:
            body["secret"] = self.secret
        return body


def _subscription(row: Row[Any], *, secret: str | None = None) -> Subscription:
    return Subscription(
        id=row.id,
        organisation=row.organisation,
        url=row.url,
        event_types=tuple(json.loads(row.event_types)),
        scheme=row.scheme,
        description=row.description,
        is_active=bool(row.is_active),
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        secret=secret,
    )


def new_secret() -> str:
    """A fresh Standard Webhooks symmetric secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str, *, allow_local: bool = False) -> str:
    """Accept an absolute https URL on a public host.

    Loopback and private-network addresses written as such (``localhost``, ``127.0.0.1``,
    ``10.…``, ``192.168.…``, ``fd…``) and plain http are refused unless *allow_local*
    (local receivers in development and the demo): a partner must not be able to make
    the trust's worker call services on the trust's own network. Names that merely
    resolve to such addresses are not checked here; restrict the worker's egress too.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        msg = f"{url!r} is not a URL: {exc}"
        raise ValidationError(msg, field="url") from exc
    if parts.scheme not in {"https", "http"} or not host:
        msg = f"webhook URL must be an absolute https URL, not {url!r}"
        raise ValidationError(msg, field="url")
    if parts.username or parts.password or parts.fragment:
        msg = "webhook URL must not hold credentials or a #fragment"
        raise ValidationError(msg, field="url")
    if allow_local:
        return url
    if parts.scheme != "https":
        msg = f"webhook URL must use https, not {url!r}"
        raise ValidationError(msg, field="url")
    if _is_local(host):
        msg = f"webhook URL must name a public host, not {host!r} (a loopback or private-network address)"
        raise ValidationError(msg, field="url")
    return url


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def check_event_types(event_types: list[str]) -> tuple[str, ...]:
    """Known event types, without duplicates, in the canonical order."""
    known = list(EVENT_TYPES.values())
    unknown = sorted(set(event_types) - set(known))
    if unknown:
        msg = f"unknown event type {unknown[0]!r}: choose from {', '.join(known)}"
        raise ValidationError(msg, field="event_types")
    if not event_types:
        msg = f"subscribe to at least one event type: {', '.join(known)}"
        raise ValidationError(msg, field="event_types")
    return tuple(t for t in known if t in event_types)


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        msg = f"unknown signature scheme {scheme!r}: use v1a (Ed25519, the default) or v1 (HMAC-SHA256)"
        raise ValidationError(msg, field="scheme")
    return scheme


def _owned(organisation: str | None) -> Any:
    """The WHERE clause restricting subscriptions to *organisation* (None: an administrator sees all)."""
    return true() if organisation is None else subscriptions_table.c.organisation == organisation


def _get_row(conn: Connection, subscription_id: str, organisation: str | None) -> Row[Any]:
    t = subscriptions_table
    row = conn.execute(select(t).where(t.c.id == subscription_id, _owned(organisation))).first()
    if row is None:  # another organisation's subscription is "not found", exactly like a missing one
        msg = f"webhook subscription {subscription_id} was not found"
        raise NotFoundError(msg)
    return row


def create_subscription(
    db: Database,
    *,
    organisation: str,
    url: str,
    event_types: list[str],
    scheme: str = "v1a",
    description: str = "",
    actor: str,
    now: datetime,
    allow_local: bool = False,
) -> Subscription:
    """Register an endpoint of *organisation*; a ``v1`` subscription gets a new secret (shown once).

    *allow_local* admits http and loopback or private-network hosts (see :func:`check_url`).
    """
    subscription_id, secret = f"whk_{secrets.token_hex(10)}", new_secret() if scheme == "v1" else None
    values: dict[str, Any] = {
        "id": subscription_id,
        "organisation": organisation,
        "url": check_url(url, allow_local=allow_local),
        "event_types": canonicalize(list(check_event_types(event_types))).decode(),
        "scheme": _check_scheme(scheme),
        "secret": secret,
        "description": description,
        "is_active": True,
        "created_at": format_at(now),
        "created_by": actor,
        "updated_at": format_at(now),
    }
    t = subscriptions_table
    with db.write_engine.begin() as conn:
        count = conn.execute(select(func.count()).select_from(t).where(t.c.organisation == organisation)).scalar_one()
        if count >= MAX_SUBSCRIPTIONS:
            msg = f"{organisation} already has {count} webhook subscriptions; the limit is {MAX_SUBSCRIPTIONS}"
            raise ConflictError(msg)
        conn.execute(insert(t).values(values))
        row = _get_row(conn, subscription_id, organisation)
    return _subscription(row, secret=secret)


def list_subscriptions(db: Database, *, organisation: str | None) -> list[Subscription]:
    """The subscriptions of *organisation* (every organisation's, for an administrator: None)."""
    t = subscriptions_table
    with db.engine.connect() as conn:
        rows = conn.execute(select(t).where(_owned(organisation)).order_by(t.c.created_at, t.c.id)).all()
    return [_subscription(row) for row in rows]


def get_subscription(db: Database, subscription_id: str, *, organisation: str | None) -> Subscription:
    """One subscription, if *organisation* owns it (or None: an administrator)."""
    with db.engine.connect() as conn:
        return _subscription(_get_row(conn, subscription_id, organisation))


def update_subscription(
    db: Database,
    subscription_id: str,
    *,
    organisation: str | None,
    now: datetime,
    url: str | None = None,
    event_types: list[str] | None = None,
    scheme: str | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    rotate_secret: bool = False,
    allow_local: bool = False,
) -> Subscription:
    """Change a subscription; switching to ``v1`` or *rotate_secret* issues a new secret (shown once)."""
    changes: dict[str, Any] = {"updated_at": format_at(now)}
    if url is not None:
        changes["url"] = check_url(url, allow_local=allow_local)
    if event_types is not None:
        changes["event_types"] = canonicalize(list(check_event_types(event_types))).decode()
    if description is not None:
        changes["description"] = description
    if is_active is not None:
        changes["is_active"] = is_active
    t = subscriptions_table
    with db.write_engine.begin() as conn:
        row = _get_row(conn, subscription_id, organisation)
        new_scheme = row.scheme if scheme is None else _check_scheme(scheme)
        if rotate_secret and new_scheme != "v1":
            msg = "only a v1 (HMAC) subscription has a secret to rotate; v1a is signed with the trust's key"
            raise ValidationError(msg, field="rotate_secret")
        secret = new_secret() if new_scheme == "v1" and (rotate_secret or row.scheme != "v1") else None
        changes["scheme"] = new_scheme
        changes["secret"] = None if new_scheme == "v1a" else (secret or row.secret)
        conn.execute(update(t).where(t.c.id == subscription_id).values(changes))
        row = _get_row(conn, subscription_id, organisation)
    return _subscription(row, secret=secret)


def delete_subscription(db: Database, subscription_id: str, *, organisation: str | None, now: datetime) -> None:
    """Remove a subscription; its undelivered messages are cancelled (their history stays visible)."""
    m = messages_table
    with db.write_engine.begin() as conn:
        _get_row(conn, subscription_id, organisation)
        conn.execute(
            update(m)
            .where(m.c.subscription == subscription_id, m.c.status == PENDING)
            .values(status=CANCELLED, next_attempt_at=None, last_error=f"subscription deleted at {format_at(now)}")
        )
        conn.execute(subscriptions_table.delete().where(subscriptions_table.c.id == subscription_id))


# -- which events go to whom -----------------------------------------------------------------------


def _permits(conn: Connection, subject: str, *, before: int) -> dict[str, dict[str, Any]]:
    """Organisations a permit decision recorded before *before* gave *subject* to, with those decisions."""
    s, d = check_subjects_table, check_decisions_table
    where = and_(s.c.subject == subject, s.c.is_permitted.is_(True), s.c.seq < before, d.c.decision == "permit")
    joined = s.join(d, d.c.seq == s.c.seq)
    counts = conn.execute(
        select(d.c.organisation, func.count()).select_from(joined).where(where).group_by(d.c.organisation)
    )
    found: dict[str, dict[str, Any]] = {str(org): {"decision_ids": [], "decision_count": int(n)} for org, n in counts}
    if found:
        recent = conn.execute(
            select(d.c.organisation, s.c.seq).select_from(joined).where(where).order_by(s.c.seq.desc()).limit(5000)
        )
        for org, seq in recent:
            ids = found[str(org)]["decision_ids"]
            if len(ids) < MAX_DECISIONS_LISTED:
                ids.append(int(seq))
    for item in found.values():
        item["decision_ids"].sort()
    return found


def _collectors(conn: Connection, *, consent: str | None = None, subject: str | None = None) -> set[str]:
    g = grants_table
    where = g.c.consent == consent if consent is not None else g.c.subject == subject
    return {str(org) for (org,) in conn.execute(select(g.c.organisation).where(where).distinct())}


def _subject_recipients(conn: Connection, entry: LedgerEntry, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    subject = entry.payload.get("subject")
    if not isinstance(subject, str):
        return {}
    consent = entry.payload.get("consent") if entry.kind == "consent.withdrawn" else None
    permits = _permits(conn, subject, before=entry.seq)
    collectors = _collectors(conn, consent=consent) if isinstance(consent, str) else _collectors(conn, subject=subject)
    result: dict[str, dict[str, Any]] = {}
    for org in sorted(set(permits) | collectors):
        got = permits.get(org, {"decision_ids": [], "decision_count": 0})
        relation = [r for r, yes in (("recipient", org in permits), ("collector", org in collectors)) if yes]
        result[org] = {**base, "relation": relation, **got}
    return result


def _one_owner(conn: Connection, query: Any, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    owner = conn.execute(query.limit(1)).scalar()
    return {} if owner is None else {str(owner): data}


def recipients(conn: Connection, entry: LedgerEntry) -> dict[str, dict[str, Any]]:
    """``{organisation: event data}`` for every organisation that must hear of *entry* (see the module docstring)."""
    p, kind = entry.payload, entry.kind
    if kind == "consent.withdrawn":
        base = {"subject": p.get("subject"), "consent": p.get("consent"), "by": p.get("by"), "withdrawn_at": entry.at}
        return _subject_recipients(conn, entry, base)
    if kind == "subject.erased":
        return _subject_recipients(conn, entry, {"subject": p.get("subject"), "by": p.get("by"), "erased_at": entry.at})
    if kind in {"request.decided", "request.revoked"}:
        r = requests_table.c
        data: dict[str, Any] = {"request": p.get("request")}
        if kind == "request.decided":
            data.update(outcome=p.get("outcome"), expires_at=p.get("expires_at"), decided_at=entry.at)
        else:
            data.update(reason=p.get("reason", ""), revoked_at=entry.at)
        return _one_owner(conn, select(r.organisation).where(r.request_id == p.get("request")), data)
    if kind == "agreement.terminated":
        a = agreements_table.c
        data = {
            "agreement": p.get("agreement"),
            "version": p.get("version"),
            "reason": p.get("reason", ""),
            "terminated_at": entry.at,
        }
        return _one_owner(conn, select(a.organisation).where(a.agreement_id == p.get("agreement")), data)
    if kind == "org.suspended" and isinstance(p.get("organisation"), str):
        return {
            p["organisation"]: {
                "organisation": p["organisation"],
                "reason": p.get("reason", ""),
                "suspended_at": entry.at,
            }
        }
    return {}


def message_id(seq: int, subscription: str) -> str:
    """The ``webhook-id`` of the message for entry *seq* to *subscription* (stable across retries and replays)."""
    return f"msg_{seq}_{subscription.removeprefix('whk_')}"


def message_body(entry: LedgerEntry, data: dict[str, Any]) -> str:
    """The Standard Webhooks envelope for *entry*, as canonical JSON text."""
    envelope = {
        "type": EVENT_TYPES[entry.kind],
        "timestamp": entry.at,
        "data": {"entry": {"seq": entry.seq, "leaf_hash": entry.leaf_hash.hex(), "kind": entry.kind}, **data},
    }
    return canonicalize(envelope).decode()


def _subscribers(conn: Connection, event_type: str, organisation: str | None = None) -> list[Row[Any]]:
    t = subscriptions_table
    query = select(t.c.id, t.c.organisation, t.c.event_types).where(
        t.c.is_active.is_(True), t.c.event_types.contains(f'"{event_type}"')
    )
    if organisation is not None:
        query = query.where(t.c.organisation == organisation)
    return [row for row in conn.execute(query) if event_type in json.loads(row.event_types)]


def _queue(conn: Connection, entry: LedgerEntry, subscription: Row[Any], data: dict[str, Any], queued_at: str) -> bool:
    """Insert the message, or re-queue it if it exists; return whether it was new."""
    m = messages_table
    ident = message_id(entry.seq, subscription.id)
    existing = conn.execute(select(m.c.id).where(m.c.id == ident)).first()
    if existing is not None:
        conn.execute(
            update(m).where(m.c.id == ident).values(status=PENDING, queued_at=queued_at, next_attempt_at=queued_at)
        )
        return False
    conn.execute(
        insert(m).values(
            id=ident,
            subscription=subscription.id,
            organisation=subscription.organisation,
            seq=entry.seq,
            event_type=EVENT_TYPES[entry.kind],
            body=message_body(entry, data),
            event_at=entry.at,
            queued_at=queued_at,
            status=PENDING,
            attempts=0,
            next_attempt_at=queued_at,
        )
    )
    return True


def project_outbox(conn: Connection, entry: LedgerEntry) -> None:
    """Projector for the causing kinds: queue a message per matching subscription, in the entry's transaction."""
    event_type = EVENT_TYPES.get(entry.kind)
    if event_type is None:
        return
    subscribers = _subscribers(conn, event_type)
    if not subscribers:  # the common case costs one indexed query on a small table
        return
    receiving = recipients(conn, entry)
    for subscription in subscribers:
        data = receiving.get(subscription.organisation)
        if data is not None:
            _queue(conn, entry, subscription, data, entry.at)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay re-queued, and where to continue (``next_since``) if it stopped at the page limit."""

    requeued: int
    scanned: int
    next_since: int | None

    def to_json(self) -> dict[str, Any]:
        """As the API returns it."""
        return {"requeued": self.requeued, "scanned": self.scanned, "next_since": self.next_since}


def replay_events(
    db: Database, *, organisation: str, since: int, now: datetime, limit: int = MAX_REPLAY
) -> ReplayResult:
    """Queue again every event for *organisation* from entry *since* on (same ids; receivers de-duplicate).

    Events are worked out afresh from the ledger and today's subscriptions, so an event
    recorded before a subscription existed is delivered too. At most *limit* causing
    entries are scanned per call; ``next_since`` says where to continue.
    """
    if since < 0:
        msg = f"since must be a sequence number (0 or more), not {since}"
        raise ValidationError(msg, field="since")
    e = entries_table.c
    requeued = scanned = 0
    last: int | None = None
    with db.write_engine.begin() as conn:
        if not conn.execute(
            select(subscriptions_table.c.id).where(
                subscriptions_table.c.organisation == organisation, subscriptions_table.c.is_active.is_(True)
            )
        ).first():
            msg = f"{organisation} has no active webhook subscription to replay events to"
            raise ValidationError(msg)
        rows = conn.execute(
            select(e.body).where(e.kind.in_(sorted(CAUSING_KINDS)), e.seq >= since).order_by(e.seq).limit(limit + 1)
        ).all()
        for (body,) in rows[:limit]:
            entry = LedgerEntry.from_body(bytes(body))
            scanned, last = scanned + 1, entry.seq
            data = recipients(conn, entry).get(organisation)
            if data is None:
                continue
            for subscription in _subscribers(conn, EVENT_TYPES[entry.kind], organisation):
                _queue(conn, entry, subscription, data, format_at(now))
                requeued += 1
    more = len(rows) > limit and last is not None
    return ReplayResult(requeued, scanned, last + 1 if more and last is not None else None)


def register_projectors(registry: ProjectorRegistry) -> None:
    """Register the outbox (``tables=[]``: not replayable, see the module docstring) and the deletions projection."""
    registry.register(sorted(CAUSING_KINDS), project_outbox, tables=[])
    registry.register(["deletion.confirmed"], project_deletion, tables=DELETION_TABLES)
