"""Discovery documents, JWKS, instance discovery and signing-key rollover."""

from __future__ import annotations

import warnings
from typing import Any

import jwt
import msal
import pytest

from emulators.entra.app import create_app
from tests.integration.emulators.conftest import DPS_SCOPE, Entra, assert_entra_error, make_session

with warnings.catch_warnings():
    # Starlette 1.x warns that its test client will move to httpx2; httpx is what is installed.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.mark.parametrize("segment", ["tenant_id", "tenant_domain"])
def test_v2_discovery_by_guid_and_domain(entra: Entra, segment: str) -> None:
    seg = entra.endpoints[segment]
    r = entra.http.get(f"{entra.base}/{seg}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == entra.v2_issuer
    assert doc["authorization_endpoint"] == f"{entra.base}/{seg}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{entra.base}/{seg}/oauth2/v2.0/token"
    assert doc["end_session_endpoint"] == f"{entra.base}/{seg}/oauth2/v2.0/logout"
    assert doc["jwks_uri"] == f"{entra.base}/{seg}/discovery/v2.0/keys"
    assert "form_post" in doc["response_modes_supported"]
    assert r.headers["Cache-Control"] == "max-age=86400, private"


@pytest.mark.parametrize("segment", ["common", "organizations"])
def test_multi_tenant_discovery_has_placeholder_issuer(entra: Entra, segment: str) -> None:
    doc = entra.http.get(f"{entra.base}/{segment}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{entra.base}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{entra.base}/{segment}/oauth2/v2.0/token"


def test_v1_discovery(entra: Entra) -> None:
    doc = entra.http.get(f"{entra.authority}/.well-known/openid-configuration").json()
    assert doc["issuer"] == entra.v1_issuer
    assert doc["token_endpoint"] == f"{entra.authority}/oauth2/token"
    assert doc["jwks_uri"] == f"{entra.base}/common/discovery/keys"


def test_unknown_tenant_discovery_is_entra_error(entra: Entra) -> None:
    r = entra.http.get(f"{entra.base}/consumers/v2.0/.well-known/openid-configuration")
    assert_entra_error(r, 400, "invalid_request", 90002)


def test_jwks_routes_publish_the_same_keys(entra: Entra) -> None:
    tenant = entra.http.get(f"{entra.authority}/discovery/v2.0/keys").json()["keys"]
    common = entra.http.get(f"{entra.base}/common/discovery/v2.0/keys").json()["keys"]
    v1 = entra.http.get(f"{entra.base}/common/discovery/keys").json()["keys"]
    assert [k["kid"] for k in tenant] == [k["kid"] for k in common] == [k["kid"] for k in v1]
    assert tenant[0]["issuer"] == entra.v2_issuer
    assert common[0]["issuer"] == f"{entra.base}/{{tenantid}}/v2.0"
    assert "issuer" not in v1[0]
    assert {"kty", "use", "kid", "x5t", "n", "e"} <= set(tenant[0])


def test_instance_discovery(entra: Entra) -> None:
    auth_endpoint = f"https://127.0.0.1/{entra.endpoints['tenant_id']}/oauth2/v2.0/authorize"
    r = entra.http.get(
        f"{entra.base}/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": auth_endpoint},
    )
    doc = r.json()
    assert (
        doc["tenant_discovery_endpoint"]
        == f"{entra.authority}/v2.0/.well-known/openid-configuration"
    )
    assert doc["metadata"][0]["aliases"]
    r = entra.http.get(
        f"{entra.base}/common/discovery/instance",
        params={"authorization_endpoint": "https://login.example.com/x/oauth2/v2.0/authorize"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_instance"


def test_msal_with_instance_discovery_url(entra: Entra) -> None:
    """MSAL constructed with the emulator's own instance-discovery URL finds the tenant."""
    writer = entra.app("fleet-automation-writer")
    app = msal.ConfidentialClientApplication(
        writer["client_id"],
        client_credential=writer["client_secret"],
        authority=entra.authority,
        instance_discovery=f"{entra.base}/common/discovery/instance",
        http_client=make_session(entra.ca),
    )
    assert "access_token" in app.acquire_token_for_client([DPS_SCOPE])


def test_key_rollover(private_entra: Entra) -> None:
    """A token signed before rotation still verifies; new tokens carry the new kid."""
    app = private_entra.msal_app("fleet-automation-writer")
    before = app.acquire_token_for_client([DPS_SCOPE])["access_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]

    r = private_entra.http.post(f"{private_entra.base}/_emulator/rotate-keys")
    assert r.status_code == 200
    new_kid = r.json()["kid"]
    assert new_kid != old_kid
    assert r.json()["published"] == [new_kid, old_kid]

    after = private_entra.msal_app("fleet-automation-writer").acquire_token_for_client([DPS_SCOPE])[
        "access_token"
    ]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    aud = "https://azure-devices-provisioning.net"
    assert (
        private_entra.verify(before, audience=aud)["appid"]
        == private_entra.app("fleet-automation-writer")["client_id"]
    )
    assert (
        private_entra.verify(after, audience=aud)["appid"]
        == private_entra.app("fleet-automation-writer")["client_id"]
    )
    # The ARM emulator follows the same key set.
    arm_token = private_entra.msal_app("fleet-automation-writer").acquire_token_for_client(
        ["https://management.azure.com/.default"]
    )
    prod = private_entra.endpoints["dps"][0]["resource_id"]
    r = private_entra.http.get(
        f"{private_entra.endpoints['arm_endpoint']}{prod}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01",
        headers={"Authorization": f"Bearer {arm_token['access_token']}"},
    )
    assert r.status_code == 200


def test_control_routes_refuse_non_loopback_clients(emulators: Any) -> None:
    """Starlette's test client reports the peer 'testclient', which is not loopback."""
    client = TestClient(create_app(emulators.ctx))
    for path in (
        "/_emulator/rotate-keys",
        "/_emulator/revoke",
        "/_emulator/expire-refresh-tokens",
        "/_emulator/lifetimes",
    ):
        assert client.post(path).status_code == 403, path
    assert client.get("/_emulator/lifetimes").status_code == 403


def test_unknown_route_is_404_json(entra: Entra) -> None:
    r = entra.http.get(f"{entra.base}/no/such/route")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
