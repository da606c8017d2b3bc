"""ID token validation the portal does itself (MSAL checks neither signature nor claims)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from authn.exceptions import SigninError
from authn.oidc import id_token_verify
from tests.support.certs import rsa_key

NONCE = "a" * 64


@pytest.fixture
def claims(azure_settings: Any, endpoints: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {
        "aud": azure_settings.ENTRA_CLIENT_ID,
        "iss": f"{endpoints['authority']}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "nonce": NONCE,
        "oid": "oid-1",
        "tid": endpoints["tenant_id"],
        "sub": "sub",
        "ver": "2.0",
    }


def test_a_genuine_token_passes(emulators: Any, claims: dict[str, Any]) -> None:
    assert id_token_verify(emulators.ctx.keys.sign(claims), nonce=NONCE)["oid"] == "oid-1"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"aud": "another-client"}, "bad_aud"),
        ({"iss": "https://login.microsoftonline.com/other/v2.0"}, "bad_iss"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "b" * 64}, "bad_nonce"),
        ({"tid": "another-tenant"}, "bad_tenant"),
    ],
)
def test_wrong_claims_are_refused(
    emulators: Any, claims: dict[str, Any], change: dict[str, Any], code: str
) -> None:
    with pytest.raises(SigninError) as info:
        id_token_verify(emulators.ctx.keys.sign({**claims, **change}), nonce=NONCE)
    assert info.value.code == code


def test_foreign_signature_is_refused(emulators: Any, claims: dict[str, Any]) -> None:
    """A token signed by another key claiming the emulator's kid fails the signature check."""
    kid = emulators.ctx.keys.active.kid
    forged = jwt.encode(
        claims,
        rsa_key(),
        algorithm="RS256",
        headers={"kid": kid},
    )
    with pytest.raises(SigninError) as info:
        id_token_verify(forged, nonce=NONCE)
    assert info.value.code == "bad_signature"


def test_unknown_kid_and_unsigned_tokens_are_refused(claims: dict[str, Any]) -> None:
    key = rsa_key()
    with pytest.raises(SigninError) as info:
        id_token_verify(
            jwt.encode(claims, key, algorithm="RS256", headers={"kid": "nope"}), nonce=NONCE
        )
    assert info.value.code == "unknown_key"
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(SigninError) as info:
        id_token_verify(unsigned, nonce=NONCE)
    assert info.value.code == "bad_alg"


def test_key_rollover_is_followed(emulators: Any, claims: dict[str, Any]) -> None:
    """After the emulator rotates its keys, the new kid is fetched from the JWKS."""
    id_token_verify(emulators.ctx.keys.sign(claims), nonce=NONCE)  # caches the current JWKS
    emulators.ctx.keys.rotate()
    assert id_token_verify(emulators.ctx.keys.sign(claims), nonce=NONCE)["oid"] == "oid-1"
