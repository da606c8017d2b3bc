"""Client assertions checked against an app's registered certificates."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from emulators.common.keys import b64url
from emulators.common.tenant import App
from emulators.entra.clientauth import _verify_assertion
from emulators.entra.errors import EntraError

CLIENT_ID = "5f0d3c4e-2b1a-4c6d-8e9f-0a1b2c3d4e5f"
TOKEN_URL = "https://login.example/tenant/oauth2/v2.0/token"


def _certificate(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cert-app")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _assertion(signing_key: rsa.RSAPrivateKey, cert: x509.Certificate) -> str:
    now = time.time()
    claims = {"aud": TOKEN_URL, "iss": CLIENT_ID, "sub": CLIENT_ID, "exp": now + 600}
    thumb = b64url(cert.fingerprint(hashes.SHA1()))
    return jwt.encode(claims, signing_key, algorithm="RS256", headers={"x5t": thumb})


def _app(cert: x509.Certificate) -> App:
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return App(
        name="cert-app", client_id=CLIENT_ID, service_principal_id="sp", certificates=(cert_pem,)
    )


def test_rsa_certificate_verifies() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _certificate(key)
    _verify_assertion(_app(cert), _assertion(key, cert), {TOKEN_URL})


def test_non_rsa_certificate_is_an_invalid_client_not_a_crash() -> None:
    """An EC certificate whose thumbprint an RS256 assertion names gives 700027, not a 500."""
    cert = _certificate(ec.generate_private_key(ec.SECP256R1()))
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(EntraError) as caught:
        _verify_assertion(_app(cert), _assertion(signer, cert), {TOKEN_URL})
    assert caught.value.error == "invalid_client"
    assert caught.value.code == 700027
    assert "RSA" in caught.value.message
