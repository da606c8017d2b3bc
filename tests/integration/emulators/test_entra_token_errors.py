"""The token endpoint answers every failure in Entra's error shape, and garbage with a 4xx."""

from __future__ import annotations

import base64
import time
import uuid
import warnings
from typing import Any

import jwt
import pytest

from tests.integration.emulators.conftest import CALLBACK, DPS_SCOPE, Entra, assert_entra_error
from tests.support.certs import rsa_key

DPS = "https://azure-devices-provisioning.net"


def portal_form(entra: Entra, **fields: str) -> dict[str, str]:
    portal = entra.app()
    return {"client_id": portal["client_id"], "client_secret": portal["client_secret"], **fields}


def fresh_code(
    entra: Entra, who: str = "dana.contributor", **flow_kw: Any
) -> tuple[dict[str, Any], str]:
    """Run the sign-in page and return (MSAL flow, authorization code)."""
    app = entra.msal_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow([entra.api_scope], redirect_uri=CALLBACK, **flow_kw)
    user = entra.user(who)
    return flow, entra.sign_in(flow["auth_uri"], user["username"], user["password"])["code"]


def redeem(entra: Entra, flow: dict[str, Any], code: str, **override: str) -> Any:
    form = portal_form(
        entra,
        grant_type="authorization_code",
        code=code,
        redirect_uri=CALLBACK,
        code_verifier=flow["code_verifier"],
        scope=f"{entra.api_scope} openid profile offline_access",
    )
    form.update(override)
    return entra.token_post(form)


# -- client authentication ----------------------------------------------------------
def test_wrong_secret_is_invalid_client_401(entra: Entra) -> None:
    r = entra.token_post(
        portal_form(entra, grant_type="client_credentials", scope=DPS_SCOPE, client_secret="wrong")
    )
    body = assert_entra_error(r, 401, "invalid_client", 7000215)
    assert "portal-demo-secret" not in r.text
    assert body["error_uri"].endswith("code=7000215")


def test_correlation_id_echoes_client_request_id(entra: Entra) -> None:
    rid = str(uuid.uuid4())
    r = entra.token_post(
        portal_form(entra, grant_type="client_credentials", scope=DPS_SCOPE, client_secret="wrong"),
        headers={"client-request-id": rid},
    )
    assert assert_entra_error(r, 401, "invalid_client", 7000215)["correlation_id"] == rid


def test_msal_sees_the_error_dict(entra: Entra) -> None:
    """MSAL returns the Entra error to the caller rather than raising."""
    app = entra.msal_app(credential="wrong")
    result = app.acquire_token_for_client([DPS_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_basic_auth_secret_is_accepted(entra: Entra) -> None:
    portal = entra.app()
    basic = base64.b64encode(f"{portal['client_id']}:{portal['client_secret']}".encode()).decode()
    r = entra.token_post(
        {"grant_type": "client_credentials", "scope": DPS_SCOPE},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    r = entra.token_post(
        {"grant_type": "client_credentials", "scope": DPS_SCOPE},
        headers={"Authorization": "Basic %%%"},
    )
    assert_entra_error(r, 401, "invalid_client", 7000216)


def test_unknown_client_and_missing_credential(entra: Entra) -> None:
    r = entra.token_post(
        {
            "client_id": str(uuid.uuid4()),
            "client_secret": "x",
            "grant_type": "client_credentials",
            "scope": DPS_SCOPE,
        }
    )
    assert_entra_error(r, 400, "unauthorized_client", 700016)
    r = entra.token_post(
        {
            "client_id": entra.app()["client_id"],
            "grant_type": "client_credentials",
            "scope": DPS_SCOPE,
        }
    )
    assert_entra_error(r, 401, "invalid_client", 7000218)
    r = entra.token_post({"grant_type": "client_credentials", "scope": DPS_SCOPE})
    assert_entra_error(r, 400, "invalid_request", 900144)


# -- grant and parameter errors --------------------------------------------------------
def test_grant_type_errors(entra: Entra) -> None:
    assert_entra_error(entra.token_post(portal_form(entra)), 400, "invalid_request", 900144)
    assert_entra_error(
        entra.token_post(portal_form(entra, grant_type="password")),
        400,
        "unsupported_grant_type",
        70003,
    )
    r = entra.token_post(portal_form(entra, grant_type="client_credentials", resource=DPS))
    assert_entra_error(r, 400, "invalid_request", 901002)


def test_authorization_code_is_single_use(entra: Entra) -> None:
    flow, code = fresh_code(entra)
    assert redeem(entra, flow, code).status_code == 200
    assert_entra_error(redeem(entra, flow, code), 400, "invalid_grant", 54005)


def test_pkce_verifier_mismatch_and_absence(entra: Entra) -> None:
    flow, code = fresh_code(entra)
    assert_entra_error(
        redeem(entra, flow, code, code_verifier="x" * 43), 400, "invalid_grant", 501481
    )
    flow, code = fresh_code(entra)
    form = portal_form(
        entra,
        grant_type="authorization_code",
        code=code,
        redirect_uri=CALLBACK,
        scope=entra.api_scope,
    )
    assert_entra_error(entra.token_post(form), 400, "invalid_request", 900144)


def test_redirect_uri_must_match_the_authorize_request(entra: Entra) -> None:
    flow, code = fresh_code(entra)
    r = redeem(entra, flow, code, redirect_uri="http://localhost:8000/other")
    assert_entra_error(r, 400, "invalid_grant", 50011)


def test_code_bound_to_client(entra: Entra) -> None:
    flow, code = fresh_code(entra)
    writer = entra.app("fleet-automation-writer")
    r = redeem(
        entra, flow, code, client_id=writer["client_id"], client_secret=writer["client_secret"]
    )
    assert_entra_error(r, 400, "invalid_grant", 70000)


def test_unknown_code_is_malformed(entra: Entra) -> None:
    flow, _ = fresh_code(entra)
    assert_entra_error(redeem(entra, flow, "1.emu.unknown"), 400, "invalid_request", 9002313)


def test_expired_code(private_entra: Entra) -> None:
    """A code redeemed after its lifetime answers AADSTS70008."""
    assert (
        private_entra.http.post(
            f"{private_entra.base}/_emulator/lifetimes", json={"code": 0}
        ).json()["code"]
        == 0
    )
    flow, code = fresh_code(private_entra)
    assert_entra_error(redeem(private_entra, flow, code), 400, "invalid_grant", 70008)


def test_scope_errors(entra: Entra) -> None:
    flow, code = fresh_code(entra)
    r = redeem(entra, flow, code, scope="https://unknown.example/.default")
    assert_entra_error(r, 400, "invalid_resource", 500011)
    r = entra.token_post(
        portal_form(entra, grant_type="client_credentials", scope=f"{DPS}/user_impersonation")
    )
    assert_entra_error(r, 400, "invalid_scope", 1002012)
    r = entra.token_post(
        portal_form(
            entra, grant_type="client_credentials", scope="https://nowhere.example/.default"
        )
    )
    assert_entra_error(r, 400, "invalid_resource", 500011)


def test_unknown_scope_and_many_resources_on_refresh(entra: Entra) -> None:
    rt = entra.user_tokens("reggie.reader")["refresh_token"]
    r = entra.token_post(
        portal_form(
            entra, grant_type="refresh_token", refresh_token=rt, scope=f"{DPS}/Enrollments.Destroy"
        )
    )
    assert_entra_error(r, 400, "invalid_scope", 70011)
    r = entra.token_post(
        portal_form(
            entra,
            grant_type="refresh_token",
            refresh_token=rt,
            scope=f"{DPS_SCOPE} https://management.azure.com/.default",
        )
    )
    assert_entra_error(r, 400, "invalid_scope", 28000)


def test_no_consent_for_resource(entra: Entra) -> None:
    """The portal was never granted the writer app's API: consent_required AADSTS65001."""
    rt = entra.user_tokens("reggie.reader")["refresh_token"]
    r = entra.token_post(
        portal_form(
            entra,
            grant_type="refresh_token",
            refresh_token=rt,
            scope="https://graph.microsoft.com/Mail.Read",
        )
    )
    assert_entra_error(r, 400, "invalid_scope", 70011)
    writer = entra.app("fleet-automation-writer")
    r = entra.token_post(
        portal_form(
            entra,
            grant_type="refresh_token",
            refresh_token=rt,
            scope=f"api://{writer['client_id']}/.default",
        )
    )
    body = assert_entra_error(r, 400, "invalid_grant", 65001)
    assert body["suberror"] == "consent_required"


def test_refresh_token_of_another_client(entra: Entra) -> None:
    rt = entra.user_tokens("reggie.reader")["refresh_token"]
    writer = entra.app("fleet-automation-writer")
    r = entra.token_post(
        {
            "client_id": writer["client_id"],
            "client_secret": writer["client_secret"],
            "grant_type": "refresh_token",
            "refresh_token": rt,
            "scope": DPS_SCOPE,
        }
    )
    assert_entra_error(r, 400, "invalid_grant", 70000)
    r = entra.token_post(
        portal_form(entra, grant_type="refresh_token", refresh_token="0.emu.nope", scope=DPS_SCOPE)
    )
    assert_entra_error(r, 400, "invalid_request", 9002313)


# -- on-behalf-of -------------------------------------------------------------------------
def obo(entra: Entra, assertion: str, scope: str = DPS_SCOPE) -> Any:
    return entra.token_post(
        portal_form(
            entra,
            grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
            requested_token_use="on_behalf_of",
            assertion=assertion,
            scope=scope,
        )
    )


@pytest.fixture(scope="module")
def user_result(entra: Entra) -> dict[str, Any]:
    return entra.user_tokens("dana.contributor")


def test_obo_happy_path_raw(entra: Entra, user_result: dict[str, Any]) -> None:
    r = obo(entra, user_result["access_token"], f"{DPS_SCOPE} offline_access")
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"]
    assert "id_token" not in r.json()


def test_obo_rejects_token_for_another_audience(entra: Entra, user_result: dict[str, Any]) -> None:
    app = entra.msal_app()
    dps = app.acquire_token_on_behalf_of(user_result["access_token"], [DPS_SCOPE])["access_token"]
    body = assert_entra_error(obo(entra, dps), 400, "invalid_grant", 50013)
    assert "audience" in body["error_description"]


def test_obo_rejects_bad_signature(entra: Entra, user_result: dict[str, Any]) -> None:
    claims = jwt.decode(user_result["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(user_result["access_token"])["kid"]
    foreign = rsa_key()
    forged = jwt.encode(claims, foreign, algorithm="RS256", headers={"kid": kid})
    assert_entra_error(obo(entra, forged), 400, "invalid_grant", 50013)


def test_obo_rejects_expired_assertion(
    entra: Entra, emulators: Any, user_result: dict[str, Any]
) -> None:
    claims = jwt.decode(user_result["access_token"], options={"verify_signature": False})
    now = int(time.time())
    expired = emulators.ctx.keys.sign(
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}
    )
    assert_entra_error(obo(entra, expired), 400, "invalid_grant", 500133)


def test_obo_rejects_id_token_and_app_token(entra: Entra, user_result: dict[str, Any]) -> None:
    assert_entra_error(obo(entra, user_result["id_token"]), 400, "invalid_grant", 240002)
    app_token = entra.msal_app().acquire_token_for_client(
        [f"api://{entra.app()['client_id']}/.default"]
    )["access_token"]
    assert_entra_error(obo(entra, app_token), 400, "invalid_grant", 50013)


def test_obo_garbage_and_missing_fields(entra: Entra) -> None:
    assert_entra_error(obo(entra, "garbage"), 400, "invalid_grant", 50027)
    assert_entra_error(obo(entra, "a.b.c"), 400, "invalid_grant", 50027)
    form = portal_form(
        entra,
        grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
        assertion="x",
        scope=DPS_SCOPE,
    )
    assert_entra_error(entra.token_post(form), 400, "invalid_request", 900144)
    form = portal_form(
        entra,
        grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
        requested_token_use="on_behalf_of",
        scope=DPS_SCOPE,
    )
    assert_entra_error(entra.token_post(form), 400, "invalid_request", 900144)


def test_obo_needs_confidential_client(entra: Entra, user_result: dict[str, Any]) -> None:
    form = {
        "client_id": entra.app()["client_id"],
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "requested_token_use": "on_behalf_of",
        "assertion": user_result["access_token"],
        "scope": DPS_SCOPE,
    }
    assert_entra_error(entra.token_post(form), 401, "invalid_client", 7000218)


# -- garbage input ------------------------------------------------------------------------
def test_wrong_content_type_and_json_body(entra: Entra) -> None:
    r = entra.http.post(
        entra.token_url, json=portal_form(entra, grant_type="client_credentials", scope=DPS_SCOPE)
    )
    assert_entra_error(r, 400, "invalid_request", 900144)
    r = entra.http.post(entra.token_url, data=b"\x00\xff", headers={"Content-Type": "text/plain"})
    assert_entra_error(r, 400, "invalid_request", 900144)


def test_malformed_form_bodies(entra: Entra) -> None:
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    r = entra.http.post(entra.token_url, data=b"grant_type=%ff%fe&scope=x", headers=ctype)
    assert_entra_error(r, 400, "invalid_request", 9002313)
    r = entra.http.post(entra.token_url, data=b"\xff\xfe\xfd", headers=ctype)
    assert_entra_error(r, 400, "invalid_request", 9002313)
    r = entra.http.post(entra.token_url, data=b"grant_type=a&grant_type=b", headers=ctype)
    assert_entra_error(r, 400, "invalid_request", 9002313)
    r = entra.http.post(entra.token_url, data=b"&&&===&", headers=ctype)
    assert r.status_code == 400


def test_huge_body_is_refused(entra: Entra) -> None:
    r = entra.http.post(
        entra.token_url, data={"grant_type": "client_credentials", "junk": "x" * (2 * 1024 * 1024)}
    )
    assert_entra_error(r, 400, "invalid_request", 90005)


def test_get_on_token_endpoint_and_unknown_tenant(entra: Entra) -> None:
    assert_entra_error(entra.http.get(entra.token_url), 400, "invalid_request", 900561)
    r = entra.http.post(
        f"{entra.base}/no-such-tenant/oauth2/v2.0/token",
        data=portal_form(entra, grant_type="client_credentials", scope=DPS_SCOPE),
    )
    assert_entra_error(r, 400, "invalid_request", 90002)


def test_token_endpoint_by_domain_and_organizations(entra: Entra) -> None:
    """The tenant segment may be the GUID, the domain, or organizations/common."""
    for segment in (entra.endpoints["tenant_domain"], "organizations", "common"):
        r = entra.http.post(
            f"{entra.base}/{segment}/oauth2/v2.0/token",
            data=portal_form(entra, grant_type="client_credentials", scope=DPS_SCOPE),
        )
        assert r.status_code == 200, (segment, r.text)
        assert (
            jwt.decode(r.json()["access_token"], options={"verify_signature": False})["tid"]
            == entra.endpoints["tenant_id"]
        )


WEIRD = ["", " ", "é☃", "\x00", "null", '{"a":1}', "a.b.c", "x" * 5000, "%", "../../etc/passwd"]


@pytest.mark.parametrize(
    "grant",
    [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ],
)
def test_weird_values_never_cause_a_server_error(entra: Entra, grant: str) -> None:
    """Every field of every grant filled with odd values answers 4xx in Entra's shape."""
    fields = [
        "code",
        "redirect_uri",
        "code_verifier",
        "scope",
        "refresh_token",
        "assertion",
        "requested_token_use",
        "client_assertion",
        "client_assertion_type",
        "client_info",
    ]
    for field in fields:
        for value in WEIRD:
            form = portal_form(
                entra, grant_type=grant, scope=DPS_SCOPE, requested_token_use="on_behalf_of"
            )
            if field.startswith("client_assertion"):
                form.pop("client_secret")
            form[field] = value
            r = entra.token_post(form)
            assert r.status_code in (200, 400, 401), (
                field,
                value[:20],
                r.status_code,
                r.text[:200],
            )
            if r.status_code != 200:
                assert r.json()["error_codes"], (field, value[:20])
