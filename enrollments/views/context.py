"""What every page of one DPS instance shows, whatever the section."""

from __future__ import annotations

from typing import Any

from authn.capabilities import capabilities_resolve
from authn.request import PortalRequest
from authn.selectors import instance_names_enabled


def page_context(request: PortalRequest, section: str, **extra: Any) -> dict[str, Any]:
    """Return the instance, the user's capabilities on it, the section and ``extra``.

    ``instance_names`` (the switcher's menu) is a callable: the template calls it, so pages
    and fragments that show no menu do not read it.
    """
    instance = request.dps_instance
    return {
        "instance": instance,
        "caps": capabilities_resolve(request.user, instance),
        "section": section,
        "instance_names": instance_names_enabled,
        **extra,
    }
