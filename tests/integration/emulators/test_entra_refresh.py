"""Refresh tokens: rotation, persistence across a restart, revocation and lifetimes."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from emulators.common.server import EmulatorStack
from tests.integration.emulators.conftest import CALLBACK, DPS_SCOPE, Entra, assert_entra_error
from tests.integration.emulators.test_entra_authorize import auth_uri


def refresh(entra: Entra, rt: str, scope: str = DPS_SCOPE) -> object:
    portal = entra.app()
    return entra.token_post(
        {
            "client_id": portal["client_id"],
            "client_secret": portal["client_secret"],
            "grant_type": "refresh_token",
            "refresh_token": rt,
            "scope": f"{scope} offline_access openid profile",
            "client_info": "1",
        }
    )


def test_rotation_keeps_the_old_refresh_token_valid(entra: Entra) -> None:
    """Each refresh returns a new refresh token; the old one stays valid as in Entra."""
    rt1 = entra.user_tokens("reggie.reader")["refresh_token"]
    r = refresh(entra, rt1)
    assert r.status_code == 200, r.text
    body = r.json()
    rt2 = body["refresh_token"]
    assert rt2 != rt1
    assert body["client_info"]
    assert body["id_token"]
    assert refresh(entra, rt1).status_code == 200
    assert refresh(entra, rt2).status_code == 200


def test_refresh_tokens_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = EmulatorStack(state).start()
    try:
        rt = Entra(first).user_tokens("dana.contributor")["refresh_token"]
    finally:
        first.stop()
    second = EmulatorStack(state).start()
    try:
        entra = Entra(second)
        r = refresh(entra, rt)
        assert r.status_code == 200, r.text
        claims = entra.verify(
            r.json()["access_token"],
            audience="https://azure-devices-provisioning.net",
            issuer=entra.v1_issuer,
        )
        assert claims["oid"] == entra.user("dana.contributor")["object_id"]
    finally:
        second.stop()


def test_revoke_forces_reauthentication(private_entra: Entra) -> None:
    """After revocation MSAL's silent call fails with invalid_grant (AADSTS50173)."""
    app = private_entra.msal_app()
    private_entra.user_tokens("max.mixed", app=app)
    account = app.get_accounts()[0]
    base = private_entra.base
    assert (
        private_entra.http.post(
            f"{base}/_emulator/revoke", params={"username": "nobody@x"}
        ).status_code
        == 404
    )
    r = private_entra.http.post(
        f"{base}/_emulator/revoke", params={"username": private_entra.user("max.mixed")["username"]}
    )
    assert r.json()["revoked"] >= 1

    result = app.acquire_token_silent_with_error([DPS_SCOPE], account)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50173]


def test_expired_refresh_token(private_entra: Entra) -> None:
    rt = private_entra.user_tokens("nora.norole")["refresh_token"]
    other = private_entra.user_tokens("dana.contributor")["refresh_token"]
    r = private_entra.http.post(
        f"{private_entra.base}/_emulator/expire-refresh-tokens",
        params={"username": private_entra.user("nora.norole")["username"]},
    )
    assert r.json()["expired"] >= 1
    assert_entra_error(refresh(private_entra, rt), 400, "invalid_grant", 700082)
    assert refresh(private_entra, other).status_code == 200


def test_revoke_also_ends_browser_sessions(private_entra: Entra) -> None:
    browser = private_entra.browser()
    user = private_entra.user("kim.keyreader")
    private_entra.sign_in(
        auth_uri(private_entra), user["username"], user["password"], browser=browser
    )
    private_entra.http.post(
        f"{private_entra.base}/_emulator/revoke", params={"username": user["username"]}
    )
    r = browser.get(auth_uri(private_entra, prompt="none"), allow_redirects=False)
    assert "error=login_required" in r.headers["location"]


def test_lifetimes_control_route(private_entra: Entra) -> None:
    url = f"{private_entra.base}/_emulator/lifetimes"
    assert private_entra.http.get(url).json() == {
        "access_token": 3600,
        "refresh_token": 90 * 24 * 3600,
        "code": 600,
    }
    assert private_entra.http.post(url, json={"access_token": 120}).json()["access_token"] == 120
    result = private_entra.msal_app("fleet-automation-writer").acquire_token_for_client([DPS_SCOPE])
    assert result["expires_in"] == 120
    claims = private_entra.verify(
        result["access_token"], audience="https://azure-devices-provisioning.net"
    )
    assert claims["exp"] - claims["iat"] == 120
    for bad in ({"access_token": -1}, {"access_token": "60"}, {"nope": 1}, [1]):
        assert private_entra.http.post(url, json=bad).status_code == 400, bad
    assert (
        private_entra.http.post(
            url, data=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )


def test_short_lived_token_makes_msal_refresh(private_entra: Entra) -> None:
    """With lifetimes under MSAL's five-minute margin, every silent call refreshes."""
    private_entra.http.post(f"{private_entra.base}/_emulator/lifetimes", json={"access_token": 60})
    app = private_entra.msal_app()
    private_entra.user_tokens("oscar.operator", app=app)
    account = app.get_accounts()[0]
    first = app.acquire_token_silent([private_entra.api_scope], account)
    assert first["token_source"] == "identity_provider"
    assert first["expires_in"] == 60


def test_concurrent_refreshes_and_single_use_code(entra: Entra) -> None:
    """Parallel refreshes all succeed; a code redeemed in parallel succeeds exactly once."""
    rt = entra.user_tokens("audrey.auditor")["refresh_token"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: refresh(entra, rt).status_code, range(16)))
    assert statuses == [200] * 16

    app = entra.msal_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow([entra.api_scope], redirect_uri=CALLBACK)
    user = entra.user("audrey.auditor")
    code = entra.sign_in(flow["auth_uri"], user["username"], user["password"])["code"]
    portal = entra.app()
    form = {
        "client_id": portal["client_id"],
        "client_secret": portal["client_secret"],
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": flow["code_verifier"],
        "scope": entra.api_scope,
    }
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: entra.token_post(dict(form)), range(8)))
    assert sorted(r.status_code for r in results) == [200] + [400] * 7
    assert all(r.json()["error_codes"] == [54005] for r in results if r.status_code == 400)
