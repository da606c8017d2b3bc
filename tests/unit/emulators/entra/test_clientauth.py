"""Client assertions checked against an app's registered certificates."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.common.keys import b64url
from emulators.common.tenant import App
from emulators.entra.clientauth import _verify_assertion
from emulators.entra.errors import EntraError
from tests.support.certs import certificate, ec_key, pem, rsa_key

CLIENT_ID = "5f0d3c4e-2b1a-4c6d-8e9f-0a1b2c3d4e5f"
TOKEN_URL = "https://login.example/tenant/oauth2/v2.0/token"


def _assertion(signing_key: rsa.RSAPrivateKey, cert: x509.Certificate) -> str:
    now = time.time()
    claims = {"aud": TOKEN_URL, "iss": CLIENT_ID, "sub": CLIENT_ID, "exp": now + 600}
    thumb = b64url(cert.fingerprint(hashes.SHA1()))
    return jwt.encode(claims, signing_key, algorithm="RS256", headers={"x5t": thumb})


def _app(cert: x509.Certificate) -> App:
    return App(
        name="cert-app", client_id=CLIENT_ID, service_principal_id="sp", certificates=(pem(cert),)
    )


def test_rsa_certificate_verifies() -> None:
    key = rsa_key()
    cert = certificate("cert-app", key=key).cert
    _verify_assertion(_app(cert), _assertion(key, cert), {TOKEN_URL})


def test_non_rsa_certificate_is_an_invalid_client_not_a_crash() -> None:
    """An EC certificate whose thumbprint an RS256 assertion names gives 700027, not a 500."""
    cert = certificate("cert-app", key=ec_key()).cert
    signer = rsa_key()
    with pytest.raises(EntraError) as caught:
        _verify_assertion(_app(cert), _assertion(signer, cert), {TOKEN_URL})
    assert caught.value.error == "invalid_client"
    assert caught.value.code == 700027
    assert "RSA" in caught.value.message
