"""Remove secrets from anything on its way into an audit row.

Every writer goes through :func:`redact` (``audit_record`` calls it on ``before``, ``after``
and ``message``), so a secret that reaches an audit call is still never stored.

Decisions:

* Values under a sensitive key are replaced by ``REDACTED`` whatever their type: symmetric
  keys (``primaryKey``, ``secondaryKey``, any ``...Key``), passwords, secrets, tokens
  (``access_token``, ``refresh_token``, ``id_token``, continuation tokens included: they
  carry nothing an auditor needs), client assertions, SAS ``sig`` values and connection
  strings.
* TPM ``endorsementKey`` and ``storageRootKey`` are public keys, but the portal treats
  all attestation material as something only ``attestation.reveal`` may see, so they are
  redacted too.
* X.509 attestation keeps the ``info`` DPS computes (subject, issuer, thumbprints, validity)
  and drops the certificate bodies, which are large and add nothing to the record.
* Inside free text, JWTs, ``Bearer`` credentials and the secret parts of connection strings
  and SAS tokens are masked, so a message built from an exception cannot leak them either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
OMITTED = "[certificate omitted]"

_SENSITIVE_KEYS = frozenset(
    {
        "key",
        "password",
        "passwd",
        "secret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "clientsecret",
        "assertion",
        "clientassertion",
        "userassertion",
        "sig",
        "signature",
        "connectionstring",
        "authorization",
        "codeverifier",
        "nonce",
    }
)
_SENSITIVE_SUFFIXES = ("key", "secret", "password", "token", "connectionstring", "assertion")
_CERTIFICATE_KEYS = frozenset({"certificate", "certificates", "cacertificate", "x5c"})

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|sharedaccesssignature)\s+[^\s,;\"']+")
# key=value pairs inside connection strings and SAS tokens: mask the value.
_KV_SECRET = re.compile(
    r"(?i)\b(sharedaccesskey|accountkey|sig|password|pwd|client_secret|secret)=([^;&\s\"']+)"
)


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def is_sensitive_key(key: str) -> bool:
    """Return True if a value stored under ``key`` must never be kept."""
    norm = _normalise(key)
    if norm in _SENSITIVE_KEYS:
        return True
    # keyName, keyVaultUri and similar are names of keys, not keys.
    if norm.startswith("key") and norm != "key":
        return False
    return norm.endswith(_SENSITIVE_SUFFIXES)


def redact_text(text: str) -> str:
    """Mask tokens and secret connection-string parts inside free text."""
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KV_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def _redact_all(obj: Any) -> Any:
    """Keep the shape of a container under a sensitive key; replace every leaf."""
    if isinstance(obj, Mapping):
        return {str(k): _redact_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_redact_all(v) for v in obj]
    return obj if obj in (None, "") else REDACTED


def redact(obj: Any) -> Any:
    """Return a copy of ``obj`` (JSON-like) with every secret removed."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = str(k)
            norm = _normalise(key)
            if norm in _CERTIFICATE_KEYS and v not in (None, "", [], {}):
                out[key] = OMITTED
            elif is_sensitive_key(key) and v not in (None, ""):
                out[key] = _redact_all(v)
            else:
                out[key] = redact(v)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj
