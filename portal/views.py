"""Project-level pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from authn.capabilities import capabilities_resolve
from instances.models import DpsInstance


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """Show the landing page, or the user's DPS instances and what the user may do on each."""
    if not request.user.is_authenticated:
        return render(request, "portal/home.html", {"instances": []})
    rows = [
        {"instance": instance, "caps": capabilities_resolve(request.user, instance)}
        for instance in DpsInstance.objects.filter(enabled=True)
    ]
    # Instances the user can reach first; the others are listed so nothing looks missing.
    rows.sort(key=lambda r: (len(r["caps"]) == 0, r["instance"].name))
    return render(
        request,
        "portal/home.html",
        {
            "instances": rows,
            "lookup_failed": any(r["caps"].error for r in rows),
            "arm_unreachable": any(r["caps"].unreachable for r in rows),
        },
    )
