"""The Entra emulator's token-signing keys, shared with the resource emulators.

Keys persist in ``<state>/entra-keys.json`` so tokens survive a restart. Several keys may
be published in the JWKS at once (rollover): the newest signs, all verify. ARM and DPS
verify against the same published set, as real resources do with Entra's JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    created: float

    def jwk(self) -> dict[str, Any]:
        pub = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _int_b64(pub.n),
            "e": _int_b64(pub.e),
        }


class InvalidToken(Exception):
    """A bearer token failed verification; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyStore:
    """Persisted RSA keys: sign with the newest, verify with any published one."""

    def __init__(self, state_dir: Path) -> None:
        self._path = Path(state_dir) / "entra-keys.json"
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._load()
        if not self._keys:
            self.rotate()

    # -- persistence -----------------------------------------------------------
    def _load(self) -> None:
        if not self._path.exists():
            return
        raw = json.loads(self._path.read_text())
        for k in raw.get("keys", []):
            key = serialization.load_pem_private_key(k["pem"].encode(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self._keys.append(SigningKey(k["kid"], key, float(k["created"])))

    def _save(self) -> None:
        data = {
            "keys": [
                {
                    "kid": k.kid,
                    "created": k.created,
                    "pem": k.private_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                }
                for k in self._keys
            ]
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        tmp.replace(self._path)

    # -- operations ------------------------------------------------------------
    def rotate(self, keep: int = 2) -> SigningKey:
        """Create a new signing key; keep the previous ``keep - 1`` published for verification."""
        with self._lock:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            # Entra's kid is the base64url SHA-1 thumbprint of the signing certificate.
            kid = b64url(hashlib.sha1(der).digest())  # noqa: S324 - an identifier, not security
            new = SigningKey(kid, key, time.time())
            self._keys = [new, *self._keys][: max(1, keep)]
            self._save()
            return new

    @property
    def active(self) -> SigningKey:
        return self._keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self._keys]}

    def sign(self, claims: dict[str, Any], *, v1: bool = False) -> str:
        """Sign ``claims`` as an RS256 JWT with the active key (v1 tokens also carry ``x5t``)."""
        key = self.active
        headers: dict[str, Any] = {"typ": "JWT", "kid": key.kid}
        if v1:
            headers["x5t"] = key.kid
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)

    def verify(
        self,
        token: str,
        *,
        audiences: list[str],
        issuers: list[str],
        leeway: int = 0,
    ) -> dict[str, Any]:
        """Verify signature, ``kid``, issuer, audience and lifetime; return the claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not a well-formed JWT ({exc})") from exc
        if header.get("alg") != "RS256":
            raise InvalidToken("the token is not signed with RS256")
        key = next((k for k in self._keys if k.kid == header.get("kid")), None)
        if key is None:
            raise InvalidToken("the token was signed with an unknown key (kid)")
        try:
            return jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=["RS256"],
                audience=audiences,
                issuer=issuers,
                leeway=leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token's audience is not accepted here") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("the token's issuer is not accepted here") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is invalid ({exc})") from exc
