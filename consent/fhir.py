"""HL7 FHIR R4 ``Consent`` resources: import (to ``ConsentIn``) and export (from ``ConsentView``).

Structure is validated with the ``fhir.resources`` models of FHIR R4B, whose
``Consent`` resource is unchanged from R4 (4.0.1); no network is needed. Codes are
checked against the trust's vocabulary like any other consent.

Mapping (both directions)::

    Consent.identifier[system=CONSENT_ID]            consent id (FHIR ids may not hold "_")
    Consent.status                                   "active" (import: required); export: "inactive" once ended
    Consent.scope                                    consentscope "research" if any purpose is research.*,
                                                     else "patient-privacy"
    Consent.category                                 LOINC 59284-0 (consent document)
    Consent.patient.identifier[system=SUBJECT]       subject (sub_…); on import, a contained Patient
                                                     ("#ref", name + telecom) records a new person instead
    Consent.organization.identifier[system=ORG]      the collecting organisation
    Consent.dateTime                                 when the trust recorded it (export only)
    Consent.policyRule                               v3-ActCode OPTIN
    Consent.provision.type                           "permit" (or "deny" with exactly one nested "permit"
                                                     provision carrying the grant: the opt-in pattern)
    Consent.provision.period.start / .end            valid_from / valid_until (ours ends exclusively)
    Consent.provision.purpose[system=PURPOSE]        purposes (v3-ActReason HRESCH reads as research.health)
    Consent.provision.class[system=CATEGORY]         data categories
    Consent.provision.actor[role=IRCP]               recipients (none: any recipient the trust approves)
    extensions (EXT_*)                               operations, explicit, wording version and hash,
                                                     on_behalf, and (export) the derived status
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from fhir.resources.R4B.consent import Consent
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection

from consent import repository, service
from consent.status import ConsentView
from consent.vocabulary import code_covers
from ledger.entry import format_at
from ledger.errors import ValidationError

BASE = "https://datatrust.local/fhir"
CONSENT_ID = f"{BASE}/sid/consent"
SUBJECT = f"{BASE}/sid/subject"
ORGANISATION = f"{BASE}/sid/organisation"
PURPOSE = f"{BASE}/CodeSystem/purpose"
CATEGORY = f"{BASE}/CodeSystem/data-category"
EXT_OPERATIONS = f"{BASE}/StructureDefinition/consent-operation"
EXT_EXPLICIT = f"{BASE}/StructureDefinition/consent-explicit"
EXT_WORDING_VERSION = f"{BASE}/StructureDefinition/consent-wording-version"
EXT_WORDING_HASH = f"{BASE}/StructureDefinition/consent-wording-sha256"
EXT_ON_BEHALF = f"{BASE}/StructureDefinition/consent-on-behalf"
EXT_STATUS = f"{BASE}/StructureDefinition/consent-status"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
STANDARD_PURPOSES: dict[tuple[Any, Any], str] = {(ACT_REASON, "HRESCH"): "research.health"}


def _error(message: str) -> ValidationError:
    return ValidationError(message)


def validate_structure(resource: dict[str, Any]) -> Consent:
    """Validate *resource* against the FHIR R4 ``Consent`` structure (raises ValidationError naming each fault)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        msg = "not a FHIR Consent resource (resourceType must be 'Consent')"
        raise _error(msg)
    try:
        return Consent.model_validate(resource)
    except PydanticValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'Consent'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        msg = f"not a valid FHIR R4 Consent: {faults}"
        raise _error(msg) from None


def _ext(element: dict[str, Any], url: str) -> list[Any]:
    values: list[Any] = []
    for ext in element.get("extension", []) or []:
        if ext.get("url") == url:
            values.extend(v for k, v in ext.items() if k.startswith("value"))
    return values


def _identifier(reference: dict[str, Any] | None, system: str) -> str | None:
    if not reference:
        return None
    ident = reference.get("identifier") or {}
    return str(ident["value"]) if ident.get("system") == system and ident.get("value") else None


def _codes(codings: list[dict[str, Any]], system: str, what: str) -> list[str]:
    codes: list[str] = []
    for coding in codings:
        key = (coding.get("system"), coding.get("code"))
        if key in STANDARD_PURPOSES and what == "purpose":
            codes.append(STANDARD_PURPOSES[key])
        elif coding.get("system") == system and coding.get("code"):
            codes.append(str(coding["code"]))
        else:
            msg = (
                f"{what} code {coding.get('code')!r} of system {coding.get('system')!r} is unknown: use system {system}"
            )
            raise _error(msg)
    return codes


def _grant_provision(provision: dict[str, Any]) -> dict[str, Any]:
    if provision.get("type") == "permit":
        return provision
    nested = provision.get("provision") or []
    if provision.get("type") == "deny" and len(nested) == 1 and nested[0].get("type") == "permit":
        return dict(nested[0])
    msg = (
        "the provision must be of type 'permit' (or 'deny' with exactly one nested 'permit' provision): "
        "other shapes cannot be recorded as a consent"
    )
    raise _error(msg)


def _person(resource: dict[str, Any], ref: str) -> dict[str, str]:
    for contained in resource.get("contained", []) or []:
        if contained.get("resourceType") == "Patient" and "#" + str(contained.get("id")) == ref:
            names = contained.get("name") or [{}]
            name = names[0].get("text") or " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
            telecom = [t.get("value") for t in contained.get("telecom", []) or [] if t.get("value")]
            if not name or not telecom:
                msg = f"the contained Patient {ref} needs a name and a telecom value (how to reach them)"
                raise _error(msg)
            return {"name": name, "contact": str(telecom[0])}
    msg = f"Consent.patient refers to {ref}, which is not a contained Patient"
    raise _error(msg)


def draft_from_fhir(resource: dict[str, Any], *, organisation: str) -> dict[str, Any]:
    """Map one FHIR R4 Consent to the fields of ``ConsentIn`` (raises ValidationError saying what is wrong)."""
    validate_structure(resource)
    if resource.get("status") != "active":
        msg = f"only active consents can be recorded (this one is {resource.get('status')!r})"
        raise _error(msg)
    stated = _identifier(
        resource.get("organization", [None])[0] if resource.get("organization") else None, ORGANISATION
    )
    if stated is not None and stated != organisation:
        msg = f"this consent was collected by {stated}, not by {organisation}, the organisation importing it"
        raise _error(msg)
    ids = [i.get("value") for i in resource.get("identifier", []) or [] if i.get("system") == CONSENT_ID]
    consent = ids[0] if ids else ("con_" + resource["id"] if resource.get("id") else None)
    draft: dict[str, Any] = {"consent": consent}
    patient = resource.get("patient") or {}
    subject = _identifier(patient, SUBJECT)
    if subject is not None:
        draft["subject"] = subject
    elif str(patient.get("reference", "")).startswith("#"):
        draft["person"] = _person(resource, str(patient["reference"]))
    else:
        msg = f"Consent.patient must carry an identifier of system {SUBJECT}, or refer to a contained Patient"
        raise _error(msg)
    provision = _grant_provision(resource.get("provision") or {})
    draft["purposes"] = _codes(provision.get("purpose", []) or [], PURPOSE, "purpose")
    draft["categories"] = _codes(provision.get("class", []) or [], CATEGORY, "data category")
    period = provision.get("period") or {}
    draft["valid_from"] = period.get("start")
    draft["valid_until"] = period.get("end")
    actors = [a for a in provision.get("actor", []) or [] if _is_recipient(a)]
    draft["recipients"] = [_identifier(a.get("reference"), ORGANISATION) for a in actors] if actors else None
    operations = _ext(provision, EXT_OPERATIONS) or _ext(resource, EXT_OPERATIONS)
    draft["operations"] = operations or None
    draft["explicit"] = any(v is True for v in _ext(resource, EXT_EXPLICIT))
    draft["on_behalf"] = any(v is True for v in _ext(resource, EXT_ON_BEHALF))
    versions, hashes = _ext(resource, EXT_WORDING_VERSION), _ext(resource, EXT_WORDING_HASH)
    attachment = resource.get("sourceAttachment") or {}
    if not versions:
        msg = f"say which version of the consent wording the person saw (extension {EXT_WORDING_VERSION})"
        raise _error(msg)
    draft["wording_version"] = str(versions[0])
    if hashes:
        draft["wording_hash"] = str(hashes[0])
    elif attachment.get("data"):
        draft["wording_hash"] = hashlib.sha256(base64.b64decode(attachment["data"])).hexdigest()
    else:
        msg = f"give the SHA-256 of the wording (extension {EXT_WORDING_HASH}) or the text in sourceAttachment.data"
        raise _error(msg)
    return {k: v for k, v in draft.items() if v is not None or k in {"recipients", "operations"}}


def _is_recipient(actor: dict[str, Any]) -> bool:
    return any(c.get("code") == "IRCP" for c in (actor.get("role") or {}).get("coding", []))


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def to_fhir(view: ConsentView, *, at: str) -> dict[str, Any]:
    """The FHIR R4 Consent for *view*, with its status at instant *at* (a ``format_at`` string)."""
    vocabulary = view.vocabulary
    status = view.status(at)
    research = any(code_covers("research", p) for p in view.purposes)
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": view.valid_from, **({"end": view.valid_until} if view.valid_until else {})},
        "purpose": [_coding(PURPOSE, p, vocabulary.label("purposes", p)) for p in view.purposes],
        "class": [_coding(CATEGORY, c, vocabulary.label("categories", c)) for c in view.categories],
    }
    if view.recipients is not None:
        provision["actor"] = [
            {
                "role": {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]},
                "reference": {"identifier": {"system": ORGANISATION, "value": r}},
            }
            for r in view.recipients
        ]
    if view.operations is not None:
        provision["extension"] = [{"url": EXT_OPERATIONS, "valueCode": o} for o in view.operations]
    return {
        "resourceType": "Consent",
        "id": view.consent.replace("_", "-"),
        "extension": [
            {"url": EXT_STATUS, "valueCode": status.value},
            {"url": EXT_EXPLICIT, "valueBoolean": view.explicit},
            {"url": EXT_ON_BEHALF, "valueBoolean": view.on_behalf},
            {"url": EXT_WORDING_VERSION, "valueString": view.wording_version},
            {"url": EXT_WORDING_HASH, "valueString": view.wording_hash},
        ],
        "identifier": [{"system": CONSENT_ID, "value": view.consent}],
        "status": "active" if status.value in {"active", "pending"} else "inactive",
        "scope": {"coding": [_coding(SCOPE_SYSTEM, "research", "Research") if research else _privacy()]},
        "category": [{"coding": [_coding(LOINC, "59284-0", "Patient Consent")]}],
        "patient": {"identifier": {"system": SUBJECT, "value": view.subject}},
        "dateTime": view.granted_at,
        "organization": [{"identifier": {"system": ORGANISATION, "value": view.organisation}}],
        "policyRule": {"coding": [_coding(ACT_CODE, "OPTIN", "opt-in")]},
        "provision": provision,
    }


def _privacy() -> dict[str, str]:
    return _coding(SCOPE_SYSTEM, "patient-privacy", "Privacy Consent")


def export_ndjson(
    conn: Connection,
    out: IO[str],
    *,
    at: datetime,
    organisation: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write every consent (or one organisation's) as FHIR NDJSON, oldest first, in constant memory."""
    stamp = format_at(at)
    count = 0
    for page in repository.iter_grants(conn, organisation=organisation):
        wanted = {str(row.consent) for row in page}
        views = service.consents_for_subjects(conn, sorted({str(row.subject) for row in page}), at=at)
        chosen = sorted((v for vs in views.values() for v in vs if v.consent in wanted), key=lambda v: v.seq)
        for view in chosen:
            out.write(json.dumps(to_fhir(view, at=stamp), separators=(",", ":"), ensure_ascii=False) + "\n")
        count += len(chosen)
        if progress is not None:
            progress(count, 0)
    return count
