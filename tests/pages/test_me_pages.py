"""The individual's pages over HTTP: access-code sign-in, own consents and uses only, withdrawal, erasure."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.instance import Instance
from consent import service as consent_service
from consent.schemas import ConsentIn
from tests.factories import bearer, partner_principal
from tests.pages.conftest import csrf, sign_in_individual, title_of
from tests.pages.support import FOOD_BANK, World, statistics_check
from trust.deletions import confirm_deletion

SUBJECT = re.compile(r"sub_[a-z0-9]{8,}")


def test_a_wrong_code_is_refused_beside_the_field(app_client: TestClient) -> None:
    """A mistyped code is refused with a message tied to the access-code field; an empty one too."""
    wrong = app_client.post("/me/sign-in", data={"access_code": "AAAA-BBBB-CCCC", "csrf_token": csrf(app_client)})
    assert wrong.status_code == 403
    assert 'id="access_code-error"' in wrong.text
    assert 'aria-describedby="access_code-hint access_code-error"' in wrong.text
    assert "We could not sign you in with that code" in wrong.text
    empty = app_client.post("/me/sign-in", data={"access_code": "", "csrf_token": csrf(app_client)})
    assert empty.status_code == 422
    assert "Enter the access code" in empty.text
    assert "dt_session" not in app_client.cookies


def test_my_page_shows_my_consents_and_uses_and_nobody_elses(app_client: TestClient, world: World) -> None:
    """Alice sees her consents and who asked; Bob sees his own and nothing of Alice's; neither sees a subject id."""
    sign_in_individual(app_client, world.alice.access_code)
    alice = app_client.get("/me")
    assert alice.status_code == 200
    assert title_of(alice.text).startswith("Your consents")
    for consent in world.alice.consents:
        assert f'id="consent-{consent}"' in alice.text
    for consent in world.bob.consents:
        assert consent not in alice.text
    assert "Riverside Food Bank</strong> asked on" in alice.text
    assert "How many families needed the food bank" in alice.text
    assert SUBJECT.search(alice.text) is None
    app_client.cookies.clear()
    sign_in_individual(app_client, world.bob.access_code)
    bob = app_client.get("/me")
    for consent in world.bob.consents:
        assert f'id="consent-{consent}"' in bob.text
    for consent in world.alice.consents:
        assert consent not in bob.text
    assert "No partner has asked to use your information yet." in bob.text
    assert SUBJECT.search(bob.text) is None


def test_anothers_consent_is_not_found_for_reading_or_withdrawing(app_client: TestClient, world: World) -> None:
    """Bob cannot open or withdraw Alice's consent: both answer 404, and the consent stays as it was."""
    target = world.alice.consent_for("research.social")
    sign_in_individual(app_client, world.bob.access_code)
    assert app_client.get(f"/me/consents/{target}/withdraw").status_code == 404
    refused = app_client.post(f"/me/consents/{target}/withdraw", data={"csrf_token": csrf(app_client)})
    assert refused.status_code == 404
    assert "We could not find that consent" in refused.text
    app_client.cookies.clear()
    sign_in_individual(app_client, world.alice.access_code)
    mine = app_client.get("/me").text
    article = mine[mine.index(f'id="consent-{target}"') :]
    assert f"/me/consents/{target}/withdraw" in article[: article.index("</article>")]  # still withdrawable


def test_withdrawal_is_confirmed_shown_at_once_and_binds_the_next_check(
    trust: Instance, app_client: TestClient, world: World
) -> None:
    """After the confirmation page, withdrawing shows the result at once, and the partner's next check is denied."""
    target = world.alice.consent_for("statistics.aggregate")
    partner = bearer(trust, partner_principal(FOOD_BANK))
    body = statistics_check(world.cohort, world.approved)
    before = app_client.post("/v1/checks", json=body, headers={**partner, "Accept": "application/json"})
    assert before.json()["decision"] == "permit", before.text
    sign_in_individual(app_client, world.alice.access_code)
    confirm = app_client.get(f"/me/consents/{target}/withdraw")
    assert "What happens when you withdraw" in confirm.text
    assert "It takes effect straight away" in confirm.text
    done = app_client.post(
        f"/me/consents/{target}/withdraw",
        data={"reason": "I moved away.", "csrf_token": csrf(app_client)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/me?withdrawn={target}#consent-{target}"
    page = app_client.get(done.headers["location"]).text
    assert "Your consent has been withdrawn" in page
    article = page[page.index(f'id="consent-{target}"') :]
    article = article[: article.index("</article>")]
    assert "status--withdrawn" in article
    assert "/withdraw" not in article  # nothing left to withdraw
    after = app_client.post("/v1/checks", json=body, headers={**partner, "Accept": "application/json"}).json()
    assert after["decision"] == "deny"
    [mine] = [x for x in after["subjects"]["excluded"] if x["subject"] == world.alice.subject]
    assert mine["rule"] == "consent"
    assert f"consent {target} was withdrawn by the person" in mine["reason"]
    history = app_client.get("/me").text
    assert "because your consent had been withdrawn" in history


def test_the_uses_api_lists_only_my_check_decisions(trust: Instance, app_client: TestClient, world: World) -> None:
    """GET /v1/me/uses names who asked, for what, the answer for me, and never another person's decisions."""
    sign_in_individual(app_client, world.alice.access_code)
    json_accept = {"Accept": "application/json"}
    alice = app_client.get("/v1/me/uses", headers=json_accept).json()
    assert alice["subject"] == world.alice.subject
    assert alice["total"] >= 14
    first = alice["uses"][0]
    assert first["organisation_name"] == "Riverside Food Bank"
    assert first["request_title"].startswith("How many families")
    assert {u["purpose_label"] for u in alice["uses"]} >= {"Aggregate statistics"}
    seqs = [u["decision_id"] for u in alice["uses"]]
    assert seqs == sorted(seqs, reverse=True)
    app_client.cookies.clear()
    sign_in_individual(app_client, world.bob.access_code)
    bob = app_client.get("/v1/me/uses", headers=json_accept).json()
    assert bob == {"subject": world.bob.subject, "total": 0, "uses": [], "deletions": []}
    app_client.cookies.clear()
    assert app_client.get("/v1/me/uses", headers=json_accept).status_code == 401


def test_erasure_explains_needs_confirmation_and_signs_out(trust: Instance, app_client: TestClient) -> None:
    """The erasure page says what is and is not removed; it needs the box ticked; then the session ends."""
    recorded = consent_service.record_consent(
        trust.ledger,
        trust.vault,
        ConsentIn.model_validate(
            {
                "person": {"name": "Dana Whitfield", "contact": "dana@example.org"},
                "purposes": ["statistics.aggregate"],
                "categories": ["service_use"],
                "wording_version": "v1",
                "wording_text": "You may count my visits.",
            }
        ),
        organisation=FOOD_BANK,
        actor=FOOD_BANK,
        now=trust.clock(),
    )
    sign_in_individual(app_client, recorded.access_code)
    page = app_client.get("/me/erase").text
    assert "What erasure removes" in page
    assert "What erasure does not remove" in page
    unconfirmed = app_client.post("/me/erase", data={"csrf_token": csrf(app_client)})
    assert unconfirmed.status_code == 422
    assert 'id="confirm-error"' in unconfirmed.text
    erased = app_client.post("/me/erase", data={"confirm": "yes", "csrf_token": csrf(app_client)})
    assert erased.status_code == 200
    assert "Your details have been erased" in erased.text
    assert "Dana" not in erased.text
    assert app_client.get("/me", follow_redirects=False).status_code == 303  # signed out
    again = app_client.post("/me/sign-in", data={"access_code": recorded.access_code, "csrf_token": csrf(app_client)})
    assert again.status_code == 403


def test_a_partners_deletion_confirmation_shows_on_my_page(
    trust: Instance, app_client: TestClient, world: World
) -> None:
    """When a partner confirms it deleted a person's data, that person's page and uses API say who and when."""
    now = trust.clock()
    confirm_deletion(
        trust.ledger,
        organisation=FOOD_BANK,
        subject=world.carol.subject,
        consent=None,
        decision_id=None,
        deleted_at=now,
        actor=world.partner_client,
        now=now,
    )
    sign_in_individual(app_client, world.carol.access_code)
    assert "Deleted by Riverside Food Bank on" in app_client.get("/me").text
    uses = app_client.get("/v1/me/uses", headers={"Accept": "application/json"}).json()
    assert [d["organisation_name"] for d in uses["deletions"]] == ["Riverside Food Bank"]
    app_client.cookies.clear()
    sign_in_individual(app_client, world.bob.access_code)
    assert "Deleted by" not in app_client.get("/me").text
