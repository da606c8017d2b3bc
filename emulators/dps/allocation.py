"""Choose the IoT hub a registering device is assigned to; pure functions, no I/O.

Policies (DPS's ``allocationPolicy``): ``hashed`` spreads devices evenly and stably,
``static`` takes the single configured hub, ``geoLatency`` takes the first hub in the DPS
instance's own region (the emulator has no network latency to measure), and ``custom`` fails
because the emulator never calls webhooks. Re-registration follows the reprovision policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_POLICY = "hashed"
POLICIES = ("hashed", "static", "geoLatency", "custom")

# Error codes of failed allocations; DPS publishes none, so <status>001-style codes
# are used as API.md §7 suggests.
ERROR_NO_HUB = 400001
ERROR_CUSTOM_UNSUPPORTED = 400002
ERROR_UNKNOWN_POLICY = 400003


@dataclass(frozen=True)
class Hub:
    """A linked IoT hub: host name and Azure region."""

    name: str
    location: str = ""


@dataclass(frozen=True)
class Previous:
    """The device's current registration state, if it was assigned before."""

    hub: str
    substatus: str | None = None


@dataclass(frozen=True)
class Allocation:
    """The outcome: ``assigned`` with a hub and substatus, or ``failed`` with an error."""

    status: str
    hub: str | None = None
    substatus: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def assigned(self) -> bool:
        return self.status == "assigned"


def candidate_hubs(enrollment: Mapping[str, Any], linked: Sequence[Hub]) -> list[Hub]:
    """Return the hubs an enrollment (or group) may assign to, in its own order.

    ``iotHubs`` lists host names, which must be linked to the instance; when it is empty the
    legacy ``iotHubHostName`` applies, and when that is absent too every linked hub does.
    """
    by_name = {h.name.lower(): h for h in linked}
    names = [n for n in (enrollment.get("iotHubs") or []) if isinstance(n, str) and n]
    if not names and enrollment.get("iotHubHostName"):
        names = [str(enrollment["iotHubHostName"])]
    if not names:
        return list(linked)
    return [by_name.get(n.lower(), Hub(n)) for n in names]


def hashed_index(registration_id: str, count: int) -> int:
    """Map a registration id to 0..count-1, stably across runs and processes."""
    digest = hashlib.sha256(registration_id.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def choose_hub(
    policy: str | None, registration_id: str, hubs: Sequence[Hub], instance_location: str
) -> Allocation:
    """Pick one hub by policy, ignoring any earlier assignment."""
    policy = policy or DEFAULT_POLICY
    if policy not in POLICIES:
        return Allocation(
            "failed",
            error_code=ERROR_UNKNOWN_POLICY,
            error_message=f"Unknown allocation policy '{policy}'.",
        )
    if policy == "custom":
        return Allocation(
            "failed",
            error_code=ERROR_CUSTOM_UNSUPPORTED,
            error_message=(
                "Custom allocation calls a webhook, which the DPS emulator does not do; "
                "use hashed, static or geoLatency."
            ),
        )
    if not hubs:
        return Allocation(
            "failed",
            error_code=ERROR_NO_HUB,
            error_message="No IoT hub is linked to this enrollment or to the DPS instance.",
        )
    if policy == "static":
        hub = hubs[0]
    elif policy == "geoLatency":
        wanted = instance_location.replace(" ", "").lower()
        hub = next((h for h in hubs if h.location.replace(" ", "").lower() == wanted), hubs[0])
    else:
        hub = hubs[hashed_index(registration_id, len(hubs))]
    return Allocation("assigned", hub=hub.name, substatus="initialAssignment")


def allocate(
    *,
    registration_id: str,
    enrollment: Mapping[str, Any],
    linked: Sequence[Hub],
    instance_location: str,
    previous: Previous | None = None,
) -> Allocation:
    """Assign a registering device, honouring the reprovision policy on re-registration.

    - first registration: the policy's hub, substatus ``initialAssignment``;
    - ``updateHubAssignment`` false: the device keeps its hub and substatus;
    - otherwise the hub is chosen again: the same hub gives ``reprovisionedToInitialAssignment``,
      another hub ``deviceDataMigrated`` (``migrateDeviceData`` true) or ``deviceDataReset``.

    An absent reprovision policy means the spec defaults (both true).
    """
    reprovision = enrollment.get("reprovisionPolicy") or {}
    update_hub = reprovision.get("updateHubAssignment", True) is not False
    migrate = reprovision.get("migrateDeviceData", True) is not False
    if previous is not None and previous.hub and not update_hub:
        return Allocation(
            "assigned", hub=previous.hub, substatus=previous.substatus or "initialAssignment"
        )
    policy = enrollment.get("allocationPolicy")
    chosen = choose_hub(
        policy, registration_id, candidate_hubs(enrollment, linked), instance_location
    )
    if not chosen.assigned or previous is None or not previous.hub:
        return chosen
    if chosen.hub and chosen.hub.lower() == previous.hub.lower():
        substatus = "reprovisionedToInitialAssignment"
    else:
        substatus = "deviceDataMigrated" if migrate else "deviceDataReset"
    return Allocation("assigned", hub=chosen.hub, substatus=substatus)
