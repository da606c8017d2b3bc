"""The fleet index's own URLs: "Refresh now", and the old index pages' permanent redirects.

The index is read through the record lists themselves (enrollments/views/indexed.py); the
pages it had under ``/instances/<instance>/fleet/`` answer 301 to those lists with the same
query string, so bookmarks keep working. Each still checks the user's read capability first.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from authn.decorators import capability_required
from authn.permissions import Capability
from fleet.models import RecordKind
from fleet.refresh import refresh_request

C = Capability


def _moved(request: HttpRequest, name: str, *args: str) -> HttpResponse:
    url = reverse(name, args=args)
    query = request.META.get("QUERY_STRING", "")
    return HttpResponsePermanentRedirect(f"{url}?{query}" if query else url)


@require_GET
@capability_required(C.ENROLLMENTS_READ)
def enrollments(request: HttpRequest, instance: str) -> HttpResponse:
    """Send the old index page to the list of individual enrollments."""
    return _moved(request, "enrollments:enrollment_list", instance)


@require_GET
@capability_required(C.ENROLLMENTGROUPS_READ)
def groups(request: HttpRequest, instance: str) -> HttpResponse:
    """Send the old index page to the list of enrollment groups."""
    return _moved(request, "enrollments:group_list", instance)


@require_GET
@capability_required(C.REGISTRATIONS_READ)
def registrations(request: HttpRequest, instance: str, group: str) -> HttpResponse:
    """Send the old index page to the group's list of registration records."""
    return _moved(request, "enrollments:registration_list", instance, group)


@require_POST
@capability_required(C.ENROLLMENTS_READ)
def refresh(request: HttpRequest, instance: str) -> HttpResponse:
    """Queue a pass now; it runs as this user where the portal's app may not read."""
    dps = request.dps_instance  # type: ignore[attr-defined]
    refresh_request(dps, request.user)
    messages.info(request, f"The index of {dps.name} is being refreshed.")
    kind, group = request.POST.get("kind", ""), request.POST.get("group", "")
    if kind == "registration":
        if group:
            return redirect("enrollments:registration_list", dps.name, group)
        return redirect("enrollments:all_registration_list", dps.name)
    if kind == RecordKind.GROUP:
        return redirect("enrollments:group_list", dps.name)
    return redirect("enrollments:enrollment_list", dps.name)
