"""Where a user's DPS token may go: the rules of a DPS instance's service host.

Every user's DPS bearer token is sent to the host an instance row holds, so that host is
checked when the instance is registered and again right before a token is attached:

* https only (the row stores a bare ``host[:port]``; any other scheme is refused);
* a host name under one of ``settings.DPS_HOST_SUFFIX`` (``.azure-devices-provisioning.net``
  by default), on the default port;
* in development only, ``settings.DPS_EMULATOR_HOSTS`` (read from the emulators' endpoints
  file when ``DEBUG`` is on) adds the emulators' own DPS endpoints, each for its resource id;
* when ARM has told it, the host ARM reports for the resource id
  (``properties.serviceOperationsHostName``); a different host refuses the instance.

Messages name the host and the rule it broke; they never contain a token.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache

from authn.arm import ArmClient, ArmError

log = logging.getLogger(__name__)

DEFAULT_SUFFIX = ".azure-devices-provisioning.net"
# What ARM said about a resource id is kept this long; a mismatch is re-read after it.
ARM_HOST_CACHE_SECONDS = 3600
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class DpsHostError(ValueError):
    """A DPS host breaks a rule; ``rule`` names which one (for tests and logs)."""

    def __init__(self, message: str, *, host: str, rule: str) -> None:
        super().__init__(message)
        self.host = host
        self.rule = rule


def dps_host_suffixes() -> tuple[str, ...]:
    """Return the configured DPS host suffixes, each with its leading dot, lower case."""
    configured: Any = getattr(settings, "DPS_HOST_SUFFIX", None) or [DEFAULT_SUFFIX]
    if isinstance(configured, str):
        configured = configured.split(",")
    suffixes = []
    for item in configured:
        text = str(item).strip().lower()
        if text:
            suffixes.append(text if text.startswith(".") else f".{text}")
    return tuple(suffixes) or (DEFAULT_SUFFIX,)


def dps_emulator_hosts() -> dict[str, str]:
    """Return the development emulators' DPS hosts (``host:port`` → resource id), if any."""
    hosts: Any = getattr(settings, "DPS_EMULATOR_HOSTS", None) or {}
    return {str(h).strip().lower(): str(rid) for h, rid in dict(hosts).items()}


def _split(url: str) -> tuple[str, str, int | None]:
    """Return (shown, hostname, port) of ``url`` (a bare host or an https URL) or raise."""
    shown = url.strip()
    if not shown:
        raise DpsHostError("The DPS service host is empty.", host="", rule="empty")
    text = shown if "://" in shown else f"https://{shown}"
    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise DpsHostError(
            f"The DPS host {shown} uses {parts.scheme or 'no'}://: the portal sends DPS tokens "
            "only over https. Give the host name alone (e.g. "
            f"<name>{dps_host_suffixes()[0]}).",
            host=shown,
            rule="https",
        )
    if parts.username is not None or parts.password is not None:
        raise DpsHostError(
            f"The DPS host {parts.hostname or shown} carries credentials: give the host name "
            "alone, without user or password.",
            host=shown,
            rule="credentials",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DpsHostError(
            f"The DPS host {parts.hostname or shown} has a path, query or fragment: give the "
            "host name alone.",
            host=shown,
            rule="path",
        )
    hostname = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        raise DpsHostError(
            f"The DPS host {shown} has an invalid port.", host=shown, rule="port"
        ) from None
    if not hostname or not _HOSTNAME_RE.match(hostname):
        raise DpsHostError(
            f"The DPS host {shown} is not a valid host name.", host=shown, rule="hostname"
        )
    return shown, hostname, port


def dps_host_validate(url: str, *, resource_id: str | None = None) -> str:
    """Return the bare ``host[:port]`` of ``url`` if a DPS token may be sent there, or raise.

    Raises :class:`DpsHostError` naming the host and the rule it broke. ``resource_id``
    ties an emulator host (development) to the instance the endpoints file lists it for.
    """
    shown, hostname, port = _split(url)
    netloc = f"{hostname}:{port}" if port is not None else hostname
    emulators = dps_emulator_hosts()
    if netloc in emulators:
        listed = emulators[netloc]
        if resource_id is not None and listed.lower() != resource_id.strip().lower():
            raise DpsHostError(
                f"The DPS host {netloc} is the emulators' endpoint of {listed}, not of "
                f"{resource_id}.",
                host=shown,
                rule="emulator-resource",
            )
        return netloc
    suffixes = dps_host_suffixes()
    if not any(hostname.endswith(s) and len(hostname) > len(s) for s in suffixes):
        also = " (or one of the emulators' endpoints)" if emulators else ""
        raise DpsHostError(
            f"The DPS host {netloc} is not under {' or '.join(suffixes)}{also}: the portal "
            "sends DPS tokens only to Azure DPS service hosts (DPS_HOST_SUFFIX).",
            host=shown,
            rule="suffix",
        )
    if port not in (None, 443):
        raise DpsHostError(
            f"The DPS host {hostname} names port {port}: Azure DPS answers on port 443 only.",
            host=shown,
            rule="port",
        )
    return hostname


# -- the host ARM reports for a resource id ---------------------------------------------------------
def _arm_cache_key(resource_id: str) -> str:
    digest = hashlib.sha256(resource_id.strip().lower().encode()).hexdigest()[:32]
    return f"authn:dps-arm-host:v1:{digest}"


def _arm_hosts_of(resource: dict[str, Any]) -> list[str]:
    """Return the hosts ARM's resource names as the service endpoint (lower case)."""
    properties = resource.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    names = [properties.get("serviceOperationsHostName")]
    if dps_emulator_hosts():
        # The ARM emulator also names its local DPS endpoint; trusted in development only.
        names.append(properties.get("emulatorHost"))
    return [str(n).strip().lower() for n in names if isinstance(n, str) and n.strip()]


def dps_host_arm_known(resource_id: str) -> list[str] | None:
    """Return the service hosts ARM last reported for ``resource_id``; None if not known."""
    value = cache.get(_arm_cache_key(resource_id))
    return list(value) if value else None


def dps_host_arm_match(host: str, resource_id: str, arm_hosts: Iterable[str]) -> None:
    """Raise :class:`DpsHostError` unless ``host`` is one of the hosts ARM reports."""
    names = list(arm_hosts)
    bare = host.strip().lower()
    for scheme in ("https://", "http://"):
        if bare.startswith(scheme):
            bare = bare[len(scheme) :]
    bare = bare.rstrip("/")
    if bare.endswith(":443"):
        bare = bare[: -len(":443")]
    if bare not in names:
        raise DpsHostError(
            f"The DPS host {bare} is not the service host ARM reports for {resource_id}: "
            f"{names[0]}. The portal sends no token to this instance until a Portal.Admin "
            "corrects its host on the DPS instances page.",
            host=host,
            rule="arm",
        )


def dps_host_arm_check(
    host: str, resource_id: str, token: str, *, arm: Any | None = None, refresh: bool = False
) -> list[str] | None:
    """Ask ARM (as the token's user) which host serves ``resource_id``; refuse a mismatch.

    ARM is asked only when its answer is not already known (or ``refresh``). Returns the
    hosts ARM reported, or None when ARM could not tell (the user lacks
    ``Microsoft.Devices/provisioningServices/read``, ARM is down): the host then stands on
    the static rules alone. Raises :class:`DpsHostError` on a mismatch.
    """
    names = None if refresh else dps_host_arm_known(resource_id)
    if names is None:
        client = arm if arm is not None else ArmClient()
        try:
            resource = client.provisioning_service_get(resource_id, token)
        except ArmError as exc:
            log.info("ARM did not tell the service host of %s: %s", resource_id, exc)
            return None
        names = _arm_hosts_of(resource if isinstance(resource, dict) else {})
        if not names:
            log.warning("ARM's answer for %s names no serviceOperationsHostName", resource_id)
            return None
        cache.set(_arm_cache_key(resource_id), names, ARM_HOST_CACHE_SECONDS)
    dps_host_arm_match(host, resource_id, names)
    return names


def _arm_token(user: Any) -> str:
    from authn.msal_app import ARM_RESOURCE
    from authn.tokens import token_for_user

    return token_for_user(user, ARM_RESOURCE)


def dps_host_register_check(*, actor: Any, host: str, resource_id: str) -> None:
    """Check ``host`` at registration: the static rules, then ARM with ``actor``'s token.

    Without a user (the import command) or a token at hand, ARM is not asked now: the check
    happens when a user's permissions on the instance are next read.
    """
    dps_host_validate(host, resource_id=resource_id)
    if actor is None or not getattr(actor, "is_authenticated", False):
        return
    from django.core.exceptions import ImproperlyConfigured

    from authn.exceptions import AuthnError

    try:
        token = _arm_token(actor)
    except (AuthnError, ImproperlyConfigured) as exc:
        # Best effort: the check happens again when the user's permissions are read.
        log.info("no ARM token to check the host of %s at registration: %s", resource_id, exc)
        return
    dps_host_arm_check(host, resource_id, token, refresh=True)


def dps_host_guard(host: str, resource_id: str) -> str:
    """Return the host a token may be sent to now, or raise :class:`DpsHostError`.

    Called right before a DPS token is attached: the static rules on the row as it is, then
    the host ARM last reported for the resource id (when known).
    """
    netloc = dps_host_validate(host, resource_id=resource_id)
    names = dps_host_arm_known(resource_id)
    if names is not None:
        dps_host_arm_match(netloc, resource_id, names)
    return netloc
