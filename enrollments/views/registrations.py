"""Pages of device registration records (of an enrollment group, or all of an instance's)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from authn.decorators import capability_required
from authn.permissions import Capability as C
from authn.request import PortalRequest
from enrollments import selectors, services
from enrollments.views import generic, indexed
from enrollments.views.context import page_context
from enrollments.views.errors import dps_errors
from enrollments.views.groups import GROUPS


def _registration_view(capability: C, *, methods: tuple[str, ...] = ()) -> Any:
    """Guard a registration page: ``capability`` on the instance, DPS errors as pages.

    A DPS 403 page names the read capability unless a ``needing`` block said otherwise.
    """

    def decorator(view: Any) -> Any:
        guarded = capability_required(capability)(dps_errors(C.REGISTRATIONS_READ)(view))
        if methods:
            guarded = require_http_methods(list(methods))(guarded)
        return never_cache(guarded)

    return decorator


@_registration_view(C.REGISTRATIONS_READ)
def registration_list(request: PortalRequest, instance: str, key: str) -> HttpResponse:
    """List the registration records of a group's devices, from the index or DPS's pages."""
    sync = indexed.finished_state(request.dps_instance)
    if sync is not None:
        ctx = page_context(request, "group", kind=GROUPS, key=key, sync=sync)
        return indexed.registration_list(request, key, ctx)
    size = selectors.page_size_from(request.GET.get("size"))
    ct = request.GET.get("ct") or None
    client = generic.dps_client(request)
    page = selectors.registration_page(client=client, group_id=key, page_size=size, continuation=ct)
    rows = [
        {"record": r, "updated": selectors.when(r.last_updated_date_time_utc)} for r in page.items
    ]
    ctx = page_context(
        request,
        "group",
        kind=GROUPS,
        key=key,
        rows=rows,
        page=page,
        size=size,
        sizes=selectors.PAGE_SIZES,
        ct=ct,
    )
    return render(request, "enrollments/registration_list.html", ctx)


@_registration_view(C.REGISTRATIONS_READ)
def _all_registration_list(request: PortalRequest, instance: str) -> HttpResponse:
    sync = indexed.finished_state(request.dps_instance)
    ctx = page_context(request, "registrations", key="", sync=sync)
    if sync is None:
        return render(request, "enrollments/registration_list.html", {**ctx, "rows": []})
    return indexed.registration_list(request, None, ctx)


@_registration_view(C.REGISTRATIONS_DELETE, methods=("POST",))
def _all_registration_delete_selected(request: PortalRequest, instance: str) -> HttpResponse:
    return _delete_selected(
        request, "", reverse("enrollments:all_registration_list", args=[instance])
    )


@require_http_methods(["GET", "POST"])
def all_registration_list(request: PortalRequest, instance: str) -> HttpResponse:
    """List every registration record of the instance, of groups and individual enrollments;
    a POST deletes the selected ones (confirm first), as a group's list does.

    Only the index can answer the list: DPS lists registration records one group at a time,
    and those of individual enrollments not at all. Until the first pass ends, the page says so.
    The POST lives on the list's own URL: any path below ``registrations/`` is a registration id.
    """
    if request.method == "POST":
        return _all_registration_delete_selected(request, instance=instance)
    return _all_registration_list(request, instance=instance)


@_registration_view(C.REGISTRATIONS_READ)
def registration_detail(request: PortalRequest, instance: str, key: str) -> HttpResponse:
    """Show a device's registration record."""
    record = selectors.registration_get(client=generic.dps_client(request), registration_id=key)
    ctx = page_context(
        request,
        "group",
        record=record,
        key=key,
        group=request.GET.get("group", ""),
        created=selectors.when(record.created_date_time_utc),
        updated=selectors.when(record.last_updated_date_time_utc),
        payload_json=json.dumps(record.payload, indent=2, sort_keys=True) if record.payload else "",
    )
    return render(request, "enrollments/registration_detail.html", ctx)


class RegistrationDeleteView(generic.ConfirmDeleteView):
    """Confirm, then delete one registration record with its ETag."""

    template_name = "enrollments/registration_confirm_delete.html"

    def deletes(self) -> C:
        return C.REGISTRATIONS_DELETE

    def group(self) -> str:
        return self.request.GET.get("group") or self.request.POST.get("group") or ""

    def fetch(self, request: PortalRequest, key: str) -> Any:
        return selectors.registration_get(client=generic.dps_client(request), registration_id=key)

    def remove(self, request: PortalRequest, model: Any, etag: str | None) -> None:
        services.registration_delete(
            actor=request.user,
            instance=request.dps_instance,
            client=generic.dps_client(request),
            registration_id=self.kwargs["key"],
            etag=etag,
            before=model,
        )

    def after(self, request: PortalRequest) -> tuple[str, HttpResponse]:
        instance, group = request.dps_instance.name, self.group()
        back = (
            redirect("enrollments:registration_list", instance, group)
            if group
            else redirect("enrollments:enrollment_list", instance)
        )
        return f"Deleted the registration record of {self.kwargs['key']}.", back

    def delete_context(self, request: PortalRequest) -> dict[str, Any]:
        return page_context(request, "group", key=self.kwargs["key"], group=self.group())


registration_delete = _registration_view(C.REGISTRATIONS_DELETE, methods=("GET", "POST"))(
    RegistrationDeleteView.as_view()
)


def _selected(request: PortalRequest) -> list[tuple[str, str]]:
    items = []
    for value in request.POST.getlist("selected"):
        rid, _, etag = value.partition("|")
        if rid.strip():
            items.append((rid.strip(), etag.strip()))
    return list(dict.fromkeys(items))


@_registration_view(C.REGISTRATIONS_DELETE, methods=("POST",))
def registration_delete_selected(request: PortalRequest, instance: str, key: str) -> HttpResponse:
    """Confirm, then delete the selected registration records of a group, each with its ETag."""
    return _delete_selected(
        request, key, reverse("enrollments:registration_list", args=[instance, key])
    )


def _delete_selected(request: PortalRequest, key: str, back: str) -> HttpResponse:
    """Confirm, then delete the selected records (of group ``key``; "": any), each with its ETag."""
    items = _selected(request)
    if not items:
        messages.warning(request, "Select at least one registration record.")
        return redirect(back)
    section = "group" if key else "registrations"
    ctx = page_context(request, section, kind=GROUPS, key=key, items=items, back=back)
    if request.POST.get("confirm") != "yes":
        return render(request, "enrollments/registration_confirm_selected.html", ctx)
    ctx["results"] = services.registrations_delete_selected(
        actor=request.user,
        instance=request.dps_instance,
        client=generic.dps_client(request),
        items=items,
    )
    ctx["failed"] = sum(1 for r in ctx["results"] if not r.ok)
    return render(request, "enrollments/registration_results.html", ctx)
