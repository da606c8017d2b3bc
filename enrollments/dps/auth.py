"""Token providers for ``DpsClient``: each returns the full ``Authorization`` header value.

A provider is any ``Callable[[], str]``. ``bearer()`` adapts a callable that returns a bare access
token (the portal's token broker); ``sas_token_provider()`` signs shared access signatures from a
policy key (API.md §2.1), for scripts, tests and the emulator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

TokenProvider = Callable[[], str]

BEARER_PREFIX = "Bearer "
SAS_PREFIX = "SharedAccessSignature "
# Renew a cached signature this long before it expires, so a slow request still arrives in time.
_RENEW_MARGIN_SECONDS = 300


def bearer(token_callable: Callable[[], str]) -> TokenProvider:
    """Return a provider that prefixes each token from ``token_callable`` with ``Bearer``."""

    def provide() -> str:
        return BEARER_PREFIX + token_callable()

    return provide


def authorization_value(raw: str) -> str:
    """Return ``raw`` as an Authorization value: a bare token becomes a bearer token."""
    if raw.startswith((BEARER_PREFIX, SAS_PREFIX)):
        return raw
    return BEARER_PREFIX + raw


def _sr(host: str) -> str:
    # sr is the host without scheme or trailing slash, lower case (API.md §2.1).
    host = host.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    return host.rstrip("/").lower()


def sas_token(host: str, policy_name: str, key: str, expiry: int) -> str:
    """Return ``SharedAccessSignature sr=&sig=&se=&skn=`` for ``host`` valid until ``expiry``."""
    try:
        secret = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the shared access key is not valid base64") from None
    resource = _sr(host)
    to_sign = f"{urllib.parse.quote_plus(resource)}\n{expiry}".encode()
    signature = base64.b64encode(hmac.new(secret, to_sign, hashlib.sha256).digest()).decode()
    query = urllib.parse.urlencode(
        {"sr": resource, "sig": signature, "se": str(expiry), "skn": policy_name}
    )
    return SAS_PREFIX + query


def sas_token_provider(
    host: str,
    policy_name: str,
    key: str,
    ttl: int = 3600,
    *,
    clock: Callable[[], float] = time.time,
) -> TokenProvider:
    """Return a provider of SAS tokens for ``host``, each cached until shortly before expiry."""
    if ttl <= _RENEW_MARGIN_SECONDS:
        raise ValueError(f"ttl must exceed {_RENEW_MARGIN_SECONDS} seconds")
    sas_token(host, policy_name, key, 0)  # fail now on a bad key, not on the first call
    lock = threading.Lock()
    cached: list[tuple[str, int]] = []

    def provide() -> str:
        now = clock()
        with lock:
            if cached and cached[0][1] - _RENEW_MARGIN_SECONDS > now:
                return cached[0][0]
            expiry = int(now) + ttl
            token = sas_token(host, policy_name, key, expiry)
            cached[:] = [(token, expiry)]
            return token

    return provide


@dataclass(frozen=True)
class ConnectionString:
    """The parts of ``HostName=…;SharedAccessKeyName=…;SharedAccessKey=…``."""

    host: str
    policy_name: str
    key: str

    def __repr__(self) -> str:
        return f"ConnectionString(host={self.host!r}, policy_name={self.policy_name!r}, key=...)"

    def token_provider(self, ttl: int = 3600) -> TokenProvider:
        """Return a SAS provider for this connection string."""
        return sas_token_provider(self.host, self.policy_name, self.key, ttl)


def parse_connection_string(text: str) -> ConnectionString:
    """Parse a DPS service connection string; the error never repeats the key."""
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError("the connection string is not a list of Name=value pairs")
        parts[name.strip().lower()] = value.strip()
    missing = [
        name
        for name in ("HostName", "SharedAccessKeyName", "SharedAccessKey")
        if not parts.get(name.lower())
    ]
    if missing:
        raise ValueError(f"the connection string lacks {', '.join(missing)}")
    return ConnectionString(
        host=parts["hostname"],
        policy_name=parts["sharedaccesskeyname"],
        key=parts["sharedaccesskey"],
    )
