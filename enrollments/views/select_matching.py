""" "Select all N matching": one bulk job on every record a fleet-index list matches.

The list posts its query string and an action, never ids: the query is run again here, on
the server, against the index. The first request (a POST from the list, or a GET of the same
fields, which can be bookmarked) shows the count and the action to confirm; a POST with
``confirm`` creates the job with the query and the count shown. The worker runs the query
again and stores each matching id with the ETag the index holds for it
(:func:`enrollments.bulk.selection.selection_from_query`), so a record changed since the last
pass ends as a conflict, and the request writes no rows however many records match. The action's capability is
checked here (403 and a ``denied`` audit event) and again by the job's service and worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from authn.capabilities import capabilities_resolve
from authn.decorators import capability_required, deny
from authn.permissions import Capability
from authn.request import PortalRequest
from enrollments.bulk import jobs as bulk
from enrollments.bulk.selection import matching_query
from enrollments.forms_bulk import SelectMatchingForm
from enrollments.models import JobKind
from enrollments.views.context import page_context
from fleet.models import RecordKind
from fleet.selectors import records_matching

C = Capability


@dataclass(frozen=True)
class MatchingAction:
    """What one action of "select all N matching" creates and needs."""

    verb: str
    job_kind: str
    capability: Capability
    options: tuple[tuple[str, Any], ...] = ()


ACTIONS: dict[str, MatchingAction] = {
    "disable": MatchingAction(
        "Disable", JobKind.SET_STATUS, C.ENROLLMENTS_WRITE, (("status", "disabled"),)
    ),
    "enable": MatchingAction(
        "Enable", JobKind.SET_STATUS, C.ENROLLMENTS_WRITE, (("status", "enabled"),)
    ),
    "delete": MatchingAction("Delete", JobKind.DELETE_SELECTED, C.ENROLLMENTS_DELETE),
    "export": MatchingAction(
        "Export", JobKind.EXPORT, C.ENROLLMENTS_READ, (("include_keys", False),)
    ),
}
#: The actions on enrollment groups: no export (the import format holds enrollments only).
GROUP_ACTIONS: dict[str, MatchingAction] = {
    "disable": MatchingAction(
        "Disable", JobKind.SET_STATUS, C.ENROLLMENTGROUPS_WRITE, (("status", "disabled"),)
    ),
    "enable": MatchingAction(
        "Enable", JobKind.SET_STATUS, C.ENROLLMENTGROUPS_WRITE, (("status", "enabled"),)
    ),
    "delete": MatchingAction("Delete", JobKind.DELETE_SELECTED, C.ENROLLMENTGROUPS_DELETE),
}
#: Per record kind: the capability reading the list, its actions, and the list's URL name.
KINDS: dict[str, tuple[Capability, dict[str, MatchingAction], str]] = {
    RecordKind.ENROLLMENT: (C.ENROLLMENTS_READ, ACTIONS, "enrollments:enrollment_list"),
    RecordKind.GROUP: (C.ENROLLMENTGROUPS_READ, GROUP_ACTIONS, "enrollments:group_list"),
}


@never_cache
@require_http_methods(["GET", "POST"])
def select_matching(request: PortalRequest, instance: str, kind: str) -> HttpResponseBase:
    """Confirm, then start, a job acting on every enrollment or group the posted query matches."""
    if kind not in KINDS:
        raise Http404("Only individual enrollments and groups can be acted on in bulk.")
    read, _, _ = KINDS[kind]
    return capability_required(read)(_select_matching)(request, instance=instance, kind=kind)


def _select_matching(request: PortalRequest, instance: str, kind: str) -> HttpResponse:
    _, actions, list_name = KINDS[kind]
    form = SelectMatchingForm(request.POST if request.method == "POST" else request.GET)
    if form.is_valid() and form.cleaned_data["action"] not in actions:
        form.add_error("action", "This action is not offered for enrollment groups.")
    if form.errors:
        return _page(request, form=form, kind=kind, status=400)
    action = actions[form.cleaned_data["action"]]
    dps = request.dps_instance
    if action.capability not in capabilities_resolve(request.user, dps):
        return deny(
            request,
            reason=f"{action.verb} needs {action.capability.value}, which your Azure role on "
            "this DPS instance lacks.",
            required=action.capability.value,
            instance=dps.name,
        )
    query_string = form.cleaned_data["query_string"]
    query = matching_query(dps, kind, query_string)
    if query is None:
        form.add_error("query_string", "The list's filters are not valid; filter the list again.")
        return _page(request, form=form, kind=kind, status=400)
    total = records_matching(dps, kind, query).count()
    if form.cleaned_data["confirm"] and total and request.method == "POST":
        try:
            job = bulk.job_create(
                owner=request.user,
                instance=dps,
                kind=action.job_kind,
                capabilities=[c.value for c in capabilities_resolve(request.user, dps)],
                # The worker runs the query again and stores the rows: none are written here.
                options={
                    **dict(action.options),
                    "query": query_string,
                    "record_kind": kind,
                    "shown": total,
                },
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            noun = "groups" if kind == RecordKind.GROUP else "enrollments"
            messages.success(request, f"{action.verb}: a job for {total:,} {noun}.")
            return redirect(reverse("bulk:job_detail", args=[dps.name, job.pk]))
    return _page(
        request,
        form=form,
        kind=kind,
        action=action,
        total=total,
        query_string=query_string,
        keys_unreadable=action.job_kind == JobKind.SET_STATUS
        and C.ATTESTATION_REVEAL not in capabilities_resolve(request.user, dps),
        list_url=reverse(list_name, args=[dps.name]) + (f"?{query_string}" if query_string else ""),
        status=400 if form.errors else 200,
    )


def _page(
    request: PortalRequest, *, form: SelectMatchingForm, kind: str, status: int, **extra: Any
) -> Any:
    ctx = page_context(
        request, "bulk", form=form, record_kind=kind, list_name=KINDS[kind][2], **extra
    )
    return render(request, "enrollments/bulk/select_matching.html", ctx, status=status)
