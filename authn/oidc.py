"""Validate ID tokens ourselves: MSAL checks neither signature nor issuer nor audience.

Since msal 1.38 the ID token is only decoded. The
signature is checked against the authority's JWKS (re-fetched once on an unknown ``kid``,
for key rollover), then issuer, audience, expiry, nonce and tenant.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings

from authn.exceptions import SigninError, SigninUnavailable
from authn.msal_app import authority, http_session

_METADATA_TTL = 3600.0
_LEEWAY_SECONDS = 120
_lock = threading.Lock()
_metadata: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks: dict[str, dict[str, Any]] = {}


def reset_caches() -> None:
    with _lock:
        _metadata.clear()
        _jwks.clear()


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = http_session().get(url, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise SigninUnavailable(
            f"Microsoft Entra ID could not be reached ({type(exc).__name__})."
        ) from exc
    if response.status_code != 200:
        raise SigninUnavailable(
            f"Microsoft Entra ID answered {response.status_code} for its signing keys."
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise SigninUnavailable("Microsoft Entra ID sent a malformed document.") from exc
    if not isinstance(data, dict):
        raise SigninUnavailable("Microsoft Entra ID sent a malformed document.")
    return data


def openid_metadata() -> dict[str, Any]:
    """Return the authority's v2.0 OpenID configuration (cached for an hour)."""
    auth = authority()
    now = time.monotonic()
    with _lock:
        cached = _metadata.get(auth)
        if cached and now - cached[0] < _METADATA_TTL:
            return cached[1]
    doc = _get_json(f"{auth}/v2.0/.well-known/openid-configuration")
    if "issuer" not in doc or "jwks_uri" not in doc:
        raise SigninUnavailable("The OpenID configuration lacks issuer or jwks_uri.")
    with _lock:
        _metadata[auth] = (now, doc)
    return doc


def _signing_key(kid: str, jwks_uri: str) -> Any:
    for attempt in range(2):
        with _lock:
            keys = _jwks.get(jwks_uri)
        if keys is None or attempt == 1:
            keys = _get_json(jwks_uri)
            with _lock:
                _jwks[jwks_uri] = keys
        for jwk in keys.get("keys", []):
            if jwk.get("kid") == kid:
                return jwt.PyJWK(jwk, algorithm="RS256").key
    raise SigninError("The ID token was signed with an unknown key.", code="unknown_key")


# What a failed check of ``jwt.decode`` means, most specific first.
_DECODE_FAILURES: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.InvalidSignatureError, "The ID token's signature is invalid.", "bad_signature"),
    (jwt.InvalidAudienceError, "The ID token is meant for another application.", "bad_aud"),
    (jwt.InvalidIssuerError, "The ID token comes from another issuer.", "bad_iss"),
    (jwt.ExpiredSignatureError, "The ID token has expired.", "expired"),
)


def _expected_issuer(meta: dict[str, Any], tenant: str | None) -> str:
    """Return the issuer of the metadata, with a multi-tenant ``{tenantid}`` filled in."""
    issuer = str(meta["issuer"])
    if "{tenantid}" in issuer and tenant:
        issuer = issuer.replace("{tenantid}", tenant)
    return issuer


def _signed_key(id_token: str, meta: dict[str, Any]) -> Any:
    """Return the key the token's header names, refusing anything but RS256 with a ``kid``."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise SigninError("The ID token is malformed.", code="malformed") from exc
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise SigninError("The ID token is not signed with RS256.", code="bad_alg")
    return _signing_key(str(header["kid"]), str(meta["jwks_uri"]))


def _decode(id_token: str, key: Any, issuer: str) -> dict[str, Any]:
    """Check signature, audience, issuer and lifetime; return the claims."""
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=["RS256"],
            audience=settings.ENTRA_CLIENT_ID,
            issuer=issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "oid", "tid"]},
        )
    except jwt.PyJWTError as exc:
        for kind, message, code in _DECODE_FAILURES:
            if isinstance(exc, kind):
                raise SigninError(message, code=code) from exc
        raise SigninError(
            f"The ID token is invalid ({type(exc).__name__}).", code="invalid"
        ) from exc
    return claims


def id_token_verify(id_token: str, *, nonce: str) -> dict[str, Any]:
    """Verify signature, issuer, audience, lifetime, ``nonce`` and tenant; return the claims.

    ``nonce`` is the value expected in the token (MSAL sends and compares the SHA-256 hex
    of its internal nonce).
    """
    meta = openid_metadata()
    key = _signed_key(id_token, meta)
    tenant = settings.ENTRA_TENANT_ID
    claims = _decode(id_token, key, _expected_issuer(meta, tenant))
    if claims.get("nonce") != nonce:
        raise SigninError("The ID token's nonce does not match this sign-in.", code="bad_nonce")
    if tenant and claims.get("tid") != tenant:
        raise SigninError("The account belongs to another tenant.", code="bad_tenant")
    return claims
