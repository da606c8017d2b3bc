"""Mint ID and access tokens with the claims Entra puts in them.

The resource decides the access-token version: Microsoft first-party APIs (DPS, ARM,
Graph) get v1 tokens (``iss`` https://sts.windows.net/<tid>/, ``appid``, ``upn``), apps
of the tenant get the version of their registration (v2 by default, ``aud`` = client id).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from typing import Any

from emulators.common.context import EmulatorContext
from emulators.common.keys import b64url
from emulators.common.tenant import App, User
from emulators.entra.scopes import Resource
from emulators.entra.store import EntraStore


def _opaque(n: int = 16) -> str:
    return b64url(secrets.token_bytes(n))


def pairwise_sub(oid: str, audience_key: str) -> str:
    """Return a stable per-application subject, as Entra's pairwise ``sub``."""
    return b64url(hashlib.sha256(f"{oid}|{audience_key}".encode()).digest())


def client_info(user: User, tenant_id: str) -> str:
    """Return MSAL's ``client_info``: base64url JSON of uid and utid, no padding."""
    raw = json.dumps({"uid": user.object_id, "utid": tenant_id}, separators=(",", ":"))
    return b64url(raw.encode())


class TokenMinter:
    """Build and sign tokens for one emulator context."""

    def __init__(self, ctx: EmulatorContext, store: EntraStore) -> None:
        self.ctx = ctx
        self.store = store

    @property
    def tid(self) -> str:
        return self.ctx.tenant.tenant_id

    def app_roles(self, app: App, principal_id: str) -> list[str]:
        """Return the app roles assigned to the principal on ``app``, directly or via groups."""
        principals = [principal_id, *self.ctx.tenant.group_ids_of(principal_id)]
        roles: list[str] = []
        for p in principals:
            for r in app.role_assignments.get(p, ()):
                if r not in roles:
                    roles.append(r)
        return roles

    def _times(self) -> tuple[int, int]:
        now = int(time.time())
        return now, now + self.store.lifetimes.access_token

    def _base(self, *, v1: bool, aud: str, sub: str) -> dict[str, Any]:
        iat, exp = self._times()
        return {
            "aud": aud,
            "iss": self.ctx.v1_issuer if v1 else self.ctx.v2_issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "aio": _opaque(24),
            "rh": f"1.{_opaque(24)}.",
            "sub": sub,
            "tid": self.tid,
            "uti": _opaque(16),
            "ver": "1.0" if v1 else "2.0",
        }

    def access_token(
        self,
        *,
        resource: Resource,
        prefix: str,
        client: App,
        client_acr: str,
        user: User | None,
        scopes: list[str],
        auth_time: float | None = None,
    ) -> tuple[str, int]:
        """Sign an access token for ``resource``; ``user`` None means an app-only token."""
        v1 = resource.version == 1
        aud = resource.audience(prefix)
        principal = user.object_id if user else client.service_principal_id
        claims = self._base(v1=v1, aud=aud, sub=pairwise_sub(principal, resource.key))
        if v1:
            claims.update(appid=client.client_id, appidacr=client_acr)
        else:
            claims.update(azp=client.client_id, azpacr=client_acr)
        claims["oid"] = principal
        if user is not None:
            claims["idtyp"] = "user"
            claims["name"] = user.display_name
            claims["scp"] = " ".join(scopes)
            if v1:
                claims.update(
                    upn=user.username,
                    unique_name=user.username,
                    amr=["pwd"],
                    acr="1",
                    ipaddr="127.0.0.1",
                )
                if user.given_name:
                    claims["given_name"] = user.given_name
                if user.family_name:
                    claims["family_name"] = user.family_name
                if auth_time is not None:
                    claims["auth_time"] = int(auth_time)
            else:
                claims["preferred_username"] = user.username
        else:
            claims["idtyp"] = "app"
        if resource.app is not None:
            roles = self.app_roles(resource.app, principal)
            if roles:
                claims["roles"] = roles
        token = self.ctx.keys.sign(claims, v1=v1)
        return token, int(claims["exp"]) - int(claims["iat"])

    def id_token(
        self,
        *,
        client: App,
        user: User,
        nonce: str | None,
        session_id: str,
        auth_time: float,
        include_auth_time: bool,
    ) -> str:
        """Sign a v2 ID token for ``client`` (``aud`` = client id, ``nonce`` echoed)."""
        claims = self._base(
            v1=False, aud=client.client_id, sub=pairwise_sub(user.object_id, client.client_id)
        )
        claims.update(
            oid=user.object_id,
            name=user.display_name,
            preferred_username=user.username,
            # A stable, non-secret session id derived from the browser session.
            sid=str(uuid.UUID(bytes=hashlib.sha256(session_id.encode()).digest()[:16])),
            login_hint=_opaque(24),
        )
        if nonce:
            claims["nonce"] = nonce
        if include_auth_time:
            claims["auth_time"] = int(auth_time)
        roles = self.app_roles(client, user.object_id)
        if roles:
            claims["roles"] = roles
        return self.ctx.keys.sign(claims)
