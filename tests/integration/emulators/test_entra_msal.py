"""The unmodified msal and azure-identity packages obtain verifiable tokens from the emulator."""

from __future__ import annotations

import re

import jwt
import pytest
from azure.identity import ClientSecretCredential, OnBehalfOfCredential

from tests.integration.emulators.conftest import ARM_SCOPE, CALLBACK, DPS_SCOPE, Entra

pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")

DPS = "https://azure-devices-provisioning.net"
ARM = "https://management.azure.com"


def test_auth_code_with_pkce_through_the_signin_page(entra: Entra) -> None:
    """The user signs in on the HTML page; MSAL redeems the code with PKCE for the portal API."""
    app = entra.msal_app()
    flow = app.initiate_auth_code_flow([entra.api_scope], redirect_uri=CALLBACK)
    assert "code_challenge_method=S256" in flow["auth_uri"]
    ada = entra.user("ada.admin")
    auth_response = entra.sign_in(flow["auth_uri"], ada["username"], ada["password"])
    assert auth_response["state"] == flow["state"]
    assert "client_info" in auth_response

    result = app.acquire_token_by_auth_code_flow(flow, auth_response)

    portal = entra.app()
    assert result["scope"] == entra.api_scope
    assert result["expires_in"] == 3600
    at = entra.verify(result["access_token"], audience=portal["client_id"], issuer=entra.v2_issuer)
    assert at["ver"] == "2.0"
    assert at["scp"] == "user_impersonation"
    assert at["oid"] == ada["object_id"]
    assert at["tid"] == entra.endpoints["tenant_id"]
    assert at["azp"] == portal["client_id"]
    assert at["azpacr"] == "1"
    assert at["roles"] == ["Portal.Admin"]
    assert at["preferred_username"] == ada["username"]
    idt = entra.verify(result["id_token"], audience=portal["client_id"], issuer=entra.v2_issuer)
    assert idt["ver"] == "2.0"
    assert idt["oid"] == ada["object_id"]
    assert idt["nonce"] == result["id_token_claims"]["nonce"]
    assert idt["roles"] == ["Portal.Admin"]
    assert idt["name"] == "Ada Admin"
    assert "scp" not in idt
    account = app.get_accounts()[0]
    assert account["home_account_id"] == f"{ada['object_id']}.{entra.endpoints['tenant_id']}"
    assert result["refresh_token"]


def test_id_token_roles_for_auditor_and_none_for_plain_user(entra: Entra) -> None:
    """``roles`` carries Portal.Auditor for the auditor and is absent for a user without app roles."""
    audrey = entra.user_tokens("audrey.auditor")
    assert audrey["id_token_claims"]["roles"] == ["Portal.Auditor"]
    dana = entra.user_tokens("dana.contributor")
    assert "roles" not in dana["id_token_claims"]
    assert "roles" not in jwt.decode(dana["access_token"], options={"verify_signature": False})


def test_form_post_response_mode_renders_auto_submitting_form(entra: Entra) -> None:
    """With response_mode=form_post the code comes back in a self-submitting HTML form."""
    app = entra.msal_app()
    flow = app.initiate_auth_code_flow(
        [entra.api_scope], redirect_uri=CALLBACK, response_mode="form_post"
    )
    browser = entra.browser()
    action, txn = entra.open_signin(browser, flow["auth_uri"])
    dana = entra.user("dana.contributor")
    r = entra.submit(browser, action, txn, dana["username"], dana["password"])
    assert r.status_code == 200
    assert f'action="{CALLBACK}"' in r.text
    assert ".submit()" in r.text
    fields = dict(re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', r.text))
    assert set(fields) >= {"code", "state", "client_info"}
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert result["id_token_claims"]["oid"] == dana["object_id"]


def test_silent_refresh_gives_new_tokens_and_rotates_refresh_token(entra: Entra) -> None:
    """acquire_token_silent(force_refresh=True) redeems the refresh token for a new one."""
    app = entra.msal_app()
    first = entra.user_tokens("reggie.reader", app=app)
    account = app.get_accounts()[0]

    again = app.acquire_token_silent([entra.api_scope], account, force_refresh=True)

    assert again["token_source"] == "identity_provider"
    assert again["access_token"] != first["access_token"]
    assert again["refresh_token"] != first["refresh_token"]
    claims = entra.verify(
        again["access_token"], audience=entra.app()["client_id"], issuer=entra.v2_issuer
    )
    assert claims["oid"] == entra.user("reggie.reader")["object_id"]


def test_silent_dps_and_arm_tokens_are_v1_tokens_for_the_user(entra: Entra) -> None:
    """The refresh token from sign-in mints v1 DPS and ARM tokens with the user's identity."""
    app = entra.msal_app()
    entra.user_tokens("kim.keyreader", app=app)
    account = app.get_accounts()[0]
    kim = entra.user("kim.keyreader")
    portal = entra.app()

    dps = app.acquire_token_silent([DPS_SCOPE], account)
    arm = app.acquire_token_silent([ARM_SCOPE], account)

    assert dps["scope"] == f"{DPS}/user_impersonation"
    assert arm["scope"] == f"{ARM}/user_impersonation"
    for result, aud in ((dps, DPS), (arm, ARM)):
        claims = entra.verify(result["access_token"], audience=aud, issuer=entra.v1_issuer)
        assert claims["ver"] == "1.0"
        assert claims["scp"] == "user_impersonation"
        assert claims["oid"] == kim["object_id"]
        assert claims["upn"] == claims["unique_name"] == kim["username"]
        assert claims["name"] == kim["display_name"]
        assert claims["appid"] == portal["client_id"]
        assert claims["appidacr"] == "1"
        assert claims["tid"] == entra.endpoints["tenant_id"]
        assert {"sub", "uti", "iat", "nbf", "exp"} <= set(claims)
        header = jwt.get_unverified_header(result["access_token"])
        assert header["x5t"] == header["kid"]


def test_client_credentials_gives_app_only_token(entra: Entra) -> None:
    """acquire_token_for_client returns a token with the service principal's oid and no scp."""
    app = entra.msal_app("fleet-automation-writer")
    writer = entra.app("fleet-automation-writer")

    result = app.acquire_token_for_client([DPS_SCOPE])

    assert "scope" not in result or result["scope"] == DPS_SCOPE
    assert "refresh_token" not in result
    assert "id_token" not in result
    claims = entra.verify(result["access_token"], audience=DPS, issuer=entra.v1_issuer)
    assert claims["oid"] == writer["service_principal_id"]
    assert claims["appid"] == writer["client_id"]
    assert claims["idtyp"] == "app"
    assert "scp" not in claims
    assert "upn" not in claims
    cached = app.acquire_token_for_client([DPS_SCOPE])
    assert cached["token_source"] == "cache"


def test_on_behalf_of_exchanges_portal_token_for_dps_and_arm(entra: Entra) -> None:
    """OBO turns the user's portal-API token into DPS/ARM tokens for the same user."""
    user_result = entra.user_tokens("oscar.operator")
    oscar = entra.user("oscar.operator")
    portal = entra.app()
    app = entra.msal_app()

    dps = app.acquire_token_on_behalf_of(user_result["access_token"], [DPS_SCOPE])
    arm = app.acquire_token_on_behalf_of(
        user_result["access_token"], ["https://management.azure.com/.default"]
    )

    for result, aud in ((dps, DPS), (arm, ARM)):
        claims = entra.verify(result["access_token"], audience=aud, issuer=entra.v1_issuer)
        assert claims["oid"] == oscar["object_id"]
        assert claims["appid"] == portal["client_id"]
        assert claims["scp"] == "user_impersonation"
    assert dps["refresh_token"]  # MSAL adds offline_access to OBO requests
    assert dps["id_token_claims"]["oid"] == oscar["object_id"]
    assert app.get_accounts()[0]["local_account_id"] == oscar["object_id"]


def test_azure_identity_client_secret_credential(entra: Entra) -> None:
    """ClientSecretCredential gets an app-only ARM token over the emulator CA."""
    reader = entra.app("fleet-automation-reader")
    cred = ClientSecretCredential(
        entra.endpoints["tenant_id"],
        reader["client_id"],
        reader["client_secret"],
        authority=entra.base,
        disable_instance_discovery=True,
        connection_verify=entra.ca,
    )
    token = cred.get_token("https://management.azure.com/.default")
    claims = entra.verify(token.token, audience=ARM, issuer=entra.v1_issuer)
    assert claims["oid"] == reader["service_principal_id"]
    assert claims["idtyp"] == "app"


def test_azure_identity_on_behalf_of_credential(entra: Entra) -> None:
    """OnBehalfOfCredential exchanges the user's portal token, then refreshes for ARM."""
    user_result = entra.user_tokens("max.mixed")
    portal = entra.app()
    cred = OnBehalfOfCredential(
        entra.endpoints["tenant_id"],
        portal["client_id"],
        client_secret=portal["client_secret"],
        user_assertion=user_result["access_token"],
        authority=entra.base,
        disable_instance_discovery=True,
        connection_verify=entra.ca,
    )
    dps = cred.get_token(DPS_SCOPE)
    arm = cred.get_token("https://management.azure.com/.default")
    max_oid = entra.user("max.mixed")["object_id"]
    assert entra.verify(dps.token, audience=DPS, issuer=entra.v1_issuer)["oid"] == max_oid
    assert entra.verify(arm.token, audience=ARM, issuer=entra.v1_issuer)["oid"] == max_oid
