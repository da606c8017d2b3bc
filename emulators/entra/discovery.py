"""OpenID configuration documents, JWKS and instance discovery, as Entra serves them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from emulators.common.context import EmulatorContext

MULTI_TENANT = ("common", "organizations")


def resolve_tenant(ctx: EmulatorContext, segment: str) -> str | None:
    """Return ``"tenant"`` for this tenant (GUID or domain), the alias for common/organizations."""
    low = segment.lower()
    if low in (ctx.tenant.tenant_id.lower(), ctx.tenant.domain.lower()):
        return "tenant"
    if low in MULTI_TENANT:
        return low
    return None


def openid_configuration(ctx: EmulatorContext, segment: str, *, v2: bool = True) -> dict[str, Any]:
    """Return the v2 (or v1) discovery document for a tenant segment as requested."""
    base = f"{ctx.entra_url}/{segment}"
    tid = ctx.tenant.tenant_id if resolve_tenant(ctx, segment) == "tenant" else "{tenantid}"
    oauth = f"{base}/oauth2/v2.0" if v2 else f"{base}/oauth2"
    if v2:
        issuer = f"{ctx.entra_url}/{tid}/v2.0"
    else:
        issuer = f"https://sts.windows.net/{tid}/"
    doc: dict[str, Any] = {
        "token_endpoint": f"{oauth}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery/v2.0/keys"
        if v2
        else f"{ctx.entra_url}/common/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{oauth}/authorize",
        "device_authorization_endpoint": f"{oauth}/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{oauth}/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
    if v2:
        doc["code_challenge_methods_supported"] = ["plain", "S256"]
    return doc


def jwks(ctx: EmulatorContext, segment: str | None, *, v2: bool = True) -> dict[str, Any]:
    """Return the published signing keys; v2 keys name their issuer like Entra's do."""
    keys = ctx.keys.jwks()["keys"]
    if not v2:
        return {"keys": keys}
    tid = (
        ctx.tenant.tenant_id
        if segment and resolve_tenant(ctx, segment) == "tenant"
        else "{tenantid}"
    )
    return {"keys": [{**k, "issuer": f"{ctx.entra_url}/{tid}/v2.0"} for k in keys]}


def instance_metadata(
    ctx: EmulatorContext, authorization_endpoint: str | None
) -> dict[str, Any] | None:
    """Answer MSAL's instance discovery, or None when the endpoint is not this emulator."""
    own = urlsplit(ctx.entra_url)
    own_hosts = {own.hostname or "", "localhost", "127.0.0.1"}
    netloc = own.netloc
    tenant = "common"
    if authorization_endpoint:
        parts = urlsplit(authorization_endpoint)
        if parts.scheme != "https" or parts.hostname not in own_hosts:
            return None
        segs = [p for p in parts.path.split("/") if p]
        if segs:
            tenant = segs[0]
    return {
        # Built from the emulator's own URL: MSAL drops the port from authorization_endpoint.
        "tenant_discovery_endpoint": f"{ctx.entra_url}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [
            {
                "preferred_network": netloc,
                "preferred_cache": netloc,
                "aliases": sorted({netloc, own.hostname or netloc}),
            }
        ],
    }
