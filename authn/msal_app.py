"""The only module that imports ``msal``: the portal's confidential client, built per use.

A ``ConfidentialClientApplication`` is cheap once the OpenID discovery document is in the
shared ``http_cache``, so one is built per request (or per task) around that user's token
cache, as Microsoft's web samples do.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal.outgoing_http import OutgoingSession

MsalServiceError = msal.exceptions.MsalServiceError
SerializableTokenCache = msal.SerializableTokenCache

DPS_RESOURCE = "https://azure-devices-provisioning.net"
ARM_RESOURCE = "https://management.azure.com"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
FEDERATION_SCOPE = "api://AzureADTokenExchange/.default"

# Hosts MSAL knows itself (msal/authority.py WELL_KNOWN_AUTHORITY_HOSTS): instance discovery
# stays on for them, as Microsoft recommends; any other host is an emulator or a private
# cloud and gets instance_discovery=False, or MSAL would call login.microsoftonline.com.
_MICROSOFT_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
        "login-us.microsoftonline.com",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
    }
)

# Responses that are not tokens (discovery documents, replayed 4xx) shared by every app
# object of this process, so the discovery GET happens once, not once per request.
_HTTP_CACHE: dict[Any, Any] = {}


def reset_http_cache() -> None:
    """Forget cached discovery documents and replayed errors (tests; after reconfiguration)."""
    _HTTP_CACHE.clear()


def authority() -> str:
    """Return the configured authority, ``https://login.microsoftonline.com/<tenant>`` by default."""
    if settings.ENTRA_AUTHORITY:
        return str(settings.ENTRA_AUTHORITY).rstrip("/")
    if not settings.ENTRA_TENANT_ID:
        raise ImproperlyConfigured("ENTRA_TENANT_ID (or ENTRA_AUTHORITY) must be set.")
    return f"{PUBLIC_AUTHORITY_HOST}/{settings.ENTRA_TENANT_ID}"


def is_microsoft_host(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in _MICROSOFT_HOSTS


def api_scope() -> str:
    """Return the portal's own delegated scope, requested at sign-in and used for OBO."""
    return f"api://{settings.ENTRA_CLIENT_ID}/user_impersonation"


def resource_scope(resource: str) -> str:
    return f"{resource.rstrip('/')}/.default"


@lru_cache(maxsize=8)
def _session(ca_bundle: str | None, timeout: float) -> OutgoingSession:
    return OutgoingSession("entra", timeout, max_retries=0, verify=ca_bundle or True)


def http_session() -> OutgoingSession:
    """Return the process-wide session for MSAL (connection reuse, explicit CA, timeouts)."""
    return _session(settings.AZURE_CA_BUNDLE or None, float(settings.HTTP_TIMEOUT_SECONDS))


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def _certificate_credential(path: str) -> dict[str, str]:
    pem = Path(path).read_text()
    blocks = {m.group(1): m.group(0) for m in _PEM_BLOCK.finditer(pem)}
    key = next((v for k, v in blocks.items() if k.endswith("PRIVATE KEY")), None)
    certs = [m.group(0) for m in _PEM_BLOCK.finditer(pem) if m.group(1) == "CERTIFICATE"]
    if not key or not certs:
        raise ImproperlyConfigured(
            "ENTRA_CLIENT_CERTIFICATE_PATH must name a PEM file holding the private key "
            "and the certificate."
        )
    # No thumbprint: MSAL then signs PS256 with an x5t#S256 header, which Entra accepts.
    return {"private_key": key, "public_certificate": certs[0]}


def _federated_assertion() -> str:
    """Return a token of the portal's managed/workload identity for api://AzureADTokenExchange."""
    from azure.identity import ManagedIdentityCredential, WorkloadIdentityCredential

    credential: Any
    if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
        # AKS workload identity: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE.
        credential = WorkloadIdentityCredential()
    else:
        credential = ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID") or None)
    return str(credential.get_token(FEDERATION_SCOPE).token)


@lru_cache(maxsize=1)
def _federated_refresher() -> msal.AutoRefresher:
    # Managed identity tokens live for hours; five minutes keeps every assertion fresh.
    return msal.AutoRefresher(_federated_assertion, expires_in=300)


def credential_kind() -> str:
    """Name the credential configuration selects: workload_identity, certificate or secret."""
    if settings.ENTRA_USE_WORKLOAD_IDENTITY:
        return "workload_identity"
    if settings.ENTRA_CLIENT_CERTIFICATE_PATH:
        return "certificate"
    if settings.ENTRA_CLIENT_SECRET:
        return "secret"
    raise ImproperlyConfigured(
        "Set ENTRA_CLIENT_SECRET, ENTRA_CLIENT_CERTIFICATE_PATH or ENTRA_USE_WORKLOAD_IDENTITY."
    )


def client_credential() -> str | dict[str, Any]:
    """Return the portal's own credential in the form MSAL takes."""
    kind = credential_kind()
    if kind == "workload_identity":
        return {"client_assertion": _federated_refresher()}
    if kind == "certificate":
        return _certificate_credential(str(settings.ENTRA_CLIENT_CERTIFICATE_PATH))
    return str(settings.ENTRA_CLIENT_SECRET)


def build_app(token_cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:
    """Build the confidential client around ``token_cache``.

    Raises ``requests`` connection errors, ``ValueError`` or ``MsalServiceError`` when the
    authority's discovery document cannot be read.
    """
    if not settings.ENTRA_CLIENT_ID:
        raise ImproperlyConfigured("ENTRA_CLIENT_ID must be set.")
    auth = authority()
    return msal.ConfidentialClientApplication(
        settings.ENTRA_CLIENT_ID,
        client_credential=client_credential(),
        authority=auth,
        instance_discovery=None if is_microsoft_host(auth) else False,
        http_client=http_session(),
        http_cache=_HTTP_CACHE,
        token_cache=token_cache,
        app_name="dps-enrollment-portal",
    )


def new_token_cache(serialized: str | None = None) -> msal.SerializableTokenCache:
    cache = msal.SerializableTokenCache()
    if serialized:
        cache.deserialize(serialized)
    return cache
