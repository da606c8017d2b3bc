"""The choices an enrollment form offers for one user and instance, read through ARM."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from controlplane.selectors import linked_hubs, verified_ca_certificates
from instances.models import DpsInstance


def form_choices(request: HttpRequest, instance: DpsInstance) -> dict[str, Any]:
    """Return the keyword arguments of an enrollment form: linked hubs and verified CAs."""
    return {
        "hub_choices": linked_hubs(request.user, instance),
        "ca_choices": verified_ca_certificates(request.user, instance),
    }
