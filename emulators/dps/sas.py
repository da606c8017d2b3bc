"""Shared access signatures of the DPS device API, and derived device keys.

The device signs ``{idScope}/registrations/{registrationId}`` with its own symmetric key or,
in a symmetric-key enrollment group, with a key derived from the group key
(HMAC-SHA256 of the registration id under the group key, base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

SAS_PREFIX = "sharedaccesssignature "


@dataclass(frozen=True)
class SasToken:
    """The fields of a ``SharedAccessSignature`` header, ``sr`` as sent and decoded."""

    resource_raw: str
    resource: str
    signature: str
    expiry: int
    key_name: str


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """Return the device key of ``registration_id`` in a symmetric-key enrollment group."""
    key = base64.b64decode(group_key_b64, validate=True)
    digest = hmac.new(key, registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(to_sign: str, key_b64: str) -> str:
    """Return base64(HMAC-SHA256(base64decode(key), to_sign))."""
    key = base64.b64decode(key_b64, validate=True)
    return base64.b64encode(hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).digest()).decode(
        "ascii"
    )


def generate_sas(
    resource: str,
    key_b64: str,
    key_name: str | None = "registration",
    ttl: int = 3600,
    now: float | None = None,
) -> str:
    """Build a ``SharedAccessSignature`` header value the way the device SDKs do."""
    expiry = str(int(now if now is not None else time.time()) + ttl)
    encoded = urllib.parse.quote(resource, safe="")
    fields = {"sr": encoded, "sig": sign(encoded + "\n" + expiry, key_b64), "se": expiry}
    if key_name:
        fields["skn"] = key_name
    # sr is already encoded; quote the others once.
    parts = [f"sr={encoded}"] + [
        f"{k}={urllib.parse.quote(v, safe='')}" for k, v in fields.items() if k != "sr"
    ]
    return "SharedAccessSignature " + "&".join(parts)


def parse_sas(header: str | None) -> SasToken | None:
    """Parse an Authorization header; return None when it is not a well-formed SAS."""
    if not header or not header.lower().startswith(SAS_PREFIX):
        return None
    raw: dict[str, str] = {}
    for part in header[len(SAS_PREFIX) :].strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            return None
        raw[name.strip().lower()] = value.strip()
    if not {"sr", "sig", "se"} <= raw.keys():
        return None
    try:
        expiry = int(raw["se"])
    except ValueError:
        return None
    return SasToken(
        resource_raw=raw["sr"],
        resource=urllib.parse.unquote(raw["sr"]),
        signature=urllib.parse.unquote(raw["sig"]),
        expiry=expiry,
        key_name=urllib.parse.unquote(raw.get("skn", "")),
    )


def _normalise_resource(resource: str) -> str:
    resource = resource.strip()
    if "://" in resource:
        resource = resource.split("://", 1)[1]
    return resource.strip("/").lower()


def resource_matches(token: SasToken, expected: str) -> bool:
    """Tell whether the token's ``sr`` names ``expected`` (case-insensitive, scheme ignored)."""
    return _normalise_resource(token.resource) == _normalise_resource(expected)


def signature_valid(token: SasToken, keys: Iterable[str]) -> bool:
    """Tell whether the token was signed with one of ``keys`` (base64).

    Clients sign the URL-encoded ``sr`` (Python, C) or the raw one (Node); the encoded form
    may use upper- or lower-case hex, so every plausible spelling is tried.
    """
    try:
        given = base64.b64decode(token.signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    spellings = {
        token.resource_raw,
        token.resource,
        urllib.parse.quote(token.resource, safe=""),
        urllib.parse.quote(token.resource, safe="").lower(),
    }
    for key_b64 in keys:
        if not key_b64:
            continue
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        for sr in spellings:
            msg = f"{sr}\n{token.expiry}".encode()
            if hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).digest(), given):
                return True
    return False


def expired(token: SasToken, now: float | None = None) -> bool:
    """Tell whether the token's expiry lies in the past."""
    return token.expiry < int(now if now is not None else time.time())
