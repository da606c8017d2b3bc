"""The fleet index pages of one instance: search, filter, sort and page what the index holds.

Each page requires the user's own read capability of that record kind on that instance (the
same check as the live lists: 403 and a ``denied`` audit event otherwise). Until the first
pass of an instance ends, the page says so (the live DPS lists stay where they are).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from authn.decorators import capability_required
from authn.permissions import Capability
from fleet.filters import RecordFilterSet
from fleet.models import IndexedRegistration, RecordKind, SyncState
from fleet.refresh import refresh_request
from fleet.selectors import record_page

C = Capability
_TITLES: dict[str, str] = {
    RecordKind.ENROLLMENT: "Individual enrollments",
    RecordKind.GROUP: "Enrollment groups",
}
_LIST_URLS: dict[str, str] = {
    RecordKind.ENROLLMENT: "fleet:enrollments",
    RecordKind.GROUP: "fleet:groups",
}


def _records(request: HttpRequest, instance: str, kind: str) -> HttpResponse:
    dps = request.dps_instance  # type: ignore[attr-defined]
    filters = RecordFilterSet(request.GET, instance=dps, kind=kind)
    if not filters.is_valid():
        return render(
            request,
            "fleet/records.html",
            {"instance": dps, "kind": kind, "title": _TITLES[kind], "filters": filters},
            status=400,
        )
    page = record_page(dps, kind, filters.record_query())
    return render(
        request,
        "fleet/records.html",
        {
            "instance": dps,
            "kind": kind,
            "title": _TITLES[kind],
            "filters": filters,
            "page": page,
            "sync": SyncState.objects.filter(instance=dps).first(),
            "sort": filters.form.cleaned_data.get("sort") or "id",
        },
    )


@never_cache
@require_GET
@capability_required(C.ENROLLMENTS_READ)
def enrollments(request: HttpRequest, instance: str) -> HttpResponse:
    """List the instance's individual enrollments from the index."""
    return _records(request, instance, RecordKind.ENROLLMENT)


@never_cache
@require_GET
@capability_required(C.ENROLLMENTGROUPS_READ)
def groups(request: HttpRequest, instance: str) -> HttpResponse:
    """List the instance's enrollment groups from the index."""
    return _records(request, instance, RecordKind.GROUP)


@never_cache
@require_GET
@capability_required(C.REGISTRATIONS_READ)
def registrations(request: HttpRequest, instance: str, group: str) -> HttpResponse:
    """List a group's registration records from the index (first 100 by id, search by prefix)."""
    dps = request.dps_instance  # type: ignore[attr-defined]
    search = request.GET.get("q", "").strip()[:128]
    qs = IndexedRegistration.objects.filter(instance=dps, group_key=group.lower())
    if search:
        qs = qs.filter(key__startswith=search.lower())
    return render(
        request,
        "fleet/registrations.html",
        {
            "instance": dps,
            "group": group,
            "q": search,
            "total": qs.count(),
            "rows": list(qs.order_by("key")[:100]),
        },
    )


@require_POST
@capability_required(C.ENROLLMENTS_READ)
def refresh(request: HttpRequest, instance: str) -> HttpResponse:
    """Queue a pass now; it runs as this user where the portal's app may not read."""
    dps = request.dps_instance  # type: ignore[attr-defined]
    refresh_request(dps, request.user)
    messages.info(request, f"The index of {dps.name} is being refreshed.")
    kind = request.POST.get("kind", RecordKind.ENROLLMENT)
    return redirect(reverse(_LIST_URLS.get(kind, "fleet:enrollments"), args=[dps.name]))
