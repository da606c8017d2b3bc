"""Client assertions signed with a registered certificate (reference/identity §1.2)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes

from emulators.common.keys import b64url
from tests.integration.emulators.conftest import CERT_APP_ID, DPS_SCOPE, assert_entra_error
from tests.support.certs import certificate, key_pem, pem, rsa_key

DPS = "https://azure-devices-provisioning.net"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(
    env: dict[str, Any],
    *,
    key: Any = None,
    aud: str | None = None,
    exp_offset: int = 600,
    x5t: str | None = None,
) -> str:
    entra = env["entra"]
    now = time.time()
    claims = {
        "aud": aud or entra.token_url,
        "iss": CERT_APP_ID,
        "sub": CERT_APP_ID,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + exp_offset,
    }
    thumb = x5t or b64url(env["cert"].fingerprint(hashes.SHA1()))
    return jwt.encode(claims, key or env["key"], algorithm="RS256", headers={"x5t": thumb})


def post(env: dict[str, Any], client_assertion: str, **extra: str) -> Any:
    return env["entra"].token_post(
        {
            "client_id": CERT_APP_ID,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
            "grant_type": "client_credentials",
            "scope": DPS_SCOPE,
            **extra,
        }
    )


def test_msal_rs256_with_sha1_thumbprint(cert_tenant: dict[str, Any]) -> None:
    entra = cert_tenant["entra"]
    thumbprint = cert_tenant["cert"].fingerprint(hashes.SHA1()).hex()
    app = entra.msal_app(
        CERT_APP_ID,
        credential={"private_key": key_pem(cert_tenant["key"]), "thumbprint": thumbprint},
    )
    result = app.acquire_token_for_client([DPS_SCOPE])
    assert "access_token" in result, result
    claims = entra.verify(result["access_token"], audience=DPS, issuer=entra.v1_issuer)
    assert claims["appid"] == CERT_APP_ID
    assert claims["appidacr"] == "2"


def test_msal_ps256_with_public_certificate(cert_tenant: dict[str, Any]) -> None:
    entra = cert_tenant["entra"]
    credential = {
        "private_key": key_pem(cert_tenant["key"]),
        "public_certificate": pem(cert_tenant["cert"]),
    }
    result = entra.msal_app(CERT_APP_ID, credential=credential).acquire_token_for_client(
        [DPS_SCOPE]
    )
    assert "access_token" in result, result
    assert entra.verify(result["access_token"], audience=DPS)["appidacr"] == "2"


def test_unregistered_certificate(cert_tenant: dict[str, Any]) -> None:
    other = certificate("other", key=rsa_key())
    thumbprint = other.cert.fingerprint(hashes.SHA1()).hex()
    app = cert_tenant["entra"].msal_app(
        CERT_APP_ID, credential={"private_key": key_pem(other.key), "thumbprint": thumbprint}
    )
    result = app.acquire_token_for_client([DPS_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_signature_by_another_key_with_registered_thumbprint(cert_tenant: dict[str, Any]) -> None:
    assert_entra_error(
        post(cert_tenant, assertion(cert_tenant, key=rsa_key())), 401, "invalid_client", 7000274
    )


def test_wrong_audience_and_expired_assertion(cert_tenant: dict[str, Any]) -> None:
    assert_entra_error(
        post(cert_tenant, assertion(cert_tenant, aud="https://login.example/token")),
        401,
        "invalid_client",
        700023,
    )
    assert_entra_error(
        post(cert_tenant, assertion(cert_tenant, exp_offset=-900)), 401, "invalid_client", 700024
    )


def test_assertion_garbage(cert_tenant: dict[str, Any]) -> None:
    assert_entra_error(post(cert_tenant, "not-a-jwt"), 401, "invalid_client", 50027)
    unsigned = jwt.encode({"iss": CERT_APP_ID}, key="", algorithm="none")
    assert_entra_error(post(cert_tenant, unsigned), 401, "invalid_client", 700027)
    r = cert_tenant["entra"].token_post(
        {
            "client_id": CERT_APP_ID,
            "client_assertion_type": "bogus",
            "client_assertion": assertion(cert_tenant),
            "grant_type": "client_credentials",
            "scope": DPS_SCOPE,
        }
    )
    assert_entra_error(r, 400, "invalid_request", 7000219)


def test_app_without_consent_cannot_get_user_dps_token(cert_tenant: dict[str, Any]) -> None:
    """cert-app has no granted permissions, so authorize answers consent_required."""
    entra = cert_tenant["entra"]
    r = entra.browser().get(
        f"{entra.authority}/oauth2/v2.0/authorize",
        params={
            "client_id": CERT_APP_ID,
            "response_type": "code",
            "redirect_uri": "https://app.example/callback",
            "scope": f"{DPS_SCOPE} openid",
            "state": "s",
        },
        allow_redirects=False,
    )
    assert r.status_code == 302
    assert r.headers["location"].startswith("https://app.example/callback?error=consent_required")
