"""Symmetric keys of enrollments: generate one, and derive a device key from a group key.

The derived key is what a device of a symmetric-key enrollment group signs its registration
with; the group key itself must never reach devices.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

DEFAULT_KEY_BYTES = 64


def generate_symmetric_key(size: int = DEFAULT_KEY_BYTES) -> str:
    """Return a random base64 key of ``size`` bytes (DPS's portal default is 64)."""
    if not 16 <= size <= 64:
        raise ValueError("a symmetric key has 16 to 64 bytes")
    return base64.b64encode(secrets.token_bytes(size)).decode("ascii")


def derive_device_key(group_key: str, registration_id: str) -> str:
    """Return base64(HMAC-SHA256(key=base64decode(group_key), msg=utf8(registration_id))).

    The error never repeats the key.
    """
    if not registration_id:
        raise ValueError("a registration ID is needed to derive a device key")
    try:
        secret = base64.b64decode(group_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the group key is not valid base64") from None
    if not secret:
        raise ValueError("the group key is empty")
    digest = hmac.new(secret, registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
