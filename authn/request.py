"""The request as the portal's views see it: typed attributes that middleware and decorators set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from instances.models import DpsInstance


class PortalRequest(HttpRequest):
    """An ``HttpRequest`` with what the portal adds to it.

    Never instantiated: views annotate their request with it, and the attributes are set by
    :func:`authn.decorators.capability_required` (``dps_instance``) and by the request-id
    middleware (``id``).
    """

    user: User | AnonymousUser
    dps_instance: DpsInstance
    id: str
    # One DPS client per request (its token is resolved once); see enrollments.views.generic.
    dps_client: Any
