"""The HMAC keys of the audit chain: from the environment only, never from the database.

``AUDIT_HMAC_KEYS`` lists ``<key id>:<base64 key>`` entries, newest first: the newest signs
new rows, and every listed key verifies the rows that name its id. To rotate, prepend a new
entry and keep the old one for as long as rows signed with it remain (see docs/operations.md).
With DEBUG on and no keys set, a development key is derived from ``DJANGO_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEV_KEY_ID = "dev"
MIN_KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_HINT = (
    'comma-separated "<key id>:<base64 of at least 32 random bytes>" entries, newest first, '
    "e.g. k1:$(head -c 32 /dev/urandom | base64)"
)


def _decode(secret: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; raise ValueError otherwise."""
    text = secret.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text.encode("ascii"), validate=True)


@lru_cache(maxsize=8)
def _parse(entries: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    keys: list[tuple[str, bytes]] = []
    for position, entry in enumerate(entries, start=1):
        key_id, sep, secret = entry.partition(":")
        key_id = key_id.strip()
        # Errors name the entry's position and key id, never the key itself.
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ImproperlyConfigured(
                f"AUDIT_HMAC_KEYS entry {position} has no valid key id before ':' "
                f"(1-16 characters of A-Z a-z 0-9 _ -); expected {_HINT}."
            )
        try:
            raw = _decode(secret)
        except ValueError:  # binascii.Error and UnicodeEncodeError included
            raw = b""
        if len(raw) < MIN_KEY_BYTES:
            raise ImproperlyConfigured(
                f"AUDIT_HMAC_KEYS entry {position} (key id {key_id}) is not base64 of at least "
                f"{MIN_KEY_BYTES} bytes; expected {_HINT}."
            )
        if any(known == key_id for known, _ in keys):
            raise ImproperlyConfigured(f"AUDIT_HMAC_KEYS lists key id {key_id} twice.")
        keys.append((key_id, raw))
    return tuple(keys)


def _dev_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), b"audit-chain-dev-key", hashlib.sha256).digest()


def audit_keys() -> tuple[tuple[str, bytes], ...]:
    """Return the configured ``(key id, key)`` pairs, newest first.

    Raises ImproperlyConfigured naming ``AUDIT_HMAC_KEYS`` when it is malformed, or empty
    outside DEBUG.
    """
    entries = tuple(settings.AUDIT_HMAC_KEYS or ())
    if entries:
        return _parse(entries)
    if settings.DEBUG:
        return ((DEV_KEY_ID, _dev_key(str(settings.SECRET_KEY))),)
    raise ImproperlyConfigured(
        "The environment variable AUDIT_HMAC_KEYS must be set when DEBUG is off "
        f"(it keys the audit hash chain): {_HINT}."
    )


def audit_current_key() -> tuple[str, bytes]:
    """Return the ``(key id, key)`` that signs new audit rows: the first listed."""
    return audit_keys()[0]


def audit_key(key_id: str) -> bytes | None:
    """Return the key of ``key_id``, or None when it is not configured (any more)."""
    return next((key for kid, key in audit_keys() if kid == key_id), None)
