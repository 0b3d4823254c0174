"""End to end in Chromium: the public comments, an individual withdraws, trustees recuse and vote to a decision.

Every page on the way goes through :class:`tests.e2e.conftest.PageChecker` (title, axe-core,
360 px, CSP, screenshots in ``tests/artifacts/``). The partner's checks go to the same server
with a real OAuth 2.0 token from ``/oauth/token`` (the seeded client's credentials).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveTrust, PageChecker
from tests.pages.support import statistics_check

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
SUBJECT = re.compile(r"sub_[a-z0-9]{8,}")


def partner_check(live: LiveTrust, subjects: list[str]) -> dict[str, Any]:
    """Ask the trust, as the food bank's system with a client-credentials token, before sharing."""
    partner = live.world.credentials["partner"]
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        token = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "check"},
            auth=(partner["client_id"], partner["client_secret"]),
        )
        assert token.status_code == 200, token.text
        answer = http.post(
            "/v1/checks",
            json=statistics_check(subjects, live.world.approved),
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def sign_in_with_code(page: Any, code: str) -> None:
    """Use the access-code form."""
    page.get_by_label("Access code").fill(code)
    page.get_by_role("button", name="Sign in").click()


def sign_in_with_password(page: Any, person: dict[str, str], next_: str, checker: PageChecker | None = None) -> None:
    """Use the trust's sign-in page for people with an account (checking that page too, if given a checker)."""
    page.goto(f"/auth/sign-in?next={next_}")
    if checker is not None:
        checker.check(page, "auth-sign-in", title="Sign in")
    page.get_by_label("Username").fill(person["username"])
    page.get_by_label("Password").fill(person["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_}")


def test_the_public_reads_a_request_in_notice_and_comments_and_a_trustee_sees_it(
    new_page: Any, live_trust: LiveTrust, checker: PageChecker
) -> None:
    """A member of the public finds a request on notice, comments (after a plain-words error), and a trustee reads it."""
    world = live_trust.world
    page = new_page()
    page.goto("/")
    checker.check(page, "home", title="Home")
    page.get_by_role("link", name="See what is being asked").click()
    checker.check(page, "register", title="Public register")
    assert page.get_by_role("heading", name="Requests open for comments").is_visible()
    page.get_by_role("link", name="Households using the food bank, by ward, for the cost-of-living plan").first.click()
    checker.check(page, "request-notice", title="Households using the food bank")
    page.get_by_role("button", name="Send comment").click()
    assert page.get_by_role("alert").get_by_text("Write your comment before sending it.").is_visible()
    assert page.locator("#comment").get_attribute("aria-invalid") == "true"
    checker.check(page, "request-comment-error")
    comment = "Please make sure wards with very few households are merged before anything is published."
    page.get_by_label("Your comment").fill(comment)
    page.get_by_role("button", name="Send comment").click()
    assert page.get_by_role("status").get_by_text("Your comment was received").is_visible()
    assert comment not in page.content()
    page.goto(f"/register/requests/{world.decided}")
    checker.check(page, "request-decided", title="Names of food bank users")
    assert page.get_by_role("heading", name="The trustees' reasons").is_visible()
    feed = page.request.get("/register/feed.atom")
    assert ET.fromstring(feed.body()).tag == "{http://www.w3.org/2005/Atom}feed"  # noqa: S314 - our own feed

    trustee = new_page()
    sign_in_with_password(trustee, world.trustees[0], "/desk")
    trustee.get_by_role("link", name="Households using the food bank, by ward, for the cost-of-living plan").click()
    assert trustee.get_by_text(comment).is_visible()


def test_an_individual_withdraws_and_the_partners_next_check_is_denied(
    new_page: Any, live_trust: LiveTrust, checker: PageChecker
) -> None:
    """Alice signs in with her receipt code, withdraws her statistics consent, and the food bank is refused."""
    world = live_trust.world
    before = partner_check(live_trust, world.cohort)
    assert before["decision"] == "permit", before
    page = new_page()
    page.goto("/me")
    assert page.url.endswith("/me/sign-in?next=/me")
    checker.check(page, "me-sign-in", title="Sign in with your access code")
    sign_in_with_code(page, "WRONG-CODE-0000")
    assert page.get_by_role("alert").get_by_text("We could not sign you in with that code").is_visible()
    checker.check(page, "me-sign-in-error")
    sign_in_with_code(page, world.alice.access_code)
    page.wait_for_url("**/me")
    checker.check(page, "me", title="Your consents")
    assert page.get_by_role("heading", name="Aggregate statistics").is_visible()
    assert page.get_by_text("Riverside Food Bank asked on").first.is_visible()
    page.get_by_role("link", name="Withdraw this consent (Aggregate statistics)").click()
    checker.check(page, "me-withdraw", title="Withdraw your consent")
    assert page.get_by_text("It takes effect straight away.").is_visible()
    page.get_by_label("Why are you withdrawing? (optional)").fill("I would rather not be counted any more.")
    page.get_by_role("button", name="Yes, withdraw this consent").click()
    page.wait_for_url("**/me?withdrawn=*")
    notice = page.get_by_role("status")
    assert notice.get_by_role("heading", name="Your consent has been withdrawn").is_visible()
    statistics = page.locator(f"#consent-{world.alice.consent_for('statistics.aggregate')}")
    assert statistics.get_by_text("Withdrawn", exact=True).is_visible()
    assert statistics.get_by_role("link", name=re.compile("Withdraw this consent")).count() == 0
    checker.check(page, "me-withdrawn")

    after = partner_check(live_trust, world.cohort)
    assert after["decision"] == "deny"
    [alice] = [x for x in after["subjects"]["excluded"] if x["subject"] == world.alice.subject]
    assert alice["rule"] == "consent"
    assert "was withdrawn by the person" in alice["reason"]
    consent = next(r for r in after["reasons"] if r["rule"] == "consent")
    assert consent["outcome"] == "pass"  # the others are still covered...
    assert any(r["outcome"] == "fail" for r in after["reasons"])  # ...but nine are too few to share

    page.reload()
    latest = page.locator("ol.uses > li").first
    assert latest.get_by_text("because your consent had been withdrawn").is_visible()
    page.get_by_role("link", name="View or print the receipt for Aggregate statistics").click()
    checker.check(page, "me-receipt", title="Your consent receipt")
    page.goto("/me/erase")
    checker.check(page, "me-erase", title="Erase your personal details")
    assert page.get_by_role("heading", name="What erasure does not remove").is_visible()


def test_a_trustee_declares_a_conflict_and_trustees_vote_until_a_request_is_decided(
    new_page: Any, live_trust: LiveTrust, checker: PageChecker
) -> None:
    """One trustee recuses from a request on notice and votes on another; a second vote decides it."""
    world = live_trust.world
    page = new_page()
    sign_in_with_password(page, world.trustees[1], "/desk", checker)
    checker.check(page, "desk", title="Trustee desk")
    page.get_by_role("link", name="Do housing advice referrals reduce repeat food bank visits?").click()
    checker.check(page, "desk-request-notice", title="Do housing advice referrals")
    page.get_by_text("Declare a conflict on this request").click()
    page.get_by_role("button", name="Declare my conflict").click()
    assert page.get_by_role("alert").get_by_text("Describe your interest").is_visible()
    page.get_by_label("Your interest").fill("I volunteer at the housing advice service.")
    page.get_by_role("button", name="Declare my conflict").click()
    assert page.get_by_role("status").get_by_text("Your conflict of interest has been recorded").is_visible()
    assert page.get_by_text("You declared a conflict of interest on this request.").is_visible()

    page.goto(f"/desk/requests/{world.voting}")
    checker.check(page, "desk-request-voting", title="Mental health service use")
    page.get_by_role("button", name="Record my vote").click()
    assert page.get_by_role("alert").get_by_text("Choose approve, reject or abstain.").is_visible()
    checker.check(page, "desk-vote-errors")
    page.get_by_label("Approve").check()
    page.get_by_label("Your reason").fill("Totals only, with cells of at least 20, under the ethics approval.")
    page.get_by_role("group", name="Do you agree with the pre-assessment?").get_by_label("Yes").check()
    page.get_by_role("button", name="Record my vote").click()
    assert page.get_by_role("status").get_by_text("Your vote has been recorded.").is_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in_with_password(page, world.trustees[2], f"/desk/requests/{world.voting}")
    page.get_by_label("Approve").check()
    page.get_by_label("Your reason").fill("Clear public benefit; nobody can be identified from the tables.")
    page.get_by_role("group", name="Do you agree with the pre-assessment?").get_by_label("Yes").check()
    page.get_by_role("button", name="Record my vote").click()
    assert page.get_by_role("status").get_by_text("the request is decided").is_visible()
    checker.check(page, "desk-request-decided")

    public = new_page()
    public.goto(f"/register/requests/{world.voting}")
    assert public.get_by_text("Approved", exact=True).first.is_visible()
    assert public.get_by_text("Clear public benefit; nobody can be identified from the tables.").is_visible()


def test_the_ethics_committee_and_admin_pages_work_and_are_accessible(
    new_page: Any, live_trust: LiveTrust, checker: PageChecker
) -> None:
    """The ethics committee's page and the admin page pass the same checks, including a form with errors."""
    world = live_trust.world
    ethics = new_page()
    sign_in_with_password(ethics, world.credentials["ethics"][0], "/desk/ethics")
    checker.check(ethics, "ethics", title="Ethics committee")
    ethics.get_by_role("button", name="Record the decision").click()
    assert ethics.get_by_role("alert").get_by_text("Choose the committee's decision.").is_visible()
    checker.check(ethics, "ethics-errors")
    admin = new_page()
    sign_in_with_password(admin, world.admin, "/admin")
    checker.check(admin, "admin", title="Administration")
    admin.get_by_role("button", name="Register the organisation").click()
    assert admin.get_by_role("alert").get_by_text("Enter an identifier").is_visible()
    checker.check(admin, "admin-errors")


def test_no_page_shows_another_persons_data(new_page: Any, live_trust: LiveTrust, checker: PageChecker) -> None:
    """Alice, Bob and the public each see only what is theirs or public; guessing another's consent finds nothing."""
    world = live_trust.world
    alice, bob, public = new_page(), new_page(), new_page()
    alice.goto("/me/sign-in")
    sign_in_with_code(alice, world.alice.access_code)
    bob.goto("/me/sign-in")
    sign_in_with_code(bob, world.bob.access_code)
    alice.wait_for_url("**/me")
    bob.wait_for_url("**/me")
    alice_html, bob_html = alice.content(), bob.content()
    for consent in world.alice.consents:
        assert consent in alice_html
        assert consent not in bob_html
    for consent in world.bob.consents:
        assert consent in bob_html
        assert consent not in alice_html
    assert bob.get_by_text("No partner has asked to use your information yet.").is_visible()
    for html in (alice_html, bob_html):
        assert SUBJECT.search(html) is None
    bob.goto(f"/me/consents/{world.alice.consent_for('research.social')}/withdraw")
    assert bob.get_by_role("heading", name="Consent not found").is_visible()
    checker.check(bob, "me-not-found", title="Consent not found")
    assert bob.request.get(f"/v1/me/receipts/{world.alice.consents[0]}").status == 404
    for path in ("/", "/register", f"/register/requests/{world.notice}", f"/register/requests/{world.decided}"):
        public.goto(path)
        html = public.content()
        assert SUBJECT.search(html) is None, path
        for consent in world.alice.consents + world.bob.consents:
            assert consent not in html, path
    public.goto("/me")
    assert public.url.endswith("/me/sign-in?next=/me")
    assert public.request.get("/v1/me/consents").status == 401
    bob.goto("/desk")
    checker.check(bob, "refused", title="You cannot use this page")


def test_an_individual_erases_their_details_and_is_signed_out(
    new_page: Any, live_trust: LiveTrust, checker: PageChecker
) -> None:
    """Erasure needs a ticked box (explained beside it), then ends every consent and the session."""
    page = new_page()
    page.goto("/me/sign-in")
    sign_in_with_code(page, live_trust.world.carol.access_code)
    page.wait_for_url("**/me")
    page.get_by_role("link", name="Find out what erasure does and does not remove").click()
    page.get_by_role("button", name="Erase my details").click()
    assert page.get_by_role("alert").get_by_text("Tick the box to confirm").is_visible()
    checker.check(page, "me-erase-error")
    page.get_by_label("I understand that erasure cannot be undone").check()
    page.get_by_role("button", name="Erase my details").click()
    assert page.get_by_role("heading", name="Your details have been erased").is_visible()
    checker.check(page, "me-erased", title="Your details have been erased")
    page.goto("/me")
    assert page.url.endswith("/me/sign-in?next=/me")
