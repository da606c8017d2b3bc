"""Reads of the control plane, as the user: CA certificates and linked IoT hubs.

``verified_ca_certificates`` and ``linked_hubs`` are what enrollment and group forms (and the
CSV import) call to offer choices instead of free text; both answer a :class:`Choices` whose
``reason`` says why nothing can be offered (the user's role, or ARM unreachable).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.core.cache import cache

from authn.arm import ArmClient, ArmError
from authn.capabilities import ControlCapability, capabilities_resolve
from controlplane.arm import arm_client, arm_token, explain
from controlplane.types import CaCertificate, Choices, LinkedHub
from instances.models import DpsInstance

log = logging.getLogger(__name__)

HUBS_CACHE_SECONDS = 600
EXPIRING_DAYS = 30


def _hubs_key(instance: DpsInstance) -> str:
    return f"controlplane:hubs:v1:{instance.pk}"


def certificate_list(
    user: Any, instance: DpsInstance, *, arm: ArmClient | None = None
) -> list[CaCertificate]:
    """Return the instance's CA certificates, newest name order (raises ArmError)."""
    arm = arm or arm_client()
    raw = arm.certificates_list(instance.resource_id, arm_token(user))
    return sorted((CaCertificate.from_arm(c) for c in raw), key=lambda c: c.name.lower())


def certificate_get(
    user: Any, instance: DpsInstance, name: str, *, arm: ArmClient | None = None
) -> CaCertificate:
    arm = arm or arm_client()
    return CaCertificate.from_arm(arm.certificate_get(instance.resource_id, name, arm_token(user)))


def verified_ca_certificates(
    user: Any, instance: DpsInstance, *, arm: ArmClient | None = None
) -> Choices[CaCertificate]:
    """Return the verified CA certificates a CA reference may name (not expired)."""
    caps = capabilities_resolve(user, instance)
    if ControlCapability.CERTIFICATES_READ.value not in caps:
        return Choices(
            reason="Your Azure role cannot list this instance's CA certificates "
            "(Microsoft.Devices/provisioningServices/certificates/read)."
        )
    try:
        certs = certificate_list(user, instance, arm=arm)
    except ArmError as exc:
        log.warning("certificates of %s unavailable: %s", instance.name, exc)
        return Choices(reason=explain(exc, what="The certificate list"))
    return Choices(
        [c for c in certs if c.is_verified and not c.expired], fetched_at=dt.datetime.now(dt.UTC)
    )


def expiring_ca_certificates(
    user: Any, instance: DpsInstance, *, days: int = EXPIRING_DAYS, arm: ArmClient | None = None
) -> list[CaCertificate]:
    """Return the CA certificates that expire within ``days`` (or have), for expiry lists."""
    if ControlCapability.CERTIFICATES_READ.value not in capabilities_resolve(user, instance):
        return []
    try:
        certs = certificate_list(user, instance, arm=arm)
    except ArmError:
        return []
    return [c for c in certs if c.expires_within(days)]


def linked_hubs(
    user: Any, instance: DpsInstance, *, refresh: bool = False, arm: ArmClient | None = None
) -> Choices[LinkedHub]:
    """Return the IoT hubs linked to the instance, read through ARM and cached per instance.

    The cache is shared by the users of the instance, but only a user whose role may read the
    DPS resource is given its content.
    """
    caps = capabilities_resolve(user, instance)
    if ControlCapability.INSTANCE_READ.value not in caps:
        return Choices(
            reason="Your Azure role cannot read the DPS resource "
            "(Microsoft.Devices/provisioningServices/read), so its linked hubs are unknown; "
            "type the hub host names instead."
        )
    key = _hubs_key(instance)
    cached = None if refresh else cache.get(key)
    if cached is None:
        arm = arm or arm_client()
        try:
            resource = arm.provisioning_service_get(instance.resource_id, arm_token(user))
        except ArmError as exc:
            log.warning("linked hubs of %s unavailable: %s", instance.name, exc)
            return Choices(reason=explain(exc, what="The DPS resource"))
        props = resource.get("properties") if isinstance(resource.get("properties"), dict) else {}
        raw = props.get("iotHubs") if isinstance(props, dict) else None
        hubs = [LinkedHub.from_arm(h) for h in raw or [] if isinstance(h, dict)]
        # Only names and allocation settings are cached: never the connection strings.
        cached = {
            "hubs": [h.__dict__ for h in hubs if h.name],
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        cache.set(key, cached, HUBS_CACHE_SECONDS)
    return Choices(
        [LinkedHub(**h) for h in cached["hubs"]],
        fetched_at=dt.datetime.fromisoformat(cached["at"]),
    )


def linked_hubs_forget(instance: DpsInstance) -> None:
    cache.delete(_hubs_key(instance))
