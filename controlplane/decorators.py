"""Require a control-plane capability, as authn's ``capability_required`` does for data ones."""

from __future__ import annotations

from collections.abc import Callable

from authn.capabilities import ControlCapability, capabilities_resolve
from authn.decorators import View, instance_access_required


def control_capability_required(capability: ControlCapability) -> Callable[[View], View]:
    """Refuse with 403 and a ``denied`` audit event unless the user's roles grant ``capability``.

    The capability comes from the ``actions`` (not the data actions) of the user's roles; the
    instance is passed to the view as ``request.dps_instance``.
    """
    return instance_access_required(
        lambda request, instance: capability.value in capabilities_resolve(request.user, instance),
        required=capability.value,
        reason=lambda instance: (
            f"Your Azure role on {instance.name} does not allow this: "
            f"{capability.sentence[0].lower()}{capability.sentence[1:]} It needs the ARM "
            f"action {' and '.join(capability.actions)}."
        ),
    )
