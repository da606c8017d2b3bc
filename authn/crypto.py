"""Encryption at rest of per-user token caches (Fernet, rotating keys).

``TOKEN_CACHE_KEYS`` lists Fernet keys, newest first: the newest encrypts, all decrypt.
To rotate, prepend a new key, deploy, and drop the old key once every cache has been
rewritten (each user's cache is rewritten at its next token refresh or sign-in).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("TOKEN_CACHE_KEYS must list at least one Fernet key.")
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, TypeError) as exc:
        # The key itself is not repeated: it is a secret.
        raise ImproperlyConfigured(
            "TOKEN_CACHE_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.TOKEN_CACHE_KEYS))


@lru_cache(maxsize=4)
def _keys_fingerprint(keys: tuple[str, ...]) -> bytes:
    return hashlib.blake2b("\n".join(keys).encode("utf-8"), digest_size=16).digest()


def ciphertext_version(ciphertext: bytes) -> bytes:
    """Return a digest naming this ciphertext under the configured keys (never the keys).

    Two calls agree only for the same ciphertext and the same key list, so anything derived
    from a decrypted blob can be remembered under it: a rewritten blob or a rotated key list
    gives another version. The digest reveals neither the plaintext nor a key.
    """
    digest = hashlib.blake2b(bytes(ciphertext), digest_size=16)
    digest.update(_keys_fingerprint(tuple(settings.TOKEN_CACHE_KEYS)))
    return digest.digest()


def encrypt(plaintext: str) -> bytes:
    return fernet().encrypt(plaintext.encode("utf-8"))


def decrypt(ciphertext: bytes) -> str | None:
    """Return the plaintext, or None when no configured key opens it (treated as no cache)."""
    try:
        return fernet().decrypt(bytes(ciphertext)).decode("utf-8")
    except InvalidToken:
        return None
