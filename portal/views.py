"""Project-level pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from authn.capabilities import capabilities_resolve
from fleet.overview import summary
from instances.models import DpsInstance


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """Show the landing page, or the user's DPS instances and what the user may do on each."""
    if not request.user.is_authenticated:
        return render(request, "portal/home.html", {"instances": []})
    caps = {
        instance: capabilities_resolve(request.user, instance)
        for instance in DpsInstance.objects.filter(enabled=True)
    }
    # Instances the user can reach first; the others are listed so nothing looks missing.
    order = sorted(caps, key=lambda instance: (len(caps[instance]) == 0, instance.name))
    return render(
        request,
        "portal/home.html",
        {
            "instances": [
                {
                    "instance": instance,
                    "caps": caps[instance],
                    # The index's line only for instances whose enrollments the user may read.
                    "summary": summary(instance) if "enrollments.read" in caps[instance] else None,
                }
                for instance in order
            ],
            "lookup_failed": any(c.error for c in caps.values()),
            "arm_unreachable": any(c.unreachable for c in caps.values()),
        },
    )
