"""Authorize, the sign-in page, the browser session and logout."""

from __future__ import annotations

import warnings
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from tests.integration.emulators.conftest import CALLBACK, Entra, query_of, signin_form


def auth_uri(entra: Entra, **params: str) -> str:
    base = {
        "client_id": entra.app()["client_id"],
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": f"{entra.api_scope} openid profile offline_access",
        "state": "st-1",
        "nonce": "n-1",
    }
    base.update(params)
    return f"{entra.authority}/oauth2/v2.0/authorize?{urlencode({k: v for k, v in base.items() if v is not None})}"


def signed_in_browser(entra: Entra, who: str = "dana.contributor") -> requests.Session:
    browser = entra.browser()
    user = entra.user(who)
    entra.sign_in(auth_uri(entra), user["username"], user["password"], browser=browser)
    return browser


def redirect_error(r: requests.Response) -> dict[str, str]:
    assert r.status_code == 302, r.text[:300]
    q = query_of(r.headers["location"])
    assert r.headers["location"].startswith(CALLBACK)
    return q


# -- the sign-in page -------------------------------------------------------------------
def test_wrong_password_reshows_page_with_aadsts50126(entra: Entra) -> None:
    browser = entra.browser()
    action, txn = entra.open_signin(browser, auth_uri(entra))
    r = entra.submit(browser, action, txn, entra.user("dana.contributor")["username"], "wrong")
    assert r.status_code == 200
    assert "AADSTS50126" in r.text
    assert "Dana-Demo" not in r.text
    # The same transaction still works with the right password.
    action2, txn2 = signin_form(r)
    assert txn2 == txn
    ok = entra.submit(
        browser,
        action2,
        txn2,
        entra.user("dana.contributor")["username"],
        entra.user("dana.contributor")["password"],
    )
    assert ok.status_code == 302
    assert query_of(ok.headers["location"])["state"] == "st-1"


def test_disabled_and_unknown_users(entra: Entra) -> None:
    browser = entra.browser()
    action, txn = entra.open_signin(browser, auth_uri(entra))
    ivan = next(u for u in entra.endpoints["users"] if u["username"].startswith("ivan.inactive"))
    r = entra.submit(browser, action, txn, ivan["username"], ivan["password"])
    assert r.status_code == 200
    assert "AADSTS50057" in r.text
    r = entra.submit(browser, action, txn, "nobody@contoso-iot.example", "x")
    assert "AADSTS50034" in r.text


def test_login_hint_prefills_username_and_html_is_escaped(entra: Entra) -> None:
    r = entra.browser().get(auth_uri(entra, login_hint='"><script>x</script>'))
    assert r.status_code == 200
    assert "<script>x</script>" not in r.text
    assert "&quot;&gt;&lt;script&gt;" in r.text
    assert r.headers["X-Frame-Options"] == "DENY"


def test_transaction_is_bound_to_the_browser(entra: Entra) -> None:
    """A sign-in form replayed from another browser (no binding cookie) is refused."""
    action, txn = entra.open_signin(entra.browser(), auth_uri(entra))
    dana = entra.user("dana.contributor")
    r = entra.submit(entra.browser(), action, txn, dana["username"], dana["password"])
    assert r.status_code == 400
    assert "AADSTS50089" in r.text
    r = entra.submit(entra.browser(), action, "forged", dana["username"], dana["password"])
    assert r.status_code == 400


def test_garbage_sign_in_post(entra: Entra) -> None:
    r = entra.http.post(
        f"{entra.authority}/login",
        data=b"\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    r = entra.http.post(f"{entra.authority}/login", json={"ctx": "x"})
    assert r.status_code == 400


# -- authorize validation ------------------------------------------------------------------
def test_unregistered_redirect_uri_shows_error_page_not_redirect(entra: Entra) -> None:
    r = entra.browser().get(
        auth_uri(entra, redirect_uri="https://evil.example/cb"), allow_redirects=False
    )
    assert r.status_code == 400
    assert "AADSTS50011" in r.text
    assert "location" not in r.headers


@pytest.mark.parametrize(
    ("redirect_uri", "accepted"),
    [
        ("http://localhost:5555/auth/callback", True),  # loopback port ignored
        ("http://127.0.0.1:9/auth/callback", True),
        ("http://localhost:8000/auth/other", False),
        ("https://localhost:9443/auth/callback", False),  # only http loopback ignores the port
        ("http://localhost:8000/auth/callback/", False),
    ],
)
def test_loopback_redirect_port_is_ignored(entra: Entra, redirect_uri: str, accepted: bool) -> None:
    r = entra.browser().get(auth_uri(entra, redirect_uri=redirect_uri), allow_redirects=False)
    assert (r.status_code == 200 and "name=ctx" in r.text) is accepted


def test_unknown_client_and_tenant(entra: Entra) -> None:
    r = entra.browser().get(auth_uri(entra, client_id="00000000-0000-0000-0000-000000000001"))
    assert r.status_code == 400
    assert "AADSTS700016" in r.text
    r = entra.browser().get(auth_uri(entra).replace(entra.endpoints["tenant_id"], "other-tenant"))
    assert "AADSTS90002" in r.text


@pytest.mark.parametrize(
    ("params", "error", "code"),
    [
        ({"response_type": "token"}, "unsupported_response_type", "AADSTS700054"),
        ({"scope": ""}, "invalid_request", "AADSTS900144"),
        (
            {"scope": "https://azure-devices-provisioning.net/Nope openid"},
            "invalid_scope",
            "AADSTS70011",
        ),
        ({"scope": "https://unknown.example/.default"}, "invalid_resource", "AADSTS500011"),
        (
            {"code_challenge": "a" * 43, "code_challenge_method": "plain"},
            "invalid_request",
            "AADSTS9002313",
        ),
        (
            {"code_challenge": "short", "code_challenge_method": "S256"},
            "invalid_request",
            "AADSTS501491",
        ),
        ({"prompt": "bogus"}, "invalid_request", "AADSTS90023"),
    ],
)
def test_errors_go_back_to_a_valid_redirect_uri(
    entra: Entra, params: dict[str, str], error: str, code: str
) -> None:
    r = entra.browser().get(auth_uri(entra, **params), allow_redirects=False)
    q = redirect_error(r)
    assert q["error"] == error
    assert q["error_description"].startswith(code)
    assert q["state"] == "st-1"


def test_consent_required_for_ungranted_resource(entra: Entra) -> None:
    writer = entra.app("fleet-automation-writer")
    r = entra.browser().get(
        auth_uri(entra, scope=f"api://{writer['client_id']}/.default openid"), allow_redirects=False
    )
    q = redirect_error(r)
    assert q["error"] == "consent_required"
    assert q["error_description"].startswith("AADSTS65001")


# -- session, prompt, logout ---------------------------------------------------------------
def test_prompt_none_without_session_is_login_required(entra: Entra) -> None:
    q = redirect_error(entra.browser().get(auth_uri(entra, prompt="none"), allow_redirects=False))
    assert q["error"] == "login_required"
    assert q["error_description"].startswith("AADSTS50058")


def test_session_skips_password_and_prompt_login_forces_it(entra: Entra) -> None:
    browser = signed_in_browser(entra)
    r = browser.get(auth_uri(entra, state="st-2"), allow_redirects=False)
    assert r.status_code == 302
    assert "code" in query_of(r.headers["location"])
    r = browser.get(auth_uri(entra, prompt="none"), allow_redirects=False)
    assert "code" in query_of(r.headers["location"])
    r = browser.get(auth_uri(entra, prompt="login"), allow_redirects=False)
    assert r.status_code == 200
    assert "name=ctx" in r.text
    # A login_hint naming someone else does not reuse the session.
    r = browser.get(
        auth_uri(entra, prompt="none", login_hint="reggie.reader@contoso-iot.example"),
        allow_redirects=False,
    )
    assert query_of(r.headers["location"])["error"] == "login_required"


def test_session_code_redeems_for_the_session_user(entra: Entra) -> None:
    browser = signed_in_browser(entra, "kim.keyreader")
    app = entra.msal_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow([entra.api_scope], redirect_uri=CALLBACK, prompt="none")
    r = browser.get(flow["auth_uri"], allow_redirects=False)
    result = app.acquire_token_by_auth_code_flow(flow, query_of(r.headers["location"]))
    assert result["id_token_claims"]["oid"] == entra.user("kim.keyreader")["object_id"]


def test_max_age_gives_auth_time(entra: Entra) -> None:
    app = entra.msal_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow([entra.api_scope], redirect_uri=CALLBACK, max_age=600)
    user = entra.user("nora.norole")
    result = app.acquire_token_by_auth_code_flow(
        flow, entra.sign_in(flow["auth_uri"], user["username"], user["password"])
    )
    assert "auth_time" in result["id_token_claims"]


def test_logout_ends_session_and_redirects_only_to_registered_uri(entra: Entra) -> None:
    browser = signed_in_browser(entra)
    logout = f"{entra.authority}/oauth2/v2.0/logout"
    r = browser.get(
        logout,
        params={"post_logout_redirect_uri": "http://localhost:7000/", "state": "bye"},
        allow_redirects=False,
    )
    assert r.status_code == 302
    assert r.headers["location"] == "http://localhost:7000/?state=bye"
    q = redirect_error(browser.get(auth_uri(entra, prompt="none"), allow_redirects=False))
    assert q["error"] == "login_required"

    browser = signed_in_browser(entra)
    r = browser.get(
        logout, params={"post_logout_redirect_uri": "https://evil.example/"}, allow_redirects=False
    )
    assert r.status_code == 200
    assert 'data-testid="signed-out"' in r.text
    assert "not registered" in r.text
    assert (
        redirect_error(browser.get(auth_uri(entra, prompt="none"), allow_redirects=False))["error"]
        == "login_required"
    )


def test_logout_without_redirect_shows_signed_out_page(entra: Entra) -> None:
    r = entra.browser().get(f"{entra.authority}/oauth2/v2.0/logout")
    assert r.status_code == 200
    assert "You signed out" in r.text


def test_authorize_by_post(entra: Entra) -> None:
    """Large authorize requests arrive as a form POST; the sign-in page answers the same."""
    url = auth_uri(entra)
    parts = urlsplit(url)
    r = entra.browser().post(
        f"{parts.scheme}://{parts.netloc}{parts.path}", data=dict(query_of(url))
    )
    assert r.status_code == 200
    assert "name=ctx" in r.text


WEIRD = ["", "é☃", "\x00", "null", "x" * 3000, "%", "-1", "99999999999999999999"]


def test_weird_authorize_parameters_never_cause_a_server_error(entra: Entra) -> None:
    params = [
        "client_id",
        "redirect_uri",
        "scope",
        "response_type",
        "response_mode",
        "prompt",
        "code_challenge",
        "code_challenge_method",
        "max_age",
        "login_hint",
        "state",
        "nonce",
    ]
    browser = entra.browser()
    for name in params:
        for value in WEIRD:
            r = browser.get(auth_uri(entra, **{name: value}), allow_redirects=False)
            assert r.status_code in (200, 302, 400), (name, value[:20], r.status_code)
    for value in WEIRD:
        r = browser.post(
            f"{entra.authority}/login", data={"ctx": value, "login": value, "passwd": value}
        )
        assert r.status_code == 400
