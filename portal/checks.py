"""System checks: refuse emulator endpoints, wide DPS hosts and missing Entra settings in production."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# The service host suffixes of DPS in Azure's clouds (public, China, US Government).
AZURE_DPS_SUFFIXES = (
    ".azure-devices-provisioning.net",
    ".azure-devices-provisioning.cn",
    ".azure-devices-provisioning.us",
)


def _is_local(url: str | None) -> bool:
    return bool(url) and (urlsplit(url).hostname or "") in _LOCAL_HOSTS


@checks.register(checks.Tags.security, deploy=True)
def check_no_emulators_in_production(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Refuse emulator endpoints and the emulator CA when DEBUG is off."""
    if settings.DEBUG:
        return []
    errors: list[checks.CheckMessage] = []
    if settings.EMULATOR_ENDPOINTS_FILE:
        errors.append(
            checks.Error(
                "EMULATOR_ENDPOINTS_FILE is set while DEBUG is off.",
                hint="Production talks to Azure: unset EMULATOR_ENDPOINTS_FILE.",
                id="portal.E001",
            )
        )
    for name in ("ENTRA_AUTHORITY", "ARM_ENDPOINT"):
        if _is_local(getattr(settings, name)):
            errors.append(
                checks.Error(
                    f"{name} points at a local emulator while DEBUG is off.",
                    hint="Use the real Azure endpoint (the default) in production.",
                    id="portal.E002",
                )
            )
    return errors


@checks.register(checks.Tags.security, deploy=True)
def check_entra_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Name every Entra setting a deployment still lacks."""
    missing = [
        name
        for name in ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID", "TOKEN_CACHE_KEYS")
        if not getattr(settings, name)
    ]
    if not (
        settings.ENTRA_CLIENT_SECRET
        or settings.ENTRA_CLIENT_CERTIFICATE_PATH
        or settings.ENTRA_USE_WORKLOAD_IDENTITY
    ):
        missing.append(
            "ENTRA_CLIENT_SECRET or ENTRA_CLIENT_CERTIFICATE_PATH or ENTRA_USE_WORKLOAD_IDENTITY"
        )
    return [
        checks.Error(f"{name} is not set.", hint="See .env.example.", id="portal.E003")
        for name in missing
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_dps_hosts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse, when DEBUG is off, any widening of the hosts a DPS token may be sent to."""
    if settings.DEBUG:
        return []
    from instances.hosts import dps_host_suffixes

    errors: list[checks.CheckMessage] = []
    if getattr(settings, "DPS_EMULATOR_HOSTS", None):
        errors.append(
            checks.Error(
                "DPS_EMULATOR_HOSTS allows the emulators' DPS endpoints while DEBUG is off.",
                hint="Emulator hosts are for development only (DEBUG and "
                "EMULATOR_ENDPOINTS_FILE); production sends DPS tokens to Azure only.",
                id="portal.E004",
            )
        )
    for suffix in dps_host_suffixes():
        if suffix not in AZURE_DPS_SUFFIXES:
            errors.append(
                checks.Error(
                    f"DPS_HOST_SUFFIX {suffix} is not an Azure DPS service domain while DEBUG "
                    "is off: users' DPS tokens could be sent to hosts outside Azure.",
                    hint="Use one of " + ", ".join(AZURE_DPS_SUFFIXES) + " (the default is "
                    "the first).",
                    id="portal.E005",
                )
            )
    return errors
