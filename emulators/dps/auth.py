"""Who is calling and may they: SAS tokens with policy rights, Entra tokens with Azure RBAC.

SAS is checked leniently, as API.md §2.1 advises: fields in any order, ``sr`` with or
without a scheme, compared without case against the instance's host names, a signature
over the encoded or the raw ``sr``, either key of the named policy, any ``se`` not past.
Bearer tokens are verified against the Entra emulator's keys (audience
``https://azure-devices-provisioning.net``, v1 or v2 issuer), then the operation's data
action is decided by Azure RBAC from the tenant's role assignments.

Verified tokens and RBAC decisions are cached for a few seconds: both are pure functions
of their inputs here, and the emulator must serve a thousand requests a second.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from emulators.common.context import DPS_AUDIENCE, EmulatorContext
from emulators.common.keys import InvalidToken
from emulators.common.rbac import data_action_allowed, permission_blocks
from emulators.common.tenant import AccessPolicy, DpsInstance
from emulators.dps import errors as e
from emulators.dps.errors import DpsError

ACTION_PREFIX = "Microsoft.Devices/provisioningServices/"
RBAC_CACHE_SECONDS = 5.0
_CACHE_LIMIT = 4096


def _check_sas_expiry(expiry: int) -> None:
    if expiry < time.time():
        raise DpsError(e.UNAUTHORIZED, "The SAS token has expired.")


def _sas_fields(value: str) -> tuple[dict[str, str], str]:
    """Split a SAS into its (lower-cased) fields, decoded, and ``sr`` as sent; all four needed."""
    fields: dict[str, str] = {}
    raw_sr = ""
    for part in value.split("&"):
        name, sep, val = part.partition("=")
        if not sep:
            continue
        name = name.strip().lower()
        if name == "sr":
            raw_sr = val
        fields[name] = unquote(val)
    missing = [f for f in ("sr", "sig", "se", "skn") if not fields.get(f)]
    if missing:
        raise DpsError(e.UNAUTHORIZED, f"The SAS token lacks {', '.join(missing)}.")
    return fields, raw_sr


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a SAS policy or an Entra principal."""

    kind: str  # "sas" | "bearer"
    policy: AccessPolicy | None = None
    oid: str = ""
    claims: dict[str, Any] | None = None


class Authenticator:
    """Authenticate requests and authorize operations for one DPS instance."""

    def __init__(self, ctx: EmulatorContext, instance: DpsInstance) -> None:
        self.ctx = ctx
        self.instance = instance
        self._policies = {p.key_name.lower(): p for p in instance.access_policies}
        self._keys = {
            p.key_name.lower(): [base64.b64decode(p.primary_key), base64.b64decode(p.secondary_key)]
            for p in instance.access_policies
        }
        hosts = {instance.public_host.lower()}
        local = ctx.dps_hosts.get(instance.name)
        if local:
            hosts.add(local.lower())
            port = local.rsplit(":", 1)[-1]
            hosts.update({f"localhost:{port}", f"127.0.0.1:{port}"})
        self._hosts = hosts
        self._token_cache: dict[str, tuple[dict[str, Any], float]] = {}
        self._sas_cache: dict[str, tuple[Caller, int, str]] = {}
        self._rbac_cache: dict[tuple[str, str], tuple[bool, float]] = {}

    # -- authentication -----------------------------------------------------------------
    def authenticate(self, authorization: str | None, host: str | None, path: str) -> Caller:
        """Return the caller, or raise 401 in DPS's shape."""
        if not authorization:
            raise DpsError(e.UNAUTHORIZED, "The Authorization header is missing.")
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "sharedaccesssignature":
            return self._sas(value.strip(), host, path)
        if scheme == "bearer":
            return self._bearer(value.strip())
        raise DpsError(
            e.UNAUTHORIZED, "Use a SharedAccessSignature or a Bearer token to authenticate."
        )

    def _sas(self, value: str, host: str | None, path: str) -> Caller:
        hit = self._sas_cache.get(value)
        if hit is not None:
            caller, expiry, sr = hit
            # Only the signature check is cached; expiry and resource are checked each time.
            _check_sas_expiry(expiry)
            self._check_sas_resource(sr, host, path)
            return caller
        fields, raw_sr = _sas_fields(value)
        try:
            expiry = int(fields["se"])
        except ValueError:
            raise DpsError(e.UNAUTHORIZED, "The SAS token's expiry (se) is not a number.") from None
        _check_sas_expiry(expiry)
        policy = self._policies.get(fields["skn"].lower())
        if policy is None:
            raise DpsError(e.UNAUTHORIZED, "The SAS token names an unknown access policy.")
        sr = fields["sr"]
        self._check_sas_resource(sr, host, path)
        if not self._sas_signed(policy, fields, raw_sr):
            raise DpsError(e.UNAUTHORIZED, "The SAS signature does not match.")
        if len(self._sas_cache) >= _CACHE_LIMIT:
            self._sas_cache.clear()
        caller = Caller(kind="sas", policy=policy)
        self._sas_cache[value] = (caller, expiry, sr)
        return caller

    def _check_sas_resource(self, sr: str, host: str | None, path: str) -> None:
        if not self._resource_ok(sr, host, path):
            raise DpsError(e.UNAUTHORIZED, "The SAS token's resource (sr) does not cover this URL.")

    def _sas_signed(self, policy: AccessPolicy, fields: dict[str, str], raw_sr: str) -> bool:
        """Tell whether one of the policy's keys signed ``sr`` (in any spelling) and ``se``."""
        try:
            sig = base64.b64decode(fields["sig"].replace(" ", "+"), validate=True)
        except (binascii.Error, ValueError):
            raise DpsError(e.UNAUTHORIZED, "The SAS signature is not base64.") from None
        sr = fields["sr"]
        candidates = {quote_plus(sr), quote_plus(sr.lower()), sr, raw_sr, quote(sr, safe="")}
        for key in self._keys[policy.key_name.lower()]:
            for text in candidates:
                mac = hmac.new(key, f"{text}\n{fields['se']}".encode(), hashlib.sha256).digest()
                if hmac.compare_digest(mac, sig):
                    return True
        return False

    def _resource_ok(self, sr: str, host: str | None, path: str) -> bool:
        target = sr.strip()
        if "://" in target:
            target = target.split("://", 1)[1]
        target = target.rstrip("/")
        sr_host, _, sr_path = target.partition("/")
        allowed = set(self._hosts)
        if host:
            allowed.add(host.lower())
        if sr_host.lower() not in allowed:
            return False
        if not sr_path:
            return True
        want = [s for s in sr_path.lower().split("/") if s]
        have = [s for s in path.lower().split("/") if s]
        return have[: len(want)] == want

    def _bearer(self, token: str) -> Caller:
        now = time.time()
        hit = self._token_cache.get(token)
        if hit and hit[1] > now:
            claims = hit[0]
        else:
            try:
                claims = self.ctx.keys.verify(
                    token,
                    audiences=[DPS_AUDIENCE],
                    issuers=[self.ctx.v1_issuer, self.ctx.v2_issuer],
                )
            except InvalidToken as exc:
                raise DpsError(
                    e.UNAUTHORIZED, f"The bearer token was rejected: {exc.reason}."
                ) from None
            # Every Entra access token carries tid (IDENTITY §3.9) and RBAC keys on oid + tid:
            # a token without one names no tenant and is refused, not assumed to be ours.
            if not claims.get("tid"):
                raise DpsError(e.UNAUTHORIZED, "The bearer token has no tid claim.")
            if str(claims["tid"]) != self.ctx.tenant.tenant_id:
                raise DpsError(e.UNAUTHORIZED, "The bearer token belongs to another tenant.")
            if not claims.get("oid"):
                raise DpsError(e.UNAUTHORIZED, "The bearer token has no oid claim.")
            if len(self._token_cache) >= _CACHE_LIMIT:
                self._token_cache.clear()
            self._token_cache[token] = (claims, float(claims.get("exp", now)))
        return Caller(kind="bearer", oid=str(claims["oid"]), claims=claims)

    # -- authorization ---------------------------------------------------------------------
    def authorize(self, caller: Caller, right: str, action: str) -> None:
        """Raise 401 (SAS policy lacks ``right``) or 403 (RBAC denies ``action``)."""
        if caller.kind == "sas":
            assert caller.policy is not None
            if right.lower() not in (r.lower() for r in caller.policy.rights):
                raise DpsError(
                    e.UNAUTHORIZED,
                    f"The shared access policy '{caller.policy.key_name}' lacks the {right} right.",
                )
            return
        full = ACTION_PREFIX + action
        if not self.allowed(caller.oid, full):
            raise DpsError(
                e.FORBIDDEN,
                f"The principal '{caller.oid}' does not have authorization to perform action "
                f"'{full}' over scope '{self.instance.resource_id}'.",
            )

    def allowed(self, oid: str, action: str) -> bool:
        """Decide a data action for a principal by Azure RBAC, cached for a few seconds."""
        now = time.monotonic()
        key = (oid, action)
        hit = self._rbac_cache.get(key)
        if hit and hit[1] > now:
            return hit[0]
        blocks = permission_blocks(self.ctx.tenant, oid, self.instance.resource_id)
        decision = data_action_allowed(blocks, action)
        if len(self._rbac_cache) >= _CACHE_LIMIT:
            self._rbac_cache.clear()
        self._rbac_cache[key] = (decision, now + RBAC_CACHE_SECONDS)
        return decision
