"""Check what an enrollment refers to against the instance: linked hubs and verified CAs.

The forms and the CSV import share these checks, so a hub that is not linked or a CA that is
not verified gets the same sentence in both, naming what the instance does have.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from controlplane.selectors import linked_hubs, verified_ca_certificates
from controlplane.types import CaCertificate, Choices, LinkedHub
from enrollments import validation as v
from instances.models import DpsInstance


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) or "none"


def check_ca_reference(name: str | None, verified: Sequence[str] | None) -> str:
    """Return the CA reference ``name``; refuse it if it is not among ``verified`` (when known)."""
    name = v.validate_ca_reference(name)
    if verified is not None and name.lower() not in {n.lower() for n in verified}:
        raise ValidationError(
            f"{name} is not a verified CA certificate of this DPS instance "
            f"(verified: {_listed(verified)}).",
            code="ca_not_verified",
        )
    return name


def check_iot_hubs(values: Iterable[str], linked: Sequence[str] | None) -> list[str]:
    """Return the hub host names, each linked to the instance when the linked hubs are known."""
    return v.validate_iot_hubs(values, linked=linked)


def hub_label(hub: LinkedHub) -> str:
    """Return how a linked hub reads in a choice: name, location, weight, policy."""
    weight = (
        "default weight" if hub.allocation_weight is None else f"weight {hub.allocation_weight}"
    )
    policy = "policy applies" if hub.apply_allocation_policy else "policy not applied"
    place = f"{hub.location}, " if hub.location else ""
    return f"{hub.name} — {place}{weight}, {policy}"


def ca_label(cert: CaCertificate) -> str:
    """Return how a verified CA certificate reads in a choice: name, subject, expiry."""
    expiry = f", expires {cert.expiry:%Y-%m-%d}" if cert.expiry else ""
    return f"{cert.name} ({cert.subject}{expiry})" if cert.subject else cert.name


@dataclass(frozen=True)
class References:
    """The names an enrollment may refer to, or ``None`` with the reason they are unknown."""

    hubs: list[str] | None
    cas: list[str] | None
    hub_reason: str = ""
    ca_reason: str = ""

    @classmethod
    def of(cls, hubs: Choices[LinkedHub], cas: Choices[CaCertificate]) -> References:
        return cls(
            hubs=[h.name for h in hubs.items] if hubs.available else None,
            cas=[c.name for c in cas.items] if cas.available else None,
            hub_reason=hubs.reason,
            ca_reason=cas.reason,
        )


def references_for(user: Any, instance: DpsInstance) -> References:
    """Return the linked hubs and verified CAs ``user`` can see on ``instance`` (through ARM)."""
    return References.of(linked_hubs(user, instance), verified_ca_certificates(user, instance))
