"""FHIR R4 Consent resources: structure validation, import mapping, export, round trip."""

from __future__ import annotations

import base64
import copy
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.consent import Consent

from consent import fhir, service
from consent.schemas import ConsentIn
from ledger.errors import ValidationError
from tests.consent.support import ORG, record

WORDING = "I agree that the trust may use my housing information for health research."


def resource(**overrides):
    """A valid R4 Consent for a new person (a contained Patient), as a partner's FHIR server would send it."""
    base = {
        "resourceType": "Consent",
        "id": "abc-123",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p1",
                "name": [{"given": ["Grace"], "family": "Hopper"}],
                "telecom": [{"system": "email", "value": "grace@example.org"}],
            }
        ],
        "extension": [
            {"url": fhir.EXT_WORDING_VERSION, "valueString": "v2"},
            {"url": fhir.EXT_EXPLICIT, "valueBoolean": True},
        ],
        "status": "active",
        "scope": {"coding": [{"system": fhir.SCOPE_SYSTEM, "code": "research"}]},
        "category": [{"coding": [{"system": fhir.LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "#p1"},
        "organization": [{"identifier": {"system": fhir.ORGANISATION, "value": ORG}}],
        "policyRule": {"coding": [{"system": fhir.ACT_CODE, "code": "OPTIN"}]},
        "sourceAttachment": {"contentType": "text/plain", "data": base64.b64encode(WORDING.encode()).decode()},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
            "purpose": [{"system": fhir.ACT_REASON, "code": "HRESCH"}],
            "class": [
                {"system": fhir.CATEGORY, "code": "housing"},
                {"system": fhir.CATEGORY, "code": "health.mental"},
            ],
            "actor": [
                {
                    "role": {"coding": [{"system": fhir.PARTICIPATION, "code": "IRCP"}]},
                    "reference": {"identifier": {"system": fhir.ORGANISATION, "value": "org_university"}},
                }
            ],
            "extension": [{"url": fhir.EXT_OPERATIONS, "valueCode": "aggregate"}],
        },
    }
    base.update(overrides)
    return base


def test_an_r4_consent_maps_to_a_consent():
    """Purposes (HRESCH reads as research.health), classes, period, recipients and extensions are mapped."""
    draft = ConsentIn.model_validate(fhir.draft_from_fhir(resource(), organisation=ORG))
    assert draft.consent == "con_abc-123"
    assert draft.person is not None
    assert (draft.person.name, draft.person.contact) == ("Grace Hopper", "grace@example.org")
    assert draft.purposes == ["research.health"]
    assert draft.categories == ["housing", "health.mental"]
    assert draft.recipients == ["org_university"]
    assert draft.operations == ["aggregate"]
    assert draft.explicit is True
    assert draft.wording_version == "v2"
    assert draft.wording_hash == service.wording_hash(ConsentIn.model_validate({**_minimal(), "wording_text": WORDING}))
    assert draft.valid_until == datetime(2027, 1, 1, tzinfo=UTC)


def _minimal():
    return {"subject": "sub_aaaaaaaaaa", "purposes": ["research"], "categories": ["housing"], "wording_version": "x"}


def test_a_deny_provision_with_one_nested_permit_is_the_opt_in_pattern():
    """A base 'deny' with one nested 'permit' records the nested permit."""
    outer = resource()
    inner = outer["provision"]
    outer["provision"] = {"type": "deny", "provision": [inner]}
    assert fhir.draft_from_fhir(outer, organisation=ORG)["purposes"] == ["research.health"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(status="inactive"), "only active consents"),
        (lambda r: r["provision"].update(type="deny"), "must be of type 'permit'"),
        (lambda r: r.pop("scope"), "not a valid FHIR R4 Consent: scope"),
        (lambda r: r.update(unknownElement=1), "unknownElement"),
        (lambda r: r["provision"].update(type=7), "provision.type"),
        (lambda r: r.update(resourceType="Patient"), "not a FHIR Consent"),
        (lambda r: r["provision"]["purpose"].append({"system": "http://example.org/x", "code": "Q"}), "code 'Q'"),
        (
            lambda r: r.update(organization=[{"identifier": {"system": fhir.ORGANISATION, "value": "org_x"}}]),
            "collected by org_x",
        ),
        (lambda r: r.update(patient={"reference": "#nobody"}), "not a contained Patient"),
        (lambda r: r.update(extension=[]), "wording"),
    ],
)
def test_invalid_resources_are_refused_clearly(change, message):
    """A resource that is not valid R4, or cannot be a consent here, is refused saying why."""
    bad = resource()
    change(bad)
    with pytest.raises(ValidationError, match=message):
        fhir.draft_from_fhir(bad, organisation=ORG)


def test_unknown_codes_are_refused_with_the_closest_known_codes(instance):
    """A data class not in the vocabulary is a 422-class error naming the code and its closest matches."""
    bad = resource()
    bad["provision"]["class"] = [{"system": fhir.CATEGORY, "code": "housin"}]
    draft = ConsentIn.model_validate(fhir.draft_from_fhir(bad, organisation=ORG))
    with pytest.raises(ValidationError, match="did you mean 'housing'"):
        service.record_consent(
            instance.ledger, instance.vault, draft, organisation=ORG, actor="c", now=datetime.now(UTC)
        )


def test_export_is_valid_r4_and_round_trips(instance):
    """Exported consents validate as R4 Consent resources and import back to the same terms."""
    now = datetime.now(UTC)
    first = record(instance, recipients=["org_university"], operations=["aggregate", "pseudonymised"])
    second = record(instance, subject=first.subject, purposes=["statistics"], categories=["demographics.age"])
    service.withdraw_consent(
        instance.ledger, consent=second.consent, by="subject", requester=first.subject, actor="x", now=now
    )
    out = io.StringIO()
    with instance.db.engine.connect() as conn:
        count = fhir.export_ndjson(conn, out, at=now + timedelta(seconds=1))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(lines) == 2
    for line in lines:
        Consent.model_validate(line)
    assert [line["status"] for line in lines] == ["active", "inactive"]
    back = fhir.draft_from_fhir(copy.deepcopy(lines[0]), organisation=ORG)
    assert back["consent"] == first.consent
    assert back["subject"] == first.subject
    assert back["purposes"] == ["research"]
    assert back["recipients"] == ["org_university"]
    assert back["operations"] == ["aggregate", "pseudonymised"]
    assert back["wording_hash"] == first.entry.payload["wording_hash"]
    assert "Amira" not in out.getvalue()  # no personal data leaves in an export
