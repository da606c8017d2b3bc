"""Authenticate the client at the token endpoint.

Accepted: ``client_secret`` in the body or HTTP Basic; a ``client_assertion`` JWT signed
RS256 with header ``x5t`` (SHA-1 thumbprint) or PS256 with ``x5t#S256`` (SHA-256
thumbprint) by a certificate registered on the app, ``aud`` = this token endpoint,
``iss`` = ``sub`` = client id, unexpired. MSAL reuses one assertion for about nine
minutes, so ``jti`` is not checked for replay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from emulators.common.keys import b64url
from emulators.common.tenant import App, Tenant
from emulators.entra.errors import EntraError, missing_parameter, unknown_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class ClientAuth:
    app: App
    acr: str  # appidacr: "0" public client, "1" secret, "2" certificate


@lru_cache(maxsize=256)
def _cert(pem: str) -> tuple[str, str, CertificatePublicKeyTypes]:
    """Return (x5t, x5t#S256, public key) of a registered PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    sha1 = b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is defined as SHA-1
    sha256 = b64url(hashlib.sha256(der).digest())
    return sha1, sha256, cert.public_key()


def _basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise EntraError(
            "invalid_client", 7000216, "The Basic authorization header is malformed."
        ) from None
    if ":" not in raw:
        raise EntraError("invalid_client", 7000216, "The Basic authorization header is malformed.")
    cid, secret = raw.split(":", 1)
    return unquote(cid), unquote(secret)


def _bad_assertion(code: int, message: str) -> EntraError:
    return EntraError("invalid_client", code, message)


def _registered_key(app: App, thumb: str, index: int) -> CertificatePublicKeyTypes | None:
    """Return the public key of the app's certificate with thumbprint ``thumb``, or None.

    ``index`` picks the SHA-1 (0) or SHA-256 (1) thumbprint.
    """
    for pem in app.certificates:
        try:
            meta = _cert(pem)
        except ValueError:
            continue
        # MSAL keeps base64 padding on thumbprints; RFC 7515 omits it. Accept both.
        if hmac.compare_digest(str(meta[index]).encode(), thumb.rstrip("=").encode()):
            return meta[2]
    return None


def _signing_key(app: App, thumb: str, index: int) -> rsa.RSAPublicKey:
    """Return the RSA key of the registered certificate ``thumb`` names, or raise 700027."""
    key = _registered_key(app, thumb, index)
    if key is None:
        raise _bad_assertion(
            700027,
            f"The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key "
            f"used by client: '{thumb[:64]}', Please visit the Azure Portal, Graph Explorer or "
            f"directly use MS Graph to see configured keys for app Id '{app.client_id}'.]",
        )
    # RS256 and PS256 need an RSA key; PyJWT raises TypeError (a 500) for any other kind.
    if not isinstance(key, rsa.RSAPublicKey):
        raise _bad_assertion(
            700027,
            "Client assertion contains an invalid signature. [Reason - The certificate's key "
            "is not an RSA key; RS256 and PS256 assertions need one.]",
        )
    return key


def _verify_assertion(app: App, assertion: str, audiences: set[str]) -> None:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _bad_assertion(50027, "JWT token is invalid or is malformed.") from None
    alg = header.get("alg")
    if alg == "RS256" and isinstance(header.get("x5t"), str):
        thumb, index = header["x5t"], 0
    elif alg == "PS256" and isinstance(header.get("x5t#S256"), str):
        thumb, index = header["x5t#S256"], 1
    else:
        raise _bad_assertion(
            700027,
            "Client assertion contains an invalid signature. The client assertion must be "
            "signed RS256 with an 'x5t' header or PS256 with an 'x5t#S256' header.",
        )
    key = _signing_key(app, thumb, index)
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
            leeway=300,
        )
    except jwt.ExpiredSignatureError:
        raise _bad_assertion(
            700024, "Client assertion is not within its valid time range."
        ) from None
    except jwt.InvalidSignatureError:
        raise _bad_assertion(
            7000274, "Key was found, but use of the key to verify the signature failed."
        ) from None
    except jwt.PyJWTError as exc:
        raise _bad_assertion(50027, f"JWT token is invalid or is malformed ({exc}).") from None
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise _bad_assertion(
            700021, "Client assertion application identifier doesn't match 'client_id' parameter."
        )
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a.rstrip("/") in audiences for a in auds):
        raise _bad_assertion(
            700023,
            "Client assertion audience claim does not match Realm issuer. The client "
            "assertion 'aud' must be the token endpoint URL.",
        )


def authenticate_client(
    tenant: Tenant,
    form: dict[str, str],
    authorization: str,
    token_endpoints: set[str],
    *,
    confidential_required: bool,
) -> ClientAuth:
    """Return the authenticated client or raise the Entra error for the failure."""
    basic = _basic(authorization)
    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        raise missing_parameter("client_id")
    app = tenant.app_by_client_id(client_id)
    if app is None:
        raise unknown_client(client_id, tenant.display_name)
    secret = form.get("client_secret")
    if secret is None and basic and basic[0] == client_id:
        secret = basic[1]
    assertion = form.get("client_assertion")
    if secret is not None and assertion is not None:
        raise EntraError(
            "invalid_request",
            90023,
            "Only one client credential may be sent: client_secret or client_assertion.",
        )
    if secret is not None:
        ok = any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.client_secrets)
        if not ok:
            raise EntraError(
                "invalid_client",
                7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        return ClientAuth(app, "1")
    if assertion is not None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise EntraError(
                "invalid_request",
                90024 if not form.get("client_assertion_type") else 7000219,
                f"'client_assertion_type' must be '{ASSERTION_TYPE}'.",
            )
        _verify_assertion(app, assertion, {u.rstrip("/") for u in token_endpoints})
        return ClientAuth(app, "2")
    if confidential_required or not app.public_client:
        raise EntraError(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    return ClientAuth(app, "0")
