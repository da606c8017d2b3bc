"""Sign in through the emulator's page in Chromium and read the capability list."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.authn.helpers import expected_capabilities

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

USERS = {
    "reader": (
        "reggie.reader@contoso-iot.example",
        "Reggie-Demo-2026!",
        "53445ab6-3cf5-46ab-a2c3-c6e527f12a85",
    ),
    "contributor": (
        "dana.contributor@contoso-iot.example",
        "Dana-Demo-2026!",
        "d32e1251-5086-4c52-bbfe-3b563a87f904",
    ),
}


def _sign_in(page: Any, portal: str, username: str, password: str) -> None:
    page.goto(portal + "/")
    page.get_by_test_id("signin-main").click()
    page.get_by_test_id("signin-username").fill(username)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url(portal + "/")


def _shown(page: Any) -> dict[str, set[str]]:
    shown: dict[str, set[str]] = {}
    for section in page.locator("section[data-testid^='instance-']").all():
        name = section.get_attribute("data-testid").removeprefix("instance-")
        ids = section.locator("[data-testid^='capability-']").evaluate_all(
            "els => els.map(e => e.dataset.testid)"
        )
        shown[name] = {i.removeprefix("capability-") for i in ids}
    return shown


@pytest.mark.parametrize("who", ["reader", "contributor"])
def test_capability_list_in_the_browser(page: Any, portal: str, who: str) -> None:
    username, password, oid = USERS[who]
    _sign_in(page, portal, username, password)
    assert page.get_by_test_id("user-name").inner_text() in ("Reggie Reader", "Dana Contributor")
    assert _shown(page) == expected_capabilities(oid)
    lab = page.get_by_test_id("instance-dps-fleet-lab")
    if who == "reader":
        assert lab.get_by_test_id("instance-summary").inner_text() == (
            "You can read enrollments, enrollment groups and registration records. "
            "You cannot change or delete them, or see keys."
        )
        assert lab.get_by_test_id("capability-enrollments-write").count() == 0
    else:
        assert lab.get_by_test_id("capability-enrollments-write").is_visible()
        assert lab.get_by_test_id("capability-attestationmechanism-details-action").is_visible()
    page.screenshot(path=f"/tmp/home-{who}.png", full_page=True)


def test_sign_out_in_the_browser(page: Any, portal: str) -> None:
    """Sign-out goes through Entra's logout and back to the portal, signed out."""
    username, password, _ = USERS["reader"]
    _sign_in(page, portal, username, password)
    page.get_by_test_id("signout").click()
    page.wait_for_load_state()
    page.goto(portal + "/")
    assert page.get_by_test_id("signin-main").is_visible()


def test_sign_out_form_may_go_on_to_the_entra_authority(
    page: Any, portal: str, endpoints: dict[str, Any]
) -> None:
    """CSP form-action lets the sign-out POST's redirect reach the authority's logout page."""
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    username, password, _ = USERS["reader"]
    _sign_in(page, portal, username, password)
    page.get_by_test_id("signout").click()
    page.wait_for_load_state()
    logout = endpoints["authority"].rstrip("/") + "/oauth2/v2.0/logout"
    assert any(url.startswith(logout) for url in requested), requested
    assert refused == []


def test_no_csp_violations_on_the_home_page(page: Any, portal: str) -> None:
    """The page needs nothing CSP forbids: no console errors about refused scripts or styles."""
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
    username, password, _ = USERS["contributor"]
    _sign_in(page, portal, username, password)
    page.reload()
    assert messages == []  # no CSP refusal, no missing resource
