"""The public pages over HTTP: titles, the register's content and suppression, the feed, comments, refusals."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from api.routes.pages_public import CONTENT_SECURITY_POLICY
from tests.pages.conftest import csrf, sign_in_individual, sign_in_person, title_of
from tests.pages.support import DENIED_CHECKS, PERMITTED_CHECKS, World

ATOM = "{http://www.w3.org/2005/Atom}"
SUBJECT = re.compile(r"sub_[a-z0-9]{8,}")


def public_paths(world: World) -> dict[str, str]:
    """Every public page and the words its title must contain."""
    return {
        "/": "Home",
        "/register": "Public register",
        f"/register/requests/{world.notice}": "Do housing advice referrals",
        f"/register/requests/{world.decided}": "Names of food bank users",
        f"/register/requests/{world.voting}": "Mental health service use",
        "/me/sign-in": "Sign in with your access code",
    }


def test_every_public_page_is_titled_strict_and_free_of_personal_data(app_client: TestClient, world: World) -> None:
    """Each public page answers 200 with a title naming it and the trust, a strict CSP, and no subject reference."""
    for path, words in public_paths(world).items():
        response = app_client.get(path)
        assert response.status_code == 200, path
        assert words in title_of(response.text), path
        assert title_of(response.text).endswith("Riverside Community Data Trust"), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert SUBJECT.search(response.text) is None, f"{path} shows a subject reference"
        assert 'style="' not in response.text, f"{path} has an inline style"
        assert "<script" not in response.text, f"{path} has a script"
        assert '<html lang="en-GB">' in response.text


def test_register_shows_decisions_with_tally_rule_and_reasons(app_client: TestClient) -> None:
    """Decided requests show the tally, the rule in words and each trustee's reason."""
    html = app_client.get("/register").text
    assert "Names of food bank users in rent arrears" in html
    assert "Identifiable data about people in crisis, for enforcement" in html  # a trustee's reason
    assert "Votes: 0 approve" in html or "approve, " in html
    assert "the chair&#39;s vote decides" in html or "chair's vote decides" in html
    assert "Approval withdrawn" in html  # the revoked request, with its reason
    assert "call-centre contractor" in html


def test_register_lists_notice_agreements_ethics_trustees_and_checkpoint(app_client: TestClient) -> None:
    """The register shows requests open for comment, agreements and ethics decisions in force, and the checkpoint."""
    html = app_client.get("/register").text
    assert "Do housing advice referrals reduce repeat food bank visits?" in html
    assert "Food bank service planning and evaluation" in html  # an agreement in force
    assert "Approved with conditions" in html  # the ethics committee's project approval
    assert "Amira Haddad (chair)" in html
    assert "datatrust.local/riverside-community-data-trust" in html  # the checkpoint's origin line
    assert "/v1/ledger/proofs/consistency" in html


def test_register_suppresses_small_monthly_counts(app_client: TestClient) -> None:
    """A month's count of at least the minimum cohort is shown; a count between 1 and the minimum is hidden."""
    html = app_client.get("/register").text
    table = html[html.index("<caption") : html.index("</table>")]
    row = table[table.index("Riverside Food Bank") :]
    permitted, denied = re.findall(r"<td>(.*?)</td>", row)[:2]
    assert int(permitted) >= PERMITTED_CHECKS  # other tests may have added a check to the shared trust
    assert denied == "fewer than 10"
    assert f">{DENIED_CHECKS}<" not in table


def test_public_request_page_hides_votes_in_progress_and_comments(app_client: TestClient, world: World) -> None:
    """While voting is open the public sees neither the votes cast nor the comments; once decided, the reasons."""
    voting = app_client.get(f"/register/requests/{world.voting}").text
    assert "Ethics approval with conditions is in force and outputs" not in voting  # a vote's reason
    assert "The trustees' reasons" not in voting
    assert "honorary lecturer" in voting  # declared conflicts are public
    notice = app_client.get(f"/register/requests/{world.notice}").text
    assert "I was referred to housing advice last spring" not in notice  # the seeded comment
    decided = app_client.get(f"/register/requests/{world.decided}").text
    assert "The trustees' reasons" in decided
    assert "No proportionality case and no alternatives considered." in decided


def test_unknown_request_is_a_page_saying_not_found(app_client: TestClient) -> None:
    """A request id that does not exist gets a 404 page in plain words."""
    response = app_client.get("/register/requests/req_doesnotexist")
    assert response.status_code == 404
    assert "We could not find that access request" in response.text


def test_atom_feed_is_valid_atom_of_decisions(app_client: TestClient) -> None:
    """The feed parses as Atom with the required elements, newest decision first."""
    response = app_client.get("/register/feed.atom")
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(response.content)  # noqa: S314 - our own document
    assert feed.tag == f"{ATOM}feed"
    for tag in ("title", "id", "updated", "author"):
        assert feed.find(f"{ATOM}{tag}") is not None
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) >= 4  # approved, rejected, approved-then-revoked (twice), ethics
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == len(ids)
    titles = [e.findtext(f"{ATOM}title") or "" for e in entries]
    assert any(t.startswith("Request rejected: Names of food bank users") for t in titles)
    assert any(t.startswith("Ethics decision: Approved with conditions") for t in titles)
    seqs = [int((i or "").rsplit("/", 1)[1]) for i in ids]
    assert seqs == sorted(seqs, reverse=True)
    for entry in entries:
        assert entry.find(f"{ATOM}link").get("href", "").startswith("http://testserver/register")  # type: ignore[union-attr]


def test_public_comment_is_validated_then_thanked_and_reaches_the_trustees(
    app_client: TestClient, world: World
) -> None:
    """An empty comment is refused beside its field; a real one is thanked and shows on the trustee's desk."""
    path = f"/register/requests/{world.notice_council}/comments"
    empty = app_client.post(path, data={"comment": "  ", "csrf_token": csrf(app_client)})
    assert empty.status_code == 422
    assert 'id="comment-error"' in empty.text
    assert 'aria-invalid="true"' in empty.text
    assert 'href="#comment"' in empty.text  # the error summary links to the field
    text = "Please publish the ward totals in a way people can read on a phone."
    sent = app_client.post(path, data={"comment": text, "csrf_token": csrf(app_client)}, follow_redirects=False)
    assert sent.status_code == 303
    thanked = app_client.get(sent.headers["location"])
    assert "Your comment was received" in thanked.text
    assert text not in thanked.text  # comments are for the trustees, not published
    trustee = world.trustees[2]
    sign_in_person(app_client, trustee["username"], trustee["password"])
    assert text in app_client.get(f"/desk/requests/{world.notice_council}").text


def test_a_comment_without_a_csrf_token_gets_an_explanation(app_client: TestClient, world: World) -> None:
    """A form post without the page's token is refused with a page that says to reload and retry."""
    response = app_client.post(f"/register/requests/{world.notice}/comments", data={"comment": "hello"})
    assert response.status_code == 403
    assert "This form has expired" in response.text


@pytest.mark.parametrize(
    ("path", "sign_in"),
    [
        ("/me", "/me/sign-in?next=/me"),  # individuals sign in with a receipt code
        ("/me/erase", "/me/sign-in?next=/me/erase"),
        ("/desk", "/auth/sign-in?next=/desk"),  # people with an account use the password page
        ("/desk/ethics", "/auth/sign-in?next=/desk/ethics"),
        ("/admin", "/auth/sign-in?next=/admin"),
    ],
)
def test_a_browser_that_is_not_signed_in_is_sent_to_sign_in(app_client: TestClient, path: str, sign_in: str) -> None:
    """Pages that need a sign-in redirect a browser to the right sign-in page; API clients get 401."""
    response = app_client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == sign_in
    api = app_client.get(path, headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.json()["action"]


def test_a_signed_in_person_without_the_role_gets_a_refusal_page(app_client: TestClient, world: World) -> None:
    """An individual opening the trustee desk, or a trustee the admin page, is told so in a page (403)."""
    sign_in_individual(app_client, world.alice.access_code)
    response = app_client.get("/desk")
    assert response.status_code == 403
    assert "You cannot use this page" in response.text
    app_client.cookies.clear()
    trustee = world.trustees[1]
    sign_in_person(app_client, trustee["username"], trustee["password"])
    assert app_client.get("/admin").status_code == 403
    assert app_client.get("/desk/ethics").status_code == 403


def test_a_form_sent_after_the_session_ended_asks_to_sign_in_again(app_client: TestClient, world: World) -> None:
    """Withdrawing without a session (it expired, or was never there) explains how to sign in; nothing changes."""
    target = f"/me/consents/{world.alice.consent_for('research.social')}/withdraw"
    response = app_client.post(target, data={"csrf_token": csrf(app_client)})
    assert response.status_code == 401
    assert "Please sign in again" in title_of(response.text)
    assert 'href="/me/sign-in"' in response.text
