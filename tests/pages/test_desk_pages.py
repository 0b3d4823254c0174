"""The trustee desk, the ethics committee's page and the admin page over HTTP."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.pages.conftest import csrf, sign_in_person, title_of
from tests.pages.support import World

SUBJECT = re.compile(r"sub_[a-z0-9]{8,}")


def as_person(client: TestClient, person: dict[str, str]) -> TestClient:
    """Sign *person* in on *client* and return it."""
    client.cookies.clear()
    sign_in_person(client, person["username"], person["password"])
    return client


def test_desk_lists_the_queue_with_pre_assessment_and_comments(app_client: TestClient, world: World) -> None:
    """The desk lists requests awaiting a vote (with the pre-assessment), on notice and decided; no subject ids."""
    as_person(app_client, world.trustees[2])
    desk = app_client.get("/desk")
    assert desk.status_code == 200
    assert title_of(desk.text).startswith("Trustee desk")
    html = desk.text
    voting = html[html.index("Awaiting a vote") : html.index("On public notice")]
    assert "Mental health service use among young adults" in voting
    assert "Pre-assessment:" in voting
    assert "You have not voted yet" in voting
    assert "Do housing advice referrals" in html[html.index("On public notice") :]
    assert "Names of food bank users" in html[html.index("Decided and revoked") :]
    assert SUBJECT.search(html) is None


def test_desk_request_shows_findings_comments_and_votes_so_far(app_client: TestClient, world: World) -> None:
    """A request on the desk shows each pre-assessment finding, the comments received and the count so far."""
    as_person(app_client, world.trustees[1])
    html = app_client.get(f"/desk/requests/{world.voting}").text
    assert "Pre-assessment" in html
    assert "Ethics:" in html
    assert "Ethics approval with conditions is in force and outputs" in html  # the chair's vote, in progress
    assert "honorary lecturer" in html
    assert 'action="/desk/requests/' in html
    notice = app_client.get(f"/desk/requests/{world.notice}").text
    assert "I was referred to housing advice last spring" in notice  # the public comment
    assert "Voting opens on" in notice


def test_a_vote_is_validated_beside_each_field_then_recorded(app_client: TestClient, world: World) -> None:
    """An empty vote names each missing field; a complete one is recorded and says it can be changed."""
    as_person(app_client, world.trustees[1])
    path = f"/desk/requests/{world.voting}/vote"
    empty = app_client.post(path, data={"csrf_token": csrf(app_client)})
    assert empty.status_code == 422
    for field in ("choice-approve", "reason", "agrees-yes"):
        assert f'id="{field}-error"' in empty.text
        assert f'href="#{field}"' in empty.text
    vote = {"choice": "approve", "reason": "Aggregate only, ethics in force.", "agrees": "yes"}
    done = app_client.post(path, data={**vote, "csrf_token": csrf(app_client)}, follow_redirects=False)
    assert done.status_code == 303
    page = app_client.get(done.headers["location"]).text
    assert "Your vote has been recorded" in page
    assert "You voted <strong>approve</strong>" in page


def test_a_conflict_is_declared_and_the_trustee_no_longer_votes(app_client: TestClient, world: World) -> None:
    """Declaring an interest needs words; once declared, the page says the trustee is recused and offers no vote."""
    as_person(app_client, world.trustees[2])
    path = f"/desk/requests/{world.notice_council}/conflict"
    empty = app_client.post(path, data={"interest": "", "csrf_token": csrf(app_client)})
    assert empty.status_code == 422
    assert 'id="interest-error"' in empty.text
    interest = "My partner works in the public health team of the council."
    done = app_client.post(path, data={"interest": interest, "csrf_token": csrf(app_client)}, follow_redirects=False)
    assert done.status_code == 303
    page = app_client.get(done.headers["location"]).text
    assert "Your conflict of interest has been recorded" in page
    assert "You declared a conflict of interest on this request" in page
    assert f'action="/desk/requests/{world.notice_council}/conflict"' not in page
    again = app_client.post(path, data={"interest": interest, "csrf_token": csrf(app_client)})
    assert again.status_code == 409
    public = app_client.get(f"/register/requests/{world.notice_council}").text
    assert interest in public


def test_a_form_without_csrf_token_is_refused_for_a_signed_in_trustee(app_client: TestClient, world: World) -> None:
    """A cookie-borne vote without the page's token is refused, with a page explaining what to do."""
    as_person(app_client, world.trustees[1])
    response = app_client.post(
        f"/desk/requests/{world.voting}/vote", data={"choice": "reject", "reason": "x", "agrees": "no"}
    )
    assert response.status_code == 403
    assert "This form has expired" in response.text


def test_the_ethics_committee_records_a_decision(app_client: TestClient, world: World) -> None:
    """The ethics page checks the form in plain words and records the decision on the register."""
    as_person(app_client, world.credentials["ethics"][0])
    page = app_client.get("/desk/ethics")
    assert page.status_code == 200
    assert "Riverside Young Adults Wellbeing Study" in page.text
    bad = app_client.post(
        "/desk/ethics", data={"min_cohort": "twenty", "delete_by": "soon", "csrf_token": csrf(app_client)}
    )
    assert bad.status_code == 422
    for field in ("outcome-approved", "request", "min_cohort", "delete_by"):
        assert f'id="{field}-error"' in bad.text
    form = {
        "outcome": "approved_with_conditions",
        "request": world.notice,
        "conditions_text": "Totals only, and no village smaller than 50 households may be shown.",
        "min_cohort": "50",
        "operations": "pseudonymised",
        "csrf_token": csrf(app_client),
    }
    done = app_client.post("/desk/ethics", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert "The decision has been recorded" in app_client.get(done.headers["location"]).text
    assert "no village smaller than 50 households" in app_client.get(f"/register/requests/{world.notice}").text


def test_admin_page_lists_and_changes_organisations_and_clients(app_client: TestClient, world: World) -> None:
    """The admin page lists organisations, people, agreements and clients; forms validate and act."""
    as_person(app_client, world.admin)
    page = app_client.get("/admin")
    assert page.status_code == 200
    for words in ("Riverside Food Bank", "Amira Haddad", "Food bank service planning", "case-management system"):
        assert words in page.text
    bad = app_client.post(
        "/admin/organisations", data={"org_id": "Not An Id", "org_name": "X", "csrf_token": csrf(app_client)}
    )
    assert bad.status_code == 422
    assert 'id="org_id-error"' in bad.text
    made = app_client.post(
        "/admin/organisations",
        data={
            "org_id": "org_riverside_library",
            "org_name": "Riverside Library",
            "org_kind": "public_body",
            "csrf_token": csrf(app_client),
        },
        follow_redirects=False,
    )
    assert made.status_code == 303
    assert "Riverside Library" in app_client.get("/admin").text
    client = app_client.post(
        "/admin/clients",
        data={
            "client_org": "org_riverside_library",
            "client_name": "Library visits counter",
            "client_scopes": "check",
            "csrf_token": csrf(app_client),
        },
    )
    assert client.status_code == 200
    assert "Client secret" in client.text
    assert "shown only this once" in client.text
    assert "Client secret" not in app_client.get("/admin").text


def test_unknown_request_on_the_desk_is_not_found(app_client: TestClient, world: World) -> None:
    """A request id that does not exist gets a 404 page on the desk too."""
    as_person(app_client, world.trustees[0])
    assert app_client.get("/desk/requests/req_nothing_here").status_code == 404
